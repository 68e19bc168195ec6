//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"crypto/tls"
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Interoperability with the standard library's crypto/tls, both ways:
// docs/contract.md C18.1, C18.2, C18.3, C18.6.

// TestTLSServerStdClient: an EventLoop WithTLS serves crypto/tls clients
// of TLS 1.2 and 1.3, negotiates ALPN, and hands its handlers the TLS
// connection, after the handshake (C18.1, C18.3).
func TestTLSServerStdClient(t *testing.T) {
	checkLeaks(t)
	for _, tv := range tlsVersions {
		t.Run(tv.name, func(t *testing.T) {
			cfg := serverTLS(t, tv.v)
			cfg.NextProtos = []string{"h2", "http/1.1"}
			var mu sync.Mutex
			var seen tls.ConnectionState
			var prepared, connected Connection
			var closed = make(chan Connection, 1)
			s := startServer(t, "tcp", tlsEcho, WithTLS(cfg),
				WithOnPrepare(func(c Connection) context.Context {
					st, ok := TLSConnectionState(c)
					if !ok || st.HandshakeComplete {
						t.Errorf("OnPrepare: state ok=%v complete=%v", ok, st.HandshakeComplete)
					}
					_ = c.AddCloseCallback(func(c Connection) error { closed <- c; return nil })
					mu.Lock()
					prepared = c
					mu.Unlock()
					return nil
				}),
				WithOnConnect(func(ctx context.Context, c Connection) context.Context {
					st, ok := TLSConnectionState(c)
					mu.Lock()
					seen, connected = st, c
					mu.Unlock()
					if !ok || !st.HandshakeComplete {
						t.Errorf("OnConnect before the handshake completed")
					}
					return ctx
				}))
			ccfg := clientTLS(t, tv.v)
			ccfg.NextProtos = []string{"h2"}
			c := dialStdTLS(t, s.addr, ccfg)
			msg := []byte("hello over tls")
			_, err := c.Write(msg)
			require.NoError(t, err)
			got := make([]byte, len(msg))
			_, err = io.ReadFull(c, got)
			require.NoError(t, err)
			require.Equal(t, msg, got)
			st := c.ConnectionState()
			require.Equal(t, tv.v, st.Version)
			require.Equal(t, "h2", st.NegotiatedProtocol)
			mu.Lock()
			require.Equal(t, tv.v, seen.Version)
			require.Equal(t, "h2", seen.NegotiatedProtocol)
			require.Equal(t, st.CipherSuite, seen.CipherSuite)
			require.Same(t, prepared.(*tlsConn), connected.(*tlsConn))
			mu.Unlock()
			require.NoError(t, c.Close())
			cc := recv(t, closed, "the close callback")
			require.Same(t, prepared.(*tlsConn), cc.(*tlsConn), "close callbacks get the TLS connection")
		})
	}
}

// TestTLSDialStdServer: DialTLS and a TLS Dialer talk to a crypto/tls
// server of TLS 1.2 and 1.3, with ALPN, and TLSConnectionState reports the
// server's certificate (C18.2, C18.3).
func TestTLSDialStdServer(t *testing.T) {
	checkLeaks(t)
	for _, tv := range tlsVersions {
		t.Run(tv.name, func(t *testing.T) {
			scfg := serverTLS(t, tv.v)
			scfg.NextProtos = []string{"x-netpoll"}
			addr, _ := stdTLSEcho(t, scfg)
			ccfg := clientTLS(t, tv.v)
			ccfg.NextProtos = []string{"x-netpoll"}
			c := dialTLS(t, addr, ccfg)
			st, ok := TLSConnectionState(c)
			require.True(t, ok)
			require.True(t, st.HandshakeComplete)
			require.Equal(t, tv.v, st.Version)
			require.Equal(t, "x-netpoll", st.NegotiatedProtocol)
			require.NotEmpty(t, st.PeerCertificates)
			require.Equal(t, "localhost", st.PeerCertificates[0].Subject.CommonName)
			ping(t, c, "after DialTLS")
			ping(t, c, "a second time")

			for _, dial := range []func() (Connection, error){
				func() (Connection, error) { return NewTLSDialer(ccfg).DialConnection("tcp", addr, longWait) },
				func() (Connection, error) {
					nc, err := NewTLSDialer(ccfg).DialTimeout("tcp", addr, longWait)
					if err != nil {
						return nil, err
					}
					return nc.(Connection), nil
				},
			} {
				d, err := dial()
				require.NoError(t, err)
				ping(t, d, "through the Dialer")
				require.NoError(t, d.Close())
			}
		})
	}
	_, ok := TLSConnectionState(nil)
	require.False(t, ok)
}

