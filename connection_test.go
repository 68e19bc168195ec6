//go:build darwin || freebsd || linux

package netpoll

import (
	"errors"
	"io"
	"testing"
	"time"
)

// Bad sizes and arguments on a live connection (docs/contract.md C2.3, C4.1,
// C4.4–C4.6, C6.1, C6.4, C8.8, C16.19): each gives the documented zero
// result or an error, never a panic or a hang, and leaves the connection
// working.

// connArgCases are the bad-size and bad-argument calls on a live connection.
func connArgCases(c Connection) []argCase {
	const huge = 1 << 40
	x := []byte("x")
	var rd Reader = c.Reader()
	var wr Writer = c.Writer()
	zero := func(p []byte, err error) error { return firstErr(err, check(len(p) == 0, "data for n<=0")) }
	return []argCase{
		{"Next(-1)", false, func() error { return zero(rd.Next(-1)) }},
		{"Peek(-1)", false, func() error { return zero(rd.Peek(-1)) }},
		{"Skip(-1)", false, func() error { return rd.Skip(-1) }},
		{"ReadString(-1)", false, func() error { s, err := rd.ReadString(-1); return zero([]byte(s), err) }},
		{"ReadBinary(-1)", false, func() error { return zero(rd.ReadBinary(-1)) }},
		{"Slice(-1)", false, func() error {
			r, err := rd.Slice(-1)
			return firstErr(err, check(r != nil && r.Len() == 0, "Slice(-1) not an empty Reader"))
		}},
		{"Next(0)", false, func() error { return zero(rd.Next(0)) }},
		{"Read(nil)", false, func() error { n, err := c.Read(nil); return firstErr(err, check(n == 0, "n != 0")) }},
		{"Next(huge) times out", false, func() error {
			_ = c.SetReadTimeout(50 * time.Millisecond)
			defer c.SetReadTimeout(0)
			_, err := rd.Next(huge)
			return check(errors.Is(err, ErrReadTimeout), "Next(huge): "+errText(err))
		}},
		{"Peek(huge) times out", false, func() error {
			_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			defer c.SetReadDeadline(time.Time{})
			_, err := rd.Peek(huge)
			return check(errors.Is(err, ErrReadTimeout), "Peek(huge): "+errText(err))
		}},
		{"ReadByte past deadline", false, func() error {
			_ = c.SetReadDeadline(time.Now().Add(-time.Second))
			defer c.SetReadDeadline(time.Time{})
			_, err := rd.ReadByte()
			return check(errors.Is(err, ErrReadTimeout), "ReadByte: "+errText(err))
		}},
		{"Malloc(-1)", false, func() error { return zero(wr.Malloc(-1)) }},
		{"Malloc(huge)", true, func() error { _, err := wr.Malloc(huge); return err }},
		{"Malloc(0)", false, func() error { _, err := wr.Malloc(0); return err }},
		{"MallocAck(-1)", true, func() error { return wr.MallocAck(-1) }},
		{"MallocAck(huge)", true, func() error { return wr.MallocAck(huge) }},
		{"WriteDirect(x,huge)", true, func() error { return wr.WriteDirect(x, huge) }},
		{"WriteDirect(nil,-1)", false, func() error { return wr.WriteDirect(nil, -1) }},
		{"WriteBinary(nil)", false, func() error { _, err := wr.WriteBinary(nil); return err }},
		{"WriteString(\"\")", false, func() error { _, err := wr.WriteString(""); return err }},
		{"Append(nil)", true, func() error { return wr.Append(nil) }},
		{"Append(other Writer)", true, func() error { return wr.Append(NewWriter(io.Discard)) }},
		{"Append(closed LinkBuffer)", false, func() error {
			b := flushedBuffer("x")
			b.Close()
			err := wr.Append(b)
			// The connection is open: an ErrConnClosed would mislead.
			return check(err != nil && !errors.Is(err, ErrConnClosed), "Append of a closed LinkBuffer: "+errText(err)+", want an error other than ErrConnClosed")
		}},
		{"Write(nil)", false, func() error { n, err := c.Write(nil); return firstErr(err, check(n == 0, "n != 0")) }},
		{"Flush(empty)", false, func() error { return wr.Flush() }},
		{"SetReadTimeout(-1)", false, func() error { return c.SetReadTimeout(-1) }},
		{"SetWriteTimeout(-1)", false, func() error { return c.SetWriteTimeout(-1) }},
		{"SetIdleTimeout(-1)", false, func() error { return c.SetIdleTimeout(-1) }},
		{"SetIdleTimeout(0)", false, func() error { return c.SetIdleTimeout(0) }},
		{"SetDeadline(zero)", false, func() error { return c.SetDeadline(time.Time{}) }},
		{"SetOnRequest(nil)", false, func() error { return c.SetOnRequest(nil) }},
		{"AddCloseCallback(nil)", false, func() error { return c.AddCloseCallback(nil) }},
		{"SetOnConnect(nil)", false, func() error {
			return c.(interface{ SetOnConnect(OnConnect) error }).SetOnConnect(nil)
		}},
		{"SetOnDisconnect(nil)", false, func() error {
			return c.(interface{ SetOnDisconnect(OnDisconnect) error }).SetOnDisconnect(nil)
		}},
	}
}

// Bad sizes and arguments on live connections of every kind; afterwards the
// connection still carries data.
func TestConnBadArguments(t *testing.T) {
	checkLeaks(t)
	for _, network := range testNetworks {
		t.Run(network, func(t *testing.T) {
			c := dialEcho(t, stdEcho(t, network))
			var err error
			ka := c.(interface{ SetKeepAlive(int) error })
			cases := connArgCases(c)
			if network == "tcp" {
				cases = append(cases,
					// docs/contract.md C6.4: a keep-alive time below 1 second does nothing, as in the reference.
					argCase{"SetKeepAlive(0)", false, func() error { return ka.SetKeepAlive(0) }},
					argCase{"SetKeepAlive(-5)", false, func() error { return ka.SetKeepAlive(-5) }},
					argCase{"SetKeepAlive(huge)", true, func() error { return ka.SetKeepAlive(1 << 40) }})
			} else {
				cases = append(cases, argCase{"SetKeepAlive on unix", false, func() error { return ka.SetKeepAlive(10) }})
			}
			runArgCases(t, cases)
			_, _ = c.Writer().Malloc(0)
			if err := c.Writer().MallocAck(0); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadTimeout(longWait)
			if _, err = c.Write([]byte("still works")); err != nil {
				t.Fatal(err)
			}
			if s, err := c.Reader().ReadString(11); err != nil || s != "still works" {
				t.Fatalf("after the misuse: %q, %v", s, err)
			}
		})
	}
	t.Run("fd connection", func(t *testing.T) {
		c, _ := fdPairConn(t)
		runArgCases(t, connArgCases(c))
	})
}
