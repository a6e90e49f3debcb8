#!/usr/bin/env bash
# The image server's own benchmark, against `kfs gateway` (docs/benchmarks.md): ApacheBench with
# 1,000 concurrent clients and 100,000 requests for one 6 KB image, RUNS times; every request
# must succeed ("Failed requests: 0", no "Non-2xx responses").
#   docs/bench/gateway-ab.sh WORKDIR [RUNS] [KEEPALIVE]
# KEEPALIVE=1 adds -k (keep-alive; ab's default, like the image server's run, is a new
# connection per request). Needs a release build (cargo build --release) and ab (Debian:
# apt-get install apache2-utils).
set -euo pipefail
work=${1:?usage: gateway-ab.sh WORKDIR [RUNS] [KEEPALIVE]}
runs=${2:-3}
keepalive=${3:-0}
here=$(cd "$(dirname "$0")" && pwd)
bin=$(cd "$here/../.." && pwd)/target/release
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$work"
rm -rf "$work/data"
master=127.0.0.1:25100
"$bin/kfs" local --no-shell --data "$work/data" --listen "$master" --http 127.0.0.1:25180 > "$work/local.log" 2>&1 &
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
head -c 6144 /dev/urandom > "$work/image.jpg"
"$bin/kfs" --master "$master" mkdir -p /site
"$bin/kfs" --master "$master" put -f "$work/image.jpg" /site/image.jpg
"$bin/kfs" --master "$master" gateway --root /site --listen 127.0.0.1:28180 > "$work/gateway.log" 2>&1 &
gateway_pid=$!
for _ in $(seq 100); do grep -q "serving" "$work/gateway.log" && break; sleep 0.1; done
grep -q "serving" "$work/gateway.log" || { echo "the gateway did not start:" >&2; cat "$work/gateway.log" >&2; exit 1; }
curl -fsS -o /dev/null http://127.0.0.1:28180/image.jpg
flags=(-c 1000 -n 100000)
[[ "$keepalive" == 1 ]] && flags+=(-k)
ab -q -c 100 -n 10000 http://127.0.0.1:28180/image.jpg > /dev/null # warm-up
for r in $(seq "$runs"); do
  echo "== ab ${flags[*]}, run $r"
  ab -q "${flags[@]}" http://127.0.0.1:28180/image.jpg | tee "$work/ab-$r.txt" |
    grep -E "Complete requests|Failed requests|Non-2xx|Requests per second|Time per request|  50%|  99%|100%"
done
