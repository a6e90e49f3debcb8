#!/usr/bin/env bash
# The gateway benchmark of docs/benchmarks.md: a local cluster (3 chunkservers), 100,000 files of
# 6 KiB written by `kfs bench small --keep`, `kfs gateway` in front of them, and wrk GETting
# random ones over 256 connections for DURATION seconds, RUNS times, then random ones of a hot set
# of 1,000, taking turns with the metadata cache off. Non-2xx answers show in wrk's output ("Non-2xx or 3xx responses").
#   docs/bench/gateway.sh WORKDIR [RUNS] [DURATION]
# Needs a release build (cargo build --release) and wrk (Debian: apt-get install wrk).
set -euo pipefail
work=${1:?usage: gateway.sh WORKDIR [RUNS] [DURATION]}
runs=${2:-3}
duration=${3:-30}
here=$(cd "$(dirname "$0")" && pwd)
bin=$(cd "$here/../.." && pwd)/target/release
mkdir -p "$work"
rm -rf "$work/data"
master=127.0.0.1:25000
"$bin/kfs" local --no-shell --data "$work/data" --listen "$master" --http 127.0.0.1:25080 > "$work/local.log" 2>&1 &
local_pid=$!
gateway_pid=
cleanup() {
  [[ -n "$gateway_pid" ]] && kill "$gateway_pid" 2>/dev/null || true
  kill "$local_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q "Serving until" "$work/local.log" && break; sleep 0.2; done
grep -q "Serving until" "$work/local.log" || { echo "kfs local did not start:" >&2; cat "$work/local.log" >&2; exit 1; }
"$bin/kfs" --master "$master" bench small --files 100000 --size 6KiB --reads 1000 --keep --json > "$work/small.json"
root=/$("$bin/kfs" --master "$master" ls / | grep -o 'kfs-bench-small-[0-9]*' | head -1)
echo "files under $root"
# The two settings take turns, so neither gains from a page cache the other warmed.
for r in $(seq "$runs"); do
  for ttl in 1000 0; do
    "$bin/kfs" --master "$master" gateway --root "$root" --listen 127.0.0.1:28080 --cache-ttl-ms "$ttl" > "$work/gateway.log" 2>&1 &
    gateway_pid=$!
    for _ in $(seq 100); do grep -q "serving" "$work/gateway.log" && break; sleep 0.1; done
    grep -q "serving" "$work/gateway.log" || { echo "the gateway did not start:" >&2; cat "$work/gateway.log" >&2; exit 1; }
    # Every request must succeed: one GET checked by hand first.
    curl -fsS -o /dev/null "http://127.0.0.1:28080/d0/p0"
    wrk -t2 -c256 -d10s -s "$here/gateway-random.lua" http://127.0.0.1:28080 > /dev/null # warm-up
    echo "== cache ttl ${ttl} ms, run $r"
    wrk -t2 -c256 -d"${duration}s" --latency -s "$here/gateway-random.lua" http://127.0.0.1:28080 | tee "$work/wrk-ttl$ttl-$r.txt"
    # A hot set, as a site's front page: 1,000 of the files.
    echo "== cache ttl ${ttl} ms, hot set of 1,000 files, run $r"
    FILES=1000 wrk -t2 -c256 -d"${duration}s" --latency -s "$here/gateway-random.lua" http://127.0.0.1:28080 | tee "$work/wrk-hot-ttl$ttl-$r.txt"
    kill "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true; gateway_pid=
  done
done
