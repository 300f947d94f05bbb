#!/usr/bin/env bash
# Fuzzes the parsers of outside data (API answers, config files) and the
# bookkeeping they feed (scan builder and tracker over runs of polls) with
# cargo-fuzz (libFuzzer), starting from the seed corpus in fuzz/corpus.
#   bash scripts/fuzz.sh [seconds per target]      (default 20; CI runs 20)
#   bash scripts/fuzz.sh --build                   (the build alone)
# Findings land in fuzz/artifacts/<target>/; the run fails on any crash.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
tools_install
cd fuzz
secs=${1:-20}
# cargo-fuzz passes nightly-only flags (sanitizer coverage); the stable
# toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
# No AddressSanitizer (cargo-fuzz's default): the exporter's code under
# test is safe Rust (its one unsafe block, alloc.rs's mallopt, is outside
# every target), and a panic, an overflow (debug assertions are on) or an
# allocation over -rss_limit_mb is a finding without it. Without it the
# build took 158 s instead of about 230 s here, and the polls target ran
# 6 times as many inputs in 10 s (docs/fuzzing.md).
sanitizer=(-s none)
cargo fuzz build -O "${sanitizer[@]}"
[ "$secs" = --build ] && exit 0
for target in parse_page parse_job parse_server_jobs parse_templates config polls; do
  work=$(mktemp -d)
  cp corpus/"$target"/* "$work"/
  echo "== fuzzing $target for ${secs}s"
  log="$work.log"
  if ! cargo fuzz run -O "${sanitizer[@]}" "$target" "$work" -- -max_total_time="$secs" -rss_limit_mb=4096 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $target failed; see fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E 'DONE|^Done' "$log" || true
  rm -rf "$work" "$log"
done
