#!/usr/bin/env bash
# Regenerates the `kfs bench` figures of docs/benchmarks.md: every workload at its default size,
# RUNS times, against a --local KFS cluster, a directory of this machine's own disk, (with
# MOOSEFS=1, as root) a MooseFS cluster on this machine (docs/bench/moosefs.sh), and for the
# small-file workload (with SEAWEEDFS=1) SeaweedFS's own `weed benchmark` at replication 002, with
# and without -fsync (docs/bench/seaweedfs.sh), one after the other for each workload so all see
# the same machine state. Reports (JSON) go to OUT; the Markdown tables come from
# `kfs bench-report OUT/*.json`.
#   [MOOSEFS=1] [SEAWEEDFS=1] docs/bench/run-all.sh [OUT] [RUNS] (default: target/bench-reports, 3)
# What each acknowledges: KFS, a file synced on every replica; ext4 (--posix), a file fsynced;
# MooseFS, written to its chunkservers without fsync (its default); SeaweedFS, written on every
# replica, synced on the first only with -fsync.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out=${1:-$root/target/bench-reports}
runs=${2:-3}
cd "$root"
cargo build --release -p kfs-shell -p kfs-master   # kfs-master: --local runs the master as its own process
kfs="$root/target/release/kfs"
mkdir -p "$out"
posix=$(mktemp -d /tmp/kfs-bench-posix.XXXXXX)
fs=$(df --output=fstype "$posix" | tail -1)
mfs_work=/tmp/kfs-bench-moosefs
weed_work=/tmp/kfs-bench-seaweedfs
cleanup() {
  rm -rf "$posix"
  if [[ "${MOOSEFS:-}" == 1 ]]; then "$root/docs/bench/moosefs.sh" down "$mfs_work"; fi
  if [[ "${SEAWEEDFS:-}" == 1 ]]; then "$root/docs/bench/seaweedfs.sh" down "$weed_work"; fi
}
trap cleanup EXIT
if [[ "${MOOSEFS:-}" == 1 ]]; then
  mfs_mount=$("$root/docs/bench/moosefs.sh" up "$mfs_work" 3)
  mfs_version=$(mfsmaster -v 2>/dev/null | awk '{print $2}')
fi
if [[ "${SEAWEEDFS:-}" == 1 ]]; then
  "$root/docs/bench/seaweedfs.sh" up "$weed_work" >/dev/null
fi
for run in $(seq "$runs"); do
  for workload in meta seq small mixed; do
    echo "== run $run: $workload" >&2
    "$kfs" bench "$workload" --local --json > "$out/$workload-kfs-$run.json"
    "$kfs" bench "$workload" --posix "$posix" --label "local disk ($fs, one copy)" --json \
      > "$out/$workload-posix-$run.json"
    if [[ "${MOOSEFS:-}" == 1 ]]; then
      "$kfs" bench "$workload" --posix "$mfs_mount" --label "MooseFS $mfs_version (FUSE, goal 3)" \
        --json > "$out/$workload-moosefs-$run.json"
    fi
    if [[ "$workload" == small && "${SEAWEEDFS:-}" == 1 ]]; then
      "$root/docs/bench/seaweedfs.sh" bench "$weed_work" 100000 64 6144 \
        > "$out/small-seaweedfs-$run.json"
      "$root/docs/bench/seaweedfs.sh" bench "$weed_work" 100000 64 6144 fsync \
        > "$out/small-seaweedfs-fsync-$run.json"
    fi
  done
done
"$kfs" bench-report "$out"/*.json
