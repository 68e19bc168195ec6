// Command hertzserver is the server of the server suite's hertz scenarios:
// a Hertz v0.10.4 server with two routes,
//
//	GET  /ping   answers -size bytes (1 KiB by default)
//	POST /echo   answers the request's body
//
// on its netpoll transport (Hertz's default on Linux; which netpoll depends
// on the build, see go.mod) or, with -transport standard, on its Go net one.
//
// It speaks the suite's server protocol: it prints "listening ADDR", answers
// "mark" on its standard input with "mark goroutines=G" and "stats" with
// "stats goroutines=G accepted=N sched=S schedp50=A schedp99=B" (S:
// goroutines scheduled since the last mark, A and B: how long they waited to
// run, µs), and shuts down when its standard input closes. With
// $SERVERBENCH_CPUPROFILE set to a directory it writes a CPU profile there.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/server"
	"github.com/cloudwego/hertz/pkg/common/config"
	"github.com/cloudwego/hertz/pkg/common/hlog"
	"github.com/cloudwego/hertz/pkg/network/standard"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hertzserver:", err)
		os.Exit(1)
	}
}

func run() error {
	transport := flag.String("transport", "netpoll", "netpoll or standard (Go net)")
	size := flag.Int("size", 1024, "bytes of the GET /ping response")
	name := flag.String("name", "hertz", "the name of the CPU profile")
	flag.Parse()
	if *transport != "netpoll" && *transport != "standard" {
		return fmt.Errorf("-transport: want netpoll or standard, not %q", *transport)
	}
	if dir := os.Getenv("SERVERBENCH_CPUPROFILE"); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", *name, os.Getpid())))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	hlog.SetLevel(hlog.LevelWarn)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var accepted atomic.Int64
	opts := []config.Option{
		server.WithListener(ln),
		server.WithDisablePrintRoute(true),
		server.WithExitWaitTime(2 * time.Second),
		server.WithOnAccept(func(net.Conn) context.Context {
			accepted.Add(1)
			return context.Background()
		}),
	}
	if *transport == "standard" {
		opts = append(opts, server.WithTransport(standard.NewTransporter))
	}
	h := server.New(opts...)
	payload := make([]byte, *size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	h.GET("/ping", func(_ context.Context, c *app.RequestContext) {
		c.Data(200, "application/octet-stream", payload)
	})
	h.POST("/echo", func(_ context.Context, c *app.RequestContext) {
		c.Data(200, "application/octet-stream", c.Request.Body())
	})
	errc := make(chan error, 1)
	go func() { errc <- h.Run() }()
	fmt.Printf("listening %s\n", ln.Addr())

	// The parent closes our standard input to stop us.
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pollableStdin())
		for sc.Scan() {
			lines <- strings.TrimSpace(sc.Text())
		}
		close(lines)
	}()
	var mark schedSample
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("hertz stopped: %v", err)
		case l, ok := <-lines:
			if !ok {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				return h.Shutdown(ctx)
			}
			switch l {
			case "mark":
				mark = readSched()
				fmt.Printf("mark goroutines=%d\n", runtime.NumGoroutine())
			case "stats":
				n, p50, p99 := readSched().since(mark)
				fmt.Printf("stats goroutines=%d accepted=%d sched=%d schedp50=%g schedp99=%g\n",
					runtime.NumGoroutine(), accepted.Load(), n, p50, p99)
			}
		}
	}
}

// schedSample is the runtime's histogram of how long goroutines were
// runnable before they ran. The runtime records one scheduling in
// schedSampling, so its count times schedSampling estimates them all.
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
// and the median and the 99th percentile of their wait in µs (bucket upper
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
	if n == 0 {
		return 0, 0, 0
	}
	q := func(q float64) float64 {
		var cum uint64
		for i, c := range d {
			cum += c
			if c > 0 && float64(cum) >= q*float64(n) {
				b := s.buckets[i+1]
				if math.IsInf(b, 1) {
					b = s.buckets[i]
				}
				return b * 1e6
			}
		}
		return 0
	}
	return n * schedSampling, q(0.5), q(0.99)
}

// pollableStdin returns standard input switched to non-blocking mode, so
// that Go's netpoller waits for its lines (as in the suite's own server:
// a blocking read would hold the only P of a pinned server after each
// command, until the runtime's monitor took it back, up to 20 ms later).
func pollableStdin() *os.File {
	if err := syscall.SetNonblock(0, true); err != nil {
		return os.Stdin
	}
	return os.NewFile(0, "stdin")
}
