// Package benchmark holds benchmarks that compare this repository's netpoll
// with the reference, cloudwego/netpoll v0.7.2, in one binary.
//
// Both modules declare the path github.com/cloudwego/netpoll, so the reference
// is linked under an alias: `go generate` (or any command under cmd/, which
// does it first) downloads it from the module proxy into the git-ignored .ref
// directory with its module path rewritten to netpollref.local/netpoll, which
// go.mod's replace directive points at. See internal/refprep.
//
//	go run ./cmd/buffer            # LinkBuffer: ours vs reference
//	go run ./cmd/buffer -h         # flags: rounds, benchtime, scenario filter
//	go run ./cmd/server            # echo server: Go net vs reference vs ours
//	go run ./cmd/server -h         # flags: rounds, connections, durations, GOMAXPROCS
//
// Both interleave the implementations round by round and report medians,
// because the machines they run on are small and noisy.
package benchmark

//go:generate go run ./cmd/refprep
