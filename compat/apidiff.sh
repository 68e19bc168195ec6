#!/usr/bin/env bash
# apidiff gate: this module must be API-compatible with the reference
# github.com/cloudwego/netpoll v0.7.2, package by package, as golang.org/x/exp's
# apidiff judges it, for each GOOS in APIDIFF_GOOS (default: linux darwin).
#
# How: two throwaway modules import the root package and mux. The first
# requires v0.7.2 as published; the second replaces it with this repository.
# apidiff writes the export data of each package from inside each module and
# then compares the two. Any incompatible change fails the run; compatible
# ones (additions) are printed for information.
#
# Everything comes through the Go module proxy. apidiff and the reference's
# export data are kept in APIDIFF_CACHE (default: $TMPDIR/netpoll-apidiff),
# so re-runs only recompute this repository's side.
#
#   compat/apidiff.sh                    # or: make apidiff
#   APIDIFF_GOOS="linux darwin windows" compat/apidiff.sh
set -euo pipefail

APIDIFF_VERSION=v0.0.0-20261113113407-e3970619a1a4 # golang.org/x/exp
REF_VERSION=${NETPOLL_REF:-v0.7.2}
MOD=github.com/cloudwego/netpoll
PKGS=("$MOD" "$MOD/mux")
GOOSES=${APIDIFF_GOOS:-linux darwin}

# APIDIFF_NEW compares another checkout instead of this one.
root=${APIDIFF_NEW:-$(cd "$(dirname "$0")/.." && pwd)}
cache=${APIDIFF_CACHE:-${TMPDIR:-/tmp}/netpoll-apidiff}
export GOWORK=off GOFLAGS=-mod=mod
unset GOOS GOARCH

log() { printf 'apidiff: %s\n' "$*"; }

# apidiff itself, built once per pinned version into its own GOBIN.
bin=$cache/bin-$APIDIFF_VERSION
apidiff=$bin/apidiff
if [ ! -x "$apidiff" ]; then
	log "installing golang.org/x/exp/cmd/apidiff@$APIDIFF_VERSION"
	mkdir -p "$bin"
	(cd "$cache" && GOBIN=$bin go install "golang.org/x/exp/cmd/apidiff@$APIDIFF_VERSION")
fi

# newmodule DIR [REPLACE]: a module in DIR that imports every package in PKGS
# from $MOD at REF_VERSION, or from REPLACE when it is given.
newmodule() {
	local dir=$1 replace=${2:-}
	mkdir -p "$dir"
	{
		echo "module apidiff.local/$(basename "$dir")"
		echo
		echo "go 1.21"
		echo
		echo "require $MOD $REF_VERSION"
		if [ -n "$replace" ]; then
			echo
			echo "replace $MOD => $replace"
		fi
	} >"$dir/go.mod"
	{
		echo "package imports"
		echo
		echo "import ("
		for p in "${PKGS[@]}"; do echo "	_ \"$p\""; done
		echo ")"
	} >"$dir/imports.go"
	if [ -n "$replace" ]; then
		# -e: a package missing or broken on the replaced side must not stop
		# the setup; loading it below reports the problem.
		(cd "$dir" && go mod tidy -e >/dev/null 2>&1) || true
	else
		(cd "$dir" && go mod tidy)
	fi
}

# The reference side depends only on the versions: build it once.
old=$cache/old-$REF_VERSION-$APIDIFF_VERSION
if [ ! -f "$old/.done" ]; then
	log "preparing the reference $MOD@$REF_VERSION"
	rm -rf "$old"
	newmodule "$old"
	for goos in $GOOSES; do
		for p in "${PKGS[@]}"; do
			(cd "$old" && GOOS=$goos "$apidiff" -w "$old/$goos-${p//\//_}.export" "$p")
		done
	done
	touch "$old/.done"
fi

# This repository's side is recomputed on every run.
new=$(mktemp -d "${TMPDIR:-/tmp}/netpoll-apidiff-new.XXXXXX")
trap 'rm -rf "$new"' EXIT
newmodule "$new/mod" "$root"

failed=0
for goos in $GOOSES; do
	for p in "${PKGS[@]}"; do
		name="$goos-${p//\//_}.export"
		ref=$old/$name
		if [ ! -f "$ref" ]; then # a GOOS added since the cache was made
			(cd "$old" && GOOS=$goos "$apidiff" -w "$ref" "$p")
		fi
		if ! out=$(cd "$new/mod" && GOOS=$goos "$apidiff" -w "$new/$name" "$p" 2>&1); then
			log "FAIL $p (GOOS=$goos): cannot load this repository's package"
			printf '%s\n' "$out" | sed 's/^/    /'
			failed=1
			continue
		fi
		incompatible=$("$apidiff" -incompatible "$ref" "$new/$name")
		if [ -n "$incompatible" ]; then
			log "FAIL $p (GOOS=$goos): incompatible with $REF_VERSION"
			printf '%s\n' "$incompatible" | sed 's/^/    /'
			failed=1
			continue
		fi
		report=$("$apidiff" "$ref" "$new/$name")
		if [ -n "$report" ]; then
			log "ok   $p (GOOS=$goos), compatible changes only:"
			printf '%s\n' "$report" | sed 's/^/    /'
		else
			log "ok   $p (GOOS=$goos): no API change"
		fi
	done
done
exit $failed
