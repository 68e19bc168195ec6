package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll/benchmark/internal/report"
)

// Client modes.
const (
	// clientPingPong: conns connections, the first busy of them each sending
	// one request at a time and waiting for its response (closed loop), the
	// others connected and silent. Go net: the fixed load for the servers.
	clientPingPong = "pingpong"
	// clientMux: conns connections, each with inflight requests in flight,
	// written in batches by one goroutine and read by another. Go net.
	clientMux = "mux"
	// clientIdle: conns silent connections, held until standard input closes.
	clientIdle = "idle"
	// clientPool: callers goroutines sharing a pool of connections dialled
	// with the implementation under test (-impl), each caller taking one for
	// a request and putting it back. The client-side scenario.
	clientPool = "pool"
	// clientOpen: conns connections, each sending one request at a time on
	// a fixed schedule, rate requests per second in all (open loop). A
	// request's latency runs from the time it was due to be sent, so that a
	// connection running late (waiting for a slow response) counts the wait.
	// Go net.
	clientOpen = "open"
	// clientHTTP: conns workers, each with an HTTP/1.1 keep-alive connection
	// of its own from Go's net/http client, sending one request at a time:
	// GET /ping (want: a body of size bytes, httpPayload) or POST /echo of
	// size bytes (want: the same back). The load of the hertz scenarios.
	clientHTTP = "http"
)

// clientResult is what the client process prints as its last line.
type clientResult struct {
	Requests int64   `json:"requests"`
	Seconds  float64 `json:"seconds"`
	// Latencies of the measured requests, in nanoseconds.
	P50  float64 `json:"p50_ns"`
	P99  float64 `json:"p99_ns"`
	P999 float64 `json:"p999_ns"`
	// Goroutines of the client process when the measurement started.
	Goroutines int `json:"goroutines"`
	// Goroutine schedulings of the client process over the measurement, and
	// the 99th percentile of their wait (see schedSample).
	Sched    int64   `json:"sched"`
	SchedP99 float64 `json:"sched_p99_us"`
}

// rtConn is a client connection that sends one request and reads its
// response, which must equal want.
type rtConn interface {
	roundTrip(req, want []byte) error
	Close() error
}

var errWrongResponse = errors.New("wrong response")

// dialers are the client implementations of the pool mode.
var dialers = map[string]func(addr string) (rtConn, error){
	"gonet": dialGoNet,
	"ref":   dialRef,
	"ours":  dialOurs,
}

type netConn struct {
	c    net.Conn
	resp []byte
}

func dialGoNet(addr string) (rtConn, error) {
	c, err := dialTCP(addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &netConn{c: c}, nil
}

func (c *netConn) roundTrip(req, want []byte) error {
	if _, err := c.c.Write(req); err != nil {
		return err
	}
	if cap(c.resp) < len(want) {
		c.resp = make([]byte, len(want))
	}
	resp := c.resp[:len(want)]
	if _, err := io.ReadFull(c.c, resp); err != nil {
		return err
	}
	if !bytes.Equal(resp, want) {
		return errWrongResponse
	}
	return nil
}

func (c *netConn) Close() error { return c.c.Close() }

// httpConn is a worker of the http mode: an HTTP/1.1 client with one
// keep-alive connection.
type httpConn struct {
	tr     *http.Transport
	client *http.Client
	method string
	url    string
	buf    []byte
}

func dialHTTP(addr, method string) (*httpConn, error) {
	tr := &http.Transport{
		Proxy:               nil,
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	path := "/ping"
	if method == http.MethodPost {
		path = "/echo"
	}
	return &httpConn{tr: tr, client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		method: method, url: "http://" + addr + path}, nil
}

// roundTrip sends a request (with body req if a POST) and reads its
// response's body, which must equal want, to its end, so that the
// connection is reused.
func (c *httpConn) roundTrip(req, want []byte) error {
	var body io.Reader
	if c.method == http.MethodPost {
		body = bytes.NewReader(req)
	}
	r, err := http.NewRequest(c.method, c.url, body)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP status %s", resp.Status)
	}
	if cap(c.buf) < len(want)+1 {
		c.buf = make([]byte, len(want)+1)
	}
	// One byte more than want: reading it must hit the end of the body.
	n, err := io.ReadFull(resp.Body, c.buf[:len(want)+1])
	if !(err == io.ErrUnexpectedEOF || (err == io.EOF && n == 0)) || n != len(want) {
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return err
		}
		return errWrongResponse
	}
	if !bytes.Equal(c.buf[:n], want) {
		return errWrongResponse
	}
	return nil
}

