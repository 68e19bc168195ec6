//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The stats are process-wide, so these tests compare deltas and must not run
// in parallel with others that make connections (no test of this package
// calls t.Parallel but the LinkBuffer ones, which make none).

// quietStats waits until the counters stop moving (what earlier tests left
// closing has finished) and returns them.
func quietStats(t *testing.T) Stats {
	t.Helper()
	var a, b Stats
	ReadStats(&a)
	eventually(t, func() bool {
		time.Sleep(50 * time.Millisecond)
		ReadStats(&b)
		same := a == b
		a = b
		return same
	}, "the stats to settle")
	return a
}

// statsDelta is after - before, field by field (Pollers is after's).
func statsDelta(before, after Stats) Stats {
	return Stats{
		Pollers:        after.Pollers,
		ConnsOpen:      after.ConnsOpen - before.ConnsOpen,
		ConnsAccepted:  after.ConnsAccepted - before.ConnsAccepted,
		ConnsDialed:    after.ConnsDialed - before.ConnsDialed,
		ConnsClosed:    after.ConnsClosed - before.ConnsClosed,
		BytesRead:      after.BytesRead - before.BytesRead,
		BytesWritten:   after.BytesWritten - before.BytesWritten,
		InputBuffered:  after.InputBuffered - before.InputBuffered,
		OutputBuffered: after.OutputBuffered - before.OutputBuffered,
		PausedConns:    after.PausedConns - before.PausedConns,
		IdleClosed:     after.IdleClosed - before.IdleClosed,
		HandlerPanics:  after.HandlerPanics - before.HandlerPanics,
		AcceptErrors:   after.AcceptErrors - before.AcceptErrors,
	}
}

// wantDelta waits until the stats moved from before by exactly want.
func wantDelta(t *testing.T, before Stats, want Stats, what string) {
	t.Helper()
	var got Stats
	if !waitUntil(longWait, func() bool {
		var now Stats
		ReadStats(&now)
		got = statsDelta(before, now)
		want.Pollers = got.Pollers
		return got == want
	}) {
		t.Fatalf("%s: stats moved by\n%+v\nwant\n%+v", what, got, want)
	}
}

// docs/contract.md C17.4, C17.5: a scripted workload moves every counter
// by exactly what it did: k connections accepted and echoed, m dialed that
// send, receive and leave bytes unread, then all closed.
func TestStatsScriptedWorkload(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, network string) {
		checkLeaks(t)
		srv := startServer(t, network, func(ctx context.Context, c Connection) error {
			return echoNext(c, c.Reader().Len(), nil)
		})
		peerLn := listenStd(t, network)
		before := quietStats(t)
		require.Greater(t, before.Pollers, 0)

		// k accepted connections, each echoing sizes[i] bytes.
		sizes := []int{1, 100, 70000}
		var echoed uint64
		clients := make([]net.Conn, len(sizes))
		for i, n := range sizes {
			clients[i] = srv.dialStd(t)
			msg := bigBytes(n, uint64(i))
			_, err := clients[i].Write(msg)
			require.NoError(t, err)
			require.Equal(t, msg, readFull(t, clients[i], n))
			echoed += uint64(n)
		}
		wantDelta(t, before, Stats{
			ConnsOpen: int64(len(sizes)), ConnsAccepted: uint64(len(sizes)),
			BytesRead: echoed, BytesWritten: echoed,
		}, "after the echoes")

		// m dialed connections: each sends out[j], gets back in[j], of which
		// it reads all but unread[j].
		out, in, unread := []int{10, 5000}, []int{20, 9000}, []int{0, 7}
		dialed := make([]npConn, len(out))
		var sent, got uint64
		var left int64
		for j := range out {
			accepted := async(func() net.Conn { c, _ := peerLn.Accept(); return c })
			dialed[j] = dialNP(t, network, peerLn.Addr().String())
			peer := recv(t, accepted, "the accept")
			require.NotNil(t, peer)
			t.Cleanup(func() { _ = peer.Close() })
			_, err := dialed[j].WriteBinary(bigBytes(out[j], 7))
			require.NoError(t, err)
			require.NoError(t, dialed[j].Flush())
			readFull(t, peer, out[j])
			_, err = peer.Write(bigBytes(in[j], 9))
			require.NoError(t, err)
			_, err = dialed[j].Next(in[j] - unread[j])
			require.NoError(t, err)
			require.NoError(t, dialed[j].Release())
			eventually(t, func() bool { return dialed[j].Len() == unread[j] }, "the unread bytes")
			sent += uint64(out[j])
			got += uint64(in[j])
			left += int64(unread[j])
		}
		wantDelta(t, before, Stats{
			ConnsOpen: int64(len(sizes) + len(out)), ConnsAccepted: uint64(len(sizes)), ConnsDialed: uint64(len(out)),
			BytesRead: echoed + got, BytesWritten: echoed + sent, InputBuffered: left,
		}, "after the dialed connections' exchange")

		// Everything closes: the server's by their peers, the dialed ones by Close.
		for _, c := range clients {
			require.NoError(t, c.Close())
		}
		for _, c := range dialed {
			require.NoError(t, c.Close())
		}
		eventually(t, func() bool { return srv.conns() == 0 }, "the server's connections to close")
		n := len(sizes) + len(out)
		wantDelta(t, before, Stats{
			ConnsAccepted: uint64(len(sizes)), ConnsDialed: uint64(len(out)), ConnsClosed: uint64(n),
			BytesRead: echoed + got, BytesWritten: echoed + sent,
		}, "after the closes")
	})
}

