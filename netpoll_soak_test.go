//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math/rand"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Load and soak. The short forms run in every `go test`; the long forms run
// when NETPOLL_SOAK=1 (make soak). Every payload is a frame with a stream
// id, a sequence number and a CRC, and both ends count corrupted, lost,
// duplicated and reordered frames: all must be 0. At the end the fds, the
// goroutines and the buffer memory must be back where they started. Each
// test logs one summary line (visible with -v).

// suiteSoakEnv is the environment variable that turns a test binary into
// the client side of TestSoakConnections.
const suiteSoakEnv = "SUITE_SOAK_CLIENT_PLAN"

// suiteSoakPlan is what the clients do.
type suiteSoakPlan struct {
	Addrs   [][2]string // (network, address) of the servers; connection i uses Addrs[i%len]
	Conns   int
	Rounds  int
	Workers int
	Seed    int64
}

// suiteSoakResult is what the clients saw.
type suiteSoakResult struct {
	Opened, Sent, Frames, Bytes           int64
	Corrupted, Dup, Reordered, Unframed   int64
	Lost, Errors                          int64
	FirstError                            string
	BuffersPeak                           int64 // the client buffers' memory after the traffic
	OpenSeconds, TrafficSeconds, Duration float64
}

// suiteSoakSize draws a body size: mostly small, sometimes large.
func suiteSoakSize(rng *rand.Rand) int {
	switch r := rng.Intn(100); {
	case r < 70:
		return rng.Intn(1024)
	case r < 95:
		return 1024 + rng.Intn(15<<10)
	default:
		return 16<<10 + rng.Intn(112<<10)
	}
}

// suiteSoakClients opens plan.Conns connections at once, runs plan.Rounds
// rounds of random traffic over all of them, checks every echo, and closes
// them. At most plan.Workers goroutines do this, so the number of requests
// in flight (and of server tasks) stays bounded.
func suiteSoakClients(plan suiteSoakPlan) suiteSoakResult {
	var res suiteSoakResult
	var mu sync.Mutex
	var sent, opened, errs, lost atomic.Int64
	tally := &frameTally{}
	fail := func(err error) {
		errs.Add(1)
		mu.Lock()
		if res.FirstError == "" {
			res.FirstError = err.Error()
		}
		mu.Unlock()
	}
	conns := make([]Connection, plan.Conns)
	streams := make([]frameStream, plan.Conns)
	sentPer := make([]uint64, plan.Conns)
	start := time.Now()
	parallel := func(f func(w int, rng *rand.Rand)) {
		var wg sync.WaitGroup
		for w := 0; w < plan.Workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				f(w, rand.New(rand.NewSource(plan.Seed+int64(w))))
			}(w)
		}
		wg.Wait()
	}
	parallel(func(w int, _ *rand.Rand) {
		for i := w; i < plan.Conns; i += plan.Workers {
			a := plan.Addrs[i%len(plan.Addrs)]
			c, err := dialBacklogRetry(a[0], a[1], longWait) // 64 workers may fill a 128 backlog
			if err != nil {
				fail(err)
				continue
			}
			_ = c.SetReadTimeout(longWait)
			conns[i] = c
			opened.Add(1)
		}
	})
	res.OpenSeconds = time.Since(start).Seconds()
	traffic := time.Now()
	for round := 0; round < plan.Rounds; round++ {
		parallel(func(w int, rng *rand.Rand) {
			mine := make([]int, 0, plan.Conns/plan.Workers+1)
			for i := w; i < plan.Conns; i += plan.Workers {
				if conns[i] != nil {
					mine = append(mine, i)
				}
			}
			rng.Shuffle(len(mine), func(a, b int) { mine[a], mine[b] = mine[b], mine[a] })
			for _, i := range mine {
				c, id := conns[i], uint64(i)
				k := 1 + rng.Intn(3)
				for j := 0; j < k; j++ {
					seq := sentPer[i]
					if _, err := c.Write(newFrame(id, seq, frameBody(id, seq, suiteSoakSize(rng)))); err != nil {
						fail(err)
						break
					}
					sentPer[i]++
					sent.Add(1)
				}
				for j := 0; j < k; j++ {
					f, n, err := readFrame(c.Reader())
					if err != nil {
						fail(err)
						break
					}
					if f.id != id {
						tally.unframed.Add(1)
						continue
					}
					tally.see(&streams[i], f, n)
				}
			}
		})
	}
	res.TrafficSeconds = time.Since(traffic).Seconds()
	for i, c := range conns {
		if c == nil {
			continue
		}
		in, out := retained(connOf(c))
		res.BuffersPeak += int64(in + out)
		lost.Add(int64(sentPer[i] - streams[i].unique))
	}
	parallel(func(w int, _ *rand.Rand) {
		for i := w; i < plan.Conns; i += plan.Workers {
			if conns[i] != nil {
				conns[i].Close()
			}
		}
	})
	res.Opened, res.Sent, res.Errors, res.Lost = opened.Load(), sent.Load(), errs.Load(), lost.Load()
	res.Frames, res.Bytes = tally.frames.Load(), tally.bytes.Load()
	res.Corrupted, res.Dup, res.Reordered, res.Unframed = tally.corrupted.Load(), tally.dup.Load(), tally.reordered.Load(), tally.unframed.Load()
	res.Duration = time.Since(start).Seconds()
	return res
}

