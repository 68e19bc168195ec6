//go:build darwin || freebsd || linux

package main

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/cloudwego/netpoll/mux"
)

// server answers each request on its own goroutine, replying through the
// connection's ShardQueue.
type server struct {
	addr    string
	loop    netpoll.EventLoop
	served  chan error
	replies atomic.Int64
	flushes atomic.Int64
}

type queueKey struct{}

func startServer() (*server, error) {
	ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{addr: ln.Addr().String(), served: make(chan error, 1)}
	s.loop, err = netpoll.NewEventLoop(s.onRequest, netpoll.WithOnPrepare(s.prepare))
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	go func() { s.served <- s.loop.Serve(ln) }()
	return s, nil
}

// prepare gives each connection a ShardQueue (writing through a Flush
// counter) that closes with it.
func (s *server) prepare(c netpoll.Connection) context.Context {
	q := mux.NewShardQueue(0, &flushCounter{Connection: c, n: &s.flushes})
	_ = c.AddCloseCallback(func(netpoll.Connection) error { _ = q.Close(); return nil })
	return context.WithValue(context.Background(), queueKey{}, q)
}

func (s *server) onRequest(ctx context.Context, c netpoll.Connection) error {
	q := ctx.Value(queueKey{}).(*mux.ShardQueue)
	err := readFrames(c.Reader(), func(id uint64, body []byte) {
		go func() {
			send(q, id, answer(body))
			s.replies.Add(1)
		}()
	})
	if err != nil {
		_ = c.Close()
	}
	return err
}

func (s *server) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.loop.Shutdown(ctx)
	<-s.served
}

// flushCounter counts the Flushes made through a connection's Writer.
type flushCounter struct {
	netpoll.Connection
	n *atomic.Int64
}

func (c *flushCounter) Writer() netpoll.Writer {
	return countingWriter{Writer: c.Connection.Writer(), n: c.n}
}

type countingWriter struct {
	netpoll.Writer
	n *atomic.Int64
}

func (w countingWriter) Flush() error {
	w.n.Add(1)
	return w.Writer.Flush()
}

var _ net.Conn = (*flushCounter)(nil)
