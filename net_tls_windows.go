//go:build windows

package netpoll

import "crypto/tls"

// NewTLSDialer returns nil: this package does not run on windows.
func NewTLSDialer(config *tls.Config) Dialer { return nil }

// TLSConnectionState returns a zero state and false: this package has no
// connections on windows.
func TLSConnectionState(c Connection) (tls.ConnectionState, bool) {
	return tls.ConnectionState{}, false
}
