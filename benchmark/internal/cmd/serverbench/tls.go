package main

// The TLS scenarios (tls-echo, tls-idle): this repository's netpoll serving
// with WithTLS against Go net with crypto/tls, both on the standard
// library's TLS 1.3, with the echo protocol of the other scenarios inside.
// The reference has no TLS, so it is not in them; this file is not copied
// into netpoll_ref.go.

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
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
)

// modeTLSEcho is the echo mode over TLS.
const modeTLSEcho = "tls-echo"

// twoImpls are the implementations of the TLS scenarios.
var twoImpls = []string{"gonet", "ours"}

// benchTLSServerConfig is the servers' configuration: a self-signed ecdsa
// P-256 certificate made at start, TLS 1.3 only.
func benchTLSServerConfig() (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "serverbench"},
		DNSNames:     []string{"serverbench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates:     []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.CurveP256},
	}, nil
}

// benchTLSClientConfig is the client's: TLS 1.3 with P-256 key exchange
// (Go then picks TLS_AES_128_GCM_SHA256 on CPUs with AES instructions). It
// does not verify the throw-away certificate: what is measured is the
// record layer, not the verification.
func benchTLSClientConfig() *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.CurveP256},
	}
}

// startGoNetTLS serves echo with a goroutine per connection over
// crypto/tls: the Go net echo server on a tls.Listener.
func startGoNetTLS(accepted *atomic.Int64) (server, error) {
	cfg, err := benchTLSServerConfig()
	if err != nil {
		return server{}, err
	}
	return startGoNetOn(func(ln net.Listener) net.Listener { return tls.NewListener(ln, cfg) }, modeEcho, accepted)
}

// startNetpollOursTLS serves echo with this repository's netpoll, WithTLS.
func startNetpollOursTLS(accepted *atomic.Int64) (server, error) {
	cfg, err := benchTLSServerConfig()
	if err != nil {
		return server{}, err
	}
	ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		return server{}, err
	}
	evl, err := netpoll.NewEventLoop(func(_ context.Context, c netpoll.Connection) error {
		return serveEchoOurs(c.Reader(), c.Writer())
	}, netpoll.WithTLS(cfg), netpoll.WithOnPrepare(func(c netpoll.Connection) context.Context {
		accepted.Add(1)
		return context.Background()
	}))
	if err != nil {
		ln.Close()
		return server{}, err
	}
	go evl.Serve(ln)
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return evl.Shutdown(ctx)
	}
	return server{addr: ln.Addr().String(), stop: stop}, nil
}

// dialTCP dials the server under test: plain TCP, or with -tls a TLS
// client connection whose handshake is done.
var useTLS bool

func dialTCP(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil || !useTLS {
		return c, err
	}
	tc := tls.Client(c, benchTLSClientConfig())
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}
