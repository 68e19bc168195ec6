package main

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pacer sleeps a goroutine until a given time, to within microseconds. A
// time.Sleep can wake up to a millisecond late when the process is idle
// (the runtime's netpoller waits in whole milliseconds), which would count
// as latency in the open loop. The pacer arms a timerfd, whose expiry is a
// high-resolution timer, and reads it through the runtime's netpoller, which
// wakes as soon as the descriptor is readable.
type pacer struct {
	f     *os.File
	fd    int
	go0   time.Time // time.Now and CLOCK_MONOTONIC read together
	mono0 int64
	buf   [8]byte
}

func newPacer() (*pacer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	// A non-blocking descriptor gives a File that waits in the netpoller.
	p := &pacer{f: os.NewFile(uintptr(fd), "timerfd"), fd: fd}
	var ts unix.Timespec
	p.go0 = time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		p.f.Close()
		return nil, os.NewSyscallError("clock_gettime", err)
	}
	p.mono0 = ts.Nano()
	return p, nil
}

// sleepUntil returns at t, or at once if t has passed.
func (p *pacer) sleepUntil(t time.Time) error {
	at := p.mono0 + int64(t.Sub(p.go0))
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(at)}
	if err := unix.TimerfdSettime(p.fd, unix.TFD_TIMER_ABSTIME, &spec, nil); err != nil {
		return os.NewSyscallError("timerfd_settime", err)
	}
	_, err := p.f.Read(p.buf[:])
	return err
}

func (p *pacer) Close() error { return p.f.Close() }
