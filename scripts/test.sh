#!/usr/bin/env bash
# The one command that runs every Strata test, locally and in CI (.ci/run).
#
#   scripts/test.sh [extra pytest args...]      e.g. scripts/test.sh -k codecs -x
#
# Steps:
#   1. install missing system packages (apt: kcat, ...)
#   2. create/reuse the Python venv for the e2e tests and install its packages
#      (tests/e2e/requirements.txt) only when they changed or are missing;
#      install the kafkajs test's npm packages likewise
#   3. start external services for the tests (etcd; see SERVICES below). The S3-compatible
#      server (moto_server from the venv) is started and stopped by the e2e fixtures
#      (tests/e2e/conftest.py), on a free loopback port, so each test can also freeze it.
#   4. cargo fmt --check, clippy -D warnings, build, test
#   5. the end-to-end suite: pytest tests/e2e against the freshly built binary
#
# Works as root or with sudo, non-interactively (CI=true, no stdin).
#
# Environment knobs:
#   STRATA_TEST_VENV     venv location        (default: $HOME/.cache/strata-test-venv)
#   STRATA_TEST_PYTHON   python to create it  (default: python3)
#   CARGO_TARGET_DIR     build directory      (default: $HOME/.cache/strata-target)
#   STRATA_BIN           broker binary for e2e (default: $CARGO_TARGET_DIR/debug/strata)
#   STRATA_SKIP_CARGO=1  skip step 4 (use an already built binary)
#   STRATA_SKIP_E2E=1    skip step 5
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Builds go to a cache outside the checkout, so a fresh clone (CI) reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo -n)
else
  SUDO=()
fi

# ----------------------------------------------------------------------------
# 1. System packages
# ----------------------------------------------------------------------------
# Each entry: "<command that must exist>:<Debian package providing it>".
APT_NEEDS=(
  "kcat:kcat"
  "node:nodejs"
  "npm:npm"
  # The consumer-lag checker the group tests point at the broker, and the ZooKeeper it insists on
  # for its own coordination (started by the test, on loopback).
  "Burrow:burrow"
  "/usr/share/zookeeper/bin/zkServer.sh:zookeeper"
  # The metadata store of clusters (Debian's package does not start a service by itself).
  "etcd:etcd-server"
  # The load tool (load/) links librdkafka, which its build compiles with make and a C compiler.
  "make:make"
  "cc:gcc"
  # The S3 server (moto) comes from the venv.
)

