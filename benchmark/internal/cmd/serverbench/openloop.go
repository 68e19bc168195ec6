package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// The open loop's load generator. It must send each request when it is due
// and read each answer when it comes. The generator before this one, a
// goroutine per connection sleeping on a timerfd of its own and reading
// through Go's net package, did neither at 25 % of the reference's echo-100
// throughput: its one CPU was busy 95 % of the time, so the P rarely ran out
// of goroutines, and the runtime polls the network (the timerfds, the
// sockets) mostly when it does; goroutines ran in bursts, and the p50
// latency it measured was about 3 ms.
//
// So one goroutine, locked to its thread, drives every connection through a
// raw level-triggered epoll set, as the floor server does, paced by one
// periodic timerfd that expires at each request's due time: it waits only
// in epoll_wait, and handles whatever is ready, in order, as soon as it
// wakes. Request j (j = 0, 1, ...) is due at first + j/rate (rounded to
// whole ns), on connection j mod conns; one request is in flight per
// connection, so a request that comes due while its connection waits for
// the previous answer goes as soon as that answer is in, and its latency
// still runs from its due time (no coordinated omission). Per request that
// is one write and one read, plus a share of the epoll_wait and of the
// timerfd read that a wake-up costs. Its CPU per request is not much lower
// than the old one's (about 45 us at 25 %, most of it the kernel's loopback
// path and wake-ups), so near the top of its CPU its own queue still shows
// in the tails: the load tables give the client's CPU per request.

// openConn is one connection of the open loop.
type openConn struct {
	fd        int
	i         int    // its index: it sends requests i, i+conns, i+2*conns, ...
	sent      int64  // requests sent so far
	busy      bool   // a request is in flight
	due       int64  // the request in flight was due then (ns since first)
	measured  bool   // it was sent while measuring
	req, want []byte // the request, and the response it must get
	got       int    // response bytes read so far, into resp
	resp      []byte
}

// openGen is the state of the generator's loop.
type openGen struct {
	l      *loadRun
	epfd   int
	tfd    int
	conns  []*openConn
	byFD   map[int]*openConn
	period int64     // ns between two requests of the schedule
	start  time.Time // first: every due time counts from it
	next   int64     // the next request of the whole schedule to come due
	lat    []float64
	events []unix.EpollEvent
}

// openLoop sends rate requests per second in all on conns connections (see
// above), and records the latency of every request sent and answered while
// measuring.
func (l *loadRun) openLoop(addr string, conns int, rate float64) error {
	if rate <= 0 || conns <= 0 {
		return errors.New("-rate and -conns must be positive")
	}
	g := &openGen{l: l, epfd: -1, tfd: -1, byFD: map[int]*openConn{}}
	l.closers = append(l.closers, g)
	if err := g.open(addr, conns, rate); err != nil {
		return err
	}
	l.start(g.loop)
	return nil
}

// open dials the connections and makes the epoll set and the timerfd, armed
// to expire at every request's due time from 10 ms on.
func (g *openGen) open(addr string, conns int, rate float64) error {
	ta, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return err
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	if g.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	for i := 0; i < conns; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		c := &openConn{fd: fd, i: i}
		g.conns = append(g.conns, c)
		g.byFD[fd] = c
		if err := unix.Connect(fd, sa); err != nil {
			return os.NewSyscallError("connect", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			return os.NewSyscallError("fcntl", err)
		}
		if err := unix.EpollCtl(g.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
			return os.NewSyscallError("epoll_ctl", err)
		}
		c.req, c.want = messages(uint64(i), uint64(i), g.l.size)
		c.resp = make([]byte, len(c.want))
	}
	if g.tfd, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
		return os.NewSyscallError("timerfd_create", err)
	}
	if err := unix.EpollCtl(g.epfd, unix.EPOLL_CTL_ADD, g.tfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(g.tfd)}); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	// The due times are whole multiples of the timer's interval, so that
	// the two never drift apart, and they count from a time read before
	// the timer's start, so that the timer never expires before a due
	// time: the loop never wakes to find the request not due yet.
	g.period = max(int64(float64(time.Second)/rate), 1)
	const lead = 10 * time.Millisecond
	g.start = time.Now().Add(lead)
	var mono unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		return os.NewSyscallError("clock_gettime", err)
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(mono.Nano() + int64(lead)), Interval: unix.NsecToTimespec(g.period)}
	if err := unix.TimerfdSettime(g.tfd, unix.TFD_TIMER_ABSTIME, &spec, nil); err != nil {
		return os.NewSyscallError("timerfd_settime", err)
	}
	g.events = make([]unix.EpollEvent, len(g.conns)+1)
	g.lat = make([]float64, 0, 1<<16)
	return nil
}