func (c *httpConn) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

// httpPayload is the body of the Hertz server's GET /ping answers.
func httpPayload(size int) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	return p
}

// messages returns the request with id and a payload of size bytes made
// from seed, and the response the server must send back to it.
func messages(id, seed uint64, size int) (req, want []byte) {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(int(seed) + i)
	}
	req = make([]byte, requestLen(size))
	encodeRequest(req, id, payload)
	want = make([]byte, responseLen(size))
	respond(want, req[headerLen:])
	return req, want
}

// dialAll dials n connections, a few at a time.
func dialAll[T any](n int, dial func() (T, error)) ([]T, error) {
	out := make([]T, n)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for w := 0; w < 16 && w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := dial()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					next.Store(int64(n))
					return
				}
				out[i] = c
			}
		}()
	}
	wg.Wait()
	return out, firstErr
}

// runClient is the client process. It prints "connected" once its
// connections are up; in the load modes, then "measuring" after the warmup,
// "done" after the measured time, and a clientResult as JSON.
func runClient(args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	mode := fs.String("mode", clientPingPong, "pingpong, open, mux, idle, pool or http")
	rate := fs.Float64("rate", 10000, "open: requests per second, all connections together")
	method := fs.String("method", http.MethodGet, "http: GET (/ping) or POST (/echo)")
	impl := fs.String("impl", "gonet", "pool mode: the client implementation, gonet, ref or ours")
	addr := fs.String("addr", "", "server address")
	conns := fs.Int("conns", 100, "connections (pool mode: the pool's size)")
	busy := fs.Int("busy", -1, "pingpong: connections that send (-1: all)")
	callers := fs.Int("callers", 100, "pool mode: concurrent callers")
	inflight := fs.Int("inflight", 256, "mux: requests in flight per connection")
	size := fs.Int("size", 1024, "payload bytes")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time first")
	duration := fs.Duration("duration", 3*time.Second, "measured time")
	fs.BoolVar(&useTLS, "tls", false, "pingpong, idle: connect over TLS 1.3 (crypto/tls)")
	fs.Parse(args)
	if *size < 0 || *size > maxPayload {
		return fmt.Errorf("-size must be within [0, %d]", maxPayload)
	}
	raiseFileLimit()
	if dir := os.Getenv("SERVERBENCH_CPUPROFILE"); dir != "" && *mode == clientPool {
		stop, err := startCPUProfile(dir, "client-"+*impl)
		if err != nil {
			return err
		}
		defer stop()
	}
	if *busy < 0 || *busy > *conns {
		*busy = *conns
	}
	l := &loadRun{size: *size, stop: make(chan struct{})}
	var err error
	switch *mode {
	case clientIdle:
		return runIdleClient(*addr, *conns)
	case clientPingPong:
		err = l.pingPong(*addr, *conns, *busy)
	case clientOpen:
		err = l.openLoop(*addr, *conns, *rate)
	case clientHTTP:
		err = l.httpLoad(*addr, *conns, *method)
	case clientMux:
		err = l.mux(*addr, *conns, *inflight)
	case clientPool:
		dial := dialers[*impl]
		if dial == nil {
			return fmt.Errorf("-impl: unknown %q", *impl)
		}
		err = l.pool(*addr, dial, *conns, *callers)
	default:
		return fmt.Errorf("-mode: unknown %q", *mode)
	}
	if err != nil {
		return err
	}
	// Answer "count" on standard input with the requests completed so
	// far, and end the measurement early on "stop"; exit once the result
	// is out and standard input closes (so the orchestrator can read our
	// /proc files until it has the result).
	stdinClosed, stop := make(chan struct{}), make(chan struct{}, 1)
	go func() {
		defer close(stdinClosed)
		sc := bufio.NewScanner(pollableStdin())
		for sc.Scan() {
			switch sc.Text() {
			case "count":
				fmt.Printf("count %d\n", l.completed.Load())
			case "stop":
				select {
				case stop <- struct{}{}:
				default:
				}
			}
		}
	}()
	fmt.Println("connected")
	time.Sleep(*warmup)
	l.base = time.Now()
	l.measuring.Store(true)
	goroutines := runtime.NumGoroutine()
	mark := readSched()
	fmt.Println("measuring")
	select {
	case <-time.After(*duration):
	case <-stop:
	}
	l.measuring.Store(false)
	elapsed := time.Since(l.base)
	sched, _, schedP99 := readSched().since(mark)
	fmt.Println("done")
	l.stopping.Store(true)
	close(l.stop)
	if err := l.wait(); err != nil {
		return err
	}
	all := l.latencies()
	if len(all) == 0 {
		all = []float64{0} // no NaN in the JSON; Requests says it
	}
	defer func() { <-stdinClosed }()
	n := int64(len(all))
	if n == 1 && all[0] == 0 {
		n = 0
	}
	return json.NewEncoder(os.Stdout).Encode(clientResult{
		Requests: n,
		Seconds:  elapsed.Seconds(),
		P50:      report.Quantile(all, 0.50),
		P99:      report.Quantile(all, 0.99),
		P999:     report.Quantile(all, 0.999),

		Goroutines: goroutines,
		Sched:      int64(sched),
		SchedP99:   schedP99,
	})
}

