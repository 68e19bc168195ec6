//go:build darwin || freebsd || linux

// Command stats runs an echo server and a few clients on loopback for a few
// seconds, with an idle close of one second, and prints netpoll.ReadStats
// every second: connections opened and closed (some of them by the idle
// close), bytes each way, and what the buffers hold. It exits by itself.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/cloudwego/netpoll"
)

func main() {
	seconds := flag.Int("seconds", 4, "how long the load runs")
	clients := flag.Int("clients", 8, "busy client connections")
	idle := flag.Int("idle", 4, "client connections that connect and stay silent")
	flag.Parse()
	if err := run(time.Duration(*seconds)*time.Second, *clients, *idle); err != nil {
		fmt.Fprintln(os.Stderr, "stats:", err)
		os.Exit(1)
	}
}

// echo answers whatever is buffered with the same bytes.
func echo(ctx context.Context, c netpoll.Connection) error {
	r, w := c.Reader(), c.Writer()
	p, err := r.Next(r.Len())
	if err != nil {
		return err
	}
	if _, err = w.WriteBinary(p); err == nil {
		err = w.Flush()
	}
	_ = r.Release()
	return err
}

func run(d time.Duration, clients, idle int) error {
	ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	loop, err := netpoll.NewEventLoop(echo, netpoll.WithIdleCloseTimeout(time.Second))
	if err != nil {
		return err
	}
	go func() { _ = loop.Serve(ln) }()
	addr := ln.Addr().String()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := busyClient(addr, stop); err != nil {
				errs <- err
			}
		}()
	}
	var silent []net.Conn
	for i := 0; i < idle; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		silent = append(silent, c) // closed by the server after a second
	}

	fmt.Println("  s  pollers  open  accepted  closed  idle-closed     read      written  in-buf  out-buf")
	tick := time.NewTicker(time.Second)
	for i := 1; i <= int(d/time.Second); i++ {
		<-tick.C
		var s netpoll.Stats
		netpoll.ReadStats(&s)
		fmt.Printf("%3d  %7d  %4d  %8d  %6d  %11d  %10d  %10d  %6d  %7d\n", i, s.Pollers, s.ConnsOpen,
			s.ConnsAccepted, s.ConnsClosed, s.IdleClosed, s.BytesRead, s.BytesWritten, s.InputBuffered, s.OutputBuffered)
	}
	tick.Stop()
	close(stop)
	wg.Wait()
	for _, c := range silent {
		_ = c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := loop.Shutdown(ctx); err != nil {
		return err
	}
	var s netpoll.Stats
	netpoll.ReadStats(&s)
	fmt.Printf("end: %+v\n", s)
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// busyClient sends 1 KiB and reads the echo, over and over, until stop.
func busyClient(addr string, stop <-chan struct{}) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	msg, reply := make([]byte, 1024), make([]byte, 1024)
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		if _, err := c.Write(msg); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, reply); err != nil {
			return err
		}
	}
}
