package mux

import (
	"cmp"
	"runtime"
	"slices"

	"github.com/cloudwego/netpoll"
)

// The flusher. One runs at a time per queue: the Add that raises pending
// from 0 starts it, and it exits in the step that brings pending back to 0,
// so the next flusher's start happens after this one's last use of
// q.batch.

// flush sends batches until the queue is empty. A panic in a getter breaks
// the queue like a send error (see send) and is raised again once the queue
// is idle, so Close never waits forever and the Runner still sees it.
func (q *ShardQueue) flush() {
	var panicked interface{}
	// Producers that are already runnable (handlers finishing their
	// responses at the same moment) get to Add before the first batch is
	// taken: one scheduling round of latency buys far fewer writes. Later
	// batches collect while the previous Flush is in its system call.
	runtime.Gosched()
	for {
		n := q.take()
		if p := q.send(q.batch); p != nil && panicked == nil {
			panicked = p
		}
		q.batch = reuse(q.batch)
		if q.pending.Add(-int64(n)) == 0 {
			break
		}
	}
	q.idleMu.Lock()
	q.idle.Broadcast()
	q.idleMu.Unlock()
	if panicked != nil {
		panic(panicked)
	}
}

// take moves every queued entry into q.batch, sorted into Add order, and
// returns how many it took. Holding all shard locks at once makes the
// snapshot atomic: if an Add is in it, so is every Add that returned first.
func (q *ShardQueue) take() int {
	q.lockAll()
	for i := range q.shards {
		s := &q.shards[i]
		q.batch = append(q.batch, s.items...)
		s.items = reuse(s.items)
	}
	q.unlockAll()
	slices.SortFunc(q.batch, func(a, b entry) int { return cmp.Compare(a.ticket, b.ticket) })
	return len(q.batch)
}

// keepCap is the largest slice capacity kept between batches; a burst
// larger than that gives its memory back.
const keepCap = 1024

// reuse empties s for the next batch, dropping its references.
func reuse(s []entry) []entry {
	if cap(s) > keepCap {
		return nil
	}
	clear(s)
	return s[:0]
}

// send appends every buffer of batch to the connection and flushes once.
// After the first error (or getter panic) the queue is broken: the rest of
// the batch, and every later one, is dropped. The error itself has nowhere
// to go (the producers have moved on); closing the connection is how its
// users learn of it. send returns the value of the first getter panic.
func (q *ShardQueue) send(batch []entry) (panicked interface{}) {
	b := sender{q: q, failed: q.broken.Load()}
	if !b.failed {
		if b.w = q.conn.Writer(); b.w == nil {
			b.abort()
		}
	}
	for i := range batch {
		b.one(batch[i].first)
		for _, gt := range batch[i].rest {
			b.one(gt)
		}
	}
	if !b.failed && b.appended > 0 && b.w.Flush() != nil {
		b.abort()
	}
	return b.panicked
}

// sender is the state of one batch being sent.
type sender struct {
	q        *ShardQueue
	w        netpoll.Writer
	failed   bool // drop everything from now on
	appended int
	panicked interface{}
}

// one runs gt and appends its buffer, or releases it once the batch failed.
func (b *sender) one(gt WriterGetter) {
	if gt == nil {
		return
	}
	buf, isNil, p := call(gt)
	switch {
	case p != nil:
		if b.panicked == nil {
			b.panicked = p
		}
		b.abort()
	case isNil || buf == nil:
	case b.failed:
		closeBuffer(buf)
	case b.w.Append(buf) != nil:
		closeBuffer(buf)
		b.abort()
	default:
		b.appended++
	}
}

// abort fails the batch; the first failure breaks the queue.
func (b *sender) abort() {
	if !b.failed {
		b.failed = true
		b.q.breakConn()
	}
}

// breakConn marks the queue broken and closes the connection on a Runner
// task. Not closing it inline matters: the first Close of a connection may
// run its close callbacks at once, and a callback that calls this queue's
// Close would then wait for the very flusher that is running it.
func (q *ShardQueue) breakConn() {
	if q.broken.CompareAndSwap(false, true) {
		netpollRun(func() { _ = q.conn.Close() })
	}
}

// call runs gt and returns, instead of raising, the value of its panic.
func call(gt WriterGetter) (buf netpoll.Writer, isNil bool, panicked interface{}) {
	defer func() { panicked = recover() }()
	buf, isNil = gt()
	return buf, isNil, nil
}

// closeBuffer closes buf if it is a *netpoll.LinkBuffer (the only Writer
// the queue can own); any other Writer is left alone.
func closeBuffer(buf netpoll.Writer) {
	if lb, ok := buf.(*netpoll.LinkBuffer); ok && lb != nil {
		_ = lb.Close()
	}
}
