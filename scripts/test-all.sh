#!/usr/bin/env bash
# Every test, on a fresh machine: installs what the tests need, then runs
# formatting, lints and the whole test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Where the time goes (docs/testing.md keeps the figures): one line a phase.
phase_started=$SECONDS
phase() {
  echo "== test-all: $1: $((SECONDS - phase_started)) s (total $SECONDS s)"
  phase_started=$SECONDS
}

# What the tests need (scripts/tools.sh, each pinned): said first, then
# installed. Stoplight Prism serves the vendor's OpenAPI spec and rejects
# requests the spec does not allow (tests/prism.rs); Debian's Prometheus,
# promtool and Alertmanager run the rules, dashboards and alerts for real;
# the Python tools (in .tools/venv) check the deployment files.
source scripts/tools.sh
tools_preflight
tools_install
export REQUIRE_PRISM=1 REQUIRE_PROMETHEUS=1 REQUIRE_ALERTMANAGER=1 REQUIRE_NEXRENDER_SERVER=1
phase "installs"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/nexrender.rules.yml
python3 grafana/generate.py --check
# Code shape: no function over 80 lines; README's Layout section matches src/.
python3 scripts/check-code-shape.py --self-test
python3 scripts/check-code-shape.py
# Every alert has its README row, its runbook row (with its severity) and section.
python3 scripts/check-alert-docs.py

# Every deployment artifact in deploy/, offline (container image, systemd,
# kustomize, Helm, compose).
phase "rules, dashboards, code shape"
bash scripts/check-deploy.sh
phase "deployment checks (and their installs)"

# The workspace: the exporter (root) and the simulator (simulator/). The
# exporter built without its default feature `demo` carries no simulator;
# it must stay clean too, and so must the fault drills (`failpoints`).
cargo fmt --all --check
cargo clippy --workspace --all-targets --features failpoints -- -D warnings
cargo clippy --no-default-features --all-targets -- -D warnings
phase "format and lints (builds)"

# Dependency audit: licences, banned crates, sources; then known
# vulnerabilities. The RustSec database cannot be fetched here, so the
# advisory check runs offline against the dated snapshot that
# ../shared/security/ keeps beside the project, when it is there.
cargo deny check licenses bans sources
if [ -f ../shared/security/deny-advisories.sh ]; then
  bash ../shared/security/deny-advisories.sh
else
  echo "advisory check skipped: ../shared/security/deny-advisories.sh not found"
fi

phase "dependency audit"

# A short fuzzing run of every parser of outside data: built here, run
# beside the test suite (below), which mostly waits on sockets.
bash scripts/fuzz.sh --build
phase "fuzzing's build"

# Without `demo`, --demo is refused as a usage error (tests/cli.rs).
cargo test --no-default-features --test cli
phase "the build without demo, and its cli tests"

# The test suite last, so its summary closes the output.
# The fault drills are built in for tests/supervision.rs. Everything is
# built first (every target, as --all-targets). Then four things that
# spend their time waiting or on one core run beside the rest instead of
# after it, their output shown when they end: the test with a real
# Prometheus and Alertmanager, the one with two sharded exporters, the
# fuzzing (20 s a target, one core) and the rules' promtool tests. The
# rest skips the two tests by name.
cargo test --workspace --all-targets --features failpoints --no-run
phase "the test suite's build"
beside=(an_error_storm_and_a_stuck_queue_reach_the_receiver_through_alertmanager_and_resolve
        two_shards_add_up_to_one_unsharded_exporter_and_no_account_is_polled_twice)
beside_log=$(mktemp)
cargo test --features failpoints --test alerting --test sharding >"$beside_log" 2>&1 &
beside_pid=$!
fuzz_log=$(mktemp)
bash scripts/fuzz.sh 20 >"$fuzz_log" 2>&1 &
fuzz_pid=$!
# The rules' unit tests: about 30 s of one core (days of samples for the
# 3-day error-budget windows).
rules_log=$(mktemp)
promtool test rules deploy/prometheus/tests/nexrender.rules.test.yml >"$rules_log" 2>&1 &
rules_pid=$!
trap 'kill "$beside_pid" "$fuzz_pid" "$rules_pid" 2>/dev/null || true' EXIT
skips=()
for t in "${beside[@]}"; do skips+=(--skip "$t"); done
cargo test --workspace --lib --bins --tests --features failpoints -- "${skips[@]}"
# The benchmarks, each checking itself once on a small load (criterion's
# own command line takes no --skip).
cargo test --workspace --benches --features failpoints
phase "the test suite's run"
# Waits for what ran beside the tests, shows its output, fails with it.
shown_after() { # what pid log
  local rc=0
  wait "$2" || rc=$?
  echo "== $1 (run beside the tests):"
  cat "$3"
  rm -f "$3"
  [ "$rc" -eq 0 ] || { echo "$1 failed (above)" >&2; exit 1; }
  phase "$1, after the rest"
}
shown_after "tests/alerting.rs and tests/sharding.rs" "$beside_pid" "$beside_log"
shown_after "fuzzing's runs" "$fuzz_pid" "$fuzz_log"
shown_after "the rules' promtool tests" "$rules_pid" "$rules_log"
