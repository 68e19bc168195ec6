//go:build windows

package netpoll

// Configure does nothing on windows, which this package does not run on.
func Configure(config Config) (err error) { return nil }
