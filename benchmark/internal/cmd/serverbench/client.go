package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll/benchmark/internal/report"
)

// clientResult is what the client process prints as its last line.
type clientResult struct {
	Requests int64   `json:"requests"`
	Seconds  float64 `json:"seconds"`
	// Latencies of the measured requests, in nanoseconds.
	P50  float64 `json:"p50_ns"`
	P99  float64 `json:"p99_ns"`
	P999 float64 `json:"p999_ns"`
}

// runClient is the load process: conns connections, each sending one request
// at a time and waiting for its response (closed loop). After warmup it
// prints "measuring", after duration more "done", then a clientResult as JSON.
// It stops by itself: every connection has a deadline past the run's end.
func runClient(args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	conns := fs.Int("conns", 100, "connections")
	size := fs.Int("size", 1024, "payload bytes")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time first")
	duration := fs.Duration("duration", 3*time.Second, "measured time")
	fs.Parse(args)
	if *size > maxPayload {
		return fmt.Errorf("-size over %d", maxPayload)
	}

	deadline := time.Now().Add(*warmup + *duration + 10*time.Second)
	cs := make([]net.Conn, *conns)
	for i := range cs {
		c, err := net.DialTimeout("tcp", *addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(deadline)
		cs[i] = c
	}

	var (
		measuring, stopping atomic.Bool
		wg                  sync.WaitGroup
		samples             = make([][]float64, len(cs))
		errs                = make(chan error, len(cs))
	)
	for i, c := range cs {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			s, err := pingPong(c, i, *size, &measuring, &stopping)
			samples[i] = s
			if err != nil {
				errs <- err
			}
		}(i, c)
	}
	time.Sleep(*warmup)
	measuring.Store(true)
	start := time.Now()
	fmt.Println("measuring")
	time.Sleep(*duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	fmt.Println("done")
	stopping.Store(true)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}

	var all []float64
	for _, s := range samples {
		all = append(all, s...)
	}
	sort.Float64s(all)
	res := clientResult{
		Requests: int64(len(all)),
		Seconds:  elapsed.Seconds(),
		P50:      report.Quantile(all, 0.50),
		P99:      report.Quantile(all, 0.99),
		P999:     report.Quantile(all, 0.999),
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// pingPong runs one connection's request loop until stopping is set,
// returning the latencies of the requests that started while measuring.
func pingPong(c net.Conn, id, size int, measuring, stopping *atomic.Bool) ([]float64, error) {
	req := make([]byte, headerLen+size)
	binary.BigEndian.PutUint32(req, uint32(size))
	for i := range req[headerLen:] {
		req[headerLen+i] = byte(id + i)
	}
	resp := make([]byte, len(req))
	lat := make([]float64, 0, 1<<14)
	for !stopping.Load() {
		measured := measuring.Load()
		t := time.Now()
		if _, err := c.Write(req); err != nil {
			return lat, err
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			return lat, err
		}
		d := time.Since(t)
		if !bytes.Equal(resp, req) {
			return lat, fmt.Errorf("connection %d: wrong response", id)
		}
		if measured && measuring.Load() {
			lat = append(lat, float64(d.Nanoseconds()))
		}
	}
	return lat, nil
}
