//go:build linux

package netpoll

import (
	"context"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bytedance/gopkg/util/gopool"
	"golang.org/x/sys/unix"
)

// The scaling micro-benchmarks (docs/benchmark.md, "Scaling"): the cost of
// each step between "a socket became readable" and "its handler runs", one
// step at a time, so that the per-event figures can be set against the
// event rates of a machine with many more cores than the ones they ran on.
//
//	go test -run '^$' -bench Scaling -cpu 1,2,4,8 .
//
// Every step runs on private pollers and queues (scalingPoll, a bare
// taskQueue), never on the package's shared pollers, so the figures are not
// mixed with whatever the other tests left registered. Each benchmark
// closes what it opened: goleak (main_test.go) sees no goroutine left but
// gopool's idle workers.

// scalingPoll opens a poller whose goroutine is not started: the benchmark
// drives wait and handle itself, or starts Wait. It is released at cleanup
// unless its loop was started (then Close releases it).
func scalingPoll(b *testing.B) *defaultPoll {
	b.Helper()
	p, err := openDefaultPoll()
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// scalingConns registers n socket-pair connections with p, without
// handlers, and returns them with the fds of their peers. They and the peers
// close at cleanup, before p is released.
func scalingConns(b *testing.B, p *defaultPoll, n int) ([]*connection, []int) {
	b.Helper()
	conns := make([]*connection, n)
	peers := make([]int, n)
	for i := range conns {
		// The peer blocks: a writer that outruns the poller waits in the
		// kernel, as a TCP sender would in flow control.
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			if err = unix.SetNonblock(fds[0], true); err != nil {
				unix.Close(fds[0])
				unix.Close(fds[1])
			}
		}
		if err != nil {
			b.Fatal(err)
		}
		both := &struct {
			c connection
			p connParts
		}{}
		both.c.init(fds[0], (*net.UnixAddr)(nil), (*net.UnixAddr)(nil), &both.p, p)
		if err := both.c.register(); err != nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
			b.Fatal(err)
		}
		conns[i], peers[i] = &both.c, fds[1]
	}
	b.Cleanup(func() {
		for i, c := range conns {
			_ = c.Close()
			unix.Close(peers[i])
		}
	})
	return conns, peers
}

// scalingRawEpoll makes the floor of BenchmarkScalingPollerDispatch: a bare
// level-triggered epoll instance watching the non-blocking ends of n socket
// pairs for input; it returns the epoll fd and the other ends. All close at
// cleanup.
func scalingRawEpoll(b *testing.B, n int) (int, []int) {
	b.Helper()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	var fds []int
	b.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
		unix.Close(epfd)
	})
	peers := make([]int, n)
	for i := range peers {
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		fds = append(fds, pair[0], pair[1])
		if err := unix.SetNonblock(pair[0], true); err != nil {
			b.Fatal(err)
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(pair[0])}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, pair[0], &ev); err != nil {
			b.Fatal(err)
		}
		peers[i] = pair[1]
	}
	return epfd, peers
}

// scalingDrain drops what c buffered; the benchmark goroutine is its only
// reader.
func scalingDrain(c *connection) {
	if n := c.Len(); n > 0 {
		_ = c.Skip(n)
		_ = c.Release()
	}
}

var scalingByte = []byte{'x'}

