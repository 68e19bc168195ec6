# make test: everything CI checks. make bench / make fuzz / make soak: the long runs.
GO ?= go
PKGS := ./...
FUZZTIME ?= 5m
# BENCHFLAGS go to benchmark/cmd/report, e.g. BENCHFLAGS=-quick.
BENCHFLAGS ?=

.PHONY: test fmt vet race cross bench fuzz soak apidiff api-ref compat examples

test: fmt vet race cross apidiff compat examples

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# race: every test with the race detector, then the ones whose subject it
# hides (allocation counts; the scheduling order it randomizes) without it.
race:
	$(GO) test -race -count=1 -timeout 10m $(PKGS)
	$(GO) test -count=1 -run 'SteadyStateAllocs|TaskQueueTurn' .

# cross: vet (tests included) once per other GOOS, then build every
# GOOS/GOARCH the README names, 32-bit ones included.
CROSS_VET := darwin freebsd windows
CROSS_BUILD := darwin/amd64 darwin/arm64 freebsd/amd64 freebsd/386 freebsd/arm64 freebsd/arm \
	windows/amd64 linux/386 linux/arm64 linux/arm

cross:
	@for os in $(CROSS_VET); do \
		echo "GOOS=$$os go vet"; \
		GOOS=$$os $(GO) vet $(PKGS) || exit 1; \
	done
	@for t in $(CROSS_BUILD); do \
		echo "GOOS=$${t%/*} GOARCH=$${t#*/} go build"; \
		GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build $(PKGS) || exit 1; \
	done

# bench: the root micro-benchmarks, then benchmark/cmd/report: the LinkBuffer
# comparison and the server suite (ours vs cloudwego/netpoll v0.7.2 vs Go net
# vs a raw epoll floor, and Hertz on each netpoll), which rewrite
# docs/benchmark.md and its plots. About 21 minutes on 2 CPUs;
# BENCHFLAGS=-quick: about 5.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	cd benchmark && $(GO) run ./cmd/report $(BENCHFLAGS)

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLinkBufferModel -fuzztime $(FUZZTIME) .

# soak: the long forms of the TestSoak* tests (10,000 connections at once,
# 200,000 connect-request-close cycles, a 256 MiB message). Each prints one
# summary line ("soak scenario=...").
soak:
	NETPOLL_SOAK=1 $(GO) test -race -count=1 -timeout 60m -v -run '^TestSoak' .

# apidiff: API compatibility with the reference v0.7.2 (linux and darwin), by
# golang.org/x/exp/cmd/apidiff. TestAPISurface (in make race) is the stricter,
# exact gate; api-ref regenerates its testdata/api.txt files from the reference.
apidiff:
	bash compat/apidiff.sh

api-ref:
	bash compat/apisurface-ref.sh

# examples: the examples that are modules of their own (outside ./...) build
# and pass vet against this checkout (needs the module proxy).
examples:
	cd examples/stats-prometheus && GOWORK=off $(GO) vet .

# Hertz v0.10.4 on this netpoll: compat/hertz's tests and Hertz's own (needs the module proxy).
compat:
	bash compat/hertz/run.sh
