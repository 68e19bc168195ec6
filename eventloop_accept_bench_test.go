//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"net"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// acceptBenchBatch is how many connections BenchmarkAcceptRegister holds
// open at once; well under the listen backlog, so every connect completes
// without the server's help. The backlog is 4096 on Linux but 128 on macOS
// and FreeBSD (kern.ipc.somaxconn), where a unix connect to a full one is
// refused.
var acceptBenchBatch = func() int {
	if runtime.GOOS == "linux" {
		return 256
	}
	return 64
}()

// BenchmarkAcceptRegister measures what an EventLoop spends to accept a
// connection and register it: one op is one connection, so allocs/op and
// B/op are per accepted connection. The client connects with raw syscalls,
// which allocate nothing, and the closing of each batch is not timed.
func BenchmarkAcceptRegister(b *testing.B) {
	for _, network := range testNetworks {
		b.Run(network, func(b *testing.B) { benchAcceptRegister(b, network) })
	}
}

func benchAcceptRegister(b *testing.B, network string) {
	accepted := make(chan Connection, acceptBenchBatch)
	srv := startServer(b, network, nil, WithOnPrepare(func(c Connection) context.Context {
		accepted <- c
		return nil
	}))
	family, sa := benchSockaddr(b, network, srv.addr)
	conns := make([]Connection, 0, acceptBenchBatch)
	fds := make([]int, 0, acceptBenchBatch)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += len(fds) {
		conns, fds = conns[:0], fds[:0]
		for n := min(acceptBenchBatch, b.N-done); len(fds) < n; {
			fd, err := unix.Socket(family, unix.SOCK_STREAM, 0)
			require.NoError(b, err)
			fds = append(fds, fd)
			require.NoError(b, unix.Connect(fd, sa))
		}
		for len(conns) < len(fds) {
			conns = append(conns, <-accepted)
		}
		b.StopTimer()
		for i, c := range conns {
			require.NoError(b, c.Close())
			require.NoError(b, unix.Close(fds[i]))
		}
		b.StartTimer()
	}
}

// benchSockaddr returns the family and socket address to connect to addr.
func benchSockaddr(b *testing.B, network, addr string) (int, unix.Sockaddr) {
	if network == "unix" {
		return unix.AF_UNIX, &unix.SockaddrUnix{Name: addr}
	}
	ta, err := net.ResolveTCPAddr(network, addr)
	require.NoError(b, err)
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	return unix.AF_INET, sa
}