// BenchmarkScalingPollerDispatch: the poller's cost per readiness event, the
// part of a poller goroutine's loop that no other core can take over: one
// zero-timeout epoll_pwait per batch, and per event its decoding, the
// operator-table lookup, onEvent and the read (fill: one read(2) of one
// byte into the scratch buffer, copied into the input buffer). The
// connections have no handler, so no task is queued: that is the next
// benchmark.
//
//   - batch: the benchmark goroutine plays the poller. It writes one byte to
//     each of 128 of 1024 connections, then times wait and handle until the
//     128 events are dispatched. ns/op includes the writes; dispatch-ns/event
//     is the poller's own cost, the figure that bounds one poller's event
//     rate at 1e9/dispatch-ns.
//   - floor: the same on a bare epoll instance: one epoll_pwait per batch
//     and one read(2) per event, nothing else. batch minus floor is what
//     the package adds per event.
//   - live: a real poller goroutine (Wait) dispatches while b.RunParallel
//     writers (GOMAXPROCS of them) each write one byte per op to
//     connections of their own; the time includes waiting for the poller
//     to have read every byte. ns/op is the pipeline's time per event;
//     bytes/event shows how many writes the poller took in one read.
func BenchmarkScalingPollerDispatch(b *testing.B) {
	b.Run("batch", func(b *testing.B) {
		p := scalingPoll(b)
		b.Cleanup(p.release)
		conns, peers := scalingConns(b, p, 1024)
		next := 0
		var dispatch time.Duration
		var waits int
		b.ReportAllocs()
		b.ResetTimer()
		for done := 0; done < b.N; {
			batch := min(eventBatch, b.N-done)
			first := next
			for i := 0; i < batch; i++ {
				if _, err := unix.Write(peers[next], scalingByte); err != nil {
					b.Fatal(err)
				}
				next = (next + 1) % len(conns)
			}
			t0 := time.Now()
			for got := 0; got < batch; {
				n, err := epollPoll(p.epfd, p.events, false)
				if err != nil {
					b.Fatal(err)
				}
				p.handle(n)
				got += n
				waits++
			}
			dispatch += time.Since(t0)
			for i := 0; i < batch; i++ {
				scalingDrain(conns[(first+i)%len(conns)])
			}
			done += batch
		}
		b.StopTimer()
		b.ReportMetric(float64(dispatch.Nanoseconds())/float64(b.N), "dispatch-ns/event")
		b.ReportMetric(float64(b.N)/float64(waits), "events/wait")
	})

	b.Run("floor", func(b *testing.B) {
		epfd, peers := scalingRawEpoll(b, 1024)
		events := make([]unix.EpollEvent, eventBatch)
		buf := make([]byte, scratchSize)
		next := 0
		var dispatch time.Duration
		b.ReportAllocs()
		b.ResetTimer()
		for done := 0; done < b.N; {
			batch := min(eventBatch, b.N-done)
			for i := 0; i < batch; i++ {
				if _, err := unix.Write(peers[next], scalingByte); err != nil {
					b.Fatal(err)
				}
				next = (next + 1) % len(peers)
			}
			t0 := time.Now()
			for got := 0; got < batch; {
				n, err := epollPoll(epfd, events, false)
				if err != nil {
					b.Fatal(err)
				}
				for i := 0; i < n; i++ {
					if _, err := unix.Read(int(events[i].Fd), buf); err != nil {
						b.Fatal(err)
					}
				}
				got += n
			}
			dispatch += time.Since(t0)
			done += batch
		}
		b.StopTimer()
		b.ReportMetric(float64(dispatch.Nanoseconds())/float64(b.N), "dispatch-ns/event")
	})

	// empty: the zero-timeout epoll_pwait that finds nothing, on a poller
	// watching 1024 idle connections: what the poller saves when it parks
	// right after a settled batch (poll_default_linux.go, wait).
	b.Run("empty", func(b *testing.B) {
		p := scalingPoll(b)
		b.Cleanup(p.release)
		scalingConns(b, p, 1024)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if n, err := epollPoll(p.epfd, p.events, false); n != 0 || err != nil {
				b.Fatalf("poll: %d events, %v; want none", n, err)
			}
		}
	})

	b.Run("live", func(b *testing.B) {
		p := scalingPoll(b)
		stopped := make(chan struct{})
		go func() { _ = p.Wait(); close(stopped) }()
		b.Cleanup(func() { _ = p.Close(); <-stopped }) // after the connections close
		conns, peers := scalingConns(b, p, 256)
		before := p.stats.own.bytesRead.Load()
		var slot atomic.Int32
		per := len(conns) / 8 // up to 8 writers own disjoint connections; more share them
		var writeErr atomic.Value
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			base := int(slot.Add(1)-1) % 8 * per
			i := 0
			for pb.Next() {
				if _, err := unix.Write(peers[base+i], scalingByte); err != nil {
					writeErr.Store(err)
					return
				}
				if i++; i == per {
					i = 0
				}
			}
		})
		if err := writeErr.Load(); err != nil {
			b.Fatal(err)
		}
		want := before + uint64(b.N)
		deadline := time.Now().Add(10 * time.Second)
		for p.stats.own.bytesRead.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("the poller read %d of %d bytes", p.stats.own.bytesRead.Load()-before, b.N)
			}
			runtime.Gosched()
		}
		b.StopTimer()
		var arrivals uint64
		for _, c := range conns {
			arrivals += c.arrivals.Load()
		}
		b.ReportMetric(float64(b.N)/float64(max(arrivals, 1)), "bytes/event")
	})
}

