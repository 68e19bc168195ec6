//go:build windows

package netpoll

import "net"

// NewDialer returns nil: this package does not run on windows.
func NewDialer() Dialer { return nil }

// NewEventLoop returns (nil, nil): this package does not run on windows.
func NewEventLoop(onRequest OnRequest, ops ...Option) (EventLoop, error) { return nil, nil }

// ConvertListener returns (nil, nil): this package does not run on windows.
func ConvertListener(l net.Listener) (nl Listener, err error) { return nil, nil }

// CreateListener returns (nil, nil): this package does not run on windows.
func CreateListener(network, addr string) (l Listener, err error) { return nil, nil }
