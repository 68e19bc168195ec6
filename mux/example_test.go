//go:build darwin || freebsd || linux

package mux_test

import (
	"context"
	"fmt"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/cloudwego/netpoll/mux"
)

// A server answers each request line through a ShardQueue, so responses
// produced at the same time leave in one write.
func ExampleShardQueue() {
	ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	queues := make(chan *mux.ShardQueue, 1)
	loop, err := netpoll.NewEventLoop(
		func(ctx context.Context, c netpoll.Connection) error {
			q := ctx.Value(queueKey{}).(*mux.ShardQueue)
			line, err := c.Reader().Until('\n')
			if err != nil {
				return err
			}
			reply := netpoll.NewLinkBuffer()
			_, _ = reply.WriteString("echo: " + string(line))
			_ = c.Reader().Release()
			q.Add(func() (netpoll.Writer, bool) { return reply, false })
			return nil
		},
		netpoll.WithOnPrepare(func(c netpoll.Connection) context.Context {
			q := mux.NewShardQueue(0, c)
			queues <- q
			return context.WithValue(context.Background(), queueKey{}, q)
		}),
	)
	if err != nil {
		panic(err)
	}
	go func() { _ = loop.Serve(ln) }()

	client, err := netpoll.DialConnection("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		panic(err)
	}
	_, _ = client.Write([]byte("hello\n"))
	line, _ := client.Reader().Until('\n')
	fmt.Print(string(line))

	// Stop: drain the server's queue, then close everything.
	_ = (<-queues).Close()
	_ = client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = loop.Shutdown(ctx)
	// Output: echo: hello
}

type queueKey struct{}
