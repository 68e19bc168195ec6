package main

import (
	"encoding/binary"
	"fmt"
)

// The protocol: every message is a 4-byte big-endian payload length followed
// by the payload. The server answers each request with a newly built response
// of the same form carrying the request's payload.
const (
	headerLen  = 4
	maxPayload = 1 << 20
)

// payloadLen decodes a header, refusing lengths a well-behaved client never sends.
func payloadLen(h []byte) (int, error) {
	n := binary.BigEndian.Uint32(h)
	if n > maxPayload {
		return 0, fmt.Errorf("payload of %d bytes exceeds %d", n, maxPayload)
	}
	return int(n), nil
}

// encodeResponse writes the response to payload into out, which is
// headerLen+len(payload) bytes long.
func encodeResponse(out, payload []byte) {
	binary.BigEndian.PutUint32(out, uint32(len(payload)))
	copy(out[headerLen:], payload)
}
