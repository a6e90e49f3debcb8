#!/usr/bin/env bash
# Regenerates the `kfs bench` figures of docs/benchmarks.md: every workload at its default size,
# RUNS times, against a --local KFS cluster, a directory of this machine's own disk and (with
# MOOSEFS=1, as root) a MooseFS cluster on this machine (docs/bench/moosefs.sh), one after the
# other for each workload so all see the same machine state. Reports (JSON) go to OUT; the
# Markdown tables come from `kfs bench-report OUT/*.json`.
#   [MOOSEFS=1] docs/bench/run-all.sh [OUT] [RUNS]      (default: target/bench-reports, 3)
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
cleanup() {
  rm -rf "$posix"
  if [[ "${MOOSEFS:-}" == 1 ]]; then "$root/docs/bench/moosefs.sh" down "$mfs_work"; fi
}
trap cleanup EXIT
if [[ "${MOOSEFS:-}" == 1 ]]; then
  mfs_mount=$("$root/docs/bench/moosefs.sh" up "$mfs_work" 3)
  mfs_version=$(mfsmaster -v 2>/dev/null | awk '{print $2}')
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
  done
done
"$kfs" bench-report "$out"/*.json
