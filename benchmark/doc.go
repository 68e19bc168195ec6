// Package benchmark holds benchmarks that compare this repository's netpoll
// with the reference, cloudwego/netpoll v0.7.2, with Go's net package and
// with a floor (a raw epoll server, the physical limit), in one binary.
//
// Both netpoll modules declare the path github.com/cloudwego/netpoll, so the
// reference is linked under an alias: `go generate` (or any command under
// cmd/, which does it first) downloads it from the module proxy into the
// git-ignored .ref directory with its module path rewritten to
// netpollref.local/netpoll, which go.mod's replace directive points at. See
// internal/refprep. The netpoll code of the server suite is one source file,
// compiled once against each (internal/cmd/serverbench/netpoll_ours.go and
// the generated netpoll_ref.go). The Hertz scenarios build a Hertz server,
// internal/hertzserver (a module of its own), once against each netpoll,
// with go.mod files generated in the git-ignored .hertz directory.
//
//	go run ./cmd/report            # everything below, then docs/benchmark.md + plots (make bench)
//	go run ./cmd/report -quick     # the same, shorter runs
//	go run ./cmd/buffer            # LinkBuffer: ours vs reference
//	go run ./cmd/server            # server suite: echo, idle-mixed, mux, client side, idle scale, open loop, CPU-heavy, Hertz
//	go run ./cmd/server -h         # its scenarios and flags (rounds, durations, CPUs, -scenarios, -impls)
//	ab/ab.sh OLD NEW RATE          # echo server CPU per request of two commits of ours and ref, interleaved
//
// They interleave the implementations round by round and report medians and
// per-round ratios, because the machines they run on are small and noisy.
package benchmark

//go:generate go run ./cmd/refprep
