//go:build darwin || freebsd || linux

package netpoll

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// SetNumLoops with a count below 1 fails with exactly "set invalid
// numLoops[n]", n being the count given, and changes nothing; a count over
// the platform's bound gives the same text (and, where the bound is a real
// limit, the reason), and Configure reports it for PollerNum.
func TestSetNumLoopsInvalid(t *testing.T) {
	loops := pollmanager.loops.Load()
	t.Cleanup(func() { _ = SetNumLoops(int(loops)) })
	for _, n := range []int{0, -3, -1 << 40} {
		err := SetNumLoops(n)
		require.Error(t, err, "SetNumLoops(%d)", n)
		require.Equal(t, "set invalid numLoops["+strconv.Itoa(n)+"]", err.Error())
		require.Equal(t, loops, pollmanager.loops.Load(), "SetNumLoops(%d) changed the count", n)
	}
	over := "set invalid numLoops[" + strconv.Itoa(maxNumLoops+1) + "]" + maxNumLoopsReason
	err := SetNumLoops(maxNumLoops + 1)
	require.Error(t, err)
	require.Equal(t, over, err.Error())
	err = Configure(Config{PollerNum: maxNumLoops + 1, LoadBalance: -1})
	require.Error(t, err)
	require.Equal(t, over, err.Error())
	require.Equal(t, loops, pollmanager.loops.Load())
}

// docs/contract.md C12.2–C12.5: package configuration misused: invalid
// values, nil values, and changes while connections are live. Zero and
// negative values and unknown balancers are ignored (nil), SetNumLoops
// below 1 fails, nil logger output is ignored, a nil Runner restores the
// default. The live connection and a new one still work, and the previous
// configuration comes back.
func TestConfigureMisuse(t *testing.T) {
	loops := int(pollmanager.loops.Load())
	_ = SetNumLoops(2) // start the pollers this test asks for before the baseline
	Initialize()
	checkLeaks(t)
	defer func() {
		_ = SetNumLoops(loops)
		SetRunner(nil)
		SetLoggerOutput(os.Stderr)
		_ = Configure(Config{BufferSize: defaultReadSize})
	}()
	ln := stdEcho(t, "tcp")
	live := dialEcho(t, ln)
	cases := []argCase{
		{"Configure(zero)", false, func() error { return Configure(Config{}) }},
		{"Configure(negatives)", false, func() error {
			return Configure(Config{PollerNum: -1, BufferSize: -1, LoadBalance: -1})
		}},
		{"Configure(unknown LoadBalance)", false, func() error { return Configure(Config{LoadBalance: 99}) }},
		{"Configure after start", false, func() error { return Configure(Config{PollerNum: 2, BufferSize: 4096}) }},
		{"SetNumLoops(-1)", true, func() error { return SetNumLoops(-1) }},
		{"SetLoadBalance(99)", false, func() error { return SetLoadBalance(99) }},
		{"SetLoadBalance(-1)", false, func() error { return SetLoadBalance(-1) }},
		{"SetLoggerOutput(nil)", false, func() error { // ignored: the output stays
			var out lockedBuffer
			SetLoggerOutput(&out)
			SetLoggerOutput(nil)
			logf("after SetLoggerOutput(nil)")
			line := out.String()
			return check(strings.HasPrefix(line, "NETPOLL: ") && strings.Contains(line, "after SetLoggerOutput(nil)"), "SetLoggerOutput(nil) changed the log output")
		}},
		{"SetRunner(nil)", false, func() error { // restores the default Runner
			_ = DisableGopool()
			SetRunner(nil)
			return check(runnerIsDefault(), "SetRunner(nil) did not restore the default Runner")
		}},
		{"DisableGopool", false, func() error { return DisableGopool() }},
		{"Initialize twice", false, func() error { // the pollers are running: nothing starts
			n := pollerGoroutines()
			Initialize()
			Initialize()
			return check(pollerGoroutines() == n, fmt.Sprintf("Initialize started pollers: %d, then %d", n, pollerGoroutines()))
		}},
	}
	runArgCases(t, cases)
	SetRunner(nil)
	_ = SetLoadBalance(RoundRobin)
	// The live connection and a new one still work.
	for _, c := range []npConn{live, dialEcho(t, ln)} {
		ping(t, c, "after Configure")
	}
}

// docs/contract.md C12.4, C12.5: a huge configured BufferSize must not
// crash the poller at the first read (child process: the failure mode is a
// fatal out-of-memory).
func TestConfigureHugeBufferSize(t *testing.T) {
	inChild(t, "NETPOLL_HUGEBUF_CHILD", "HUGEBUF-CHILD-OK", func(t *testing.T) {
		checkLeaks(t)
		if err := Configure(Config{BufferSize: 1 << 40}); err != nil {
			t.Fatal(err)
		}
		ping(t, dialEcho(t, stdEcho(t, "tcp")), "with a huge BufferSize")
		os.Stdout.WriteString("HUGEBUF-CHILD-OK\n")
	})
}