// docs/contract.md C17.5: OutputBuffered holds what a Flush waits to send,
// PausedConns a connection whose reader is 8 MiB behind, and both go back
// to where they were at close, with the input the closed connection held.
func TestStatsBufferedAndPaused(t *testing.T) {
	checkLeaks(t)
	c, peer := peerPair(t, "tcp")
	shrinkReadBuffer(peer)
	before := quietStats(t)
	flushed := make(chan error, 1)
	go func() {
		if _, err := c.WriteBinary(bigBytes(16<<20, 3)); err != nil {
			flushed <- err
			return
		}
		flushed <- c.Flush()
	}()
	blockedInFlush(t, c)
	s := readNow()
	require.Greater(t, s.OutputBuffered-before.OutputBuffered, int64(0), "a Flush waits on a full socket")
	require.NoError(t, c.Close())
	require.Error(t, recv(t, flushed, "the Flush"))
	statsSettle(t, before, "the close of the connection with a waiting Flush", func(d Stats) bool {
		return d.OutputBuffered == 0 && d.ConnsClosed == 1 && d.ConnsOpen == -1 && d.BytesWritten > 0
	})

	if !canPauseInput {
		return
	}
	before = quietStats(t)
	r, w := peerPair(t, "tcp")
	go func() { _, _ = io.Copy(w, zeroSource{}) }()
	statsSettle(t, before, "the reader's input to pause", func(d Stats) bool {
		return d.PausedConns == 1 && d.InputBuffered >= inputPauseAbove
	})
	require.NoError(t, r.Close())
	_ = w.Close()
	statsSettle(t, before, "the close of the paused connection", func(d Stats) bool {
		return d.PausedConns == 0 && d.InputBuffered == 0 && d.ConnsDialed == 1 && d.ConnsClosed == 1 && d.ConnsOpen == 0
	})
}

// statsSettle waits until the stats' move from before satisfies ok.
func statsSettle(t *testing.T, before Stats, what string, ok func(d Stats) bool) {
	t.Helper()
	var d Stats
	if !waitUntil(longWait, func() bool { d = statsDelta(before, readNow()); return ok(d) }) {
		t.Fatalf("waiting for %s: stats moved by %+v", what, d)
	}
}

// docs/contract.md C17.5: a handler panic is counted once.
func TestStatsHandlerPanics(t *testing.T) {
	checkLeaks(t)
	panics := recoveringRunner(t)
	srv := startServer(t, "tcp", func(ctx context.Context, c Connection) error { panic("boom") })
	before := quietStats(t)
	peer := srv.dialStd(t)
	_, err := peer.Write([]byte("x"))
	require.NoError(t, err)
	require.Equal(t, "boom", fmt.Sprint(recv(t, panics, "the panic")))
	expectEOF(t, peer)
	eventually(t, func() bool { return srv.conns() == 0 }, "the server to forget the connection")
	wantDelta(t, before, Stats{ConnsAccepted: 1, ConnsClosed: 1, BytesRead: 1, HandlerPanics: 1}, "after the panic")
}

// readNow returns the stats now.
func readNow() Stats {
	var s Stats
	ReadStats(&s)
	return s
}

// docs/contract.md C17.6: ReadStats allocates nothing.
func TestReadStatsAllocs(t *testing.T) {
	Initialize()
	var s Stats
	require.Zero(t, testing.AllocsPerRun(100, func() { ReadStats(&s) }))
	require.Greater(t, s.Pollers, 0)
}

// zeroSource is an endless source of zeros.
type zeroSource struct{}

func (zeroSource) Read(p []byte) (int, error) { clear(p); return len(p), nil }
