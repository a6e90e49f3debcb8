#!/usr/bin/env bash
# The FUSE mount beside the native client, on one cluster: `kfs local --no-shell` (a master and 3
# chunkservers in one process, replication 3) mounted with `kfs mount`; each workload RUNS
# times through the native client (`kfs bench W` against that cluster) and through the mount
# (`kfs bench W --posix MOUNT`), one after the other, so both see the same machine state.
# Both acknowledge the same thing: a file is synced on every replica when its write returns
# (`File::sync` natively; `fsync` on the mount is `File::sync`). Needs root (the mount).
#   docs/bench/kfs-mount.sh [OUT] [RUNS] [WORKLOAD...]   (default: target/bench-reports-mount, 3, meta small seq)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out=${1:-$root/target/bench-reports-mount}
runs=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
workloads=("$@")
(( ${#workloads[@]} )) || workloads=(meta small seq)
cd "$root"
cargo build --release -p kfs-shell -p kfs-master
kfs="$root/target/release/kfs"
mkdir -p "$out"
work=$(mktemp -d /tmp/kfs-bench-mount.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$kfs" local --no-shell --no-install --data "$work/data" --listen "127.0.0.1:$port" \
  > "$work/local.log" 2>&1 &
local_pid=$!
cleanup() {
  umount "$work/mnt" 2>/dev/null || umount -l "$work/mnt" 2>/dev/null || true
  kill "$local_pid" 2>/dev/null || true
  wait "$local_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export KFS_MASTER="127.0.0.1:$port"
export KFS_CREDENTIALS="$work/data/secrets/admin.credentials"
for _ in $(seq 300); do
  [[ -f "$KFS_CREDENTIALS" ]] && [[ $("$kfs" servers 2>/dev/null | grep -c alive) -ge 3 ]] && break
  sleep 0.1
done
[[ $("$kfs" servers | grep -c alive) -ge 3 ]] || { cat "$work/local.log" >&2; exit 1; }
mkdir "$work/mnt"
"$kfs" mount "$work/mnt" >&2
for run in $(seq "$runs"); do
  for workload in "${workloads[@]}"; do
    echo "== run $run: $workload" >&2
    "$kfs" bench "$workload" --label "KFS native client (replication 3)" --json \
      > "$out/$workload-native-$run.json"
    "$kfs" bench "$workload" --posix "$work/mnt" --label "KFS mount (FUSE, replication 3)" --json \
      > "$out/$workload-mount-$run.json"
  done
done
"$kfs" bench-report "$out"/*.json
