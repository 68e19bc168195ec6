//go:build linux

package netpoll

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The poller parks right after delivering a settled batch, without the
// empty poll that would clear epfd's ready list (poll_default_linux.go,
// wait). A fd that batch returned stays on that list, and EPOLL_CTL_MOD
// raises no edge for it even when the change makes it ready: the change of
// interest must wake the poller itself (interestChanged), or the event is
// never delivered.

// linksHandler records the events of one socket; it reads every byte at
// once (so input is settled) and drops output interest when it is reported.
type linksHandler struct {
	op     *FDOperator
	events chan pollFlags
}

func (h *linksHandler) onEvent(p Poll, flags pollFlags) bool {
	var buf [64]byte
	if flags&pollIn != 0 {
		for {
			if n, _ := unix.Read(h.op.FD, buf[:]); n <= 0 {
				break
			}
		}
	}
	if flags&pollOut != 0 {
		_ = p.Control(h.op, PollRW2R)
	}
	select {
	case h.events <- flags:
	default:
	}
	return true
}

func TestInterestChangeAfterSkippedPoll(t *testing.T) {
	if !parkAfterSettled {
		t.Skipf("kernel %s: the poller always polls before it parks", releaseOf())
	}
	checkLeaks(t)
	p, err := openDefaultPoll()
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- p.Wait() }()
	defer func() {
		_ = p.Close()
		if err := <-stopped; err != nil {
			t.Errorf("Wait: %v", err)
		}
	}()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[0])
	defer unix.Close(pair[1])
	h := &linksHandler{events: make(chan pollFlags, 16)}
	h.op = &FDOperator{FD: pair[0], handler: h}
	if err := p.Control(h.op, PollReadable); err != nil {
		t.Fatal(err)
	}
	defer p.Control(h.op, PollDetach)

	expect := func(what string, want pollFlags) {
		t.Helper()
		select {
		case got := <-h.events:
			if got&want == 0 {
				t.Fatalf("%s: got events %b, want %b", what, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no event within 5s", what)
		}
	}
	// A round that finds the poller parked with the stale entry asks for
	// output then. The poller can also be woken after it parked (a late
	// edge) and park again after an empty poll, which clears the entry:
	// such a round is not counted and the next one tries again.
	stale := 0
	for round := 0; round < 400 && stale < 20; round++ {
		if _, err := unix.Write(pair[1], []byte("x")); err != nil {
			t.Fatal(err)
		}
		expect("input", pollIn)
		if !parkedStale(p) {
			continue
		}
		stale++
		// The socket is writable: asking for output makes it ready at once.
		if err := p.Control(h.op, PollR2RW); err != nil {
			t.Fatal(err)
		}
		expect("output asked for on a writable socket", pollOut)
	}
	if stale == 0 {
		t.Fatal("the poller never parked right after a settled batch")
	}
}

// parkedStale waits until p has parked after delivering a batch: true when
// it parked without an empty poll (links stale), false when an empty poll
// came first (clean).
func parkedStale(p *defaultPoll) bool {
	deadline := time.Now().Add(longWait)
	for time.Now().Before(deadline) {
		switch p.links.Load() {
		case linksStale:
			return true
		case linksClean:
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	return false
}

func TestKernelAtLeast(t *testing.T) {
	for _, c := range []struct {
		release string
		want    bool
	}{
		{"6.18.44-fc-v1272", true},
		{"5.6.0", true},
		{"5.10.0-28-amd64", true},
		{"5.15", true},
		{"5.5.19", false},
		{"5.4.0-150-generic", false},
		{"4.18.0-553.el8_10.x86_64", false},
		{"3.10.0-1160.el7.x86_64", false},
		{"10.0.0", true},
		{"", false},
		{"5", false},
		{"5.", false},
		{"x.y", false},
	} {
		if got := kernelAtLeast(c.release, 5, 6); got != c.want {
			t.Errorf("kernelAtLeast(%q, 5, 6) = %v, want %v", c.release, got, c.want)
		}
	}
}
