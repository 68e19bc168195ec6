//go:build darwin || freebsd || linux

package netpoll_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"

	"github.com/cloudwego/netpoll"
)

// exampleCert makes a self-signed certificate for "localhost" and a pool
// that trusts it.
func exampleCert() (tls.Certificate, *x509.CertPool) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// A TLS echo server: the handler reads plaintext from the Reader and its
// Flush encrypts, exactly as on a plain connection.
func ExampleWithTLS() {
	cert, pool := exampleCert()
	loop, _ := netpoll.NewEventLoop(func(ctx context.Context, c netpoll.Connection) error {
		r, w := c.Reader(), c.Writer()
		p, _ := r.Next(r.Len())
		_, _ = w.WriteBinary(p)
		_ = w.Flush()
		return r.Release()
	}, netpoll.WithTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = loop.Serve(ln) }()
	defer func() { _ = loop.Shutdown(context.Background()) }()

	// Any TLS client will do; here, crypto/tls's own.
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte("hello"))
	buf := make([]byte, 5)
	_, _ = io.ReadFull(c, buf)
	fmt.Println(string(buf), tls.VersionName(c.ConnectionState().Version))
	// Output: hello TLS 1.3
}

// A TLS client over the nocopy connection; TLSConnectionState tells what
// the handshake negotiated.
func ExampleDialTLS() {
	cert, pool := exampleCert()
	ln, _ := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"demo"}})
	defer ln.Close()
	go func() { // a crypto/tls server that answers one message
		s, err := ln.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		buf := make([]byte, 4)
		n, _ := s.Read(buf)
		_, _ = s.Write(buf[:n])
	}()

	conn, err := netpoll.DialTLS("tcp", ln.Addr().String(), 5*time.Second,
		&tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"demo"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	st, _ := netpoll.TLSConnectionState(conn)
	fmt.Println(tls.VersionName(st.Version), st.NegotiatedProtocol)

	_, _ = conn.Writer().WriteString("ping")
	_ = conn.Writer().Flush()
	s, _ := conn.Reader().ReadString(4)
	fmt.Println(s)
	// Output:
	// TLS 1.3 demo
	// ping
}
