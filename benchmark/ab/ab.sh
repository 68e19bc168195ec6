#!/bin/bash
# ab.sh compares two commits of this repository's netpoll, and the
# reference, on the server suite's echo server: the server pinned to CPU 0,
# the load client to CPU 1, interleaved round by round (ref, old, new), and
# prints each run and the median server CPU per request of each.
#
#   benchmark/ab/ab.sh OLD NEW RATE [ROUNDS]
#
# OLD and NEW are git revisions (NEW_PATCH=file applies a patch to NEW's
# build: see build.sh); RATE is requests per second for an open-loop
# client over 100 connections, or 0 for the closed loop (one request in
# flight per connection). Each run is 1 s of warm-up and 4 s measured; server
# CPU per request is the server's utime+stime over the measured 4 s (from the
# client's "measuring" to its "done", as in make bench) divided by the
# requests of that time. (Before 52b4ad1 it took the whole run, start-up
# and warm-up included, which make bench does not measure.) It prints each run,
# the medians of each side and the medians of the per-round ratios. It needs
# a 2-CPU machine or more, taskset and python3.
#
# With SERVE=tls-echo the servers speak TLS 1.3 (the suite's tls-echo mode)
# and so does the client, and the base is Go net with crypto/tls (gonet)
# instead of the reference, which has no TLS.
set -euo pipefail
old=$1 new=$2 rate=$3 rounds=${4:-5}
source "$(dirname "$0")/build.sh" # sets repo and work, builds $work/sb-old and $work/sb-new

mode=(-mode open -rate "$rate")
if [ "$rate" = 0 ]; then mode=(-mode pingpong); fi
serve=${SERVE:-echo} base=ref
case $serve in
echo) ;;
tls-echo) mode+=(-tls) base=gonet ;;
*) echo "ab.sh: SERVE must be echo or tls-echo" >&2; exit 2 ;;
esac

# run BIN IMPL: one run; prints "requests cpu_ticks p99_us".
run() {
	local bin=$1 impl=$2 fifo="$work/stdin" out="$work/server.out" spid
	rm -f "$fifo"
	mkfifo "$fifo"
	taskset -c 0 "$bin" serve "$impl" "$serve" <"$fifo" >"$out" 2>&1 &
	spid=$!
	exec 7>"$fifo" # the server runs until its standard input closes
	for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.1; done
	local addr c0=0 c1=0 line
	addr=$(awk '/listening/{print $2}' "$out")
	: >"$work/client.out"
	while IFS= read -r line; do
		case $line in
		"measuring") c0=$(awk '{print $14+$15}' "/proc/$spid/stat") ;;
		"done") c1=$(awk '{print $14+$15}' "/proc/$spid/stat") ;;
		esac
		echo "$line" >>"$work/client.out"
	done < <(taskset -c 1 "$work/sb-new" client "${mode[@]}" -conns 100 -addr "$addr" -warmup 1s -duration 4s </dev/null 2>&1)
	exec 7>&-
	wait "$spid" || true
	if [ "$c1" = 0 ]; then
		echo "ab.sh: the client never reported the end of its measured window:" >&2
		cat "$work/client.out" >&2
		return 1
	fi
	python3 -c '
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(d["requests"], int(sys.argv[2]), round(d["p99_ns"] / 1e3))' "$work/client.out" $((c1 - c0))
}

ticks=$(getconf CLK_TCK)
for r in $(seq "$rounds"); do
	for side in "$base" old new; do
		read -r n t p99 < <(run_side "$side")
		echo "round $r $side requests=$n cpu_us_per_req=$(python3 -c "print(round($t / $ticks * 1e6 / $n, 2))") p99_us=$p99"
	done
done | tee "$work/runs"
python3 - "$work/runs" "$base" <<'EOF'
import re, statistics, sys
base = sys.argv[2]
runs = {}
for line in open(sys.argv[1]):
    r, side, c, p = re.match(r"round (\d+) (\w+) requests=\S+ cpu_us_per_req=(\S+) p99_us=(\S+)", line).groups()
    runs.setdefault(side, {})[int(r)] = (float(c), float(p))
for side in (base, "old", "new"):
    v = list(runs[side].values())
    print(side, "median server CPU us/req: %.2f, p99 us: %.0f" % tuple(statistics.median(x[k] for x in v) for k in range(2)))
for side, under in (("old", base), ("new", base), ("new", "old")):
    ratios = sorted(runs[side][r][0] / runs[under][r][0] for r in runs[under])
    print("%s/%s CPU per round:" % (side, under), " ".join("%.3f" % x for x in ratios), " median: %.3f" % statistics.median(ratios))
EOF