install_apt_packages() {
  local missing=() entry
  for entry in "${APT_NEEDS[@]}"; do
    case "$entry" in
      /*) [ -x "${entry%%:*}" ] || missing+=("${entry#*:}") ;;
      *) command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}") ;;
    esac
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  step "apt-get install ${missing[*]}"
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ----------------------------------------------------------------------------
# 2. Python venv + npm packages for the e2e tests
# ----------------------------------------------------------------------------
VENV="${STRATA_TEST_VENV:-$HOME/.cache/strata-test-venv}"
REQUIREMENTS="$ROOT/tests/e2e/requirements.txt"
PY="$VENV/bin/python"

setup_venv() {
  local python="${STRATA_TEST_PYTHON:-python3}"
  if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 9))' >/dev/null 2>&1; then
    step "creating Python venv at $VENV"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    if ! "$python" -m venv "$VENV" >/dev/null 2>&1; then
      # Debian's own python3 needs python3-venv for ensurepip.
      "${SUDO[@]}" apt-get update -qq
      "${SUDO[@]}" apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
      rm -rf "$VENV"
      "$python" -m venv "$VENV"
    fi
  fi
  local want have=""
  want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
  [ -f "$VENV/.strata-requirements.sha256" ] && have="$(cat "$VENV/.strata-requirements.sha256")"
  if [ "$want" != "$have" ] || ! "$PY" -c 'import pytest, pytest_timeout, confluent_kafka, kafka, snappy, lz4.frame, zstandard' >/dev/null 2>&1; then
    step "pip install -r tests/e2e/requirements.txt"
    "$PY" -m pip install -q -r "$REQUIREMENTS"
    echo "$want" >"$VENV/.strata-requirements.sha256"
  fi
}

setup_npm() {
  local dir="$ROOT/tests/e2e/js"
  [ -f "$dir/package.json" ] || return 0
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm not found: the kafkajs test will be skipped" >&2
    return 0
  fi
  local want have=""
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  [ -f "$dir/node_modules/.strata-lock.sha256" ] && have="$(cat "$dir/node_modules/.strata-lock.sha256")"
  if [ ! -d "$dir/node_modules/kafkajs" ] || [ "$want" != "$have" ]; then
    step "npm ci (tests/e2e/js)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" >"$dir/node_modules/.strata-lock.sha256"
  fi
}

# ----------------------------------------------------------------------------
# 3. External services for the tests
# ----------------------------------------------------------------------------
# SERVICES: etcd (Debian etcd-server) on a free 127.0.0.1 port with its data under
# "$SERVICES_DIR"; its endpoint is exported as STRATA_TEST_ETCD_ENDPOINT for cargo test
# and pytest, and its pid as STRATA_TEST_ETCD_PID (a test pauses it to play an etcd outage). Record every PID in SERVICE_PIDS so stop_services
# ends exactly those processes. Keep both functions quiet: nothing may be
# printed after pytest's summary line.
SERVICES_DIR=""
SERVICE_PIDS=()

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# One etcd on loopback for the whole run; tests namespace their keys with their own cluster
# names. Fast heartbeats and elections make it ready in about 0.1 s.
start_etcd() {
  local client peer i
  client="$(free_port)"
  peer="$(free_port)"
  etcd --name strata-test --data-dir "$SERVICES_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "strata-test=http://127.0.0.1:$peer" \
    --heartbeat-interval 10 --election-timeout 100 >"$SERVICES_DIR/etcd.log" 2>&1 &
  SERVICE_PIDS+=("$!")
  for i in $(seq 1 100); do
    if "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$client/health', timeout=1)" 2>/dev/null; then
      export STRATA_TEST_ETCD_ENDPOINT="http://127.0.0.1:$client"
      export STRATA_TEST_ETCD_PID="${SERVICE_PIDS[-1]}"
      return 0
    fi
    sleep 0.1
  done
  cat "$SERVICES_DIR/etcd.log" >&2
  die "etcd did not become ready"
}

start_services() {
  SERVICES_DIR="$(mktemp -d "${TMPDIR:-/tmp}/strata-test-services.XXXXXX")"
  start_etcd
}

stop_services() {
  local pid
  for pid in "${SERVICE_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${SERVICE_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  SERVICE_PIDS=()
  if [ -n "$SERVICES_DIR" ]; then
    rm -rf "$SERVICES_DIR"
  fi
}

cleanup() {
  stop_services >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ----------------------------------------------------------------------------
# Run
# ----------------------------------------------------------------------------
install_apt_packages
setup_venv
setup_npm
start_services

if [ "${STRATA_SKIP_CARGO:-0}" != "1" ]; then
  step "cargo fmt --all -- --check"
  cargo fmt --all -- --check
  step "cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings
  step "cargo build --workspace"
  cargo build --workspace
  step "cargo test --workspace"
  cargo test --workspace
fi

if [ "${STRATA_SKIP_E2E:-0}" != "1" ]; then
  TARGET_DIR="$CARGO_TARGET_DIR"
  case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
  export STRATA_BIN="${STRATA_BIN:-$TARGET_DIR/debug/strata}"
  [ -x "$STRATA_BIN" ] || die "broker binary not found at $STRATA_BIN (build it, or set STRATA_BIN)"
  step "pytest tests/e2e (broker: $STRATA_BIN)"
  # Last command: its summary line is the last line of output, and its exit
  # status is the script's.
  "$PY" -m pytest tests/e2e -q "$@"
fi
