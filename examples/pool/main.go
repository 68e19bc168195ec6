//go:build darwin || freebsd || linux

// Command pool shows a client connection pool that checks IsActive before
// reusing a connection, against a server that closes connections idle for
// longer than a limit. It prints how many connections were reused and how
// many were found dead and replaced.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
)

func main() {
	idle := flag.Duration("idle", 150*time.Millisecond, "the server closes connections idle this long")
	rounds := flag.Int("rounds", 6, "rounds of requests")
	flag.Parse()
	if err := run(*idle, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "pool:", err)
		os.Exit(1)
	}
}

// pool keeps idle connections to one address.
type pool struct {
	addr  string
	mu    sync.Mutex
	idle  []netpoll.Connection
	dials int
	dead  int
	reuse int
}

// get returns a live pooled connection, or dials a new one.
func (p *pool) get() (netpoll.Connection, error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if c.IsActive() {
			p.reuse++
			p.mu.Unlock()
			return c, nil
		}
		p.dead++
		c.Close()
	}
	p.dials++
	p.mu.Unlock()
	return netpoll.DialConnection("tcp", p.addr, time.Second)
}

func (p *pool) put(c netpoll.Connection) {
	p.mu.Lock()
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.idle {
		c.Close()
	}
	p.idle = nil
}

type lastActive struct{}

// server answers "ping" with "pong" and closes connections idle for limit.
func server(limit time.Duration) (netpoll.EventLoop, net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	onRequest := func(ctx context.Context, c netpoll.Connection) error {
		ctx.Value(lastActive{}).(*atomic.Int64).Store(time.Now().UnixNano())
		if _, err := c.Reader().Next(4); err != nil {
			return err
		}
		c.Reader().Release()
		c.Writer().WriteString("pong")
		return c.Writer().Flush()
	}
	onConnect := func(ctx context.Context, c netpoll.Connection) context.Context {
		last := new(atomic.Int64)
		last.Store(time.Now().UnixNano())
		go reapWhenIdle(c, last, limit)
		return context.WithValue(ctx, lastActive{}, last)
	}
	loop, err := netpoll.NewEventLoop(onRequest, netpoll.WithOnConnect(onConnect))
	return loop, ln, err
}

// reapWhenIdle closes c once no request has arrived for limit. It never
// reads: OnRequest is the connection's only reader.
func reapWhenIdle(c netpoll.Connection, last *atomic.Int64, limit time.Duration) {
	tick := time.NewTicker(limit / 5)
	defer tick.Stop()
	for range tick.C {
		if !c.IsActive() {
			return
		}
		if time.Since(time.Unix(0, last.Load())) > limit {
			c.Close()
			return
		}
	}
}

func run(idle time.Duration, rounds int) error {
	loop, ln, err := server(idle)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- loop.Serve(ln) }()
	p := &pool{addr: ln.Addr().String()}
	for round := 0; round < rounds; round++ {
		for i := 0; i < 4; i++ {
			if err = ping(p); err != nil {
				return err
			}
		}
		if round%2 == 1 {
			time.Sleep(2 * idle) // let the server reap the idle connections
		}
	}
	p.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err = loop.Shutdown(ctx); err != nil {
		return err
	}
	if err = <-served; err != nil {
		return err
	}
	fmt.Printf("%d requests: %d dials, %d reuses of live connections, %d dead connections detected by IsActive and replaced\n",
		rounds*4, p.dials, p.reuse, p.dead)
	return nil
}

// ping does one request on a pooled connection and gives it back.
func ping(p *pool) error {
	c, err := p.get()
	if err != nil {
		return err
	}
	if _, err = c.Write([]byte("ping")); err != nil {
		return err
	}
	reply, err := c.Reader().Next(4)
	if err != nil {
		return err
	}
	if string(reply) != "pong" {
		return fmt.Errorf("unexpected reply %q", reply)
	}
	c.Reader().Release()
	p.put(c)
	return nil
}