// loadRun is the state the load modes share: workers record the latencies
// of the requests that started and ended while measuring.
type loadRun struct {
	size                int
	measuring, stopping atomic.Bool
	stop                chan struct{}
	base                time.Time
	wg                  sync.WaitGroup
	mu                  sync.Mutex
	samples             [][]float64
	firstErr            error
	closers             []io.Closer
	completed           atomic.Int64 // requests answered, measured or not
}

func (l *loadRun) start(work func() ([]float64, error)) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		s, err := work()
		l.mu.Lock()
		l.samples = append(l.samples, s)
		if err != nil && l.firstErr == nil {
			l.firstErr = err
		}
		l.mu.Unlock()
	}()
}

func (l *loadRun) wait() error {
	l.wg.Wait()
	for _, c := range l.closers {
		c.Close()
	}
	return l.firstErr
}

func (l *loadRun) latencies() []float64 {
	var all []float64
	for _, s := range l.samples {
		all = append(all, s...)
	}
	sort.Float64s(all)
	return all
}

// closedLoop sends requests on c one at a time until stopping, returning the
// latencies of those measured.
func (l *loadRun) closedLoop(c rtConn, req, want []byte) ([]float64, error) {
	lat := make([]float64, 0, 1<<12)
	for !l.stopping.Load() {
		measured := l.measuring.Load()
		t := time.Now()
		if err := c.roundTrip(req, want); err != nil {
			return lat, err
		}
		d := time.Since(t)
		l.completed.Add(1)
		if measured && l.measuring.Load() {
			lat = append(lat, float64(d.Nanoseconds()))
		}
	}
	return lat, nil
}

func (l *loadRun) pingPong(addr string, conns, busy int) error {
	cs, err := dialAll(conns, func() (rtConn, error) { return dialGoNet(addr) })
	for _, c := range cs {
		if c != nil {
			l.closers = append(l.closers, c)
		}
	}
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Hour)
	for i, c := range cs {
		c.(*netConn).c.SetDeadline(deadline)
		if i < busy {
			req, want := messages(uint64(i), uint64(i), l.size)
			l.start(func() ([]float64, error) { return l.closedLoop(c, req, want) })
		}
	}
	return nil
}

// httpLoad starts conns HTTP workers (see clientHTTP), each connected by a
// first request before it returns.
func (l *loadRun) httpLoad(addr string, conns int, method string) error {
	if method != http.MethodGet && method != http.MethodPost {
		return fmt.Errorf("-method: want GET or POST, not %q", method)
	}
	payload := httpPayload(l.size)
	cs, err := dialAll(conns, func() (*httpConn, error) {
		c, err := dialHTTP(addr, method)
		if err == nil {
			err = c.roundTrip(payload, payload)
		}
		return c, err
	})
	for _, c := range cs {
		if c != nil {
			l.closers = append(l.closers, c)
		}
	}
	if err != nil {
		return err
	}
	for _, c := range cs {
		l.start(func() ([]float64, error) { return l.closedLoop(c, payload, payload) })
	}
	return nil
}

