//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Detach (docs/contract.md C7.5): a Close that leaves the fd open and hands
// it to the caller. The connection ends as at a Close, and nothing of it
// (a read, an event, a callback, a late Close) touches the fd afterwards.

// docs/contract.md C7.5: Detach is Close without closing the fd: the connection is
// inactive, its close callbacks run once, the poller no longer reads the fd,
// and the caller owns a working fd that a later Close does not close.
func TestConnDetach(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		ln := listenStd(t, network)
		accepted := async(func() error {
			pc, err := ln.Accept()
			if err == nil {
				t.Cleanup(func() { _ = pc.Close() })
			}
			return err
		})
		var c interface {
			Connection
			Fd() int
			Detach() error
		}
		switch network {
		case "tcp":
			raddr, err := ResolveTCPAddr("tcp", ln.Addr().String())
			require.NoError(t, err)
			tc, err := DialTCP(context.Background(), "tcp", nil, raddr)
			require.NoError(t, err)
			c = tc
		case "unix":
			raddr, err := ResolveUnixAddr("unix", ln.Addr().String())
			require.NoError(t, err)
			uc, err := DialUnix("unix", nil, raddr)
			require.NoError(t, err)
			c = uc
		}
		t.Cleanup(func() { _ = c.Close() })
		require.NoError(t, recv(t, accepted, "accept"))
		fd := c.Fd()
		require.Greater(t, fd, 2)
		l := newCallLog()
		addNumberedCallbacks(t, c, l, 2)

		require.NoError(t, c.Detach())
		require.False(t, c.IsActive())
		require.Equal(t, []string{"cb2", "cb1"}, l.get())
		requireErrIs(t, c.Detach(), ErrConnClosed, "a second Detach")
		require.NoError(t, c.Close())
		require.Equal(t, []string{"cb2", "cb1"}, l.get())

		_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		require.NoError(t, err, "the detached fd was closed")
		require.NoError(t, unix.Close(fd))
	})
}

// docs/contract.md C7.5: after Detach the caller can use the fd for I/O, and the poller
// does not steal incoming bytes from it.
func TestConnDetachFdUsable(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		fd := c.(Conn).Fd()
		detacher, ok := c.(interface{ Detach() error })
		require.True(t, ok, "%T has no Detach", c)
		require.NoError(t, detacher.Detach())
		defer unix.Close(fd)

		_, err := unix.Write(fd, []byte("raw"))
		require.NoError(t, err)
		require.Equal(t, "raw", string(readFull(t, peer, 3)))

		_, err = peer.Write([]byte("after"))
		require.NoError(t, err)
		var got []byte
		eventually(t, func() bool {
			var buf [16]byte
			n, err := unix.Read(fd, buf[:])
			if n > 0 {
				got = append(got, buf[:n]...)
			}
			_ = err // EAGAIN until the bytes arrive
			return len(got) >= 5
		}, "the bytes the peer sent after Detach to be readable from the fd")
		require.Equal(t, "after", string(got), "the poller read from a detached fd")
	})
}

// docs/contract.md C2.2: a read waiting for bytes ends with ErrConnClosed when the
// connection is detached.
func TestConnReadWakesOnDetach(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, _ := peerPair(t, network)
		fd := c.(Conn).Fd()
		done := async(func() error { _, err := c.Next(4); return err })
		notYet(t, done, 20*time.Millisecond, "Next")
		require.NoError(t, c.(interface{ Detach() error }).Detach())
		err := recv(t, done, "Next after Detach")
		requireErrIs(t, err, ErrConnClosed)
		require.False(t, errors.Is(err, ErrEOF))
		require.NoError(t, unix.Close(fd))
	})
}