// BenchmarkScalingTaskQueue: the per-poller task queue (connection_task.go),
// its one mutex under contention.
//
//   - lock: the queue's own cost. b.RunParallel goroutines each push a task
//     and take one (two critical sections of the queue's mutex per op) on
//     one queue whose worker counts as started, so none is; nothing runs.
//     With one poller the pushes come from one goroutine, but the takes come
//     from every worker running on another P: at GOMAXPROCS = n up to n
//     goroutines meet on this mutex, as here.
//   - tasks: the whole hand-off. b.RunParallel goroutines each take the task
//     bit of one of 64 connections of their own and push it (as the poller
//     does after a read); the queue's workers, started through gopool, run
//     the tasks (a connection with nothing buffered: the task returns at
//     once) and give the bits back. ns/op is the time per task run;
//     starts/task, the share of pushes and takes that had to start a
//     worker through gopool.
func BenchmarkScalingTaskQueue(b *testing.B) {
	b.Run("lock", func(b *testing.B) {
		q := &taskQueue{pending: true}
		dummy := &connection{}
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				q.push(dummy)
				q.mu.Lock()
				q.take()
				q.mu.Unlock()
			}
		})
	})

	b.Run("tasks", func(b *testing.B) {
		p := scalingPoll(b)
		b.Cleanup(p.release)
		const perWriter = 64
		conns, _ := scalingConns(b, p, 16*perWriter)
		q := &taskQueue{}
		var starts atomic.Int64
		counted := q.work
		q.workFn = func() { starts.Add(1); counted() }
		var slot atomic.Int32
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			base := int(slot.Add(1)-1) % 16 * perWriter
			i := 0
			for pb.Next() {
				c := conns[base+i]
				for !c.state.acquireTask() { // its last task has not run yet
					runtime.Gosched()
				}
				q.push(c)
				if i++; i == perWriter {
					i = 0
				}
			}
		})
		for _, c := range conns { // every task has run once its bit is free
			for !c.state.acquireTask() {
				runtime.Gosched()
			}
			c.release(holdTask)
		}
		b.StopTimer()
		b.ReportMetric(float64(starts.Load())/float64(b.N), "starts/task")
		for { // the last pending worker is gone before the connections close
			q.mu.Lock()
			idle := !q.pending && q.n == 0
			q.mu.Unlock()
			if idle {
				break
			}
			runtime.Gosched()
		}
	})
}

// BenchmarkScalingGopool: starting a goroutine for a task, which the queue
// does once per batch rather than once per task.
//
//   - ctxgo: gopool.CtxGo, the default Runner, from b.RunParallel
//     goroutines: a task on the pool's one task list (one mutex for the
//     whole process, every poller's queues included) and its atomic task
//     and worker counts, and, as the pool starts a worker whenever a task
//     is queued (its scale threshold is 1), mostly a new goroutine too.
//   - go: a plain go statement, the floor of a goroutine start.
//   - reuse: the task handed to a worker that is already running, over a
//     channel: what the queue's running worker saves (the queue does it
//     under its mutex, see BenchmarkScalingTaskQueue/lock).
//
// Each op is one task run; the time includes running it (a counter's
// decrement).
func BenchmarkScalingGopool(b *testing.B) {
	run := func(b *testing.B, start func(ctx context.Context, f func())) {
		var left sync.WaitGroup
		left.Add(b.N)
		f := left.Done
		ctx := context.Background()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				start(ctx, f)
			}
		})
		left.Wait()
	}
	b.Run("ctxgo", func(b *testing.B) { run(b, gopool.CtxGo) })
	b.Run("go", func(b *testing.B) { run(b, func(_ context.Context, f func()) { go f() }) })
	b.Run("reuse", func(b *testing.B) {
		var left, workers sync.WaitGroup
		left.Add(b.N)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			w := make(chan func(), 64)
			workers.Add(1)
			go func() {
				defer workers.Done()
				for f := range w {
					f()
				}
			}()
			for pb.Next() {
				w <- left.Done
			}
			close(w)
		})
		left.Wait()
		b.StopTimer()
		workers.Wait()
	})
}

