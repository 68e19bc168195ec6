//go:build darwin || freebsd || linux

// Command stats-prometheus exports netpoll.ReadStats as Prometheus metrics:
// a prometheus.Collector that reads the snapshot at each scrape. It runs an
// echo server with a little load on loopback, serves /metrics, scrapes it
// once, prints the netpoll_ lines and exits.
//
// It is a module of its own, so that the Prometheus client stays out of
// netpoll's go.mod; run it with `go run .` from this directory.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// collector turns one ReadStats per scrape into metrics. ReadStats costs a
// few loads per poller, so a scrape costs next to nothing whatever the
// number of connections.
type collector struct{ descs []metric }

// metric is one field of netpoll.Stats as a metric.
type metric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(s *netpoll.Stats) float64
}

func newCollector() *collector {
	counter := func(name, help string, f func(s *netpoll.Stats) uint64) metric {
		return metric{prometheus.NewDesc("netpoll_"+name, help, nil, nil), prometheus.CounterValue,
			func(s *netpoll.Stats) float64 { return float64(f(s)) }}
	}
	gauge := func(name, help string, f func(s *netpoll.Stats) int64) metric {
		return metric{prometheus.NewDesc("netpoll_"+name, help, nil, nil), prometheus.GaugeValue,
			func(s *netpoll.Stats) float64 { return float64(f(s)) }}
	}
	return &collector{descs: []metric{
		gauge("pollers", "Pollers running.", func(s *netpoll.Stats) int64 { return int64(s.Pollers) }),
		gauge("connections_open", "Connections not closed yet.", func(s *netpoll.Stats) int64 { return s.ConnsOpen }),
		counter("connections_accepted_total", "Connections accepted by an EventLoop.", func(s *netpoll.Stats) uint64 { return s.ConnsAccepted }),
		counter("connections_dialed_total", "Connections dialed or made by NewFDConnection.", func(s *netpoll.Stats) uint64 { return s.ConnsDialed }),
		counter("connections_closed_total", "Connections closed, by either side.", func(s *netpoll.Stats) uint64 { return s.ConnsClosed }),
		counter("read_bytes_total", "Bytes read from sockets.", func(s *netpoll.Stats) uint64 { return s.BytesRead }),
		counter("written_bytes_total", "Bytes written to sockets.", func(s *netpoll.Stats) uint64 { return s.BytesWritten }),
		gauge("input_buffered_bytes", "Bytes read and not consumed yet.", func(s *netpoll.Stats) int64 { return s.InputBuffered }),
		gauge("output_buffered_bytes", "Bytes flushed and not sent yet.", func(s *netpoll.Stats) int64 { return s.OutputBuffered }),
		gauge("paused_connections", "Connections whose input is paused by backpressure.", func(s *netpoll.Stats) int64 { return s.PausedConns }),
		counter("idle_closed_total", "Connections closed by the idle close.", func(s *netpoll.Stats) uint64 { return s.IdleClosed }),
		counter("handler_panics_total", "Handler panics recovered.", func(s *netpoll.Stats) uint64 { return s.HandlerPanics }),
		counter("accept_errors_total", "Accepts that failed.", func(s *netpoll.Stats) uint64 { return s.AcceptErrors }),
	}}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.descs {
		ch <- m.desc
	}
}

// Collect implements prometheus.Collector: one snapshot per scrape.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	var s netpoll.Stats
	netpoll.ReadStats(&s)
	for _, m := range c.descs {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(&s))
	}
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "stats-prometheus:", err)
		os.Exit(1)
	}
}

func run() error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector())

	// An echo server, and a client that talks to it for a moment.
	ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	loop, err := netpoll.NewEventLoop(func(ctx context.Context, c netpoll.Connection) error {
		r, w := c.Reader(), c.Writer()
		p, err := r.Next(r.Len())
		if err == nil {
			if _, err = w.WriteBinary(p); err == nil {
				err = w.Flush()
			}
		}
		_ = r.Release()
		return err
	})
	if err != nil {
		return err
	}
	go func() { _ = loop.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = loop.Shutdown(ctx)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 512)
	for i := 0; i < 100; i++ {
		if _, err := c.Write(buf); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
	}

	// /metrics, scraped once.
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(mln) }()
	defer srv.Close()
	resp, err := http.Get("http://" + mln.Addr().String() + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "netpoll_") {
			fmt.Println(line)
		}
	}
	return sc.Err()
}
