package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"

	ours "github.com/cloudwego/netpoll"
	ref "netpollref.local/netpoll"
)

// A server listens on a loopback port until stop is called.
type server struct {
	addr string
	stop func() error
}

// servers maps an implementation name to the function that starts its server.
var servers = map[string]func() (server, error){
	"gonet": startGoNet,
	"ref":   startRef,
	"ours":  startOurs,
}

// implOrder is the default order of the implementations in a round.
var implOrder = []string{"gonet", "ref", "ours"}

// reader and writer are the parts of a netpoll connection the handler uses;
// both netpoll implementations satisfy them, so one handler serves both.
type reader interface {
	Len() int
	Peek(n int) ([]byte, error)
	Next(n int) ([]byte, error)
	Release() error
}

type writer interface {
	Malloc(n int) ([]byte, error)
	Flush() error
}

// serveNetpoll answers every complete request buffered on the connection. It
// blocks in Peek/Next for a request's missing bytes, and returns once the
// input is drained (the event loop calls it again when more arrives).
func serveNetpoll(r reader, w writer) error {
	for {
		h, err := r.Peek(headerLen)
		if err != nil {
			return err
		}
		n, err := payloadLen(h)
		if err != nil {
			return err
		}
		req, err := r.Next(headerLen + n)
		if err != nil {
			return err
		}
		out, err := w.Malloc(headerLen + n)
		if err != nil {
			return err
		}
		encodeResponse(out, req[headerLen:])
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

func startOurs() (server, error) {
	ln, err := ours.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		return server{}, err
	}
	evl, err := ours.NewEventLoop(func(_ context.Context, c ours.Connection) error {
		return serveNetpoll(c.Reader(), c.Writer())
	})
	if err != nil {
		ln.Close()
		return server{}, err
	}
	go evl.Serve(ln)
	return server{ln.Addr().String(), func() error { return shutdown(evl.Shutdown) }}, nil
}

func startRef() (server, error) {
	ln, err := ref.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		return server{}, err
	}
	evl, err := ref.NewEventLoop(func(_ context.Context, c ref.Connection) error {
		return serveNetpoll(c.Reader(), c.Writer())
	})
	if err != nil {
		ln.Close()
		return server{}, err
	}
	go evl.Serve(ln)
	return server{ln.Addr().String(), func() error { return shutdown(evl.Shutdown) }}, nil
}

func shutdown(f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f(ctx)
}

// startGoNet serves with a goroutine per connection, as idiomatic Go does:
// buffered reads, a response built in a per-connection buffer, one Write each.
func startGoNet() (server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return server{}, err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by stop
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveGoNet(c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
		}
	}()
	stop := func() error {
		err := ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		return err
	}
	return server{ln.Addr().String(), stop}, nil
}

func serveGoNet(c net.Conn) {
	br := bufio.NewReaderSize(c, 16<<10)
	var h [headerLen]byte
	var payload, out []byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return
		}
		n, err := payloadLen(h[:])
		if err != nil {
			return
		}
		if cap(payload) < n {
			payload = make([]byte, n)
			out = make([]byte, headerLen+n)
		}
		payload, out = payload[:n], out[:headerLen+n]
		if _, err := io.ReadFull(br, payload); err != nil {
			return
		}
		encodeResponse(out, payload)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// runServe is the server process: it starts one implementation, prints
// "listening ADDR" and serves until its standard input closes. With
// $SERVERBENCH_CPUPROFILE set to a directory it writes a CPU profile there,
// named after the implementation and the process id.
func runServe(args []string) error {
	if len(args) != 1 || servers[args[0]] == nil {
		return fmt.Errorf("usage: serve gonet|ref|ours")
	}
	if dir := os.Getenv("SERVERBENCH_CPUPROFILE"); dir != "" {
		stop, err := startCPUProfile(dir, args[0])
		if err != nil {
			return err
		}
		defer stop()
	}
	s, err := servers[args[0]]()
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", s.addr)
	// The parent closes our stdin to stop us; if it dies, so do we.
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return s.stop()
}

func startCPUProfile(dir, impl string) (stop func(), err error) {
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", impl, os.Getpid())))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
