//go:build darwin || freebsd || linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/cloudwego/netpoll/mux"
)

// callTimeout bounds the wait for one reply.
const callTimeout = 5 * time.Second

// client multiplexes calls over one connection: requests go out through a
// ShardQueue, and replies are routed to their callers by id.
type client struct {
	conn netpoll.Connection
	q    *mux.ShardQueue

	mu      sync.Mutex
	waiting map[uint64]chan []byte // a nil reply means the connection closed
	closed  bool
	bad     error // a reply nobody waited for
}

func dial(addr string) (*client, error) {
	conn, err := netpoll.DialConnection("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	c := &client{conn: conn, q: mux.NewShardQueue(0, conn), waiting: make(map[uint64]chan []byte)}
	if err = conn.AddCloseCallback(c.onClose); err == nil {
		err = conn.SetOnRequest(c.onReply)
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// call sends one request and checks its reply.
func (c *client) call(id uint64, req []byte) error {
	ch := make(chan []byte, 1)
	c.mu.Lock()
	if c.closed || c.bad != nil {
		err := c.bad
		c.mu.Unlock()
		if err == nil {
			err = errClosed
		}
		return err
	}
	c.waiting[id] = ch
	c.mu.Unlock()
	send(c.q, id, req)

	timer := time.NewTimer(callTimeout)
	defer timer.Stop()
	select {
	case got := <-ch:
		if got == nil {
			return fmt.Errorf("request %d: %w", id, errClosed)
		}
		if want := answer(req); !bytes.Equal(got, want) {
			return fmt.Errorf("request %d: reply of %d bytes does not match the %d expected", id, len(got), len(want))
		}
		return nil
	case <-timer.C:
		return fmt.Errorf("request %d: no reply within %v", id, callTimeout)
	}
}

// onReply routes every complete reply to its caller.
func (c *client) onReply(_ context.Context, conn netpoll.Connection) error {
	return readFrames(conn.Reader(), func(id uint64, body []byte) {
		c.mu.Lock()
		ch, ok := c.waiting[id]
		delete(c.waiting, id)
		if !ok && c.bad == nil {
			c.bad = fmt.Errorf("reply for unknown request %d", id)
		}
		c.mu.Unlock()
		if ok {
			ch <- body
		}
	})
}

// onClose wakes every caller still waiting.
func (c *client) onClose(netpoll.Connection) error {
	c.mu.Lock()
	c.closed = true
	for id, ch := range c.waiting {
		delete(c.waiting, id)
		ch <- nil
	}
	c.mu.Unlock()
	return nil
}

func (c *client) close() {
	_ = c.q.Close()
	_ = c.conn.Close()
}
