// The netpoll servers and client. This file is compiled against this
// repository's netpoll; netpoll_ref.go, generated from it by `go generate`
// (see genref), is the same code compiled against the reference. Edit this
// file only, then regenerate.

package main

import (
	"bytes"
	"context"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/cloudwego/netpoll/mux"
)

// startNetpollOurs serves mode ("echo" or "mux") on a loopback port with the
// default configuration (pollers, buffers) a user gets, counting accepted
// connections in accepted.
func startNetpollOurs(mode string, accepted *atomic.Int64) (server, error) {
	ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		return server{}, err
	}
	onRequest := func(_ context.Context, c netpoll.Connection) error {
		return serveEchoOurs(c.Reader(), c.Writer())
	}
	if mode == modeMux {
		onRequest = serveMuxOurs
	}
	onPrepare := func(c netpoll.Connection) context.Context {
		accepted.Add(1)
		ctx := context.Background()
		if mode == modeMux {
			ctx = context.WithValue(ctx, queueKeyOurs{}, mux.NewShardQueue(mux.ShardSize, c))
		}
		return ctx
	}
	evl, err := netpoll.NewEventLoop(onRequest, netpoll.WithOnPrepare(onPrepare))
	if err != nil {
		ln.Close()
		return server{}, err
	}
	go evl.Serve(ln)
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return evl.Shutdown(ctx)
	}
	return server{addr: ln.Addr().String(), stop: stop}, nil
}

// serveEchoOurs answers every request buffered on the connection, each with
// its own response, and flushes once per batch: before it would block for
// the rest of a partial request, and before it returns. Peek and Next block
// until the bytes they need have arrived.
func serveEchoOurs(r netpoll.Reader, w netpoll.Writer) error {
	for {
		h, err := r.Peek(headerLen)
		if err != nil {
			return err
		}
		n, err := bodyLen(h)
		if err != nil {
			return err
		}
		req, err := r.Next(headerLen + n)
		if err != nil {
			return err
		}
		out, err := w.Malloc(responseLen(n - idLen))
		if err != nil {
			return err
		}
		handle(out, req[headerLen:])
		if !bufferedOurs(r) {
			if err := r.Release(); err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if r.Len() == 0 {
				return nil
			}
		}
	}
}

// bufferedOurs reports whether a whole request is buffered in r.
func bufferedOurs(r netpoll.Reader) bool {
	if r.Len() < headerLen {
		return false
	}
	h, err := r.Peek(headerLen)
	if err != nil {
		return false
	}
	n, err := bodyLen(h)
	return err == nil && r.Len() >= headerLen+n
}

type queueKeyOurs struct{}

// serveMuxOurs hands every request to a goroutine of its own, as a
// multiplexing RPC server does: the request is sliced off the input without
// copying, and the goroutine builds the response in a new LinkBuffer and
// queues it on the connection's ShardQueue, which batches the responses that
// are ready into one flush.
func serveMuxOurs(ctx context.Context, c netpoll.Connection) error {
	q := ctx.Value(queueKeyOurs{}).(*mux.ShardQueue)
	r := c.Reader()
	for {
		h, err := r.Peek(headerLen)
		if err != nil {
			return err
		}
		n, err := bodyLen(h)
		if err != nil {
			return err
		}
		req, err := r.Slice(headerLen + n)
		if err != nil {
			return err
		}
		go func() {
			msg, err := req.Next(headerLen + n)
			if err != nil {
				return
			}
			buf := netpoll.NewLinkBuffer(responseLen(n - idLen))
			out, _ := buf.Malloc(responseLen(n - idLen))
			handle(out, msg[headerLen:])
			req.Release()
			buf.Flush()
			q.Add(func() (netpoll.Writer, bool) { return buf, false })
		}()
		if r.Len() == 0 {
			return nil
		}
	}
}

// clientConnOurs is a client connection from DialConnection.
type clientConnOurs struct{ c netpoll.Connection }

func dialOurs(addr string) (rtConn, error) {
	c, err := netpoll.DialConnection("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetReadTimeout(30 * time.Second)
	return clientConnOurs{c}, nil
}

func (c clientConnOurs) roundTrip(req, want []byte) error {
	w := c.c.Writer()
	buf, err := w.Malloc(len(req))
	if err != nil {
		return err
	}
	copy(buf, req)
	if err := w.Flush(); err != nil {
		return err
	}
	r := c.c.Reader()
	resp, err := r.Next(len(want))
	if err != nil {
		return err
	}
	ok := bytes.Equal(resp, want)
	if err := r.Release(); err != nil {
		return err
	}
	if !ok {
		return errWrongResponse
	}
	return nil
}

func (c clientConnOurs) Close() error { return c.c.Close() }
