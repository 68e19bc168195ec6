//go:build linux

package netpoll

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// SetKeepAlive returns setsockopt's bare errno, not a wrapped error: EBADF
// for a fd that is not open, EOPNOTSUPP for a unix socket, EINVAL for
// seconds the kernel refuses; seconds outside 32 bits give EINVAL and
// leave keep-alive off.
func TestSetKeepAliveErrors(t *testing.T) {
	checkLeaks(t)
	tcp, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(tcp)
	r, w := GetSysFdPairs()
	defer unix.Close(r)
	defer unix.Close(w)

	require.Equal(t, syscall.EINVAL, SetKeepAlive(tcp, 1<<32+5))
	on, err := unix.GetsockoptInt(tcp, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	require.NoError(t, err)
	require.Zero(t, on, "an out-of-range count turned keep-alive on")

	for _, c := range []struct {
		fd, secs int
		want     syscall.Errno
		text     string
	}{
		{-1, 5, syscall.EBADF, "bad file descriptor"},
		{r, 5, syscall.EOPNOTSUPP, "operation not supported"},
		{tcp, 0, syscall.EINVAL, "invalid argument"},
		{tcp, -1, syscall.EINVAL, "invalid argument"},
		{tcp, 40000, syscall.EINVAL, "invalid argument"},
	} {
		err := SetKeepAlive(c.fd, c.secs)
		require.Equal(t, error(c.want), err, "SetKeepAlive(%d, %d)", c.fd, c.secs)
		require.Equal(t, c.text, err.Error())
	}
	require.NoError(t, SetKeepAlive(tcp, 5))
}
