//go:build darwin || freebsd || linux

package netpoll

import (
	"crypto/tls"
	"net"
	"strings"
	"time"
)

// DialTLS dials address on network as DialConnection does and runs a TLS
// client handshake on the calling goroutine with config, within timeout
// (dialing and handshake together; timeout <= 0 means none). It returns a
// Connection whose Reader yields plaintext and whose Writer encrypts at
// Flush; TLSConnectionState reports what was negotiated.
//
// config is cloned; a nil config is the zero tls.Config, as for
// crypto/tls.Dial. When its ServerName is empty it is taken from address:
// the host part, or for an address without a port all of it.
//
// A dial error is DialConnection's; a failed handshake closes the
// connection and returns crypto/tls's error, or, when the handshake ran out
// of time or the peer closed, one matching ErrReadTimeout or ErrEOF. On
// failure the Connection is nil.
func DialTLS(network, address string, timeout time.Duration, config *tls.Config) (Connection, error) {
	start := time.Now()
	conn, err := DialConnection(network, address, timeout)
	if err != nil {
		return nil, err
	}
	var raw *connection
	switch c := conn.(type) {
	case *TCPConnection:
		raw = &c.connection
	case *UnixConnection:
		raw = &c.connection
	}
	cfg := &tls.Config{}
	if config != nil {
		cfg = config.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = serverName(address)
	}
	t := newTLSConn(raw, cfg, true)
	var left time.Duration
	if timeout > 0 {
		if left = timeout - time.Since(start); left <= 0 {
			left = time.Nanosecond // a past deadline: the handshake fails at its first wait
		}
	}
	if err = t.handshake(left); err != nil {
		_ = raw.Close()
		return nil, err
	}
	return t, nil
}

// serverName is the host crypto/tls.Dial would verify for address.
func serverName(address string) string {
	if host, _, err := net.SplitHostPort(address); err == nil {
		return host
	}
	if i := strings.LastIndex(address, ":"); i >= 0 {
		return address[:i]
	}
	return address
}

// NewTLSDialer returns a Dialer whose DialConnection and DialTimeout dial
// like DialTLS with config, so that whatever dials through a Dialer (a
// connection pool, for one) gets TLS connections.
func NewTLSDialer(config *tls.Config) Dialer { return &tlsDialer{config: config} }

type tlsDialer struct{ config *tls.Config }

// DialConnection dials like DialTLS.
func (d *tlsDialer) DialConnection(network, address string, timeout time.Duration) (Connection, error) {
	return DialTLS(network, address, timeout, d.config)
}

// DialTimeout is DialConnection returning a net.Conn (nil on failure).
func (d *tlsDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	c, err := DialTLS(network, address, timeout, d.config)
	if err != nil {
		return nil, err
	}
	return c, nil
}
