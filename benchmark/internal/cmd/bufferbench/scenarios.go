package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// A scenario is one loop run against each implementation. op performs one
// iteration on buf up to, not including, the final Release, and returns the
// bytes it read, so that check can verify them, untimed, before the loop is
// benchmarked; the caller then calls Release.
type scenario struct {
	name string
	// fresh makes op create (and close) its own buffer on every iteration
	// instead of reusing one long-lived buffer, as a connection does.
	fresh bool
	op    func(buf Buffer) ([]byte, error)
	want  []byte
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

// payload returns n bytes of a deterministic, non-constant pattern.
func payload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return p
}

func sizeName(n int) string {
	if n >= mib {
		return fmt.Sprintf("%dMiB", n/mib)
	}
	return fmt.Sprintf("%dKiB", n/kib)
}

func scenarios() []scenario {
	var list []scenario
	for _, n := range []int{1 * kib, 64 * kib, 4 * mib} {
		list = append(list, rwMalloc(n), rwWriteBinary(n))
	}
	list = append(list, freshBuffer(1*kib))
	for _, n := range []int{1 * kib, 64 * kib} {
		list = append(list, codecWriteDirect(n), codecWriteBinary(n))
	}
	list = append(list, smallWrites(16, 64))
	return list
}

// rwMalloc: Malloc(n), copy the message in, Flush, Next(n), Release.
func rwMalloc(n int) scenario {
	msg := payload(n)
	return scenario{
		name: "rw-malloc/" + sizeName(n),
		want: msg,
		op: func(buf Buffer) ([]byte, error) {
			p, err := buf.Malloc(n)
			if err != nil {
				return nil, err
			}
			copy(p, msg)
			return flushNext(buf, n)
		},
	}
}

// rwWriteBinary: WriteBinary(message), Flush, Next(n), Release.
func rwWriteBinary(n int) scenario {
	msg := payload(n)
	return scenario{
		name: "rw-writebinary/" + sizeName(n),
		want: msg,
		op: func(buf Buffer) ([]byte, error) {
			if _, err := buf.WriteBinary(msg); err != nil {
				return nil, err
			}
			return flushNext(buf, n)
		},
	}
}

// freshBuffer: rwMalloc on a new buffer per message, closed afterwards.
func freshBuffer(n int) scenario {
	s := rwMalloc(n)
	s.name = "new-buffer+rw-malloc/" + sizeName(n)
	s.fresh = true
	return s
}

func flushNext(buf Buffer, n int) ([]byte, error) {
	if err := buf.Flush(); err != nil {
		return nil, err
	}
	return buf.Next(n)
}

// The codec scenarios model a Kitex-like frame: an 8-byte header (4-byte body
// length, 4-byte sequence id), the body, and a 4-byte trailer. The writer
// encodes into small malloc'd space and hands the large body over whole; the
// reader peeks the header, skips it, copies the body out and skips the trailer.
const (
	hdrLen     = 8
	trailerLen = 4
)

// codecWriteDirect: Malloc(header+trailer), WriteDirect(body, trailerLen)
// to splice the body in between, Flush; then Peek+Skip, ReadBinary, Next of
// the trailer, Release.
func codecWriteDirect(n int) scenario {
	body := payload(n)
	return scenario{
		name: "codec-writedirect/" + sizeName(n),
		want: body,
		op: func(buf Buffer) ([]byte, error) {
			p, err := buf.Malloc(hdrLen + trailerLen)
			if err != nil {
				return nil, err
			}
			putHeader(p, n)
			if err := buf.WriteDirect(body, trailerLen); err != nil {
				return nil, err
			}
			binary.BigEndian.PutUint32(p[hdrLen:], 0xC0DEC0DE)
			if err := buf.Flush(); err != nil {
				return nil, err
			}
			return readFrame(buf)
		},
	}
}

// codecWriteBinary: Malloc(header), WriteBinary(body), Malloc(trailer), Flush;
// then read as codecWriteDirect does.
func codecWriteBinary(n int) scenario {
	body := payload(n)
	return scenario{
		name: "codec-writebinary/" + sizeName(n),
		want: body,
		op: func(buf Buffer) ([]byte, error) {
			p, err := buf.Malloc(hdrLen)
			if err != nil {
				return nil, err
			}
			putHeader(p, n)
			if _, err := buf.WriteBinary(body); err != nil {
				return nil, err
			}
			if p, err = buf.Malloc(trailerLen); err != nil {
				return nil, err
			}
			binary.BigEndian.PutUint32(p, 0xC0DEC0DE)
			if err := buf.Flush(); err != nil {
				return nil, err
			}
			return readFrame(buf)
		},
	}
}

func putHeader(p []byte, bodyLen int) {
	binary.BigEndian.PutUint32(p, uint32(bodyLen))
	binary.BigEndian.PutUint32(p[4:], 42)
}

func readFrame(buf Buffer) ([]byte, error) {
	h, err := buf.Peek(hdrLen)
	if err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(h))
	if err := buf.Skip(hdrLen); err != nil {
		return nil, err
	}
	body, err := buf.ReadBinary(n)
	if err != nil {
		return nil, err
	}
	t, err := buf.Next(trailerLen)
	if err != nil {
		return nil, err
	}
	if binary.BigEndian.Uint32(t) != 0xC0DEC0DE {
		return nil, fmt.Errorf("trailer %x", t)
	}
	return body, nil
}

// smallWrites: count WriteString calls of size bytes each, one Flush, then one
// Next of everything and Release.
func smallWrites(size, count int) scenario {
	all := payload(size * count)
	parts := make([]string, count)
	for i := range parts {
		parts[i] = string(all[i*size : (i+1)*size])
	}
	return scenario{
		name: fmt.Sprintf("small-writes/%dBx%d", size, count),
		want: all,
		op: func(buf Buffer) ([]byte, error) {
			for _, s := range parts {
				if _, err := buf.WriteString(s); err != nil {
					return nil, err
				}
			}
			return flushNext(buf, len(all))
		},
	}
}

// check runs the scenario a few times untimed and verifies what it reads.
func (s scenario) check(im impl) error {
	buf := im.new()
	defer buf.Close()
	for i := 0; i < 3; i++ {
		b := buf
		if s.fresh {
			b = im.new()
		}
		err := s.checkOnce(b)
		if s.fresh {
			b.Close()
		}
		if err != nil {
			return fmt.Errorf("%s/%s: %w", s.name, im.name, err)
		}
	}
	return nil
}

func (s scenario) checkOnce(buf Buffer) error {
	got, err := s.op(buf)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, s.want) {
		return fmt.Errorf("read back %d bytes that differ from the %d written", len(got), len(s.want))
	}
	if n := buf.Len(); n != 0 {
		return fmt.Errorf("%d bytes left after the read", n)
	}
	return buf.Release()
}

// bench returns the benchmark function of s against im.
func (s scenario) bench(im impl) func(b *testing.B) {
	return func(b *testing.B) {
		b.ReportAllocs()
		if s.fresh {
			for i := 0; i < b.N; i++ {
				buf := im.new()
				if _, err := s.op(buf); err != nil {
					b.Fatal(err)
				}
				buf.Close()
			}
			return
		}
		buf := im.new()
		defer buf.Close()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := s.op(buf); err != nil {
				b.Fatal(err)
			}
			if err := buf.Release(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