// BenchmarkScalingNetpollerWake: the park and wake of a poller goroutine.
// An idle poller parks in Go's netpoller on its epoll fd (wait, RawConn.Read
// after an empty epoll_pwait); an eventfd write (wake) makes the epoll fd
// readable, the runtime's own epoll reports it, and the goroutine is made
// runnable and scheduled. Each b.RunParallel goroutine ping-pongs with a
// partner goroutine over two private pollers: it wakes the partner's poller
// and parks in its own until the partner wakes it back. ns/wake is the
// time per park-and-wake; with GOMAXPROCS pairs at once, every one of them
// goes through the runtime's one epoll instance and its scheduler.
//
// chan is the floor: the same ping-pong over two unbuffered channels.
func BenchmarkScalingNetpollerWake(b *testing.B) {
	b.Run("eventfd", func(b *testing.B) {
		var mu sync.Mutex
		var failed error
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			if err := scalingPingPong(pb); err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
				for pb.Next() { // the other goroutines finish the count
				}
			}
		})
		b.StopTimer()
		if failed != nil {
			b.Fatal(failed)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/wake")
	})

	b.Run("chan", func(b *testing.B) {
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			ping, pong := make(chan struct{}), make(chan struct{})
			go func() {
				for range ping {
					pong <- struct{}{}
				}
			}()
			for pb.Next() {
				ping <- struct{}{}
				<-pong
			}
			close(ping)
		})
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/wake")
	})
}

// scalingPingPong runs BenchmarkScalingNetpollerWake/eventfd's ping-pong for
// one b.RunParallel goroutine: two pollers, two parks and wakes per op. Each
// poller watches an eventfd of its own through an operator whose OnRead
// (run by the poller's loop, wait) resets it and writes the other's: the
// benchmark goroutine runs mine's loop and counts the ops there.
func scalingPingPong(pb *testing.PB) error {
	mine, err := openDefaultPoll()
	if err != nil {
		return err
	}
	defer mine.release()
	theirs, err := openDefaultPoll()
	if err != nil {
		return err
	}
	defer theirs.release()
	mineFd, err := scalingEventfd()
	if err != nil {
		return err
	}
	defer unix.Close(mineFd)
	theirFd, err := scalingEventfd()
	if err != nil {
		return err
	}
	defer unix.Close(theirFd)
	var count [eventfdCount]byte
	one := [eventfdCount]byte{1}
	theirOp := &FDOperator{FD: theirFd, OnRead: func(Poll) error {
		_, _ = unix.Read(theirFd, count[:])
		_, err := unix.Write(mineFd, one[:])
		return err
	}}
	var mineCount [eventfdCount]byte
	mineOp := &FDOperator{FD: mineFd, OnRead: func(Poll) error {
		_, _ = unix.Read(mineFd, mineCount[:])
		if pb.Next() {
			_, err := unix.Write(theirFd, one[:])
			return err
		}
		mine.closing.Store(true)
		return mine.wake()
	}}
	if err = theirs.Control(theirOp, PollReadable); err != nil {
		return err
	}
	defer theirs.Control(theirOp, PollDetach)
	if err = mine.Control(mineOp, PollReadable); err != nil {
		return err
	}
	defer mine.Control(mineOp, PollDetach)
	done := make(chan error, 1)
	go func() { // the partner's poller loop
		_, err := theirs.wait()
		done <- err
	}()
	defer func() {
		theirs.closing.Store(true)
		_ = theirs.wake()
		<-done
	}()
	if !pb.Next() {
		return nil
	}
	if _, err = unix.Write(theirFd, one[:]); err != nil {
		return err
	}
	_, err = mine.wait()
	return err
}

// scalingEventfd makes a non-blocking eventfd.
func scalingEventfd() (int, error) {
	return unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
}
