//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand"
	"runtime"
	"sync/atomic"
)

// Framed payloads. Every frame carries its length, a stream id, a sequence
// number and a CRC-32 of its body, so a reader can count corrupted, lost,
// duplicated and reordered frames.
//
//	[0:4]   total frame length, header included (big endian)
//	[4:12]  stream id
//	[12:20] sequence number
//	[20:24] CRC-32 (IEEE) of the body
//	[24:]   body
const frameHdr = 24

// randBlock is the memory bodies are cut from: random, made once.
var randBlock = func() []byte {
	b := make([]byte, 4<<20)
	rand.New(rand.NewSource(1)).Read(b)
	return b
}()

// frameBody returns a body of n bytes that depends on id and seq.
func frameBody(id, seq uint64, n int) []byte {
	off := int((id*7919 + seq*104729) % uint64(len(randBlock)-n))
	return randBlock[off : off+n]
}

// bigBytes returns n new bytes made of rotated copies of randBlock, for
// payloads larger than a body can be.
func bigBytes(n int, seed uint64) []byte {
	p := make([]byte, n)
	for done, i := 0, seed; done < n; i++ {
		off := int(i * 7919 % uint64(len(randBlock)/2))
		done += copy(p[done:], randBlock[off:])
	}
	return p
}

// putFrame writes the frame of (id, seq, body) into p, which must have
// room for frameHdr+len(body) bytes.
func putFrame(p []byte, id, seq uint64, body []byte) {
	binary.BigEndian.PutUint32(p[0:], uint32(frameHdr+len(body)))
	binary.BigEndian.PutUint64(p[4:], id)
	binary.BigEndian.PutUint64(p[12:], seq)
	binary.BigEndian.PutUint32(p[20:], crc32.ChecksumIEEE(body))
	copy(p[frameHdr:], body)
}

// newFrame returns a new frame.
func newFrame(id, seq uint64, body []byte) []byte {
	p := make([]byte, frameHdr+len(body))
	putFrame(p, id, seq, body)
	return p
}

// parsedFrame is a decoded frame header.
type parsedFrame struct {
	id, seq uint64
	ok      bool // the body matches its CRC
}

// parseFrame decodes a whole frame.
func parseFrame(p []byte) parsedFrame {
	if len(p) < frameHdr || int(binary.BigEndian.Uint32(p)) != len(p) {
		return parsedFrame{}
	}
	return parsedFrame{
		id:  binary.BigEndian.Uint64(p[4:]),
		seq: binary.BigEndian.Uint64(p[12:]),
		ok:  crc32.ChecksumIEEE(p[frameHdr:]) == binary.BigEndian.Uint32(p[20:]),
	}
}

// frameTally counts what a receiver saw of framed streams.
type frameTally struct {
	frames, bytes                       atomic.Int64
	corrupted, dup, reordered, unframed atomic.Int64
}

// frameStream is a receiver's view of one stream: the next sequence number it expects.
type frameStream struct {
	next   uint64
	unique uint64
}

// see records one received frame of stream st.
func (tl *frameTally) see(st *frameStream, f parsedFrame, n int) {
	tl.frames.Add(1)
	tl.bytes.Add(int64(n))
	switch {
	case !f.ok:
		tl.corrupted.Add(1)
	case f.seq == st.next:
		st.next++
		st.unique++
	case f.seq < st.next:
		tl.dup.Add(1)
	default:
		tl.reordered.Add(1)
		st.next = f.seq + 1
		st.unique++
	}
}

func (tl *frameTally) String() string {
	return fmt.Sprintf("frames=%d bytes=%d corrupted=%d dup=%d reordered=%d unframed=%d",
		tl.frames.Load(), tl.bytes.Load(), tl.corrupted.Load(), tl.dup.Load(), tl.reordered.Load(), tl.unframed.Load())
}

// bad is the number of bad frames of every kind.
func (tl *frameTally) bad() int64 {
	return tl.corrupted.Load() + tl.dup.Load() + tl.reordered.Load() + tl.unframed.Load()
}

// echoFrames is an OnRequest that checks and echoes every whole frame
// buffered, without blocking. st returns the stream state of a connection.
func echoFrames(tl *frameTally, st func(Connection) *frameStream) OnRequest {
	return func(ctx context.Context, c Connection) error {
		r, w := c.Reader(), c.Writer()
		for r.Len() >= 4 {
			h, err := r.Peek(4)
			if err != nil {
				return err
			}
			n := int(binary.BigEndian.Uint32(h))
			if n < frameHdr {
				tl.unframed.Add(1)
				return c.Close()
			}
			if r.Len() < n {
				return nil
			}
			p, err := r.Next(n)
			if err != nil {
				return err
			}
			tl.see(st(c), parseFrame(p), n)
			if _, err = w.WriteBinary(p); err != nil {
				return err
			}
			if err = w.Flush(); err != nil {
				return err
			}
			if err = r.Release(); err != nil {
				return err
			}
		}
		return nil
	}
}

// readFrame reads one whole frame from a blocking Reader and releases it.
func readFrame(r Reader) (parsedFrame, int, error) {
	h, err := r.Peek(4)
	if err != nil {
		return parsedFrame{}, 0, err
	}
	n := int(binary.BigEndian.Uint32(h))
	if n < frameHdr {
		return parsedFrame{}, n, fmt.Errorf("bad frame length %d", n)
	}
	p, err := r.Next(n)
	if err != nil {
		return parsedFrame{}, 0, err
	}
	f := parseFrame(p)
	return f, n, r.Release()
}

// liveHeap returns the live heap after two collections (sync.Pools, and so
// the buffer pools, are emptied by the second).
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// mib formats a byte count.
func mib(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }
