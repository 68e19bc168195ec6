package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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
		{"echo-open", "echo-open-25,echo-open-50,echo-open-75"},
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
		"mux", "client", "idle-scale", "idle-scale/idleclose", "tls-echo", "tls-idle", "echo-open-25,echo-open-50,echo-open-75", "cpu-heavy",
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

func TestPacerNotEarly(t *testing.T) {
	p, err := newPacer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < 5; i++ {
		due := time.Now().Add(2 * time.Millisecond)
		if err := p.sleepUntil(due); err != nil {
			t.Fatal(err)
		}
		if early := time.Until(due); early > 0 {
			t.Fatalf("woke %v early", early)
		}
	}
	// A time in the past returns at once.
	start := time.Now()
	if err := p.sleepUntil(start.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a past time took %v", d)
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
