//go:build darwin || freebsd || linux

package netpoll

import (
	"fmt"
	"math/rand"
	"runtime"
	"sync"
	"sync/atomic"
)

// manager owns the pollers. They start lazily, at the first pick (or
// Initialize), and are never stopped: an idle poller is parked (in Go's
// netpoller on Linux, in kevent elsewhere) and costs no CPU. Lowering the number of loops only narrows the pick, so no
// poller holding connections is ever closed under them.
type manager struct {
	mu      sync.Mutex
	polls   atomic.Pointer[[]*defaultPoll] // every poller started, in start order
	loops   atomic.Int32                   // how many the pick uses
	balance atomic.Int32
	next    atomic.Uint32
}

var pollmanager = newManager()

// procsPerLoop sets the default number of pollers, GOMAXPROCS/procsPerLoop
// + 1, as in the reference: a poller only reads and queues handler tasks,
// and the handlers, which do most of the work, run on the other Ps.
const procsPerLoop = 20

func newManager() *manager {
	m := &manager{}
	m.loops.Store(int32(runtime.GOMAXPROCS(0)/procsPerLoop + 1))
	return m
}

// setNumLoops sets how many pollers the pick uses; it applies at the next
// pick. n outside [1, maxNumLoops] gives the error "set invalid
// numLoops[n]" and changes nothing. The bound is per platform
// (poll_loops_linux.go, poll_default_bsd.go): on Linux, where a poller
// costs a goroutine and two fds, it only keeps a mistyped count from
// wrapping around in the int32 that holds it; on macOS and FreeBSD each
// poller blocks a thread, and the error of a count above it says so.
func (m *manager) setNumLoops(n int) error {
	if n < 1 || n > maxNumLoops {
		why := ""
		if n > maxNumLoops {
			why = maxNumLoopsReason
		}
		return fmt.Errorf("set invalid numLoops[%d]%s", n, why)
	}
	m.loops.Store(int32(n))
	return nil
}

// setLoadBalance chooses the balancer; unknown values mean RoundRobin.
func (m *manager) setLoadBalance(lb LoadBalance) {
	if lb != Random {
		lb = RoundRobin
	}
	m.balance.Store(int32(lb))
}

// pick returns the poller for a new registration, starting pollers as needed.
func (m *manager) pick() (*defaultPoll, error) {
	want := int(m.loops.Load())
	polls := m.polls.Load()
	if polls == nil || len(*polls) < want {
		var err error
		if polls, err = m.start(want); err != nil {
			return nil, err
		}
	}
	var i int
	if LoadBalance(m.balance.Load()) == Random {
		i = rand.Intn(want)
	} else {
		i = int(m.next.Add(1) % uint32(want))
	}
	return (*polls)[i], nil
}

// start brings the number of running pollers up to want, all or none: when
// one cannot be opened (out of fds, say), those this call opened are closed
// again, so a count too large for the process fails each pick without
// keeping any fd, and a smaller count set afterwards works.
func (m *manager) start(want int) (*[]*defaultPoll, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var polls []*defaultPoll
	if cur := m.polls.Load(); cur != nil {
		if len(*cur) >= want {
			return cur, nil
		}
		polls = append(polls, *cur...)
	}
	started := len(polls)
	for len(polls) < want {
		p, err := openDefaultPoll()
		if err != nil {
			for _, q := range polls[started:] {
				q.release()
			}
			return nil, err
		}
		polls = append(polls, p)
	}
	for _, p := range polls[started:] {
		go p.run()
	}
	m.polls.Store(&polls)
	return &polls, nil
}

// run is the poller goroutine; a poller that fails is reported, not restarted.
func (p *defaultPoll) run() {
	if err := p.Wait(); err != nil {
		logf("poller stopped: %v", err)
	}
}
