#!/usr/bin/env bash
# The reference beside the gateway benchmark: nginx (Debian's package) serving 100,000 files of
# 6 KiB from this machine's own disk, with the same wrk load (256 connections, random files).
# It is what one machine's web server does with no file system behind it over the network, so
# an upper bound for the gateway on the same 2 cores.
#   docs/bench/nginx-local.sh WORKDIR [RUNS] [DURATION]
# Needs nginx and wrk (apt-get install nginx-light wrk, or nginx).
set -euo pipefail
work=${1:?usage: nginx-local.sh WORKDIR [RUNS] [DURATION]}
runs=${2:-3}
duration=${3:-30}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work/files"
if [[ ! -f "$work/files/d99/p99999" ]]; then
  python3 - "$work/files" <<'PY'
import os, sys
root = sys.argv[1]
data = os.urandom(6 * 1024)
for i in range(100_000):
    d = os.path.join(root, f"d{i // 1000}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"p{i}"), "wb") as f:
        f.write(data)
PY
fi
cat > "$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:28090;
    root $work/files;
  }
}
CONF
nginx -c "$work/nginx.conf"
trap 'nginx -c "$work/nginx.conf" -s stop' EXIT
sleep 0.5
curl -fsS -o /dev/null http://127.0.0.1:28090/d0/p0
wrk -t2 -c256 -d5s -s "$here/gateway-random.lua" http://127.0.0.1:28090 > /dev/null
for r in $(seq "$runs"); do
  echo "== nginx, local disk, run $r"
  wrk -t2 -c256 -d"${duration}s" --latency -s "$here/gateway-random.lua" http://127.0.0.1:28090 | tee "$work/wrk-nginx-$r.txt"
done
