//go:build darwin || freebsd || linux

package netpoll_test

import (
	"context"
	"fmt"
	"time"

	"github.com/cloudwego/netpoll"
)

// A server that answers each line with the line in upper case, and a client
// that sends two lines.
func ExampleNewEventLoop() {
	listener, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	loop, err := netpoll.NewEventLoop(func(ctx context.Context, conn netpoll.Connection) error {
		r, w := conn.Reader(), conn.Writer()
		for r.Len() > 0 {
			line, err := r.Until('\n')
			if err != nil {
				return err
			}
			reply, _ := w.Malloc(len(line))
			for i, c := range line {
				if 'a' <= c && c <= 'z' {
					c -= 'a' - 'A'
				}
				reply[i] = c
			}
			if err := w.Flush(); err != nil {
				return err
			}
		}
		return nil
	}, netpoll.WithReadTimeout(time.Second))
	if err != nil {
		panic(err)
	}
	go func() { _ = loop.Serve(listener) }()

	conn, err := netpoll.DialConnection("tcp", listener.Addr().String(), time.Second)
	if err != nil {
		panic(err)
	}
	_, _ = conn.Write([]byte("hello\nreactor\n"))
	for i := 0; i < 2; i++ {
		line, err := conn.Reader().Until('\n')
		if err != nil {
			panic(err)
		}
		fmt.Print(string(line))
	}
	_ = conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = loop.Shutdown(ctx)
	// Output:
	// HELLO
	// REACTOR
}

// Dialing a plain net listener: the connection's Reader blocks until the
// bytes it asks for have arrived.
func ExampleDialConnection() {
	listener, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer listener.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		peer, err := listener.Accept()
		for err == nil && peer == nil { // a netpoll Listener's Accept does not block
			time.Sleep(time.Millisecond)
			peer, err = listener.Accept()
		}
		if err != nil {
			return
		}
		_, _ = peer.Write([]byte("4321ping"))
		_ = peer.Close()
	}()

	conn, err := netpoll.DialConnection("tcp", listener.Addr().String(), time.Second)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	_ = conn.SetReadTimeout(5 * time.Second)
	head, _ := conn.Reader().Next(4)
	fmt.Printf("header %s\n", head)
	body, _ := conn.Reader().ReadString(4)
	fmt.Printf("body %s\n", body)
	<-done
	// Output:
	// header 4321
	// body ping
}
