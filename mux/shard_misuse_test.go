//go:build darwin || freebsd || linux

package mux

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
)

// suiteMuxCase is one misuse of the mux API: it must not panic and must
// return within a bound.
type suiteMuxCase struct {
	name string
	call func() error
	want string // "" for nil, "err" for any error, "any" for either
}

func suiteRunMuxCases(t *testing.T, cases []suiteMuxCase) {
	t.Helper()
	for _, c := range cases {
		var err error
		done := make(chan interface{}, 1)
		go func() {
			defer func() { done <- recover() }()
			err = c.call()
		}()
		select {
		case r := <-done:
			if r != nil {
				t.Errorf("%s: panic: %v", c.name, r)
				continue
			}
		case <-time.After(waitFor):
			t.Errorf("%s: did not return within %v", c.name, waitFor)
			continue
		}
		switch {
		case c.want == "err" && err == nil:
			t.Errorf("%s: no error", c.name)
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want nil", c.name, err)
		}
	}
}

// Bad sizes, nil queues, nil connections and nil getters.
func TestSuiteMisuseShardQueue(t *testing.T) {
	conn, got := dialPair(t)
	var nilQueue *ShardQueue
	var typedNil *netpoll.TCPConnection
	cases := []suiteMuxCase{
		{"NewShardQueue(-1, nil).Add", func() error { NewShardQueue(-1, nil).Add(lbGetter([]byte("x"), false)); return nil }, ""},
		{"NewShardQueue(-1, nil).Close", func() error { return NewShardQueue(-1, nil).Close() }, ""},
		{"NewShardQueue(0, typed nil).Close", func() error { return NewShardQueue(0, typedNil).Close() }, ""},
		{"nil queue Add", func() error { nilQueue.Add(lbGetter([]byte("x"), false)); return nil }, ""},
		{"nil queue Close", func() error { return nilQueue.Close() }, "err"},
		{"huge size", func() error {
			q := NewShardQueue(1<<40, conn)
			q.Add(lbGetter([]byte("huge"), false))
			return q.Close()
		}, ""},
		{"Add()", func() error { q := NewShardQueue(2, conn); q.Add(); return q.Close() }, ""},
		{"Add(nil getter)", func() error { q := NewShardQueue(2, conn); q.Add(nil, nil); return q.Close() }, ""},
		{"getter returning nil", func() error {
			q := NewShardQueue(2, conn)
			q.Add(func() (netpoll.Writer, bool) { return nil, false }, func() (netpoll.Writer, bool) { return nil, true })
			return q.Close()
		}, ""},
		{"Close twice", func() error {
			q := NewShardQueue(2, conn)
			_ = q.Close()
			return q.Close()
		}, "err"},
		{"Add after Close", func() error {
			q := NewShardQueue(2, conn)
			_ = q.Close()
			q.Add(lbGetter([]byte("dropped"), false))
			return nil
		}, ""},
	}
	suiteRunMuxCases(t, cases)
	// Only the bytes of the valid queue reached the peer, and the connection still works.
	b := got.wait(t, len("huge"))
	time.Sleep(20 * time.Millisecond) // room for bytes that must not come
	if b = got.bytes(); string(b) != "huge" {
		t.Fatalf("peer got %q", b)
	}
	if !conn.IsActive() {
		t.Fatal("the misuse closed the connection")
	}
}

// docs/contract.md C16.8: the flusher hands the Runner a real ctx, never nil.
func TestSuiteMuxRunnerCtx(t *testing.T) {
	conn, got := dialPair(t)
	var mu sync.Mutex
	var ctxs []context.Context
	if err := netpoll.Configure(netpoll.Config{Runner: func(ctx context.Context, f func()) {
		mu.Lock()
		ctxs = append(ctxs, ctx)
		mu.Unlock()
		go f()
	}}); err != nil {
		t.Fatal(err)
	}
	defer netpoll.SetRunner(nil)
	q := NewShardQueue(2, conn)
	q.Add(lbGetter([]byte("ctx"), false))
	got.wait(t, 3)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ctxs) == 0 {
		t.Fatal("the queue never used the Runner")
	}
	for _, ctx := range ctxs {
		if ctx == nil {
			t.Fatal("the Runner got a nil ctx")
		}
	}
}
