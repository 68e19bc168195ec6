//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Certificates and configurations for the TLS tests, made at run time
// (ecdsa P-256): one CA signing a server certificate for "localhost" and
// 127.0.0.1 and a client certificate, and a second CA nobody trusts.

type testPKI struct {
	pool       *x509.CertPool // trusts ca
	server     tls.Certificate
	client     tls.Certificate
	untrusted  tls.Certificate // a server certificate of another CA
	serverName string
}

var (
	pkiOnce sync.Once
	pki     *testPKI
)

func testCerts(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		p := &testPKI{serverName: "localhost"}
		caCert, caKey := makeCA(t, "netpoll test CA")
		p.pool = x509.NewCertPool()
		p.pool.AddCert(caCert)
		p.server = makeLeaf(t, caCert, caKey, "localhost", false)
		p.client = makeLeaf(t, caCert, caKey, "netpoll test client", true)
		otherCA, otherKey := makeCA(t, "untrusted CA")
		p.untrusted = makeLeaf(t, otherCA, otherKey, "localhost", false)
		pki = p
	})
	require.NotNil(t, pki)
	return pki
}

var serialMu sync.Mutex
var serial int64

func nextSerial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serial++
	return big.NewInt(serial)
}

func makeCA(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert, key
}

func makeLeaf(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, client bool) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{name}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// serverTLS is a server configuration with the test certificate, limited
// to version v (0: any).
func serverTLS(t testing.TB, v uint16) *tls.Config {
	p := testCerts(t)
	return &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: v, MaxVersion: v}
}

// clientTLS is a client configuration trusting the test CA, limited to
// version v (0: any).
func clientTLS(t testing.TB, v uint16) *tls.Config {
	p := testCerts(t)
	return &tls.Config{RootCAs: p.pool, ServerName: p.serverName, MinVersion: v, MaxVersion: v}
}

// tlsVersions are the versions every interop test runs with.
var tlsVersions = []struct {
	name string
	v    uint16
}{{"TLS12", tls.VersionTLS12}, {"TLS13", tls.VersionTLS13}}

// tlsEcho echoes every plaintext byte buffered, in one Flush per call.
func tlsEcho(_ context.Context, c Connection) error { return echoAll(c) }

// startTLSEcho serves a TLS echo EventLoop with config on tcp.
func startTLSEcho(t testing.TB, config *tls.Config, ops ...Option) *testServer {
	t.Helper()
	return startServer(t, "tcp", tlsEcho, append([]Option{WithTLS(config)}, ops...)...)
}

// stdTLSEcho serves a crypto/tls echo server with config until the test
// ends; conns receives each server-side connection.
func stdTLSEcho(t testing.TB, config *tls.Config) (addr string, conns <-chan *tls.Conn) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", config)
	require.NoError(t, err)
	ch := make(chan *tls.Conn, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			all = append(all, c)
			mu.Unlock()
			select {
			case ch <- c.(*tls.Conn):
			default:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range all {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), ch
}

// dialStdTLS dials addr with crypto/tls, closed at cleanup.
func dialStdTLS(t testing.TB, addr string, config *tls.Config) *tls.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: longWait}
	c, err := tls.DialWithDialer(d, "tcp", addr, config)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(longWait)))
	return c
}

// dialTLS dials addr with DialTLS, closed at cleanup.
func dialTLS(t testing.TB, addr string, config *tls.Config) Connection {
	t.Helper()
	c, err := DialTLS("tcp", addr, longWait, config)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.SetReadTimeout(longWait))
	return c
}

// tlsOf returns the implementation behind a TLS Connection.
func tlsOf(t testing.TB, c Connection) *tlsConn {
	t.Helper()
	tc, ok := c.(*tlsConn)
	require.True(t, ok, "%T is not a TLS connection", c)
	return tc
}

// shortWaitTLS is how long a test waits to be fairly sure something does
// not happen.
const shortWaitTLS = 200 * time.Millisecond

// splitConn is a net.Conn whose writes go out in two parts, at split
// bytes (when 0 < split < len), with a pause between them so that the
// reader sees the first part alone.
type splitConn struct {
	net.Conn
	mu    sync.Mutex
	split int
	pause time.Duration
}

func (c *splitConn) setSplit(n int) { c.mu.Lock(); c.split = n; c.mu.Unlock() }

func (c *splitConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	k, pause := c.split, c.pause
	c.mu.Unlock()
	if k <= 0 || k >= len(p) {
		return c.Conn.Write(p)
	}
	n, err := c.Conn.Write(p[:k])
	if err != nil {
		return n, err
	}
	time.Sleep(pause)
	m, err := c.Conn.Write(p[k:])
	return n + m, err
}
