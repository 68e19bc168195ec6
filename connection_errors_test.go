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

// docs/contract.md C1.1: the constants are raw errnos.
func TestErrnoConstants(t *testing.T) {
	assert.Equal(t, "errno 257", ErrConnClosed.Error())
	assert.Equal(t, syscall.Errno(0x106), ErrEOF)
}

// docs/contract.md C1.2, C1.3: message text and suffixes.
func TestExceptionText(t *testing.T) {
	assert.Equal(t, "connection has been closed when flush", Exception(ErrConnClosed, "when flush").Error())
	assert.Equal(t, "broken pipe when flush", Exception(syscall.EPIPE, "when flush").Error())
	assert.Equal(t, "EOF", Exception(ErrEOF, "").Error())
	plain := errors.New("plain")
	assert.Same(t, plain, Exception(plain, ""))
	assert.Equal(t, "plain x", Exception(plain, "x").Error())
	assert.Nil(t, Exception(nil, "x"))
}

// docs/contract.md C1.4: errors.Is, including ErrEOF matching ErrConnClosed and not io.EOF.
func TestExceptionIs(t *testing.T) {
	eof := Exception(ErrEOF, "peer close")
	assert.True(t, errors.Is(eof, ErrEOF))
	assert.True(t, errors.Is(eof, ErrConnClosed))
	assert.False(t, errors.Is(eof, io.EOF))
	assert.False(t, errors.Is(Exception(ErrConnClosed, ""), ErrEOF))
	assert.Equal(t, ErrEOF, errors.Unwrap(eof))
	assert.True(t, errors.Is(Exception(syscall.EAGAIN, ""), syscall.EAGAIN))
}

// docs/contract.md C1.5: Timeout and Temporary.
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

// An errno with bit 0x100 set reads as the package error with the same low
// byte when there is one (0x301 as ErrConnClosed); one without such an
// error, or without the bit, reads as the errno itself.
func TestExceptionTextHighErrnos(t *testing.T) {
	assert.Equal(t, "connection has been closed", Exception(syscall.Errno(0x301), "").Error())
	assert.Equal(t, "EOF x", Exception(syscall.Errno(0x706), "x").Error())
	assert.Equal(t, "errno 256", Exception(syscall.Errno(0x100), "").Error())
	assert.Equal(t, "errno 265", Exception(syscall.Errno(0x109), "").Error())
	assert.Equal(t, "errno 513", Exception(syscall.Errno(0x201), "").Error())
}

// docs/contract.md C1.2, C1.3: Exception with odd input: a nil error stays
// nil whatever the suffix; a zero Errno still gives a non-nil error with the
// errno's own text and the suffix; Errnos outside the package's page, huge
// or just above it, give errors whose text can be built.
func TestExceptionOddInput(t *testing.T) {
	cases := []argCase{
		{"Exception(nil, \"\")", false, func() error { return Exception(nil, "") }},
		{"Exception(nil, sfx)", false, func() error { return Exception(nil, "sfx") }},
		{"Exception(Errno(0))", false, func() error {
			err := Exception(syscall.Errno(0), "x")
			return check(err != nil && err.Error() == syscall.Errno(0).Error()+" x", "Exception(Errno(0), x) = "+errText(err))
		}},
		{"Exception(huge Errno)", true, func() error {
			err := Exception(syscall.Errno(1<<31), "x")
			_ = err.Error()
			return err
		}},
		{"Exception(0x1ff)", true, func() error { err := Exception(syscall.Errno(0x1ff), ""); _ = err.Error(); return err }},
	}
	runArgCases(t, cases)
}
