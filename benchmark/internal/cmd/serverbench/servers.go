package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Server modes: how requests are answered.
const (
	// modeEcho answers each request in order on the goroutine that read it.
	modeEcho = "echo"
	// modeMux handles every request on a goroutine of its own and sends the
	// responses as they are ready, batched, out of order.
	modeMux = "mux"
)

// A server listens on a loopback port until stop is called.
type server struct {
	addr string
	stop func() error
}

// servers maps an implementation name to the function that starts its
// server in a mode, counting accepted connections in accepted.
var servers = map[string]func(mode string, accepted *atomic.Int64) (server, error){
	"gonet": startGoNet,
	"ref":   startNetpollRef,
	"ours":  startNetpollOurs,
	"floor": startFloor,
}

// startGoNet serves with a goroutine per connection, as idiomatic Go does.
// Echo: buffered reads, each response built in a per-connection buffer and
// written with one Write. Mux: see serveGoNetMux.
func startGoNet(mode string, accepted *atomic.Int64) (server, error) {
	if mode == modeTLSEcho {
		return startGoNetTLS(accepted)
	}
	return startGoNetOn(nil, mode, accepted)
}

// startGoNetOn is startGoNet on the loopback listener wrap returns (the
// listener itself when wrap is nil).
func startGoNetOn(wrap func(net.Listener) net.Listener, mode string, accepted *atomic.Int64) (server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return server{}, err
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	serve := serveGoNetEcho
	if mode == modeMux {
		serve = serveGoNetMux
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by stop
			}
			accepted.Add(1)
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serve(c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
		}
	}()
	stop := func() error {
		err := ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		return err
	}
	return server{ln.Addr().String(), stop}, nil
}

func serveGoNetEcho(c net.Conn) {
	br := bufio.NewReader(c)
	var h [headerLen]byte
	var body, out []byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return
		}
		n, err := bodyLen(h[:])
		if err != nil {
			return
		}
		if cap(body) < n {
			body = make([]byte, n)
			out = make([]byte, responseLen(n-idLen))
		}
		body, out = body[:n], out[:responseLen(n-idLen)]
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		handle(out, body)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// bufPool recycles the request and response buffers of the Go net mux server.
var bufPool = sync.Pool{New: func() any { return new([]byte) }}

func getBuf(n int) *[]byte {
	b := bufPool.Get().(*[]byte)
	if cap(*b) < n {
		*b = make([]byte, n)
	}
	*b = (*b)[:n]
	return b
}

// serveGoNetMux is the Go net counterpart of the netpoll mux servers: the
// connection's goroutine reads requests and starts a goroutine per request,
// which builds the response and hands it to the connection's writer
// goroutine; the writer batches what is ready in a bufio.Writer and flushes
// when no more is waiting.
func serveGoNetMux(c net.Conn) {
	responses := make(chan *[]byte, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bw := bufio.NewWriterSize(c, 64<<10)
		failed := false
		for b := range responses {
			if !failed {
				_, err := bw.Write(*b)
				failed = err != nil
			}
			bufPool.Put(b)
			if len(responses) == 0 && !failed {
				failed = bw.Flush() != nil
			}
		}
	}()
	var inflight sync.WaitGroup
	defer func() {
		// Let the request goroutines finish, then the writer.
		inflight.Wait()
		close(responses)
		<-done
	}()
	br := bufio.NewReaderSize(c, 64<<10)
	var h [headerLen]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return
		}
		n, err := bodyLen(h[:])
		if err != nil {
			return
		}
		body := getBuf(n)
		if _, err := io.ReadFull(br, *body); err != nil {
			bufPool.Put(body)
			return
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			out := getBuf(responseLen(n - idLen))
			handle(*out, *body)
			bufPool.Put(body)
			responses <- out
		}()
	}
}