// suiteSoakChild runs the clients of plan in a child process (the same test
// binary), for when both ends do not fit in this process's fd limit.
func suiteSoakChild(t *testing.T, plan suiteSoakPlan) suiteSoakResult {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(plan)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestSoakConnections$", "-test.v", "-test.count=1", "-test.timeout=30m")
	cmd.Env = append(os.Environ(), suiteSoakEnv+"="+string(js))
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "SUITE-SOAK-RESULT "); ok {
			var res suiteSoakResult
			if jerr := json.Unmarshal([]byte(rest), &res); jerr != nil {
				t.Fatal(jerr)
			}
			if err != nil {
				t.Errorf("client process: %v", err)
			}
			return res
		}
	}
	t.Fatalf("client process: %v\n%s", err, out)
	return suiteSoakResult{}
}

// suiteRaiseNofile raises the soft fd limit to the hard one and returns it.
func suiteRaiseNofile(t testing.TB) int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
		_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	}
	return int(rl.Cur)
}

// suiteServerSide tracks the connections a soak server accepted.
type suiteServerSide struct {
	mu      sync.Mutex
	conns   []*connection
	streams sync.Map // Connection -> *frameStream
	closed  atomic.Int64
	tally   frameTally
	total   int // connections accepted, once forgotten
}

func (s *suiteServerSide) options() []Option {
	return []Option{WithOnPrepare(func(c Connection) context.Context {
		s.mu.Lock()
		s.conns = append(s.conns, connOf(c))
		s.mu.Unlock()
		_ = c.AddCloseCallback(func(Connection) error { s.closed.Add(1); return nil })
		return nil
	})}
}

func (s *suiteServerSide) onRequest() OnRequest {
	return echoFrames(&s.tally, func(c Connection) *frameStream {
		st, _ := s.streams.LoadOrStore(c, &frameStream{})
		return st.(*frameStream)
	})
}

// retained is the memory all tracked connections' buffers hold.
func (s *suiteServerSide) retained() int64 {
	s.mu.Lock()
	conns := append([]*connection(nil), s.conns...)
	s.mu.Unlock()
	var total int64
	for _, c := range conns {
		in, out := retained(c)
		total += int64(in + out)
	}
	return total
}

// forget drops the references to the connections (their count stays).
func (s *suiteServerSide) forget() {
	s.mu.Lock()
	s.total = len(s.conns)
	s.conns = nil
	s.mu.Unlock()
	s.streams.Range(func(k, _ any) bool { s.streams.Delete(k); return true })
}

func (s *suiteServerSide) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(len(s.conns), s.total)
}

// suiteSoakStart records the baseline of a soak test.
type suiteSoakStart struct {
	fds, goroutines int
	heap            uint64
	at              time.Time
}

func suiteSoakBaseline(t testing.TB) suiteSoakStart {
	Initialize()
	return suiteSoakStart{fds: fdCount(), goroutines: suiteGoroutines(), heap: liveHeap(), at: time.Now()}
}

func suiteGoroutines() int { return runtime.NumGoroutine() }

// end waits for the fds and goroutines to come back and returns the counts.
func (b suiteSoakStart) end(t testing.TB) (fds, goroutines int, heap uint64) {
	fds = waitFdsAtMost(t, b.fds)
	goroutines = waitGoroutinesAtMost(t, b.goroutines)
	return fds, goroutines, liveHeap()
}

