//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// addrCase is a listener to accept on and the host its dialer uses instead
// of a wildcard one. An empty addr is a unix socket path, "@" an abstract one.
type addrCase struct {
	name, network, addr, dialHost string
}

var addrCases = []addrCase{
	{"tcp4", "tcp4", "127.0.0.1:0", ""},
	{"tcp4 wildcard", "tcp4", "0.0.0.0:0", "127.0.0.1"},
	{"tcp6", "tcp6", "[::1]:0", ""},
	{"tcp6 wildcard", "tcp6", "[::]:0", "::1"},
	{"unix", "unix", "", ""},
	{"unixpacket", "unixpacket", "", ""},
	{"unix abstract", "unix", "@", ""},
}

// listen opens the case's standard listener and returns the address to dial.
func (ac addrCase) listen(t *testing.T) (net.Listener, string) {
	t.Helper()
	addr := ac.addr
	switch addr {
	case "":
		addr = testAddress(t, "unix")
	case "@":
		if runtime.GOOS != "linux" {
			t.Skip("abstract unix addresses are linux only")
		}
		addr = fmt.Sprintf("@netpoll-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	ln, err := net.Listen(ac.network, addr)
	if err != nil && ac.network == "tcp6" {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	dial := ln.Addr().String()
	if ac.dialHost != "" {
		dial = net.JoinHostPort(ac.dialHost, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return ln, dial
}

// requireSameAddrs checks that c, an accepted connection, reports the
// addresses its dialer peer sees, with the same types and contents, asked
// once before Close (unless onlyAfterClose) and again after it.
func requireSameAddrs(t *testing.T, c net.Conn, peer net.Conn, onlyAfterClose bool) {
	t.Helper()
	if !onlyAfterClose {
		require.Equal(t, peer.RemoteAddr(), c.LocalAddr(), "LocalAddr")
		require.Equal(t, peer.LocalAddr(), c.RemoteAddr(), "RemoteAddr")
	}
	require.NoError(t, c.Close())
	require.Equal(t, peer.RemoteAddr(), c.LocalAddr(), "LocalAddr after Close")
	require.Equal(t, peer.LocalAddr(), c.RemoteAddr(), "RemoteAddr after Close")
}

// docs/contract.md C0.4: an accepted connection's LocalAddr and RemoteAddr are what the
// kernel reports for its socket, the dialer's RemoteAddr and LocalAddr,
// whether or not the listener is bound to a wildcard address, and they stay
// the same after Close.
func TestAcceptedAddrs(t *testing.T) {
	checkLeaks(t)
	for _, ac := range addrCases {
		t.Run(ac.name, func(t *testing.T) {
			t.Run("EventLoop", func(t *testing.T) {
				ln, dial := ac.listen(t)
				accepted := make(chan Connection, 2)
				evl, err := NewEventLoop(nil, WithOnPrepare(func(c Connection) context.Context {
					accepted <- c
					return nil
				}))
				require.NoError(t, err)
				served := make(chan error, 1)
				go func() { served <- evl.Serve(ln) }()
				defer func() {
					ctx, cancel := context.WithTimeout(context.Background(), longWait)
					defer cancel()
					require.NoError(t, evl.Shutdown(ctx))
					require.NoError(t, recv(t, served, "Serve after Shutdown"))
				}()
				for _, onlyAfterClose := range []bool{false, true} {
					peer := dialStd(t, ln.Addr().Network(), dial)
					requireSameAddrs(t, recv(t, accepted, "the accepted connection"), peer, onlyAfterClose)
				}
			})
			t.Run("Listener", func(t *testing.T) {
				std, dial := ac.listen(t)
				ln, err := ConvertListener(std)
				require.NoError(t, err)
				defer ln.Close()
				for _, onlyAfterClose := range []bool{false, true} {
					peer := dialStd(t, ln.Addr().Network(), dial)
					c := acceptPending(t, ln)
					requireSameAddrs(t, c, peer, onlyAfterClose)
				}
			})
		})
	}
}

// ResolveTCPAddr and ResolveUnixAddr with wrong networks and malformed
// addresses fail as net's resolvers do; an empty unix address is an empty
// name.
func TestResolveBadAddresses(t *testing.T) {
	tcp := "127.0.0.1:80"
	cases := []argCase{
		{"ResolveTCPAddr bogus", true, func() error { _, err := ResolveTCPAddr("bogus", tcp); return err }},
		{"ResolveTCPAddr unix", true, func() error { _, err := ResolveTCPAddr("unix", tcp); return err }},
		{"ResolveTCPAddr no port", true, func() error { _, err := ResolveTCPAddr("tcp", "127.0.0.1"); return err }},
		{"ResolveTCPAddr port 99999", true, func() error { _, err := ResolveTCPAddr("tcp", "127.0.0.1:99999"); return err }},
		{"ResolveTCPAddr open bracket", true, func() error { _, err := ResolveTCPAddr("tcp", "[::1"); return err }},
		{"ResolveTCPAddr tcp4 IPv6", true, func() error { _, err := ResolveTCPAddr("tcp4", "[::1]:80"); return err }},
		{"ResolveUnixAddr tcp", true, func() error { _, err := ResolveUnixAddr("tcp", "/x"); return err }},
		{"ResolveUnixAddr bogus", true, func() error { _, err := ResolveUnixAddr("bogus", "/x"); return err }},
		{"ResolveUnixAddr empty", false, func() error { // an empty name, not an error
			a, err := ResolveUnixAddr("unix", "")
			return firstErr(err, check(a != nil && a.Name == "", "ResolveUnixAddr(unix, \"\") gave a name"))
		}},
	}
	runArgCases(t, cases)
}
