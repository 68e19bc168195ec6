package main

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// The protocol. Every message is a 4-byte big-endian body length followed by
// the body.
//
//	request body:  8-byte id | payload
//	response body: 8-byte id | 4-byte checksum of the payload | payload
//
// The server decodes the whole request, computes the checksum (the fixed CPU
// work standing in for a handler) and builds a new response. The id lets a
// pipelining client match responses that come back out of order (mux).
const (
	headerLen = 4
	idLen     = 8
	sumLen    = 4
	// maxPayload bounds what a well-behaved client sends.
	maxPayload = 1 << 20
	maxBody    = idLen + sumLen + maxPayload
)

// requestLen and responseLen are the sizes on the wire for a payload size.
func requestLen(size int) int  { return headerLen + idLen + size }
func responseLen(size int) int { return headerLen + idLen + sumLen + size }

// bodyLen decodes a request header, refusing bodies a well-behaved client
// never sends.
func bodyLen(h []byte) (int, error) {
	n := binary.BigEndian.Uint32(h)
	if n < idLen || n > maxBody {
		return 0, fmt.Errorf("request body of %d bytes: want [%d, %d]", n, idLen, maxBody)
	}
	return int(n), nil
}

// respond builds into out, which is responseLen(len(body)-idLen) bytes long,
// the response to the request whose body (id and payload) is body.
func respond(out, body []byte) {
	payload := body[idLen:]
	binary.BigEndian.PutUint32(out, uint32(idLen+sumLen+len(payload)))
	copy(out[headerLen:], body[:idLen])
	binary.BigEndian.PutUint32(out[headerLen+idLen:], checksum(payload))
	copy(out[headerLen+idLen+sumLen:], payload)
}

// encodeRequest writes a request with id and payload into out, which is
// requestLen(len(payload)) bytes long.
func encodeRequest(out []byte, id uint64, payload []byte) {
	binary.BigEndian.PutUint32(out, uint32(idLen+len(payload)))
	binary.BigEndian.PutUint64(out[headerLen:], id)
	copy(out[headerLen+idLen:], payload)
}

// checksum is the server's fixed CPU work: a multiplicative hash over the
// payload, 8 bytes at a time (about 0.2 µs for 1 KiB).
func checksum(p []byte) uint32 {
	const prime = 0x100000001b3
	h := uint64(0xcbf29ce484222325)
	for len(p) >= 8 {
		h = (h ^ binary.LittleEndian.Uint64(p)) * prime
		h = bits.RotateLeft64(h, 29)
		p = p[8:]
	}
	for _, b := range p {
		h = (h ^ uint64(b)) * prime
	}
	return uint32(h ^ h>>32)
}
