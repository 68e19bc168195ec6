//go:build windows

package netpoll

// Configure does nothing on windows, which this package does not run on.
func Configure(config Config) (err error) { return nil }

// defaultPoll is the poller type FDOperator names. No poller runs on
// windows: an operator's is always nil, and its methods are never called.
type defaultPoll struct{}

func (*defaultPoll) Control(*FDOperator, PollEvent) error {
	return Exception(ErrUnsupported, "no poller")
}

func (*defaultPoll) Free(*FDOperator) {}
