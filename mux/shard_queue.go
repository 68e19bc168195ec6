package mux

import (
	"context"
	"errors"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/cloudwego/netpoll"
	"github.com/cloudwego/netpoll/internal/runner"
)

// ShardSize is the number of shards NewShardQueue uses when it is given a
// size <= 0. It is runtime.GOMAXPROCS(0) at package init; a value <= 0 set
// later counts as 1.
var ShardSize int

func init() { ShardSize = runtime.GOMAXPROCS(0) }

// maxShards bounds the shard count so a huge size cannot exhaust memory.
const maxShards = 1024

// WriterGetter returns the bytes to send: buf is usually a
// *netpoll.LinkBuffer whose content (readable and not yet flushed) is sent
// as a whole. isNil true, or a nil buf, means there is nothing to send. Any
// other Writer, or a closed or already sent LinkBuffer, fails the Append of a
// netpoll connection: the queue breaks and closes the connection. A getter
// runs once, on the flusher task, and must not call Close on its own queue
// (Close would wait for the getter).
type WriterGetter func() (buf netpoll.Writer, isNil bool)

// ShardQueue sends the buffers of many producers over one connection,
// batching whatever is ready into a single Flush. See the package
// documentation for the model. Its methods are safe for concurrent use, and
// on a nil *ShardQueue they behave as on a closed queue.
type ShardQueue struct {
	conn   netpoll.Connection
	shards []shard
	ticket atomic.Uint64 // the next Add's position in the global order
	// pending counts queued Adds. The Add that raises it from 0 starts the
	// flusher; the flusher exits when it brings it back to 0.
	pending atomic.Int64
	// closed is guarded by every shard lock: Close sets it holding them all,
	// Add reads it holding its own.
	closed bool
	// closeCalled tells the first Close from later ones (atomic, as a
	// queue without shards has no lock to hold).
	closeCalled atomic.Bool
	// broken is set by the first send error; later batches are dropped.
	broken atomic.Bool

	idleMu sync.Mutex
	idle   *sync.Cond // broadcast (under idleMu) each time pending reaches 0

	batch []entry // the flusher's scratch space; only the flusher touches it
}

// entry is one Add call: its place in the global order and its getters,
// first then rest. The caller's slice is never kept (rest is a copy), so
// the common one-getter Add allocates nothing for it.
type entry struct {
	ticket uint64
	first  WriterGetter
	rest   []WriterGetter
}

// shard is one lock stripe of the queue, padded to its own cache line.
type shard struct {
	mu    sync.Mutex
	items []entry
	_     [32]byte
}

// errClosed is what a second Close returns.
var errClosed = errors.New("shardQueue has been closed")

// NewShardQueue returns an open queue that sends over conn. size is the
// number of shards Adds are spread over: <= 0 means ShardSize, and it is
// capped at 1024. A nil conn (or one holding a nil pointer) gives a queue
// whose Adds do nothing; its Close behaves as on any queue. The queue closes
// conn only after a failed Append or Flush or a panicking getter.
func NewShardQueue(size int, conn netpoll.Connection) (queue *ShardQueue) {
	if size <= 0 {
		size = ShardSize
	}
	if size <= 0 {
		size = 1
	}
	if size > maxShards {
		size = maxShards
	}
	if isNil(conn) {
		conn = nil
	}
	q := &ShardQueue{conn: conn, shards: make([]shard, size)}
	q.idle = sync.NewCond(&q.idleMu)
	return q
}

// Add queues gts to be sent, in argument order, after everything queued by
// Adds that returned before this one started. It does not block on the
// network: a flusher task on the netpoll Runner does the sending. nil
// getters are skipped.
//
// After Close (and on a queue without a connection) Add does nothing: no
// getter is called and nothing is written. Add with no getters does
// nothing either.
func (q *ShardQueue) Add(gts ...WriterGetter) {
	if len(gts) == 0 || q == nil || q.conn == nil || len(q.shards) == 0 {
		return
	}
	t := q.ticket.Add(1) - 1
	s := &q.shards[t%uint64(len(q.shards))]
	s.mu.Lock()
	if q.closed {
		s.mu.Unlock()
		return
	}
	e := entry{ticket: t, first: gts[0]}
	if len(gts) > 1 {
		e.rest = append([]WriterGetter(nil), gts[1:]...)
	}
	s.items = append(s.items, e)
	// Counting under the shard lock keeps pending >= the entries the
	// flusher can see, since it takes them holding every shard lock.
	start := q.pending.Add(1) == 1
	s.mu.Unlock()
	if start {
		netpollRun(q.flush)
	}
}

// Close stops the queue: later Adds are dropped. The first call blocks until
// everything queued before it has been flushed (or dropped after an error),
// then returns nil; it does not close the connection. If the flusher is
// stuck in Flush (a peer that does not read), Close waits for the
// connection's write timeout or for the connection to be closed. Any later
// call, and Close on a nil *ShardQueue, returns an error whose text is
// "shardQueue has been closed". Close must not be called from a
// WriterGetter.
func (q *ShardQueue) Close() error {
	if q == nil {
		return errClosed
	}
	q.lockAll()
	first := q.closeCalled.CompareAndSwap(false, true)
	q.closed = true
	q.unlockAll()
	if !first {
		return errClosed
	}
	q.idleMu.Lock()
	for q.pending.Load() != 0 {
		q.idle.Wait()
	}
	q.idleMu.Unlock()
	return nil
}

// isNil reports whether conn is nil or holds a nil pointer.
func isNil(conn netpoll.Connection) bool {
	if conn == nil {
		return true
	}
	v := reflect.ValueOf(conn)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

func (q *ShardQueue) lockAll() {
	for i := range q.shards {
		q.shards[i].mu.Lock()
	}
}

func (q *ShardQueue) unlockAll() {
	for i := range q.shards {
		q.shards[i].mu.Unlock()
	}
}

// netpollRun starts f on the netpoll Runner with a real context.
func netpollRun(f func()) { runner.Run(context.Background(), f) }
