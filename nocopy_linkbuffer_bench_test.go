package netpoll

import (
	"fmt"
	"testing"
)

// linkBufferCycle writes msg into b (Malloc and copy), Flushes, reads it
// back with Next and Releases: one message through the buffer.
func linkBufferCycle(b *LinkBuffer, msg []byte) error {
	p, err := b.Malloc(len(msg))
	if err != nil {
		return err
	}
	copy(p, msg)
	if err = b.Flush(); err != nil {
		return err
	}
	got, err := b.Next(len(msg))
	if err != nil {
		return err
	}
	if len(got) != len(msg) || got[0] != msg[0] || got[len(got)-1] != msg[len(msg)-1] {
		return fmt.Errorf("read back %d bytes that differ from the %d written", len(got), len(msg))
	}
	return b.Release()
}

func BenchmarkLinkBufferWriteRead(b *testing.B) {
	for _, c := range []struct {
		name string
		size int
	}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}, {"4MiB", 4 << 20}} {
		size := c.size
		b.Run(c.name, func(b *testing.B) {
			msg := pattern(size, 1)
			buf := NewLinkBuffer()
			defer buf.Close()
			if err := linkBufferCycle(buf, msg); err != nil { // warm the pools
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := linkBufferCycle(buf, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Cross-node reads: a 64 KiB message written in 1 KiB Mallocs, read in one
// Next (a pooled copy).
func BenchmarkLinkBufferCrossNodeNext(b *testing.B) {
	msg := pattern(64<<10, 2)
	buf := NewLinkBuffer()
	defer buf.Close()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for off := 0; off < len(msg); off += 1 << 10 {
			p, err := buf.Malloc(1 << 10)
			if err != nil {
				b.Fatal(err)
			}
			copy(p, msg[off:])
		}
		if err := buf.Flush(); err != nil {
			b.Fatal(err)
		}
		if _, err := buf.Next(len(msg)); err != nil {
			b.Fatal(err)
		}
		if err := buf.Release(); err != nil {
			b.Fatal(err)
		}
	}
}

// A 1 KiB message through the buffer allocates nothing once the pools are
// warm: nodes and their memory are recycled, not made anew. (The race
// detector makes sync.Pool drop items at random, so the check needs a
// normal build.)
func TestLinkBufferSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	msg := pattern(1<<10, 3)
	b := NewLinkBuffer()
	defer b.Close()
	var err error
	allocs := testing.AllocsPerRun(1000, func() {
		if e := linkBufferCycle(b, msg); e != nil {
			err = e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if allocs != 0 {
		t.Fatalf("a 1 KiB write-then-read cycle allocates %v times, want 0", allocs)
	}
}
