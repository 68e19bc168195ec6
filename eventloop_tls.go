//go:build darwin || freebsd || linux

package netpoll

import (
	"crypto/tls"
	"errors"
	"sync"
)

// The EventLoop's side of TLS (WithTLS): each accepted connection carries
// ciphertext and is handed to the user wrapped in a tlsConn, whose
// handshake is the raw connection's OnConnect (see connection_tls.go).

var (
	errTLSNilConfig = errors.New("netpoll: WithTLS needs a non-nil *tls.Config")
	errTLSNoCert    = errors.New("netpoll: WithTLS needs a tls.Config with Certificates, GetCertificate or GetConfigForClient")
)

// checkTLSOptions validates a WithTLS option, for NewEventLoop.
func checkTLSOptions(o *options) error {
	if !o.tlsSet {
		return nil
	}
	c := o.tlsConfig
	switch {
	case c == nil:
		return errTLSNilConfig
	case len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil:
		return errTLSNoCert
	}
	return nil
}

// configureTLS installs the TLS handlers on c, an accepted connection, and
// returns the TLS connection the user's handlers get. The handlers' turn
// (busy) is taken until the handshake and OnConnect are done.
func (s *server) configureTLS(c *connection, config *tls.Config) Connection {
	t := newTLSConn(c, config, false)
	t.busy.Store(true)
	t.onConnect = s.opts.onConnect
	if h := s.opts.onDisconnect; h != nil {
		t.onDisconnect.Store(&h)
	}
	if s.onRequest != nil {
		t.onRequest.Store(s.onRequest)
		t.rawRequest.Store(true)
		h := OnRequest(t.serveRaw)
		c.onRequest.Store(&h)
	}
	hc := OnConnect(t.serverConnect)
	c.onConnect.Store(&hc)
	hd := OnDisconnect(t.serverDisconnect)
	c.onDisconnect.Store(&hd)
	tlsServed.Store(c, t)
	return t
}

// tlsServed maps the accepted connections that carry TLS to their TLS
// connection, until they are finalized, for Shutdown (tlsBusy).
var tlsServed sync.Map // *connection → *tlsConn

// tlsBusy reports a connection served WithTLS that Shutdown must leave
// open, as one whose task runs or whose buffers are not empty: its TLS
// connection's OnRequest runs outside the raw connection's task, or it is
// open with plaintext unread or unsent.
func (s *server) tlsBusy(c *connection) bool {
	if !s.opts.tlsSet {
		return false
	}
	v, ok := tlsServed.Load(c)
	if !ok {
		return false
	}
	t := v.(*tlsConn)
	return t.busy.Load() || c.isOpen() && t.pending()
}
