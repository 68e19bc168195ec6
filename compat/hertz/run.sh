#!/usr/bin/env bash
# Checks this netpoll under Hertz v0.10.4 (go.mod replaces the netpoll module
# with the repository root):
#   1. this module's tests: a real Hertz server and client on the netpoll
#      transport;
#   2. Hertz's own tests of its netpoll transport, its HTTP/1 codec, and the
#      packages that run servers or clients on netpoll or on its adapters.
# Both run with -race. Set RACE= to run without it. Modules come through the
# module proxy on the first run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
GO=${GO:-go}
RACE=${RACE--race}

hertz=github.com/cloudwego/hertz/pkg
packages=(
	"$hertz/network/netpoll/..."
	"$hertz/protocol/http1/..."
	# Beyond the transport and the codec: servers and clients on netpoll, and
	# the mock connection built on NewReader/NewReadWriter.
	"$hertz/network/..."
	"$hertz/common/test/mock"
	"$hertz/app"
	"$hertz/app/client"
	"$hertz/app/server"
	"$hertz/route"
)

# Hertz tests that fail whatever the netpoll, skipped:
#   TestTimeoutPriority (protocol/http1): times mock connections that sleep and
#   wants each duration within ±30 ms, which a busy machine misses (under load
#   it fails as often with the reference netpoll v0.7.2 as with this one).
skip='^TestTimeoutPriority$'

status=0
run() {
	echo "+ $*"
	"$@" || status=1
}

start=$SECONDS
run "$GO" mod download
run "$GO" vet .
# shellcheck disable=SC2086 # RACE is empty or one flag
run "$GO" test $RACE -count=1 -timeout 4m .
# shellcheck disable=SC2086
run "$GO" test $RACE -count=1 -timeout 4m -skip "$skip" "${packages[@]}"
echo "compat/hertz: $((SECONDS - start)) s, $([ $status = 0 ] && echo ok || echo FAILED)"
exit $status
