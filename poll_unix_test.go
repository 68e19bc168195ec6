//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The operator table (docs/contract.md C11.5, C12): a fd is registered
// once. A second registration of a live fd fails and leaves the first
// alone, with one poller (the kernel refuses it) and with several (another
// poller's kernel would accept it: the table refuses it).

// Registering a fd that is already registered fails, and must leave the
// existing registration alone: NewFDConnection on a fd some connection
// already wraps, and a second EventLoop serving the same Listener. With
// several pollers the second registration goes to another poller, whose
// kernel cannot refuse it: the operator table must.
func TestDoubleRegistrationRefused(t *testing.T) {
	loops := int(pollmanager.loops.Load())
	defer func() { _ = SetNumLoops(loops) }()
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d pollers", n), func(t *testing.T) {
			if err := SetNumLoops(n); err != nil {
				t.Fatal(err)
			}
			checkLeaks(t)
			t.Run("NewFDConnection twice", doubleFDConnection)
			t.Run("two loops on one Listener", doubleServe)
		})
	}
}

func doubleFDConnection(t *testing.T) {
	r, w := GetSysFdPairs()
	defer unix.Close(w)
	c1, err := NewFDConnection(r)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	var c2 Connection
	within(t, "second NewFDConnection", func() error { c2, err = NewFDConnection(r); return nil })
	if err == nil {
		defer c2.(interface{ Detach() error }).Detach()
		t.Errorf("a second NewFDConnection on fd %d succeeded (poll_unix.go opPut replaces a live operator registered with another poller)", r)
	} else if !errors.Is(err, unix.EEXIST) {
		t.Errorf("a second NewFDConnection on fd %d: %v, want EEXIST", r, err)
	}
	_ = c1.SetReadTimeout(2 * time.Second)
	if _, err := unix.Write(w, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if s, err := c1.Reader().ReadString(4); err != nil || s != "ping" {
		t.Fatalf("a second registration of fd %d unregistered the first connection, which no longer gets input (%q, %v)", r, s, err)
	}
}

func doubleServe(t *testing.T) {
	ln, err := CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	first, _ := NewEventLoop(func(ctx context.Context, c Connection) error {
		b, _ := c.Reader().ReadByte()
		_, err := c.Write([]byte{b})
		return err
	})
	done := make(chan error, 1)
	go func() { done <- first.Serve(ln) }()
	el := first.(*eventLoop)
	eventually(t, func() bool {
		el.mu.Lock()
		defer el.mu.Unlock()
		return el.svr != nil && opCurrent(el.svr.op.FD) == &el.svr.op
	}, "the first loop's listener registration")
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), longWait)
		defer cancel()
		_ = first.Shutdown(ctx)
		_ = recv(t, done, "the first Serve")
	}()
	second, _ := NewEventLoop(nil)
	err2 := within(t, "second Serve", func() error { return second.Serve(ln) })
	if err2 == nil {
		t.Fatal("a second loop served a listener already served")
	}
	// Every connection goes to the first loop, not only the first one.
	for i := 0; i < 4; i++ {
		p, err := net.DialTimeout("tcp", ln.Addr().String(), longWait)
		if err != nil {
			t.Fatal(err)
		}
		_ = p.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = p.Write([]byte{'q'})
		buf := []byte{0}
		_, err = io.ReadFull(p, buf)
		p.Close()
		if err != nil || buf[0] != 'q' {
			t.Fatalf("connection %d: after a second loop's Serve (%v) the first loop no longer serves the listener (read %q, %v)", i, err2, buf, err)
		}
	}
}
