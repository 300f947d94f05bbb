#!/usr/bin/env bash
# Pages per second the standalone simulator serves over HTTP: 1000-job
# minimal pages from a window of 1,000,000 jobs, measured with wrk.
#   bash scripts/bench-simulator.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
cargo build --release -p nexrender-simulator --bin nexrender-simulator >/dev/null
port=18090
log=$(mktemp)
./target/release/nexrender-simulator --listen 127.0.0.1:$port --prefill 1000000 --token bench 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 200); do grep -q listening "$log" && break; sleep 0.1; done
cat "$log"
from=$(date -u -d '-2 days' +%Y-%m-%dT%H:%M:%SZ)
to=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for minimal in true false; do
  url="http://127.0.0.1:$port/api/v2/jobs?minimal=$minimal&limit=1000&from=500000&from_date=$from&to_date=$to"
  echo "== minimal=$minimal, 2 threads, 4 connections, ${secs}s: $url"
  wrk -t2 -c4 -d"${secs}s" -H 'Authorization: Bearer bench' "$url" | grep -E 'Requests/sec|Transfer/sec|Latency'
done
echo "== resident memory of the simulator holding 1,000,000 jobs"
grep VmRSS /proc/$pid/status