// runServe is the server process: "serve IMPL MODE [BURN]", BURN the
// iterations of burn its handler runs per request. It prints "listening
// ADDR", then answers each "mark" line on its standard input with "mark
// goroutines=G" and each "stats" line with "stats goroutines=G accepted=N
// sched=S schedp50=A schedp99=B" (S: goroutines scheduled since the last
// mark, A and B: how long they had waited, µs), and stops when its standard
// input closes. "heapprofile PATH" writes a heap profile (after a GC).
// With $SERVERBENCH_CPUPROFILE set to a directory it writes a CPU profile
// there, named after the implementation, the mode and the process id (and
// so does the client in the pool mode: client-IMPL-PID.pprof). With
// $SERVERBENCH_BLOCKER set to a duration D, a goroutine of the server blocks
// in a syscall for D every 20 ms (see startBlocker).
func runServe(args []string) error {
	if len(args) < 2 || len(args) > 3 || servers[args[0]] == nil || (args[1] != modeEcho && args[1] != modeMux && args[1] != modeTLSEcho && args[1] != modeIdleClose) ||
		(args[1] == modeTLSEcho && args[0] != "gonet" && args[0] != "ours") || (args[1] == modeIdleClose && args[0] != "ours") {
		return fmt.Errorf("usage: serve gonet|ref|ours|floor echo|mux [burn-iterations], or serve gonet|ours tls-echo, or serve ours echo-idleclose")
	}
	if len(args) == 3 {
		n, err := strconv.Atoi(args[2])
		if err != nil || n < 0 {
			return fmt.Errorf("serve: burn iterations %q", args[2])
		}
		burnIters = n
	}
	raiseFileLimit()
	if dir := os.Getenv("SERVERBENCH_CPUPROFILE"); dir != "" {
		stop, err := startCPUProfile(dir, args[0]+"-"+args[1])
		if err != nil {
			return err
		}
		defer stop()
	}
	if err := startBlocker(os.Getenv("SERVERBENCH_BLOCKER")); err != nil {
		return err
	}
	var accepted atomic.Int64
	start := servers[args[0]]
	if args[0] == "ours" && args[1] == modeTLSEcho {
		start = func(_ string, accepted *atomic.Int64) (server, error) { return startNetpollOursTLS(accepted) }
	}
	if args[0] == "ours" && args[1] == modeIdleClose {
		start = func(_ string, accepted *atomic.Int64) (server, error) { return startNetpollOursIdleClose(accepted) }
	}
	s, err := start(args[1], &accepted)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", s.addr)
	// The parent closes our stdin to stop us; if it dies, so do we.
	sc := bufio.NewScanner(pollableStdin())
	var mark schedSample
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if path, ok := strings.CutPrefix(line, "heapprofile "); ok {
			// A diagnostic: what the live heap holds, after a GC.
			err := writeHeapProfile(path)
			fmt.Printf("heapprofile %v\n", err)
			continue
		}
		switch line {
		case "mark":
			mark = readSched()
			fmt.Printf("mark goroutines=%d\n", runtime.NumGoroutine())
		case "stats":
			n, p50, p99 := readSched().since(mark)
			fmt.Printf("stats goroutines=%d accepted=%d sched=%d schedp50=%g schedp99=%g\n",
				runtime.NumGoroutine(), accepted.Load(), n, p50, p99)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return s.stop()
}

// schedSample is the runtime's histogram of the time goroutines spent
// runnable before they ran. The runtime records one scheduling in
// schedSampling (every 8th transition of a goroutine to running, since Go
// 1.17), so its count times schedSampling estimates the schedulings.
type schedSample struct {
	counts  []uint64
	buckets []float64
}

const schedSampling = 8

func readSched() schedSample {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return schedSample{}
	}
	h := s[0].Value.Float64Histogram()
	return schedSample{append([]uint64(nil), h.Counts...), h.Buckets}
}

// since returns about how many times goroutines were scheduled since mark,
// and the median and 99th percentile of their wait, in µs (bucket upper
// bounds).
func (s schedSample) since(mark schedSample) (n uint64, p50, p99 float64) {
	d := make([]uint64, len(s.counts))
	for i, c := range s.counts {
		d[i] = c
		if i < len(mark.counts) {
			d[i] -= mark.counts[i]
		}
		n += d[i]
	}
	q := func(q float64) float64 {
		var cum uint64
		for i, c := range d {
			cum += c
			if float64(cum) >= q*float64(n) && c > 0 {
				b := s.buckets[i+1]
				if math.IsInf(b, 1) {
					b = s.buckets[i]
				}
				return b * 1e6
			}
		}
		return 0
	}
	if n == 0 {
		return 0, 0, 0
	}
	return n * schedSampling, q(0.5), q(0.99)
}

// raiseFileLimit raises the soft limit on open files to the hard limit (Go
// does so at start-up too, since 1.19; this makes it explicit).
func raiseFileLimit() {
	var l unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		unix.Setrlimit(unix.RLIMIT_NOFILE, &l)
	}
}

func writeHeapProfile(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func startCPUProfile(dir, name string) (stop func(), err error) {
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", name, os.Getpid())))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// pollableStdin returns standard input switched to non-blocking mode, so
// that Go's netpoller waits for its lines. Read in blocking mode, a
// command would leave the reading goroutine's next read blocked in the
// kernel with the process's P: with one P (a pinned process), nothing
// would run until the runtime's monitor took the P back, which takes up to
// 20 ms when the monitor sleeps its longest, and each run's "mark" at the
// start of the measured window would stall the server being measured (and
// "count" the client whose syscalls are counted).
func pollableStdin() *os.File {
	if err := unix.SetNonblock(0, true); err != nil {
		return os.Stdin
	}
	return os.NewFile(0, "stdin")
}

// startBlocker starts, when spec is a duration, a goroutine that sleeps
// 20 ms and then blocks for that long in nanosleep(2), an ordinary syscall
// that keeps its P, over and over: what an fsync, a read of a blocking pipe
// or a long cgo call does to a server in a process of its own (docs/contract.md
// C16.23). An empty spec starts nothing.
func startBlocker(spec string) error {
	if spec == "" {
		return nil
	}
	d, err := time.ParseDuration(spec)
	if err != nil || d <= 0 {
		return fmt.Errorf("SERVERBENCH_BLOCKER: want a positive duration, have %q", spec)
	}
	go func() {
		for {
			time.Sleep(20 * time.Millisecond)
			ts := unix.NsecToTimespec(d.Nanoseconds())
			_, _, _ = unix.Syscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
		}
	}()
	return nil
}
