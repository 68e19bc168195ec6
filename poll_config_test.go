//go:build darwin || freebsd || linux

package netpoll

import (
	"strconv"
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