// 10,000 connections (500 in the short form) open at once over TCP and unix
// sockets, with random traffic on all of them.
func TestSoakConnections(t *testing.T) {
	if js := os.Getenv(suiteSoakEnv); js != "" { // the client process
		var plan suiteSoakPlan
		if err := json.Unmarshal([]byte(js), &plan); err != nil {
			t.Fatal(err)
		}
		suiteRaiseNofile(t)
		res := suiteSoakClients(plan)
		out, _ := json.Marshal(res)
		fmt.Printf("SUITE-SOAK-RESULT %s\n", out)
		return
	}
	conns, rounds := 500, 3
	if soakMode() {
		conns, rounds = 10000, 4
	}
	limit := suiteRaiseNofile(t)
	base := suiteSoakBaseline(t)
	side := &suiteServerSide{}
	tcp := startServer(t, "tcp", side.onRequest(), side.options()...)
	uds := startServer(t, "unix", side.onRequest(), side.options()...)
	plan := suiteSoakPlan{
		Addrs:   [][2]string{{"tcp", tcp.addr}, {"unix", uds.addr}},
		Conns:   conns,
		Rounds:  rounds,
		Workers: 64,
		Seed:    time.Now().UnixNano(),
	}
	where := "in-process"
	var res suiteSoakResult
	var serverPeak int64
	if need := 2*conns + base.fds + 256; need <= limit {
		res = suiteSoakClients(plan)
	} else {
		// Both ends of every connection do not fit under the fd limit:
		// the clients run in a child process.
		where = "child process"
		res = suiteSoakChild(t, plan)
	}
	serverPeak = side.retained() // whatever the server still holds: the clients closed
	if !waitUntil(2*longWait, func() bool { return side.closed.Load() == int64(side.accepted()) }) {
		t.Errorf("close callbacks ran for %d of %d server connections", side.closed.Load(), side.accepted())
	}
	_ = tcp.stop()
	_ = uds.stop()
	after := side.retained()
	side.forget() // the test's own references would hold the heap up
	fds, gs, heap := base.end(t)
	tl := &side.tally
	srvLost := res.Sent - tl.frames.Load()
	t.Logf("soak scenario=connections clients=%s networks=tcp+unix conns=%d accepted=%d rounds=%d frames=%d "+
		"bytes_verified=%d corrupted=%d lost=%d dup=%d reordered=%d errors=%d fds=%d->%d goroutines=%d->%d "+
		"server buffers after shutdown %dB, client buffer peak %s, server buffers once the clients closed %dB, heap=%s->%s open=%.1fs traffic=%.1fs total=%.1fs",
		where, conns, side.accepted(), rounds, res.Frames+tl.frames.Load(),
		res.Bytes+tl.bytes.Load(), res.Corrupted+tl.corrupted.Load(), res.Lost+max(srvLost, 0),
		res.Dup+tl.dup.Load(), res.Reordered+tl.reordered.Load()+res.Unframed+tl.unframed.Load(), res.Errors,
		base.fds, fds, base.goroutines, gs, after, mib(res.BuffersPeak), serverPeak,
		mib(int64(base.heap)), mib(int64(heap)), res.OpenSeconds, res.TrafficSeconds, time.Since(base.at).Seconds())
	if res.Opened != int64(conns) || side.accepted() != conns {
		t.Errorf("opened %d, accepted %d, want %d (%s)", res.Opened, side.accepted(), conns, res.FirstError)
	}
	if res.Errors != 0 {
		t.Errorf("%d client errors, the first: %s", res.Errors, res.FirstError)
	}
	if bad := res.Corrupted + res.Dup + res.Reordered + res.Unframed + res.Lost + tl.bad() + max(srvLost, 0); bad != 0 {
		t.Errorf("bad frames: client %+v; server %v", res, tl)
	}
	if res.Frames != res.Sent || tl.frames.Load() != res.Sent {
		t.Errorf("sent %d frames, server got %d, echoes %d", res.Sent, tl.frames.Load(), res.Frames)
	}
	if after != 0 {
		t.Errorf("server buffers hold %d bytes after every connection closed", after)
	}
}

