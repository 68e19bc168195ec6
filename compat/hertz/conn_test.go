package hertz

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/hertz/pkg/network"
	hnetpoll "github.com/cloudwego/hertz/pkg/network/netpoll"
	"github.com/cloudwego/netpoll"
	"github.com/stretchr/testify/require"
)

// When the peer has closed, writes on a netpoll connection still stage
// without error and Flush reports ErrConnClosed "when flush" (docs/contract.md C5.3).
// Hertz relies on the suffix: HandleSpecificError drops a closed-connection
// error quietly only when it says "when flush", and logs any other
// ("Netpoll error=... when write binary") — so a response written to a client
// that has gone must fail at Flush, not at WriteBinary or Malloc.
func TestWritesAfterPeerCloseFailAtFlush(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()

	conn, err := hnetpoll.NewDialer().DialConnection("tcp", ln.Addr().String(), wait, nil)
	require.NoError(t, err)
	defer conn.Close()
	peer, ok := <-accepted
	require.True(t, ok, "accept")
	require.NoError(t, peer.Close())
	nc, ok := netpollConn(conn)
	require.True(t, ok, "a netpoll connection")
	require.Eventually(t, func() bool { return !nc.IsActive() }, wait, time.Millisecond,
		"the peer's close makes the connection inactive")

	_, err = conn.WriteBinary([]byte("HTTP/1.1 200 OK\r\n"))
	require.NoError(t, err, "WriteBinary after the peer closed")
	buf, err := conn.Malloc(8)
	require.NoError(t, err, "Malloc after the peer closed")
	require.Len(t, buf, 8)
	err = conn.Flush()
	require.Error(t, err)
	require.True(t, errors.Is(err, netpoll.ErrConnClosed), "Flush: %v", err)
	require.True(t, strings.Contains(err.Error(), "when flush"), "Flush: %v", err)
	require.True(t, conn.(network.HandleSpecificError).HandleSpecificError(err, ""))
}
