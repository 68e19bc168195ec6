//go:build darwin || freebsd || linux

package netpoll_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/cloudwego/netpoll"
)

// A server that closes connections silent for 100 ms. The client sends
// nothing, and finds its connection closed by the server.
func ExampleWithIdleCloseTimeout() {
	ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	loop, _ := netpoll.NewEventLoop(nil,
		netpoll.WithIdleCloseTimeout(100*time.Millisecond),
		netpoll.WithOnDisconnect(func(ctx context.Context, c netpoll.Connection) {
			fmt.Println("server: OnDisconnect")
		}))
	go func() { _ = loop.Serve(ln) }()
	defer func() { _ = loop.Shutdown(context.Background()) }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Read(make([]byte, 1))
	time.Sleep(50 * time.Millisecond) // let OnDisconnect print first
	fmt.Println("client:", err == io.EOF, time.Since(start) >= 100*time.Millisecond)
	// Output:
	// server: OnDisconnect
	// client: true true
}

// The counters move by what a small exchange did: one connection accepted,
// five bytes each way, and the close.
func ExampleReadStats() {
	ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	loop, _ := netpoll.NewEventLoop(func(ctx context.Context, c netpoll.Connection) error {
		p, _ := c.Reader().Next(c.Reader().Len())
		_, _ = c.Writer().WriteBinary(p)
		return c.Writer().Flush()
	})
	go func() { _ = loop.Serve(ln) }()
	defer func() { _ = loop.Shutdown(context.Background()) }()

	var before, after netpoll.Stats
	netpoll.ReadStats(&before)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	_, _ = c.Write([]byte("hello"))
	_, _ = io.ReadFull(c, make([]byte, 5))
	_ = c.Close()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		netpoll.ReadStats(&after) // the server notices the close on its own time
		if after.ConnsClosed > before.ConnsClosed && after.BytesWritten-before.BytesWritten == 5 {
			break
		}
	}
	fmt.Println("accepted:", after.ConnsAccepted-before.ConnsAccepted)
	fmt.Println("read:", after.BytesRead-before.BytesRead, "written:", after.BytesWritten-before.BytesWritten)
	fmt.Println("closed:", after.ConnsClosed-before.ConnsClosed, "open:", after.ConnsOpen-before.ConnsOpen)
	// Output:
	// accepted: 1
	// read: 5 written: 5
	// closed: 1 open: 0
}

// A pool can trust IsActive: once the peer's Close has returned, it is
// false, even before the poller has seen the hang-up.
func ExampleConnection_IsActive() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	conn, err := netpoll.DialConnection("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	peer := <-accepted
	fmt.Println("before the peer's close:", conn.IsActive())
	_ = peer.Close()
	fmt.Println("after the peer's close:", conn.IsActive())
	// Output:
	// before the peer's close: true
	// after the peer's close: false
}
