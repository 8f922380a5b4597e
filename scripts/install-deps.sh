#!/usr/bin/env bash
# Installs what wsagent needs to build, run and test, from Debian 12 packages only.
# Idempotent: packages already present are not touched, and apt is not called at all
# when nothing is missing. Needs root (or sudo) only when something must be installed.
#
#   scripts/install-deps.sh          build + run dependencies
#   scripts/install-deps.sh --test   also the independent test clients
set -euo pipefail

build_pkgs=(
  g++ cmake ninja-build ccache pkg-config make
  libboost1.81-dev libsimdjson-dev libssl-dev libspdlog-dev libfmt-dev
  libcli11-dev libtomlplusplus-dev libhiredis-dev libsqlite3-dev libmimalloc-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
test_pkgs=(
  python3 python3-websockets python3-pytest mosquitto mosquitto-clients python3-paho-mqtt
  python3-jwt python3-cryptography  # JWTs issued by an independent implementation
  clang libclang-rt-14-dev
  prometheus  # promtool checks /metrics
  openssl testssl.sh sslscan  # test certificates; the TLS listeners, scanned
  chromium  # browser tests (playwright-core drives it)
  redis-server redis-sentinel  # the cluster's tests start their own
  nginx haproxy  # deploy/'s load balancer configurations, tested for real
  nats-server  # bench/compare: a NATS cluster beside the wsagent cluster
)

want=("${build_pkgs[@]}")
testing=""
if [[ "${1:-}" == "--test" ]]; then
  testing=1
  want+=("${test_pkgs[@]}")
  # MQTT.js (tests/js) runs on Node: Debian's, unless a Node is already on PATH.
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    want+=(nodejs npm)
  fi
fi

# The JavaScript test clients, from the npm registry at the versions package-lock.json pins.
js_deps() {
  [[ -n $testing ]] || return 0
  local dir
  dir="$(dirname "$0")/../tests/js"
  if [[ ! -d $dir/node_modules || $dir/package-lock.json -nt $dir/node_modules ]]; then
    echo "install-deps: npm ci in tests/js"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$dir/node_modules"
  fi
}

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#want[@]} packages present"
  js_deps
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# Debian's server packages (mosquitto) start a system service on install; the tests start
# their own instances on free ports, so keep the service from starting (policy-rc.d).
policy=/usr/sbin/policy-rc.d
made_policy=""
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  made_policy=1
fi
trap 'if [[ -n $made_policy ]]; then $sudo rm -f "$policy"; fi' EXIT
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
js_deps
