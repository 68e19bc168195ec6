//go:build darwin || freebsd || linux

package netpoll

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The read timer of a blocked read (docs/contract.md C2.2, C6.1, C6.2): it
// stays armed between reads to save re-arming, so a stale arming must never
// decide a later read, and a read ended by a close leaves no timer running.

// A read that ended (timeout, close, peer close) leaves no timer behind: the
// next read's own timeout applies, not a stale one.
func TestConnReadTimerAfterError(t *testing.T) {
	checkLeaks(t)
	dc, w := fdPairConn(t)
	var err error
	c := connOf(dc)
	_ = dc.SetReadTimeout(50 * time.Millisecond)
	if _, err = dc.Reader().Next(1); !errors.Is(err, ErrReadTimeout) {
		t.Fatalf("Next: %v, want ErrReadTimeout", err)
	}
	// A longer timeout now; the data comes after the old one would have fired.
	_ = dc.SetReadTimeout(longWait)
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = unix.Write(w, []byte("late"))
	}()
	if p, err := dc.Reader().Next(4); err != nil || string(p) != "late" {
		t.Fatalf("read with a new timeout: %q, %v", p, err)
	}
	_ = dc.Reader().Release()
	// A read with a long timeout ended by Close stops its timer.
	readErr := make(chan error, 1)
	go func() {
		_, err := dc.Reader().Next(1)
		readErr <- err
	}()
	blockedInRead(t, dc)
	dc.Close()
	if err = recv(t, readErr, "Next"); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	wt := c.wait.Load()
	if wt == nil || wt.readTimer.t.Load() == nil {
		t.Fatal("the read never armed a timer")
	}
	if wt.readTimer.t.Load().Stop() {
		t.Fatal("the read timer was left running after the connection closed")
	}
}

// The read timer stays armed after a read that got its data (wakeTimer), and
// a stale arming never decides a later read: one armed for a longer timeout
// does not delay a shorter one, and one armed for a shorter timeout fires
// early without failing a longer one.
func TestConnReadTimerRearms(t *testing.T) {
	checkLeaks(t)
	dc, w := fdPairConn(t)
	defer dc.Close()
	r := dc.Reader()
	read := func(want string) {
		t.Helper()
		if p, err := r.Next(len(want)); err != nil || string(p) != want {
			t.Fatalf("Next: %q, %v; want %q", p, err, want)
		}
		_ = r.Release()
	}
	// Armed for a long timeout by a read that got its data...
	_ = dc.SetReadTimeout(time.Hour)
	writeWhenBlocked(dc, w, "a")
	read("a")
	requireArmed(t, dc)
	// ...a short one still times out on time.
	_ = dc.SetReadTimeout(100 * time.Millisecond)
	readErr := make(chan error, 1)
	go func() {
		_, err := r.Next(1)
		readErr <- err
	}()
	if err := recv(t, readErr, "Next with a 100ms timeout"); !errors.Is(err, ErrReadTimeout) {
		t.Fatalf("Next: %v, want ErrReadTimeout", err)
	}
	// Armed for a short timeout by a read that got its data...
	writeWhenBlocked(dc, w, "b")
	read("b")
	requireArmed(t, dc)
	// ...a longer one outlives the stale arming.
	_ = dc.SetReadTimeout(longWait)
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = unix.Write(w, []byte("c"))
	}()
	read("c")
}

// writeWhenBlocked writes p to the peer fd w once a read on c blocks, so
// that the read arms its timer (or after longWait, when the test fails
// anyway).
func writeWhenBlocked(c Connection, w int, p string) {
	cc := connOf(c)
	go func() {
		waitUntil(longWait, func() bool { return cc.waitRead.Load() != 0 })
		_, _ = unix.Write(w, []byte(p))
	}()
}

// requireArmed requires that c's read timer is still armed: the read before
// blocked, and its timer outlived it.
func requireArmed(t *testing.T, c Connection) {
	t.Helper()
	if w := connOf(c).wait.Load(); w == nil || w.readTimer.at.Load() == 0 {
		t.Fatal("the read did not block, or left no timer armed")
	}
}

// Deadlines a few microseconds away, over and over: every read times out,
// none sleeps on past its deadline. The timer may fire before sleep has
// finished arming it; the arming must not then mistake the firing for a
// signal.
func TestConnReadDeadlineImminent(t *testing.T) {
	checkLeaks(t)
	dc, _ := fdPairConn(t)
	defer dc.Close()
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 4000; i++ {
			_ = dc.SetReadDeadline(time.Now().Add(time.Duration(i%20) * time.Microsecond))
			if _, err := dc.Reader().Next(1); !errors.Is(err, ErrReadTimeout) {
				done <- fmt.Errorf("read %d: %v, want ErrReadTimeout", i, err)
				return
			}
		}
		done <- nil
	}()
	if err := recv(t, done, "4000 reads with imminent deadlines"); err != nil {
		t.Fatal(err)
	}
}