// 200,000 connect → request → close cycles (2,000 in the short form),
// alternating TCP and unix sockets; the server closes first in one cycle of
// three, the client in the others.
func TestSoakCycles(t *testing.T) {
	cycles, workers := 2000, 8
	if soakMode() {
		cycles, workers = 200000, 16
	}
	base := suiteSoakBaseline(t)
	seen := make([]atomic.Uint32, cycles)
	var srvBad, srvFrames, srvBytes, closed, accepted atomic.Int64
	var peak atomic.Int64
	onRequest := func(ctx context.Context, c Connection) error {
		r := c.Reader()
		if r.Len() < 4 {
			return nil
		}
		h, _ := r.Peek(4)
		n := int(binary.BigEndian.Uint32(h))
		if n < frameHdr || n > 1<<20 {
			srvBad.Add(1)
			return c.Close()
		}
		if r.Len() < n {
			return nil
		}
		p, err := r.Next(n)
		if err != nil {
			return err
		}
		f := parseFrame(p)
		srvFrames.Add(1)
		srvBytes.Add(int64(n))
		if !f.ok || f.id >= uint64(cycles) || f.seq != 0 {
			srvBad.Add(1)
		} else {
			seen[f.id].Add(1)
		}
		if in, out := retained(connOf(c)); int64(in+out) > peak.Load() {
			peak.Store(int64(in + out))
		}
		if _, err = c.Writer().WriteBinary(p); err == nil {
			err = c.Writer().Flush()
		}
		_ = r.Release()
		if f.id%3 == 0 {
			c.Close()
		}
		return err
	}
	opts := []Option{WithOnPrepare(func(c Connection) context.Context {
		accepted.Add(1)
		_ = c.AddCloseCallback(func(Connection) error { closed.Add(1); return nil })
		return nil
	})}
	tcp := startServer(t, "tcp", onRequest, opts...)
	uds := startServer(t, "unix", onRequest, opts...)
	servers := []*testServer{tcp, uds}
	var next atomic.Int64
	var clientBad, clientBytes, errs atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for {
				id := next.Add(1) - 1
				if id >= int64(cycles) {
					return
				}
				s := servers[id%2]
				c, err := DialConnection(s.network, s.addr, longWait)
				if err != nil {
					fail(err)
					continue
				}
				_ = c.SetReadTimeout(longWait)
				frame := newFrame(uint64(id), 0, frameBody(uint64(id), 0, rng.Intn(4096)))
				if _, err = c.Write(frame); err != nil {
					fail(err)
					c.Close()
					continue
				}
				f, n, err := readFrame(c.Reader())
				switch {
				case err != nil:
					fail(err)
				case !f.ok || f.id != uint64(id) || f.seq != 0 || n != len(frame):
					clientBad.Add(1)
				default:
					clientBytes.Add(int64(n))
				}
				c.Close()
			}
		}(w)
	}
	wg.Wait()
	if !waitUntil(2*longWait, func() bool { return closed.Load() == accepted.Load() }) {
		t.Errorf("close callbacks ran for %d of %d server connections", closed.Load(), accepted.Load())
	}
	_ = tcp.stop()
	_ = uds.stop()
	fds, gs, heap := base.end(t)
	var lost, dup int64
	for i := range seen {
		switch n := seen[i].Load(); {
		case n == 0:
			lost++
		case n > 1:
			dup += int64(n - 1)
		}
	}
	t.Logf("soak scenario=cycles networks=tcp+unix conns=%d cycles=%d bytes_verified=%d corrupted=%d lost=%d dup=%d "+
		"errors=%d fds=%d->%d goroutines=%d->%d server buffer peak per connection %dB heap=%s->%s total=%.1fs",
		accepted.Load(), cycles, clientBytes.Load()+srvBytes.Load(), clientBad.Load()+srvBad.Load(), lost, dup,
		errs.Load(), base.fds, fds, base.goroutines, gs, peak.Load(), mib(int64(base.heap)), mib(int64(heap)),
		time.Since(base.at).Seconds())
	if errs.Load() != 0 {
		t.Errorf("%d cycles failed, the first: %v", errs.Load(), firstErr.Load())
	}
	if lost+dup+clientBad.Load()+srvBad.Load() != 0 || srvFrames.Load() != int64(cycles) {
		t.Errorf("lost %d, duplicated %d, corrupted %d/%d, server frames %d of %d", lost, dup, clientBad.Load(), srvBad.Load(), srvFrames.Load(), cycles)
	}
}