// TestTLSClientCertificates: a server that requires client certificates
// verifies those of crypto/tls and DialTLS clients, shows them in
// TLSConnectionState, and refuses a client without one (C18.3, C18.5).
func TestTLSClientCertificates(t *testing.T) {
	checkLeaks(t)
	p := testCerts(t)
	for _, tv := range tlsVersions {
		t.Run(tv.name, func(t *testing.T) {
			cfg := serverTLS(t, tv.v)
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
			cfg.ClientCAs = p.pool
			peers := make(chan string, 4)
			connects := make(chan struct{}, 4)
			s := startServer(t, "tcp", tlsEcho, WithTLS(cfg),
				WithOnConnect(func(ctx context.Context, c Connection) context.Context {
					st, _ := TLSConnectionState(c)
					if len(st.PeerCertificates) > 0 {
						peers <- st.PeerCertificates[0].Subject.CommonName
					}
					connects <- struct{}{}
					return ctx
				}))
			ccfg := clientTLS(t, tv.v)
			ccfg.Certificates = []tls.Certificate{p.client}
			c := dialStdTLS(t, s.addr, ccfg)
			_, err := c.Write([]byte("x"))
			require.NoError(t, err)
			_, err = io.ReadFull(c, make([]byte, 1))
			require.NoError(t, err)
			require.Equal(t, "netpoll test client", recv(t, peers, "the client's certificate"))

			nc := dialTLS(t, s.addr, ccfg)
			ping(t, nc, "with a client certificate")
			require.Equal(t, "netpoll test client", recv(t, peers, "the client's certificate"))
			<-connects
			<-connects

			// Without a certificate: TLS 1.2 fails the handshake, TLS 1.3
			// at the client's first read (the server's alert comes after
			// the client's Finished).
			bad, err := DialTLS("tcp", s.addr, longWait, clientTLS(t, tv.v))
			if err == nil {
				_, err = bad.Write([]byte("x"))
				if err == nil {
					_, err = bad.Reader().Next(1)
				}
				_ = bad.Close()
			}
			require.Error(t, err)
			notYet(t, connects, shortWaitTLS, "OnConnect for a refused client")
		})
	}
}

// TestTLSSessionResumption: a second connection resumes the session of the
// first, with crypto/tls as the client of our server and with DialTLS as
// the client of crypto/tls's server (C18.3).
func TestTLSSessionResumption(t *testing.T) {
	checkLeaks(t)
	for _, tv := range tlsVersions {
		t.Run(tv.name+"/server", func(t *testing.T) {
			s := startTLSEcho(t, serverTLS(t, tv.v))
			ccfg := clientTLS(t, tv.v)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			for i, want := range []bool{false, true} {
				c := dialStdTLS(t, s.addr, ccfg)
				_, err := c.Write([]byte("r"))
				require.NoError(t, err)
				_, err = io.ReadFull(c, make([]byte, 1)) // TLS 1.3 tickets arrive after the handshake
				require.NoError(t, err)
				require.Equal(t, want, c.ConnectionState().DidResume, "connection %d", i)
				require.NoError(t, c.Close())
			}
		})
		t.Run(tv.name+"/client", func(t *testing.T) {
			addr, _ := stdTLSEcho(t, serverTLS(t, tv.v))
			ccfg := clientTLS(t, tv.v)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			for i, want := range []bool{false, true} {
				c := dialTLS(t, addr, ccfg)
				ping(t, c, "to take the ticket")
				st, _ := TLSConnectionState(c)
				require.Equal(t, want, st.DidResume, "connection %d", i)
				require.NoError(t, c.Close())
			}
		})
	}
}
