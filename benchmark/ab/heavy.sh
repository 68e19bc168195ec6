#!/bin/bash
# heavy.sh compares two commits of this repository's netpoll, and the
# reference, on the server suite's cpu-heavy scenario: the echo server whose
# handler burns about 50 µs of CPU per request, 100 connections with one
# request in flight each, server and load client unpinned on every CPU (as
# on a host the server shares), interleaved round by round with the order
# rotated. It prints each run and the medians of each.
#
#   benchmark/ab/heavy.sh OLD NEW [ROUNDS] [ITERS] [RATE]
#
# OLD and NEW are git revisions; ITERS is the burn loop's iterations per
# request (default 27000, about 50 µs here; `go run ./cmd/server -scenarios
# cpu-heavy` prints the count it calibrated); RATE, when given and not 0,
# makes the client an open loop sending RATE requests per second in all
# (the server suite's open-loop generator) instead of keeping one request in
# flight per connection: a server with slow handlers below saturation.
# Each run is 1 s of warm-up and 2.5 s measured. Per run: QPS; server CPU per request and the machine's
# idle share, both over the middle 1.5 s (utime+stime of the server from
# /proc/PID/stat, idle+iowait from /proc/stat); and per round the QPS of
# old and new over the reference's. It needs python3.
set -euo pipefail
old=$1 new=$2 rounds=${3:-7} iters=${4:-27000} rate=${5:-0}
source "$(dirname "$0")/build.sh" # sets repo and work, builds $work/sb-old and $work/sb-new

# run BIN IMPL: one run; prints "qps cpu_us_per_req idle_percent".
run() {
	local bin=$1 impl=$2 fifo="$work/stdin" out="$work/server.out" spid cpid
	rm -f "$fifo"
	mkfifo "$fifo"
	"$bin" serve "$impl" echo "$iters" <"$fifo" >"$out" 2>&1 &
	spid=$!
	exec 7>"$fifo" # the server runs until its standard input closes
	for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.1; done
	local addr
	addr=$(awk '/listening/{print $2}' "$out")
	local mode=(-mode pingpong)
	if [ "$rate" != 0 ]; then mode=(-mode open -rate "$rate"); fi
	"$work/sb-new" client "${mode[@]}" -conns 100 -addr "$addr" -warmup 1s -duration 2500ms </dev/null >"$work/client.out" 2>&1 &
	cpid=$!
	sleep 1.5
	local i0 s0 t0 i1 s1 t1
	read -r i0 t0 < <(awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
	s0=$(awk '{print $14+$15}' "/proc/$spid/stat")
	sleep 1.5
	read -r i1 t1 < <(awk '/^cpu /{print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
	s1=$(awk '{print $14+$15}' "/proc/$spid/stat")
	wait "$cpid"
	exec 7>&-
	wait "$spid" || true
	python3 -c '
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
qps = d["requests"] / d["seconds"]
ticks, s, i, t = (int(x) for x in sys.argv[2:])
print(round(qps), round(s / ticks * 1e6 / (qps * 1.5), 2), round(100 * i / t, 1))' \
		"$work/client.out" "$(getconf CLK_TCK)" $((s1 - s0)) $((i1 - i0)) $((t1 - t0))
}

sides=(ref old new)
for r in $(seq "$rounds"); do
	for k in 0 1 2; do
		side=${sides[$(((k + r) % 3))]}
		read -r q c i < <(run_side "$side")
		echo "round $r $side qps=$q cpu_us_per_req=$c idle_pct=$i"
	done
done | tee "$work/runs"
python3 - "$work/runs" <<'EOF'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r, side, q, c, i = re.match(r"round (\d+) (\w+) qps=(\S+) cpu_us_per_req=(\S+) idle_pct=(\S+)", line).groups()
    runs.setdefault(side, {})[int(r)] = (float(q), float(c), float(i))
for side in ("ref", "old", "new"):
    v = list(runs[side].values())
    print(side, "median QPS: %.0f, server CPU us/req: %.2f, idle %%: %.1f" % tuple(statistics.median(x[k] for x in v) for k in range(3)))
for side in ("old", "new"):
    ratios = sorted(runs[side][r][0] / runs["ref"][r][0] for r in runs["ref"])
    print(side + "/ref QPS per round:", " ".join("%.2f" % x for x in ratios), " median: %.2f" % statistics.median(ratios))
EOF
