package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/cloudwego/netpoll/benchmark/internal/cmd/serverbench/genref/gen"
)

// TestRefGenerated checks that netpoll_ref.go is netpoll_ours.go compiled
// against the reference, as `go generate` writes it.
func TestRefGenerated(t *testing.T) {
	ours, err := os.ReadFile("netpoll_ours.go")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := os.ReadFile("netpoll_ref.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ref, gen.Ref(ours)) {
		t.Fatal("netpoll_ref.go is stale: run go generate in benchmark/internal/cmd/serverbench")
	}
}

func TestProtocol(t *testing.T) {
	req, want := messages(7, 3, 1000)
	n, err := bodyLen(req)
	if err != nil || n != idLen+1000 {
		t.Fatalf("bodyLen = %d, %v", n, err)
	}
	out := make([]byte, responseLen(1000))
	respond(out, req[headerLen:])
	if !bytes.Equal(out, want) {
		t.Fatal("respond differs from the expected response")
	}
	if _, err := bodyLen([]byte{0, 0, 0, 7}); err == nil {
		t.Fatal("a body shorter than the id was accepted")
	}
}
