# make test: everything CI checks. make bench / make fuzz / make soak: the long runs.
GO ?= go
PKGS := ./...
FUZZTIME ?= 5m

.PHONY: test fmt vet race cross bench fuzz soak apidiff api-ref

test: fmt vet race cross apidiff

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

race:
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

cross:
	@for os in darwin freebsd windows; do \
		echo "GOOS=$$os go vet + build"; \
		GOOS=$$os $(GO) vet $(PKGS) || exit 1; \
		GOOS=$$os $(GO) build $(PKGS) || exit 1; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	cd benchmark && $(GO) run ./cmd/buffer

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLinkBufferModel -fuzztime $(FUZZTIME) .

soak:
	NETPOLL_SOAK=1 $(GO) test -race -count=1 -timeout 60m -run Soak $(PKGS)

# apidiff: API compatibility with the reference v0.7.2 (linux and darwin), by
# golang.org/x/exp/cmd/apidiff. TestAPISurface (in make race) is the stricter,
# exact gate; api-ref regenerates its testdata/api.txt files from the reference.
apidiff:
	bash compat/apidiff.sh

api-ref:
	bash compat/apisurface-ref.sh