// nextOf is the index, in the whole schedule, of c's next request.
func (g *openGen) nextOf(c *openConn) int64 { return c.sent*int64(len(g.conns)) + int64(c.i) }

// dueAt is when request j of the whole schedule is due, in ns since first.
func (g *openGen) dueAt(j int64) int64 { return j * g.period }

// now is the time in ns since first.
func (g *openGen) now() int64 { return int64(time.Since(g.start)) }

// loop runs the schedule until the run stops, returning the latencies.
func (g *openGen) loop() ([]float64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var tick [8]byte
	for !g.l.stopping.Load() {
		if err := g.sendDue(); err != nil {
			return g.lat, err
		}
		// The timerfd expires at every due time, so the wait needs no
		// timeout but the one that notices the end of the run.
		n, err := unix.EpollWait(g.epfd, g.events, 50)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return g.lat, os.NewSyscallError("epoll_wait", err)
		}
		for _, ev := range g.events[:n] {
			if int(ev.Fd) == g.tfd {
				_, _ = unix.Read(g.tfd, tick[:]) // clears the expirations
				continue
			}
			if err := g.receive(g.byFD[int(ev.Fd)]); err != nil {
				return g.lat, err
			}
		}
	}
	return g.lat, nil
}

// sendDue sends every request that has come due on an idle connection; one
// whose connection is busy goes when that connection's answer is in.
func (g *openGen) sendDue() error {
	now := g.now()
	for g.dueAt(g.next) <= now {
		c := g.conns[g.next%int64(len(g.conns))]
		if !c.busy && g.nextOf(c) == g.next {
			if err := g.send(c); err != nil {
				return err
			}
		}
		g.next++
	}
	return nil
}

// send writes c's next request. A request always fits the socket's empty
// send buffer (one in flight per connection), so a short write is an error.
func (g *openGen) send(c *openConn) error {
	c.due = g.dueAt(g.nextOf(c))
	c.measured = g.l.measuring.Load()
	n, err := unix.Write(c.fd, c.req)
	if err != nil {
		return os.NewSyscallError("write", err)
	}
	if n < len(c.req) {
		return fmt.Errorf("short write: %d of %d bytes", n, len(c.req))
	}
	c.sent++
	c.busy = true
	return nil
}

// receive reads what c's socket holds; once the answer is whole it records
// the latency and sends c's next request if that one is due already.
func (g *openGen) receive(c *openConn) error {
	if c == nil {
		return nil
	}
	n, err := unix.Read(c.fd, c.resp[c.got:])
	if err == unix.EAGAIN {
		return nil
	}
	if err != nil {
		return os.NewSyscallError("read", err)
	}
	if n == 0 {
		return errors.New("the server closed a connection")
	}
	if !c.busy {
		return errors.New("a response came with no request in flight")
	}
	c.got += n
	if c.got < len(c.want) {
		return nil
	}
	c.got, c.busy = 0, false
	if !bytes.Equal(c.resp, c.want) {
		return errWrongResponse
	}
	now := g.now()
	g.l.completed.Add(1)
	if c.measured && g.l.measuring.Load() {
		g.lat = append(g.lat, float64(now-c.due))
	}
	if g.nextOf(c) < g.next {
		return g.send(c) // it came due while c was busy
	}
	return nil
}

// Close closes the sockets, the timerfd and the epoll set; the loop has
// returned (loadRun.wait).
func (g *openGen) Close() error {
	for _, c := range g.conns {
		unix.Close(c.fd)
	}
	for _, fd := range []int{g.tfd, g.epfd} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	return nil
}
