//go:build darwin || freebsd || linux

package netpoll

import "sync/atomic"

// The pollers: the part every kernel shares. This file implements Poll once
// for defaultPoll; a backend (poll_default_linux.go: epoll;
// poll_default_bsd.go: kqueue) declares the type, embedding pollState, and
// holds only its syscalls and the decoding of its events, as these
// functions:
//
// func (p *defaultPoll) open() error
//
//	Create the kernel's poll set, register a wake-up source in it, and make
//	the event array of eventBatch entries. On error nothing stays open.
//
// func (p *defaultPoll) wait() (n int, err error)
//
//	Block until events are ready and fetch at most eventBatch of them into
//	the array; n may be 0 (an interrupted call). Only the poller goroutine
//	calls it. An error, wrapped with the syscall's name, ends the poller.
//
// func (p *defaultPoll) event(i int) (fd int, tag uint32, flags pollFlags)
//
//	Decode the i-th fetched event: the fd and tag it was registered with,
//	and what it reports. A hang-up or socket error is pollHup|pollIn, so
//	that the handler reads what is left before it acts on the hang-up. The
//	wake-up is pollWake, and is re-armed here if the kernel needs it.
//
// func (p *defaultPoll) add(fd int, tag uint32, event PollEvent) error
//
//	Register fd, level-triggered, with tag (its operator's generation,
//	which every event of the registration carries back: see poll_table.go)
//	for event: PollReadable, PollWritable, or pollConnect (a single
//	writability report). The hang-up is reported with either.
//
// func (p *defaultPoll) modify(op *FDOperator, in, out bool) error
//
//	Change the interest of registered op to input (in) and output (out);
//	the hang-up stays reported. op was not detached when it was called; if
//	a detach races it, no registration may outlive that detach.
//
// func (p *defaultPoll) remove(fd int) error
//
//	Delete fd's registration. One already gone is not an error.
//
// func (p *defaultPoll) watches(op *FDOperator) bool
//
//	Probe liveness: report whether the set still holds op's registration,
//	that is, whether op.FD was not closed since op registered it (opPut
//	asks it). It must not change a live registration's interest.
//
// func (p *defaultPoll) wake() error
//
//	Make the wait in progress, or the next one, return the wake-up event.
//	Wakes that pile up may come as one.
//
// func (p *defaultPoll) release()
//
//	Close what open created. Wait calls it once it stops; a poller that
//	never ran is released by its opener.
//
// const canPauseInput
//
//	Whether modify can drop input interest and still report a hang-up (a
//	connection pauses its input only then).
//
// add, modify, remove, watches and wake may run on any goroutine,
// concurrently with wait and with each other: the kernel calls are
// thread-safe, and an event that a change overtakes is told stale by its
// tag (poll_table.go). The others run on the poller goroutine, or before
// it starts.

// eventBatch is how many events one wait fetches. Level-triggered events
// that do not fit stay ready and come with the next wait, so the bound
// costs nothing but a syscall per 128 events, and keeps a poller's array
// small (1.5 KiB of epoll events on amd64).
const eventBatch = 128

// pollState is what every poller has, whatever its kernel.
type pollState struct {
	scratch []byte    // small reads land here first (connection.fill)
	tasks   taskQueue // handler tasks, with the default Runner
	closing atomic.Bool
	done    chan struct{} // closed when Wait returns
}

// errOpDetached is the failure of a change of interest of a detached operator.
var errOpDetached = Exception(ErrConnClosed, "operator detached")

// openDefaultPoll opens a poller; its goroutine is not started.
func openDefaultPoll() (*defaultPoll, error) {
	p := &defaultPoll{}
	p.scratch = make([]byte, scratchSize)
	p.done = make(chan struct{})
	if err := p.open(); err != nil {
		return nil, err
	}
	return p, nil
}

// Wait runs the loop until Close: it waits for a batch of events and
// delivers it, until a wake-up finds the poller closing.
func (p *defaultPoll) Wait() error {
	defer close(p.done)
	for {
		n, err := p.wait()
		if err != nil {
			return err
		}
		if p.handle(n) {
			p.release()
			return nil
		}
	}
}

// handle delivers the n events fetched; it reports whether the poller was
// asked to close. An event is delivered only to the operator that still
// holds its fd with the event's tag: one for a fd closed, and maybe reused,
// since it was queued finds none and is dropped.
func (p *defaultPoll) handle(n int) (closing bool) {
	for i := 0; i < n; i++ {
		fd, tag, flags := p.event(i)
		if flags == pollWake {
			closing = p.closing.Load()
			continue
		}
		if op := opGet(fd, tag); op != nil {
			op.dispatch(p, flags)
		}
	}
	return closing
}

// Close asks the loop to stop and waits until it has.
func (p *defaultPoll) Close() error {
	if !p.closing.CompareAndSwap(false, true) {
		return nil
	}
	if err := p.Trigger(); err != nil {
		return err
	}
	<-p.done
	return nil
}

// Trigger wakes the loop once.
func (p *defaultPoll) Trigger() error { return p.wake() }

// Control applies one change of interest for op.
func (p *defaultPoll) Control(op *FDOperator, event PollEvent) error {
	switch event {
	case PollReadable, PollWritable, pollConnect:
		return p.register(op, event)
	case PollR2RW, PollRW2R:
		return p.setInterest(op, true, event == PollR2RW)
	case PollDetach:
		return p.detach(op)
	}
	return Exception(ErrUnsupported, "unknown PollEvent")
}

// register records op as its fd's owner under a new generation (opPut),
// then registers the fd with the kernel under that tag. When the kernel
// refuses, the fd goes back to the operator that held it: a refused second
// registration of a live fd must not cut off the first. An operator without
// a poller gets p.
func (p *defaultPoll) register(op *FDOperator, event PollEvent) error {
	if op.poll == nil {
		op.poll = p
	}
	atomic.StoreInt32(&op.detached, 0)
	prev, err := opPut(op)
	if err != nil {
		return err
	}
	if err = p.add(op.FD, atomic.LoadUint32(&op.gen), event); err != nil {
		opUndo(op, prev)
	}
	return err
}

// setInterest re-registers a registered operator for input (in; the
// hang-up is always watched) and output (out). It fails once op is
// detached.
func (p *defaultPoll) setInterest(op *FDOperator, in, out bool) error {
	if atomic.LoadInt32(&op.detached) != 0 {
		return errOpDetached
	}
	return p.modify(op, in, out)
}

// detach removes the operator; only the first call does anything. The
// kernel is asked only while the fd still belongs to op: otherwise it was
// closed, and its number maybe reused, and the kernel has already dropped
// op's registration (a delete would remove the new owner's).
func (p *defaultPoll) detach(op *FDOperator) error {
	if !atomic.CompareAndSwapInt32(&op.detached, 0, 1) {
		return nil
	}
	if !opDrop(op) {
		return nil
	}
	return p.remove(op.FD)
}

// Alloc returns a new operator bound to this poller.
func (p *defaultPoll) Alloc() *FDOperator { return &FDOperator{poll: p} }

// Free does nothing: a detached operator is garbage collected once unreferenced.
func (p *defaultPoll) Free(op *FDOperator) {}