// One message of 256 MiB (64 MiB in the short form) echoed end to end over
// TCP and unix sockets: every byte comes back intact; the buffer memory of
// both sides is reported.
func TestSoakHugeMessage(t *testing.T) {
	size := 64 << 20
	if soakMode() {
		size = 256 << 20
	}
	const bound = 40 << 20 // largest buffer memory allowed on either side
	for _, network := range testNetworks {
		t.Run(network, func(t *testing.T) {
			base := suiteSoakBaseline(t)
			var srvPeak atomic.Int64
			srv := startServer(t, network, func(ctx context.Context, c Connection) error {
				return echoChunks(c, 1<<20, func() {
					if in, out := retained(connOf(c)); int64(in+out) > srvPeak.Load() {
						srvPeak.Store(int64(in + out))
					}
				})
			})
			c := srv.dial(t)
			conn := connOf(c)
			_ = c.SetReadTimeout(longWait)
			// The client's reader samples its input, the writer its output
			// before each Flush (taking outMu during a Flush would stall the
			// reader behind it).
			var cliIn, cliOut atomic.Int64
			sample := func(peak *atomic.Int64, n int) {
				if int64(n) > peak.Load() {
					peak.Store(int64(n))
				}
			}
			sum := make(chan uint32, 1)
			go func() { // the writer: 1 MiB slices of randBlock, by reference
				h := crc32.NewIEEE()
				const piece = 1 << 20
				var hdr [8]byte
				binary.BigEndian.PutUint64(hdr[:], uint64(size))
				_, _ = c.Writer().WriteBinary(hdr[:])
				h.Write(hdr[:])
				for done, i := 0, 0; done < size; i++ {
					off := (i * 7919 * 64) % (len(randBlock) - piece)
					p := randBlock[off : off+min(piece, size-done)]
					h.Write(p)
					if _, err := c.Writer().WriteBinary(p); err != nil {
						t.Errorf("write: %v", err)
						break
					}
					done += len(p)
					if i%4 == 3 || done == size {
						sample(&cliOut, retainedOut(conn))
						if err := c.Writer().Flush(); err != nil {
							t.Errorf("flush: %v", err)
							break
						}
					}
				}
				sum <- h.Sum32()
			}()
			h := crc32.NewIEEE()
			total := 0
			start := time.Now()
			for total < size+8 {
				if _, err := c.Reader().Peek(1); err != nil {
					t.Fatalf("after %d bytes: %v", total, err)
				}
				p, err := c.Reader().Next(min(c.Reader().Len(), size+8-total, 1<<20))
				if err != nil {
					t.Fatal(err)
				}
				h.Write(p)
				total += len(p)
				sample(&cliIn, retainedIn(conn))
				_ = c.Reader().Release()
				if len(p) == 1<<20 {
					time.Sleep(5 * time.Millisecond) // a consumer slower than loopback: at most 200 MiB/s
				}
			}
			elapsed := time.Since(start)
			var want uint32
			select {
			case want = <-sum:
			case <-time.After(longWait):
				t.Fatal("the writer did not finish")
			}
			corrupted := 0
			if h.Sum32() != want {
				corrupted = 1
			}
			c.Close()
			_ = srv.stop()
			fds, gs, heap := base.end(t)
			t.Logf("soak scenario=huge-message network=%s conns=1 cycles=1 message=%s bytes_verified=%d corrupted=%d lost=%d "+
				"fds=%d->%d goroutines=%d->%d buffer peaks: client in %s out %s, server %s heap=%s->%s echo=%.1fs",
				network, mib(int64(size)), total, corrupted, size+8-total, base.fds, fds, base.goroutines, gs,
				mib(cliIn.Load()), mib(cliOut.Load()), mib(srvPeak.Load()), mib(int64(base.heap)), mib(int64(heap)), elapsed.Seconds())
			if corrupted != 0 {
				t.Fatal("the echoed message differs")
			}
			if total != size+8 {
				t.Fatalf("got %d bytes, want %d", total, size+8)
			}
			if canPauseInput && max(cliIn.Load(), cliOut.Load(), srvPeak.Load()) > bound {
				t.Errorf("buffer memory above %s: client in %s out %s, server %s", mib(bound),
					mib(cliIn.Load()), mib(cliOut.Load()), mib(srvPeak.Load()))
			}
		})
	}
}
