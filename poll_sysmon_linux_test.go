//go:build linux

package netpoll

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The spinning-handler test runs its server in a child process with
// GOMAXPROCS=1 and nothing else in it, so that no other goroutine, timer or
// syscall of the test wakes the runtime's monitor for the poller.
const (
	spinServerEnv = "NETPOLL_SPIN_SERVER"
	spinFor       = 3 * time.Second
	// spinStallMax is far above the tens of milliseconds a preempted
	// handler costs, and far below spinFor, what an unpreempted one costs.
	spinStallMax = time.Second
)

// TestSpinningHandlerDoesNotStallOthers: docs/contract.md C12.6. One
// connection's handler spins for 3 s on the server's only P; another
// connection's echo must come back long before that, both after the server
// sat idle (its poller parked for long) and in the middle of steady traffic
// (its poller parks for short spells).
func TestSpinningHandlerDoesNotStallOthers(t *testing.T) {
	if os.Getenv(spinServerEnv) == "1" {
		runSpinServer(t)
		return
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*longWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), spinServerEnv+"=1", "GOMAXPROCS=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Wait() }()
	defer cancel()
	lines := bufio.NewScanner(out)
	addr := ""
	for addr == "" && lines.Scan() {
		if a, ok := strings.CutPrefix(lines.Text(), "spin server at "); ok {
			addr = a
		}
	}
	require.NotEmpty(t, addr, "the child printed no address")
	go func() { _, _ = io.Copy(io.Discard, out) }()

	spinner, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer spinner.Close()
	other, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer other.Close()

	echo := func() time.Duration {
		start := time.Now()
		require.NoError(t, other.SetDeadline(time.Now().Add(longWait)))
		_, err := other.Write([]byte("ping"))
		require.NoError(t, err)
		buf := make([]byte, 4)
		_, err = io.ReadFull(other, buf)
		require.NoError(t, err)
		require.Equal(t, "ping", string(buf))
		return time.Since(start)
	}
	spin := func() {
		_, err := spinner.Write([]byte("spin"))
		require.NoError(t, err)
		time.Sleep(100 * time.Millisecond) // the handler is spinning by now
	}
	awaitSpin := func() {
		require.NoError(t, spinner.SetDeadline(time.Now().Add(longWait)))
		buf := make([]byte, 4)
		_, err := io.ReadFull(spinner, buf)
		require.NoError(t, err)
	}

	echo()
	time.Sleep(300 * time.Millisecond) // the server idles: its poller parks for long
	spin()
	took := echo()
	require.Less(t, took, spinStallMax, "after idling, an echo waited %v for a spinning handler", took)
	awaitSpin()

	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
		echo() // steady traffic: the poller parks for short spells
	}
	spin()
	took = echo()
	require.Less(t, took, spinStallMax, "in steady traffic, an echo waited %v for a spinning handler", took)
	awaitSpin()

	_, err = spinner.Write([]byte("quit"))
	require.NoError(t, err)
	require.NoError(t, cmd.Wait())
}

// runSpinServer is the child: an echo server whose handler spins for
// spinFor on "spin" and stops the server on "quit".
func runSpinServer(t *testing.T) {
	ln, err := CreateListener("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	quit := make(chan struct{})
	evl, err := NewEventLoop(func(ctx context.Context, c Connection) error {
		r := c.Reader()
		msg, err := r.ReadString(r.Len())
		if err != nil {
			return err
		}
		switch msg {
		case "spin":
			for start := time.Now(); time.Since(start) < spinFor; {
			}
		case "quit":
			close(quit)
			return nil
		}
		_, _ = c.Writer().WriteString(msg)
		return c.Writer().Flush()
	})
	require.NoError(t, err)
	go func() { _ = evl.Serve(ln) }()
	os.Stdout.WriteString("spin server at " + ln.Addr().String() + "\n")
	<-quit
	require.NoError(t, evl.Shutdown(context.Background()))
}
