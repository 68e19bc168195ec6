#!/usr/bin/env bash
# Regenerates the checked-in API surfaces (testdata/api.txt and
# mux/testdata/api.txt) from the reference module, fetched through the Go
# module proxy. Run it only when the reference version changes: those files
# are the spec that TestAPISurface holds this module to.
#
#   compat/apisurface-ref.sh            # reference v0.7.2
#   NETPOLL_REF=v0.7.2 compat/apisurface-ref.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mod=github.com/cloudwego/netpoll
ref=${NETPOLL_REF:-v0.7.2}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# go mod download works outside any module; -json reports where the module
# cache holds the extracted source.
refdir=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "$mod@$ref" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
if [ -z "$refdir" ] || [ ! -d "$refdir" ]; then
	echo "apisurface-ref: could not download $mod@$ref" >&2
	exit 1
fi

cd "$root"
go build -o "$tmp/apisurface" ./internal/apisurface/cmd/apisurface
for pkg in "" /mux; do
	out=testdata/api.txt
	[ -n "$pkg" ] && out=${pkg#/}/testdata/api.txt
	mkdir -p "$(dirname "$out")"
	"$tmp/apisurface" -dir "$refdir" -pkg "$mod$pkg" -o "$out" \
		-note "Reference: $mod$pkg $ref. Regenerate with compat/apisurface-ref.sh; do not edit by hand."
	echo "wrote $out"
done
