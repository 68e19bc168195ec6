package netpoll

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// §2.1.1: the constants are raw errnos.
func TestErrnoConstants(t *testing.T) {
	assert.Equal(t, "errno 257", ErrConnClosed.Error())
	assert.Equal(t, syscall.Errno(0x106), ErrEOF)
}

// §2.1.2, §2.1.3: message text and suffixes.
func TestExceptionText(t *testing.T) {
	assert.Equal(t, "connection has been closed when flush", Exception(ErrConnClosed, "when flush").Error())
	assert.Equal(t, "broken pipe when flush", Exception(syscall.EPIPE, "when flush").Error())
	assert.Equal(t, "EOF", Exception(ErrEOF, "").Error())
	plain := errors.New("plain")
	assert.Same(t, plain, Exception(plain, ""))
	assert.Equal(t, "plain x", Exception(plain, "x").Error())
	assert.Nil(t, Exception(nil, "x"))
}

// §2.1.4: errors.Is, including ErrEOF matching ErrConnClosed and not io.EOF.
func TestExceptionIs(t *testing.T) {
	eof := Exception(ErrEOF, "peer close")
	assert.True(t, errors.Is(eof, ErrEOF))
	assert.True(t, errors.Is(eof, ErrConnClosed))
	assert.False(t, errors.Is(eof, io.EOF))
	assert.False(t, errors.Is(Exception(ErrConnClosed, ""), ErrEOF))
	assert.Equal(t, ErrEOF, errors.Unwrap(eof))
	assert.True(t, errors.Is(Exception(syscall.EAGAIN, ""), syscall.EAGAIN))
}

// §2.1.5: Timeout and Temporary.
func TestExceptionTimeout(t *testing.T) {
	for _, no := range []syscall.Errno{ErrReadTimeout, ErrWriteTimeout, ErrDialTimeout} {
		var ne net.Error
		require.True(t, errors.As(Exception(no, ""), &ne))
		assert.True(t, ne.Timeout(), no)
	}
	var ne net.Error
	require.True(t, errors.As(Exception(ErrConnClosed, ""), &ne))
	assert.False(t, ne.Timeout())
	require.True(t, errors.As(Exception(syscall.EAGAIN, ""), &ne))
	assert.True(t, ne.Temporary())
}
