#!/usr/bin/env bash
# Checks deploy/ as far as this machine allows (CI runs it from .ci/run):
#   1. every example configuration passes `gossamer run --check`
#   2. the example certificate inventory issues certificates (into a temporary folder)
#   3. the systemd unit passes `systemd-analyze verify` and keeps a low exposure score
#   4. manifests, compose file, unit, Dockerfile and Grafana dashboard: tests/deploy.rs
#   5. kustomize renders deploy/k8s and the overlay deploy/k8s-cert-manager (when kubectl is installed;
#      tests/deploy.rs applies the overlay's patch and checks the result either way)
#   6. the guide's local three-node cluster: deploy/local/cluster.sh start, check, stop
# Usage: deploy/check.sh [path/to/gossamer]   (default: target/release/gossamer, built if
# missing). Every wait has a deadline; traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

bin="${1:-target/release/gossamer}"
if [ ! -x "$bin" ]; then
  cargo build --release --quiet --bin gossamer
  bin=target/release/gossamer
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

tmp="$(mktemp -d)"
cluster_started=0
cleanup() {
  if [ "$cluster_started" = 1 ]; then
    GOSSAMER_BIN="$bin" deploy/local/cluster.sh stop >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

step() { printf '\n--> %s\n' "$*"; }
skip() { printf 'SKIP: %s\n' "$*"; }

step "example configurations: gossamer run --check"
for f in deploy/local/*.toml deploy/examples/*/*.toml; do
  if ! out="$("$bin" run --check --config "$f" 2>&1)"; then
    printf 'FAIL %s\n%s\n' "$f" "$out" >&2
    exit 1
  fi
  echo "ok  $f"
done

step "example certificate inventory: gossamer certs issue --inventory"
for inv in deploy/examples/*/inventory.txt; do
  "$bin" certs init --dir "$tmp/ca" --cluster example --force >/dev/null
  "$bin" certs issue --dir "$tmp/ca" --inventory "$inv" | tail -n 1
  rm -rf "$tmp/ca"
done

step "systemd unit: systemd-analyze verify"
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify insists that ExecStart's binary exists: check a copy that runs the built one.
  unit="$tmp/gossamer.service"
  sed "s#/usr/local/bin/gossamer#$bin#g" deploy/systemd/gossamer.service >"$unit"
  systemd-analyze verify "$unit"
  echo "ok  deploy/systemd/gossamer.service"
  if out="$(systemd-analyze security --offline=true "$unit" 2>/dev/null)"; then
    score="$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
    if [ -z "$score" ]; then
      echo "could not read the exposure score" >&2
      exit 1
    fi
    echo "exposure score $score (systemd-analyze security; 0 = fully sandboxed, 10 = none)"
    if ! awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
      echo "the unit's sandbox got weaker: exposure $score > 2.0" >&2
      exit 1
    fi
  else
    skip "this systemd-analyze cannot score a unit offline (needs systemd 250 or newer)"
  fi
else
  skip "systemd-analyze not installed (Debian package: systemd)"
fi

step "manifests, compose file, unit, Dockerfile, dashboard: cargo test --test deploy"
cargo test --release --quiet --test deploy

step "kubernetes: kubectl kustomize deploy/k8s, deploy/k8s-cert-manager"
if command -v kubectl >/dev/null 2>&1; then
  for k in deploy/k8s deploy/k8s-cert-manager; do
    kubectl kustomize "$k" >"$tmp/k8s.yaml"
    echo "ok  $k: rendered $(grep -c '^kind:' "$tmp/k8s.yaml") objects"
  done
  # The overlay leaves no init container and no Secret volume behind.
  kubectl kustomize deploy/k8s-cert-manager >"$tmp/k8s.yaml"
  if grep -q -e 'initContainers:' -e 'secretName: gossamer-certs' "$tmp/k8s.yaml"; then
    echo "deploy/k8s-cert-manager still copies certificates from a Secret" >&2
    exit 1
  fi
else
  skip "kubectl not installed (tests/deploy.rs checked the manifests)"
fi

step "docker image"
skip "building the image needs a Docker daemon and a full release build; see deploy/README.md"

step "local three-node cluster (deploy/README.md): start, check, stop"
export GOSSAMER_BIN="$bin"
cluster_started=1
deploy/local/cluster.sh start
deploy/local/cluster.sh check
deploy/local/cluster.sh stop
cluster_started=0

printf '\ndeploy checks passed\n'