func (l *loadRun) pool(addr string, dial func(string) (rtConn, error), size, callers int) error {
	cs, err := dialAll(size, func() (rtConn, error) { return dial(addr) })
	for _, c := range cs {
		if c != nil {
			l.closers = append(l.closers, c)
		}
	}
	if err != nil {
		return err
	}
	pool := make(chan rtConn, size)
	for _, c := range cs {
		pool <- c
	}
	for i := 0; i < callers; i++ {
		req, want := messages(uint64(i), uint64(i), l.size)
		l.start(func() ([]float64, error) {
			lat := make([]float64, 0, 1<<12)
			for !l.stopping.Load() {
				measured := l.measuring.Load()
				t := time.Now()
				c := <-pool
				err := c.roundTrip(req, want)
				pool <- c
				if err != nil {
					return lat, err
				}
				d := time.Since(t)
				l.completed.Add(1)
				if measured && l.measuring.Load() {
					lat = append(lat, float64(d.Nanoseconds()))
				}
			}
			return lat, nil
		})
	}
	return nil
}

// mux keeps inflight requests in flight on each of conns connections. A
// request's id is its slot in the connection's window; a writer goroutine
// takes free slots and writes their requests in batches (one Flush when no
// more slot is free), a reader goroutine matches responses to slots and
// frees them.
func (l *loadRun) mux(addr string, conns, inflight int) error {
	if inflight < 1 {
		return errors.New("-inflight must be positive")
	}
	cs, err := dialAll(conns, func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) })
	for _, c := range cs {
		if c != nil {
			l.closers = append(l.closers, c)
		}
	}
	if err != nil {
		return err
	}
	for ci, c := range cs {
		reqs := make([][]byte, inflight)
		var want []byte
		for s := range reqs {
			var w []byte
			reqs[s], w = messages(uint64(ci)<<32|uint64(s), uint64(ci), l.size)
			want = w[headerLen+idLen:] // checksum and payload: the same for every slot
		}
		window := make(chan int, inflight)
		for s := 0; s < inflight; s++ {
			window <- s
		}
		starts := make([]atomic.Int64, inflight) // ns since l.base; negative: not measured
		var writerDone atomic.Bool
		l.start(func() ([]float64, error) { // writer
			defer func() {
				// Unblock the reader's last read.
				writerDone.Store(true)
				c.SetReadDeadline(time.Now())
			}()
			bw := bufio.NewWriterSize(c, 64<<10)
			for {
				var s int
				select {
				case s = <-window:
				case <-l.stop:
					// Let the reader finish the requests in flight.
					for t := time.Now(); len(window) < inflight && time.Since(t) < 5*time.Second; {
						time.Sleep(time.Millisecond)
					}
					return nil, nil
				}
				for {
					at := time.Since(l.base).Nanoseconds()
					if !l.measuring.Load() {
						at = -1
					}
					starts[s].Store(at)
					if _, err := bw.Write(reqs[s]); err != nil {
						return nil, err
					}
					select {
					case s = <-window:
						continue
					default:
					}
					break
				}
				if err := bw.Flush(); err != nil {
					return nil, err
				}
			}
		})
		l.start(func() ([]float64, error) { // reader
			lat := make([]float64, 0, 1<<16)
			br := bufio.NewReaderSize(c, 64<<10)
			resp := make([]byte, responseLen(l.size))
			for {
				if _, err := io.ReadFull(br, resp); err != nil {
					if writerDone.Load() {
						return lat, nil
					}
					return lat, err
				}
				id := binary.BigEndian.Uint64(resp[headerLen:])
				s := int(uint32(id))
				if id>>32 != uint64(ci) || s >= inflight || !bytes.Equal(resp[headerLen+idLen:], want) {
					return lat, errWrongResponse
				}
				l.completed.Add(1)
				if at := starts[s].Load(); at >= 0 && l.measuring.Load() {
					lat = append(lat, float64(time.Since(l.base).Nanoseconds()-at))
				}
				window <- s
			}
		})
	}
	return nil
}

// runIdleClient dials conns connections, prints "connected" and holds them
// until its standard input closes. They close with a reset (linger 0) so
// that no TIME_WAIT is left behind for the next run.
func runIdleClient(addr string, conns int) error {
	cs, err := dialAll(conns, func() (net.Conn, error) { return dialTCP(addr, 10*time.Second) })
	defer func() {
		for _, c := range cs {
			if c == nil {
				continue
			}
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn()
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	if err != nil {
		return err
	}
	fmt.Println("connected")
	io.Copy(io.Discard, os.Stdin)
	return nil
}
