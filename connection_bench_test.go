//go:build linux

package netpoll

import (
	"bytes"
	"context"
	"syscall"
	"testing"
)

// Round trips through the whole connection path: a DialConnection client
// writes 1 KiB (Malloc, Flush), an EventLoop echoes it (Next, WriteBinary,
// Flush, Release) and the client reads it back (Next, Release).

// roundTripper is a dialed client of an echo EventLoop.
type roundTripper struct {
	c   Connection
	msg []byte
}

func newRoundTripper(tb testing.TB, network string) *roundTripper {
	s := startServer(tb, network, func(ctx context.Context, c Connection) error { return echoAll(c) })
	c := dialNP(tb, network, s.addr)
	if err := c.SetReadTimeout(longWait); err != nil {
		tb.Fatal(err)
	}
	return &roundTripper{c: c, msg: pattern(1<<10, 7)}
}

func (rt *roundTripper) once() error {
	w := rt.c.Writer()
	p, err := w.Malloc(len(rt.msg))
	if err != nil {
		return err
	}
	copy(p, rt.msg)
	if err = w.Flush(); err != nil {
		return err
	}
	r := rt.c.Reader()
	got, err := r.Next(len(rt.msg))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, rt.msg) {
		return errWrongEcho
	}
	return r.Release()
}

var errWrongEcho = Exception(ErrUnsupported, "the echo differs")

func BenchmarkConnectionRoundTrip(b *testing.B) {
	for _, network := range testNetworks {
		b.Run(network, func(b *testing.B) {
			rt := newRoundTripper(b, network)
			b.ReportAllocs()
			b.SetBytes(int64(len(rt.msg)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := rt.once(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Once warm, a round trip allocates nothing on either side: buffers, task
// hand-offs and wake-ups are all recycled. Allocations are counted for the
// whole process, so the server's count too. The handlers run on one
// long-lived goroutine here: gopool, the default Runner, starts a goroutine
// (one allocation) for a task that finds no worker, as between sequential
// round trips. (Not under the race detector: it makes sync.Pool drop items
// at random.)
func TestConnectionSteadyStateAllocs(t *testing.T) {
	checkLeaks(t)
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	tasks := make(chan func(), 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range tasks {
			f()
		}
	}()
	SetRunner(func(_ context.Context, f func()) { tasks <- f })
	defer func() {
		SetRunner(nil)
		close(tasks)
		<-done
	}()
	for _, network := range testNetworks {
		t.Run(network, func(t *testing.T) {
			rt := newRoundTripper(t, network)
			for i := 0; i < 200; i++ { // warm the pools and the runner
				if err := rt.once(); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			allocs := testing.AllocsPerRun(2000, func() {
				if e := rt.once(); e != nil {
					err = e
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %.3f allocations per round trip", network, allocs)
			if allocs > 0.05 {
				t.Fatalf("a 1 KiB round trip allocates %.3f times, want 0", allocs)
			}
		})
	}
}

// The Flush path alone: 1 KiB written with Malloc and Flush to a peer that
// drains the socket, from one goroutine, and from a new goroutine each time,
// as a handler task or a mux flusher flushes (its stack starts small).
func BenchmarkConnectionFlush(b *testing.B) {
	for _, fresh := range []bool{false, true} {
		name := "1KiB"
		if fresh {
			name += "/new-goroutine"
		}
		b.Run(name, func(b *testing.B) {
			r, w := GetSysFdPairs()
			c, err := NewFDConnection(w)
			if err != nil {
				b.Fatal(err)
			}
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				buf := make([]byte, 64<<10)
				for {
					if n, err := syscall.Read(r, buf); n <= 0 && err != syscall.EINTR {
						return
					}
				}
			}()
			defer func() {
				c.Close()
				<-drained
				syscall.Close(r)
			}()
			msg := pattern(1<<10, 3)
			flush := func(done chan<- error) {
				p, err := c.Writer().Malloc(len(msg))
				if err == nil {
					copy(p, msg)
					err = c.Writer().Flush()
				}
				done <- err
			}
			done := make(chan error, 1)
			flushAsync := func() { flush(done) } // go with no arguments allocates nothing
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if fresh {
					go flushAsync()
				} else {
					flush(done)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
