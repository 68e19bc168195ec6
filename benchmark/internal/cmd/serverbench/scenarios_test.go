package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func testConfig() *config {
	return &config{size: 1024, idleConns: 100, muxConns: 4, muxInflight: 256, callers: 100, poolConns: 100, burn: 50 * time.Microsecond}
}

func names(defs []scenarioDef) string {
	var n []string
	for _, d := range defs {
		n = append(n, d.name)
	}
	return strings.Join(n, ",")
}

func TestSelectScenarios(t *testing.T) {
	all := scenarioDefs(testConfig())
	for _, c := range []struct{ sel, want string }{
		{"echo-100", "echo-100"},
		{"echo-100/unpinned,mux", "echo-100/unpinned,mux"},
		{"hertz", "hertz-get,hertz-post,hertz-get/unpinned,hertz-post/unpinned"},
		{"echo-open", "echo-open-5,echo-open-25,echo-open-50,echo-open-75"},
		{"unpinned", "echo-100/unpinned,echo-1000/unpinned,idle-mixed/unpinned,cpu-heavy,hertz-get/unpinned,hertz-post/unpinned"},
		{"hertz-post,hertz", "hertz-post,hertz-get,hertz-get/unpinned,hertz-post/unpinned"},
	} {
		got, err := selectScenarios(all, c.sel)
		if err != nil || names(got) != c.want {
			t.Errorf("selectScenarios(%q) = %s, %v; want %s", c.sel, names(got), err, c.want)
		}
	}
	if _, err := selectScenarios(all, "nope"); err == nil {
		t.Error("an unknown scenario was accepted")
	}
}

func TestGroups(t *testing.T) {
	all := scenarioDefs(testConfig())
	var got []string
	for _, g := range groups(all) {
		got = append(got, names(g))
	}
	want := []string{
		"echo-100,echo-100/unpinned", "echo-1000,echo-1000/unpinned", "idle-mixed,idle-mixed/unpinned",
		"mux", "client", "idle-scale", "idle-scale/idleclose", "tls-echo", "tls-idle", "echo-open-5,echo-open-25,echo-open-50,echo-open-75", "cpu-heavy",
		"hertz-get,hertz-post,hertz-get/unpinned,hertz-post/unpinned",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("groups:\n got %q\nwant %q", got, want)
	}
}

func TestBurnCalibration(t *testing.T) {
	n := calibrateBurn(50 * time.Microsecond)
	if n < 100 {
		t.Fatalf("calibrateBurn(50µs) = %d iterations", n)
	}
	// The loop is deterministic: the same n, the same result.
	if burn(n) != burn(n) || burn(n) == burn(n+1) {
		t.Fatal("burn is not a deterministic function of its iterations")
	}
}

// TestOpenLoopKeepsSchedule runs the open loop against the Go net echo
// server: it must send at the rate asked, every answer checked, and get the
// answers of a lightly loaded server back within generous bounds. It cannot
// see a timer that expires a little before the due times (openGen.open
// prevents that): a request would then wait one more period, 0.5 ms here,
// well within the bounds.
func TestOpenLoopKeepsSchedule(t *testing.T) {
	var accepted atomic.Int64
	srv, err := startGoNet(modeEcho, &accepted)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	const rate, conns = 2000, 8
	l := &loadRun{size: 256, stop: make(chan struct{})}
	if err := l.openLoop(srv.addr, conns, rate); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	l.measuring.Store(true)
	start := time.Now()
	time.Sleep(500 * time.Millisecond)
	l.measuring.Store(false)
	elapsed := time.Since(start)
	l.stopping.Store(true)
	if err := l.wait(); err != nil {
		t.Fatal(err)
	}
	lat := l.latencies()
	want := rate * elapsed.Seconds()
	if n := float64(len(lat)); n < want/2 || n > want*1.5 {
		t.Fatalf("%d requests measured in %v, want about %.0f", len(lat), elapsed, want)
	}
	if med := time.Duration(lat[len(lat)/2]); med > 100*time.Millisecond {
		t.Fatalf("median latency %v against an idle server", med)
	}
}

func TestHTTPConn(t *testing.T) {
	payload := httpPayload(1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ping":
			w.Write(payload)
		case "/echo":
			// Read it all first: an HTTP/1 handler cannot read the
			// request's body once it has begun its response.
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		c, err := dialHTTP(addr, m)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if err := c.roundTrip(payload, payload); err != nil {
				t.Fatalf("%s: %v", m, err)
			}
		}
		if err := c.roundTrip(payload, payload[:1000]); err != errWrongResponse {
			t.Fatalf("%s: a longer body than wanted: %v", m, err)
		}
		c.Close()
	}
}
