//go:build darwin || freebsd || linux

// Command echo runs an echo server and a few clients on loopback, each
// client sending length-prefixed messages and checking every reply, then
// prints how many requests it did and their latency percentiles.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/cloudwego/netpoll"
)

func main() {
	clients := flag.Int("clients", 8, "concurrent client connections")
	requests := flag.Int("requests", 2000, "requests per client")
	size := flag.Int("size", 1024, "payload bytes per request")
	flag.Parse()
	if err := run(*clients, *requests, *size); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

// handle answers one length-prefixed message per call: a 4-byte big-endian
// length, then the payload, echoed back the same way.
func handle(ctx context.Context, c netpoll.Connection) error {
	r, w := c.Reader(), c.Writer()
	head, err := r.Peek(4)
	if err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint32(head))
	msg, err := r.Next(4 + n)
	if err != nil {
		return err
	}
	out, err := w.Malloc(len(msg))
	if err != nil {
		return err
	}
	copy(out, msg)
	if err = r.Release(); err != nil {
		return err
	}
	return w.Flush()
}

func run(clients, requests, size int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	loop, err := netpoll.NewEventLoop(handle)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- loop.Serve(ln) }()
	addr := ln.Addr().String()
	fmt.Printf("server listening on %s\n", addr)

	start := time.Now()
	latencies := make([][]time.Duration, clients)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			lat, err := client(addr, requests, size, int64(i))
			latencies[i] = lat
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	elapsed := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err = loop.Shutdown(ctx); err != nil {
		return err
	}
	if err = <-served; err != nil {
		return err
	}
	report(latencies, elapsed)
	return nil
}

// client sends requests messages of size random bytes and verifies each echo.
func client(addr string, requests, size int, seed int64) ([]time.Duration, error) {
	conn, err := netpoll.DialConnection("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rng := rand.New(rand.NewSource(seed))
	payload := make([]byte, 4+size)
	binary.BigEndian.PutUint32(payload, uint32(size))
	lat := make([]time.Duration, 0, requests)
	for i := 0; i < requests; i++ {
		rng.Read(payload[4:])
		t0 := time.Now()
		if _, err = conn.Write(payload); err != nil {
			return nil, err
		}
		reply, err := conn.Reader().Next(len(payload))
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(reply, payload) {
			return nil, fmt.Errorf("request %d: reply differs from request", i)
		}
		if err = conn.Reader().Release(); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}

func report(latencies [][]time.Duration, elapsed time.Duration) {
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) time.Duration { return all[int(p*float64(len(all)-1))] }
	fmt.Printf("%d requests over %d connections in %v (%.0f req/s), every reply verified\n",
		len(all), len(latencies), elapsed.Round(time.Millisecond), float64(len(all))/elapsed.Seconds())
	fmt.Printf("latency p50 %v  p99 %v  p999 %v  max %v\n", pct(0.50), pct(0.99), pct(0.999), all[len(all)-1])
}
