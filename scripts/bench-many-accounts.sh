#!/usr/bin/env bash
# Many accounts in one process: 100 accounts of 10,000 jobs each, polled
# every 30 s (the default), against one standalone simulator whose farm
# every account reads with its own token (a farm of 10,000 jobs, about 7
# arriving and ending a minute). Reports, minute by minute, the exporter's
# resident memory, CPU, /metrics size (plain and gzip) and series count,
# then /metrics render and scrape latency.
#   bash scripts/bench-many-accounts.sh [minutes] [accounts] [jobs]
#   GZIP=false bash scripts/bench-many-accounts.sh ...   # the API's answers not compressed
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
accounts=${2:-100}
jobs=${3:-10000}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
cargo build --release --workspace --bins >/dev/null 2>&1
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
rss_of() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

{
  echo "tokens:"
  for i in $(seq 0 $((accounts - 1))); do echo "  - token-$i"; done
  cat <<YAML
seed: 3
lifecycle:
  arrivals_per_minute: $(echo "$jobs / 1440" | bc -l | cut -c1-8)
  burst_probability: 0
  render_median: 150s
  render_spread: 0.3
  nested_ratio: 0
  workers: 100
prefill:
  jobs: $jobs
  span: 24h
YAML
} > "$work/sim.yaml"
./target/release/nexrender-simulator --listen 127.0.0.1:18301 --config "$work/sim.yaml" 2>"$work/sim.log" &
pids+=($!)
for _ in $(seq 1 200); do grep -q listening "$work/sim.log" && break; sleep 0.1; done

{
  cat <<YAML
poll:
  interval: 30s
  window: 24h
  gzip: ${GZIP:-true}
accounts:
YAML
  for i in $(seq 0 $((accounts - 1))); do
    printf '  - name: team-%03d\n    api_url: http://127.0.0.1:18301/api/v2\n    token: token-%d\n' "$i" "$i"
  done
} > "$work/exp.yaml"
./target/release/nexrender-exporter --config "$work/exp.yaml" --web.listen-address 127.0.0.1:19301 --log.level warn 2>"$work/exp.log" &
exp=$!
pids+=($exp)
started=$(date +%s.%N)
for _ in $(seq 1 1200); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:19301/readyz)" = 200 ] && break
  sleep 0.25
done
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $accounts accounts x $jobs jobs, polls every 30 s"
printf "every account's first poll done in %.1f s; RSS %s MB, CPU %s s so far\n" "$(echo "$(date +%s.%N) - $started" | bc -l)" "$(rss_of $exp)" "$(cpu_of $exp)"
metrics() { curl -s http://127.0.0.1:19301/metrics; }
sum_of() { metrics | awk -v k="$1" 'index($0, k) == 1 { s += $2 } END { printf "%d", s }'; }
api_bytes() { sum_of nexrender_exporter_api_response_bytes_total; }
polls_ok() { sum_of 'nexrender_exporter_polls_total{' ; }
bytes0=$(api_bytes); polls0=$(polls_ok); requests0=$(sum_of nexrender_exporter_api_requests_total)
printf '%-7s %9s %14s %15s %15s %8s\n' minute "RSS MB" "CPU s/minute" "/metrics bytes" "gzip bytes" series
cpu0=$(cpu_of $exp)
for m in $(seq 1 "$minutes"); do
  sleep 60
  cpu1=$(cpu_of $exp)
  plain=$(metrics | wc -c)
  gz=$(curl -s -H 'Accept-Encoding: gzip' http://127.0.0.1:19301/metrics | wc -c)
  series=$(metrics | grep -vc '^#')
  printf '%-7s %9s %14.2f %15s %15s %8s\n' "$m" "$(rss_of $exp)" "$(echo "$cpu1 - $cpu0" | bc -l)" "$plain" "$gz" "$series"
  cpu0=$cpu1
done
tracked=$(metrics | awk '/^nexrender_exporter_tracked_jobs/ { s += $2 } END { print s }')
ok=$(metrics | awk '/^nexrender_exporter_polls_total.*result="success"/ { s += $2 } END { print s }')
failed=$(metrics | awk '/^nexrender_exporter_polls_total.*result="failure"/ { s += $2 } END { print s }')
polls=$(( $(polls_ok) - polls0 ))
echo "jobs tracked in all: $tracked; polls: $ok succeeded, $failed failed"
echo "after the first polls (gzip ${GZIP:-true}): $polls polls, $(echo "($(sum_of nexrender_exporter_api_requests_total) - $requests0) / $polls" | bc -l | cut -c1-5) requests and $(( ($(api_bytes) - bytes0) / polls )) bytes per poll"

# A scrape that renders: the shared render lives 500 ms at most, so
# scrapes 0.6 s apart each render afresh (and compress, with gzip).
for enc in identity gzip; do
  for _ in $(seq 1 20); do
    sleep 0.6
    curl -s -o /dev/null -H "Accept-Encoding: $enc" -w '%{time_total}\n' http://127.0.0.1:19301/metrics
  done | sort -n | awk -v e="$enc" '{ t[NR] = $1 } END { printf "scrape that renders (%s): median %.1f ms, max %.1f ms over %d\n", e, t[int((NR + 1) / 2)] * 1000, t[NR] * 1000, NR }'
done
echo "== wrk, 5 s per row (the render shared between scrapes)"
printf '%-10s %-6s %12s %10s\n' encoding conns requests/s p99
for enc in identity gzip; do
  for c in 1 10; do
    out=$(wrk -t1 -c"$c" -d5s --latency -H "Accept-Encoding: $enc" http://127.0.0.1:19301/metrics)
    printf '%-10s %-6s %12s %10s\n' "$enc" "$c" "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" "$(echo "$out" | awk '$1 == "99%" {print $2}')"
  done
done
