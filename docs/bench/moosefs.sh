#!/usr/bin/env bash
# A MooseFS cluster on this machine, to run `kfs bench --posix` against it beside KFS:
# a master, 3 chunkservers (one data dir each) and a FUSE mount, all under one work dir, with the
# goal (replication) of the mount's root set to GOAL. Needs root, /dev/fuse and Debian's
# moosefs-master, moosefs-chunkserver and moosefs-client (installed when missing).
#   docs/bench/moosefs.sh up WORK [GOAL]   # prints the mount point
#   docs/bench/moosefs.sh down WORK
set -euo pipefail
cmd=${1:?usage: moosefs.sh up|down WORK [GOAL]}
work=${2:?usage: moosefs.sh up|down WORK [GOAL]}
goal=${3:-3}
case $cmd in
up)
  if ! command -v mfsmaster >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      moosefs-master moosefs-chunkserver moosefs-client >/dev/null
  fi
  # MooseFS refuses loopback between chunkservers and master: use this machine's own address
  # (the traffic still stays on the machine).
  ip=$(hostname -I | awk '{print $1}')
  mkdir -p "$work/master" "$work/mnt"
  cp /var/lib/mfs/metadata.mfs.empty "$work/master/metadata.mfs"
  echo "* / rw,alldirs,admin,maproot=0:0" > "$work/mfsexports.cfg"
  cat > "$work/mfsmaster.cfg" <<CONF
WORKING_USER = root
WORKING_GROUP = root
DATA_PATH = $work/master
EXPORTS_FILENAME = $work/mfsexports.cfg
MATOML_LISTEN_HOST = $ip
MATOCS_LISTEN_HOST = $ip
MATOCL_LISTEN_HOST = $ip
CONF
  mfsmaster -c "$work/mfsmaster.cfg" start >/dev/null
  for i in 1 2 3; do
    mkdir -p "$work/cs$i" "$work/hdd$i"
    echo "$work/hdd$i" > "$work/mfshdd$i.cfg"
    cat > "$work/mfschunkserver$i.cfg" <<CONF
WORKING_USER = root
WORKING_GROUP = root
DATA_PATH = $work/cs$i
HDD_CONF_FILENAME = $work/mfshdd$i.cfg
MASTER_HOST = $ip
CSSERV_LISTEN_HOST = $ip
CSSERV_LISTEN_PORT = $((9422 + i * 10))
HDD_LEAVE_SPACE_DEFAULT = 1GiB
CONF
    mfschunkserver -c "$work/mfschunkserver$i.cfg" start >/dev/null
  done
  mfsmount "$work/mnt" -H "$ip" >/dev/null
  mfssetgoal -r "$goal" "$work/mnt" >/dev/null
  # Wait (60 s at most) until the three chunkservers have registered their space.
  one=$(df -B1 --output=avail "$work/hdd1" | tail -1)
  for _ in $(seq 600); do
    avail=$(df -B1 --output=size "$work/mnt" | tail -1)
    [[ "$avail" -gt $((2 * one)) ]] && break
    sleep 0.1
  done
  echo "$work/mnt"
  ;;
down)
  umount "$work/mnt" 2>/dev/null || fusermount -u "$work/mnt" 2>/dev/null || true
  for i in 1 2 3; do mfschunkserver -c "$work/mfschunkserver$i.cfg" stop >/dev/null 2>&1 || true; done
  mfsmaster -c "$work/mfsmaster.cfg" stop >/dev/null 2>&1 || true
  rm -rf "$work"
  ;;
*) echo "usage: moosefs.sh up|down WORK [GOAL]" >&2; exit 2 ;;
esac
