#!/usr/bin/env bash
# Fuzzes the parsers of outside data (API answers, config files) and the
# bookkeeping they feed (scan builder and tracker over runs of polls) with
# cargo-fuzz (libFuzzer), starting from the seed corpus in fuzz/corpus.
#   bash scripts/fuzz.sh [seconds per target]      (default 20; CI runs 20)
# Findings land in fuzz/artifacts/<target>/; the run fails on any crash.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-20}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes nightly-only flags (sanitizers); the stable toolchain
# accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
for target in parse_page parse_job parse_templates config polls; do
  work=$(mktemp -d)
  cp corpus/"$target"/* "$work"/
  echo "== fuzzing $target for ${secs}s"
  log="$work.log"
  if ! cargo fuzz run -O "$target" "$work" -- -max_total_time="$secs" -rss_limit_mb=4096 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $target failed; see fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E 'DONE|^Done' "$log" || true
  rm -rf "$work" "$log"
done
