package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
	"time"
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

// handle is what a server does with a request: burn burnIters iterations
// of CPU (zero, except in the CPU-heavy scenario), then respond.
func handle(out, body []byte) {
	if burnIters > 0 {
		burnSink.Store(burn(burnIters))
	}
	respond(out, body)
}

// burnIters is set once, at the server's start, before any request.
var (
	burnIters int
	burnSink  atomic.Uint64
)

// burn is a deterministic CPU loop of n dependent steps (an xorshift
// generator), which the compiler cannot shorten: the CPU-heavy scenario's
// handler work. calibrateBurn sizes n for a duration.
func burn(n int) uint64 {
	x := uint64(0x9e3779b97f4a7c15)
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

// calibrateBurn returns the iterations of burn that take about d on this
// machine: the fastest of several timed trials, so that a trial slowed by
// other processes does not inflate it.
func calibrateBurn(d time.Duration) int {
	const n = 200_000
	best := time.Duration(math.MaxInt64)
	for t := 0; t < 30; t++ {
		start := time.Now()
		burnSink.Store(burn(n))
		best = min(best, time.Since(start))
	}
	return max(1, int(float64(n)*float64(d)/float64(best)))
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
