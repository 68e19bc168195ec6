//go:build linux

package netpoll

// maxNumLoops bounds the number of pollers (see poll_manager.go). A Linux
// poller parks in Go's netpoller and holds no thread while it waits.
const maxNumLoops = 1 << 16

// maxNumLoopsReason completes the error of a count over maxNumLoops.
const maxNumLoopsReason = ""
