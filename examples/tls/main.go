//go:build darwin || freebsd || linux

// Command tls serves a TLS echo server on loopback with an EventLoop made
// WithTLS, dials it with DialTLS, sends a few messages, and prints what was
// negotiated and what came back. The server's certificate is made at start
// (self-signed, ecdsa P-256) and trusted by the client alone; nothing is
// written to disk.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/cloudwego/netpoll"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tls:", err)
		os.Exit(1)
	}
}

func run() error {
	cert, pool, err := selfSigned("localhost")
	if err != nil {
		return err
	}
	serverConfig := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"echo/1"},
	}

	// The server: every handler sees plaintext; Flush encrypts.
	loop, err := netpoll.NewEventLoop(echo,
		netpoll.WithTLS(serverConfig),
		netpoll.WithReadTimeout(5*time.Second), // also bounds each handshake
		netpoll.WithOnConnect(func(ctx context.Context, c netpoll.Connection) context.Context {
			st, _ := netpoll.TLSConnectionState(c)
			fmt.Printf("server: handshake with %s done: %s, %s, ALPN %q\n",
				c.RemoteAddr(), tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.NegotiatedProtocol)
			return ctx
		}))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- loop.Serve(ln) }()
	fmt.Println("server: serving TLS echo on", ln.Addr())

	// The client.
	clientConfig := &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"echo/1"}}
	conn, err := netpoll.DialTLS("tcp", ln.Addr().String(), 5*time.Second, clientConfig)
	if err != nil {
		return err
	}
	st, _ := netpoll.TLSConnectionState(conn)
	fmt.Printf("client: connected: %s, %s, ALPN %q, server certificate for %q\n",
		tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.NegotiatedProtocol,
		st.PeerCertificates[0].Subject.CommonName)
	_ = conn.SetReadTimeout(5 * time.Second)
	for _, msg := range []string{"hello", "nocopy reads of plaintext", "bye"} {
		w := conn.Writer()
		if _, err = w.WriteString(msg); err != nil {
			return err
		}
		if err = w.Flush(); err != nil {
			return err
		}
		got, err := conn.Reader().ReadString(len(msg))
		if err != nil {
			return err
		}
		fmt.Printf("client: sent %q, echoed %q\n", msg, got)
	}
	if err = conn.Close(); err != nil {
		return err
	}
	fmt.Println("client: closed (close_notify sent)")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err = loop.Shutdown(ctx); err != nil {
		return err
	}
	if err = <-served; err != nil {
		return err
	}
	fmt.Println("server: shut down")
	return nil
}

// echo writes back every plaintext byte buffered.
func echo(ctx context.Context, c netpoll.Connection) error {
	r, w := c.Reader(), c.Writer()
	p, err := r.Next(r.Len())
	if err != nil {
		return err
	}
	if _, err = w.WriteBinary(p); err != nil {
		return err
	}
	if err = w.Flush(); err != nil {
		return err
	}
	return r.Release()
}

// selfSigned makes a certificate for host, valid for an hour, and a pool
// that trusts it.
func selfSigned(host string) (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