// Detach while a read waits: the read ends with ErrConnClosed, the fd stays
// open and is the caller's, and the poller no longer touches it.
func TestConnDetachWhileReading(t *testing.T) {
	checkLeaks(t)
	for _, network := range testNetworks {
		t.Run(network, func(t *testing.T) {
			dc, peer := peerPair(t, network)
			var err error
			readErr := make(chan error, 1)
			go func() {
				_, err := dc.Reader().Next(5)
				readErr <- err
			}()
			blockedInRead(t, dc)
			d := dc.(interface {
				Detach() error
				Fd() int
			})
			fd := d.Fd()
			if err = d.Detach(); err != nil {
				t.Fatalf("Detach: %v", err)
			}
			if err = recv(t, readErr, "the blocked Next"); !errors.Is(err, ErrConnClosed) {
				t.Fatalf("Next after Detach: %v, want ErrConnClosed", err)
			}
			// The fd is still open and works in both directions for its new owner.
			f := os.NewFile(uintptr(fd), "detached")
			own, err := net.FileConn(f)
			f.Close()
			if err != nil {
				t.Fatalf("the detached fd is not usable: %v", err)
			}
			defer own.Close()
			if _, err = peer.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			_ = own.SetReadDeadline(time.Now().Add(longWait))
			if _, err = io.ReadFull(own, buf); err != nil || string(buf) != "hello" {
				t.Fatalf("read on the detached fd: %q, %v", buf, err)
			}
			if _, err = own.Write([]byte("back")); err != nil {
				t.Fatal(err)
			}
			_ = peer.SetReadDeadline(time.Now().Add(longWait))
			if _, err = io.ReadFull(peer, buf[:4]); err != nil || string(buf[:4]) != "back" {
				t.Fatalf("peer read from the detached fd: %q, %v", buf[:4], err)
			}
			if dc.IsActive() {
				t.Fatal("IsActive after Detach")
			}
		})
	}
}

// Detach twice: the second fails with ErrConnClosed, the fd stays the
// caller's, and the close callbacks ran once.
func TestConnDetachTwice(t *testing.T) {
	checkLeaks(t)
	for _, network := range testNetworks {
		t.Run(network, func(t *testing.T) {
			ln := stdEcho(t, network)
			c, err := DialConnection(network, ln.Addr().String(), longWait)
			if err != nil {
				t.Fatal(err)
			}
			var calls atomic.Int32
			_ = c.AddCloseCallback(func(Connection) error { calls.Add(1); return nil })
			d := c.(interface {
				Detach() error
				Fd() int
			})
			fd := d.Fd()
			if err = d.Detach(); err != nil {
				t.Fatalf("first Detach: %v", err)
			}
			if err = d.Detach(); !errors.Is(err, ErrConnClosed) {
				t.Fatalf("second Detach: %v, want ErrConnClosed", err)
			}
			if err = c.Close(); err != nil {
				t.Fatalf("Close after Detach: %v", err)
			}
			if n := calls.Load(); n != 1 {
				t.Fatalf("close callbacks ran %d times, want 1", n)
			}
			if !fdOpen(fd) {
				t.Fatal("the detached fd was closed")
			}
			unix.Close(fd)
		})
	}
}

// A detached fd handed to NewFDConnection works as a new connection: the
// old operator's registration is gone and none of its events reach the new
// owner.
func TestConnDetachThenRewrap(t *testing.T) {
	checkLeaks(t)
	for _, network := range testNetworks {
		t.Run(network, func(t *testing.T) {
			ln := stdEcho(t, network)
			for i := 0; i < 20; i++ {
				c, err := DialConnection(network, ln.Addr().String(), longWait)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = c.Write([]byte("before")) // an echo may arrive around the Detach
				d := c.(interface {
					Detach() error
					Fd() int
				})
				fd := d.Fd()
				if err = d.Detach(); err != nil {
					t.Fatal(err)
				}
				nc, err := NewFDConnection(fd)
				if err != nil {
					unix.Close(fd)
					t.Fatalf("round %d: NewFDConnection on a detached fd: %v", i, err)
				}
				_ = nc.SetReadTimeout(longWait)
				// Whatever of "before" was not read by the old connection arrives here.
				msg := fmt.Sprintf("after %d\n", i)
				if _, err = nc.Write([]byte(msg)); err != nil {
					nc.Close()
					t.Fatalf("round %d: %v", i, err)
				}
				got, err := nc.Reader().Until('\n')
				if err != nil || !strings.HasSuffix(string(got), msg) || !strings.HasSuffix("before", strings.TrimSuffix(string(got), msg)) {
					nc.Close()
					t.Fatalf("round %d: the re-wrapped fd read %q, %v", i, got, err)
				}
				if !nc.IsActive() {
					t.Fatalf("round %d: an old event closed the new owner", i)
				}
				nc.Close()
			}
		})
	}
}
