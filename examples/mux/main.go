//go:build darwin || freebsd || linux

// Command mux runs a multiplexing server and client on loopback. The client
// keeps hundreds of requests in flight over a few connections; each frame is
// a 4-byte big-endian length (of what follows), an 8-byte request id and a
// payload. The server answers every request on its own goroutine and sends
// the replies through a mux.ShardQueue, which batches the replies that are
// ready at the same time into one write. The client also sends through
// ShardQueues, matches each reply to its request by id and checks every
// byte. It prints what it did and exits 1 on any mismatch.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/cloudwego/netpoll/mux"
)

const headLen = 4 + 8 // length, id

func main() {
	conns := flag.Int("conns", 4, "client connections")
	inflight := flag.Int("inflight", 512, "requests in flight at once")
	requests := flag.Int("requests", 50000, "requests in all")
	size := flag.Int("size", 256, "largest payload in bytes")
	flag.Parse()
	if *conns <= 0 || *inflight <= 0 || *requests <= 0 || *size <= 0 {
		fmt.Fprintln(os.Stderr, "mux: every flag must be positive")
		os.Exit(2)
	}
	if err := run(*conns, *inflight, *requests, *size); err != nil {
		fmt.Fprintln(os.Stderr, "mux:", err)
		os.Exit(1)
	}
}

func run(conns, inflight, requests, size int) error {
	srv, err := startServer()
	if err != nil {
		return err
	}
	defer srv.stop()
	clients := make([]*client, 0, conns)
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	for i := 0; i < conns; i++ {
		c, err := dial(srv.addr)
		if err != nil {
			return err
		}
		clients = append(clients, c)
	}

	start := time.Now()
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var failed atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < inflight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				id := next.Add(1) - 1
				if id >= int64(requests) {
					return
				}
				c := clients[id%int64(len(clients))]
				if err := c.call(uint64(id), payload(uint64(id), size)); err != nil {
					errOnce.Do(func() { firstErr = err })
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return firstErr
	}
	replies, flushes := srv.replies.Load(), srv.flushes.Load()
	fmt.Printf("requests:    %d, every reply matched by id and verified\n", requests)
	fmt.Printf("connections: %d, in flight: %d, payload: up to %d bytes\n", conns, inflight, size)
	fmt.Printf("elapsed:     %v (%.0f req/s)\n", elapsed.Round(time.Millisecond), float64(requests)/elapsed.Seconds())
	if flushes > 0 {
		fmt.Printf("server:      %d replies in %d flushes (%.1f per write)\n",
			replies, flushes, float64(replies)/float64(flushes))
	}
	return nil
}

// payload is the deterministic request body of id: 0 to size bytes.
func payload(id uint64, size int) []byte {
	p := make([]byte, int(id*7919%uint64(size+1)))
	for i := range p {
		p[i] = byte(id>>3) + byte(i*13)
	}
	return p
}

// answer is what the server computes from a request payload: its bytes in
// reverse order, each flipped, so an echo or a mix-up would be caught.
func answer(req []byte) []byte {
	out := make([]byte, len(req))
	for i, b := range req {
		out[len(req)-1-i] = b ^ 0xa5
	}
	return out
}

// encode returns a LinkBuffer holding one frame, its bytes left pending
// (not flushed): the connection's Append takes them as they are.
func encode(id uint64, body []byte) *netpoll.LinkBuffer {
	lb := netpoll.NewLinkBuffer(headLen + len(body))
	buf, err := lb.Malloc(headLen + len(body))
	if err != nil {
		panic(err) // Malloc fails only for a negative size
	}
	binary.BigEndian.PutUint32(buf, uint32(8+len(body)))
	binary.BigEndian.PutUint64(buf[4:], id)
	copy(buf[headLen:], body)
	return lb
}

// send queues one frame on q.
func send(q *mux.ShardQueue, id uint64, body []byte) {
	lb := encode(id, body)
	q.Add(func() (netpoll.Writer, bool) { return lb, false })
}

// readFrames calls f for every complete frame buffered in r, with a copy of
// its body, and releases what it read. It leaves a partial frame for the
// next call.
func readFrames(r netpoll.Reader, f func(id uint64, body []byte)) error {
	defer r.Release()
	for r.Len() >= 4 {
		head, err := r.Peek(4)
		if err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint32(head))
		if n < 8 {
			return fmt.Errorf("bad frame length %d", n)
		}
		if r.Len() < 4+n {
			return nil
		}
		frame, err := r.Next(4 + n)
		if err != nil {
			return err
		}
		body := make([]byte, n-8) // never nil, even when empty
		copy(body, frame[headLen:])
		f(binary.BigEndian.Uint64(frame[4:]), body)
	}
	return nil
}

var errClosed = errors.New("connection closed with the request in flight")
