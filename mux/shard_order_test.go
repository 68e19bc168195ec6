//go:build darwin || freebsd || linux

package mux

import (
	"sync"
	"testing"

	"github.com/cloudwego/netpoll"
	"github.com/stretchr/testify/require"
)

// Adds ordered by a lock (each returns before the next starts) reach the
// wire in that order, even though they are spread over shards and made
// from many goroutines; every byte arrives intact.
func TestOrderOfSerialisedAdds(t *testing.T) {
	conn, got := dialPair(t)
	q := NewShardQueue(4, conn)
	const workers, total = 8, 4000
	var (
		mu    sync.Mutex
		next  uint32
		bytes int
		wg    sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next == total {
					mu.Unlock()
					return
				}
				gt, n := frameGetter(0, next)
				q.Add(gt)
				next++
				bytes += n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.NoError(t, q.Close())
	frames, err := parse(got.wait(t, bytes))
	require.NoError(t, err)
	require.Len(t, frames, total)
	for i, f := range frames {
		require.Equal(t, uint32(i), f.seq, "frame %d out of order", i)
	}
	require.True(t, conn.IsActive(), "Close must not close the connection")
}

// Concurrent producers: each one's frames arrive in its own order, the
// getters of one Add arrive together, and nothing is lost or corrupted.
func TestConcurrentAddsKeepEachProducersOrder(t *testing.T) {
	conn, got := dialPair(t)
	q := NewShardQueue(0, conn)
	const producers, perProducer = 16, 300
	sizes := make([]int, producers)
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for seq := uint32(0); seq < perProducer; {
				// Some Adds carry three getters at once.
				k := 1 + int(seq%5)/4*2
				gts := make([]WriterGetter, 0, k)
				for i := 0; i < k && seq < perProducer; i++ {
					gt, n := frameGetter(uint32(p), seq)
					gts = append(gts, gt)
					sizes[p] += n
					seq++
				}
				q.Add(gts...)
			}
		}(p)
	}
	wg.Wait()
	require.NoError(t, q.Close())
	total := 0
	for _, n := range sizes {
		total += n
	}
	frames, err := parse(got.wait(t, total))
	require.NoError(t, err)
	require.Len(t, frames, producers*perProducer)
	next := make([]uint32, producers)
	for i, f := range frames {
		require.Less(t, int(f.stream), producers)
		require.Equal(t, next[f.stream], f.seq, "producer %d out of order", f.stream)
		next[f.stream]++
		// A three-getter Add starts at seq%5 == 4 (then 5 and 6).
		if f.seq%5 == 4 && f.seq+2 < perProducer {
			require.Less(t, i+2, len(frames))
			require.Equal(t, parsed{f.stream, f.seq + 1}, frames[i+1])
			require.Equal(t, parsed{f.stream, f.seq + 2}, frames[i+2])
		}
	}
}

// Everything ready when the flusher looks goes out in one Flush: while the
// flusher is held inside a getter, 200 Adds queue up; they are then sent
// with one Append each and a single Flush.
func TestOneFlushPerBatch(t *testing.T) {
	conn, got := dialPair(t)
	cc := &countingConn{Connection: conn}
	q := NewShardQueue(4, cc)
	g := newGate()
	first := frame(9, 0, 10)
	q.Add(g.getter(first))
	g.waitEntered(t)

	const adds = 200
	total := len(first)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for seq := uint32(0); seq < adds/4; seq++ {
				gt, n := frameGetter(uint32(p), seq)
				q.Add(gt)
				mu.Lock()
				total += n
				mu.Unlock()
			}
		}(p)
	}
	wg.Wait()
	require.Zero(t, cc.flushes.Load(), "the held batch is not flushed yet")
	close(g.open)
	require.NoError(t, q.Close())
	frames, err := parse(got.wait(t, total))
	require.NoError(t, err)
	require.Len(t, frames, adds+1)
	require.EqualValues(t, adds+1, cc.appends.Load())
	require.EqualValues(t, 2, cc.flushes.Load(), "one Flush for the held getter, one for the rest")
}

// Getters with nothing to send cost no Append and no Flush.
func TestNothingToSendMeansNoFlush(t *testing.T) {
	conn, _ := dialPair(t)
	cc := &countingConn{Connection: conn}
	q := NewShardQueue(2, cc)
	called := 0
	q.Add()
	q.Add(nil, nil)
	q.Add(func() (netpoll.Writer, bool) { called++; return nil, false })
	q.Add(func() (netpoll.Writer, bool) { called++; return nil, true })
	require.NoError(t, q.Close())
	require.Equal(t, 2, called)
	require.Zero(t, cc.appends.Load())
	require.Zero(t, cc.flushes.Load())
	require.True(t, conn.IsActive())
}
