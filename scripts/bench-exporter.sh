#!/usr/bin/env bash
# Whole-process figures for docs/performance.md, against the standalone
# simulator on loopback:
#   - a poll over a window of 1,000,000 jobs: wall time, requests, bytes,
#     CPU, with the API's answers gzipped (the default) and not;
#   - resident memory with those jobs tracked, against an idle exporter,
#     and the peak during the first whole-window read and a later one (when
#     the old table, the new one and the scan coexist);
#   - CPU between polls;
#   - /metrics requests per second and p99 latency with wrk at 1, 10 and 100
#     connections, plain and gzipped, beside nginx serving the same bytes as
#     a static file: nginx as it was first measured (one worker) and tuned
#     (a worker per core, sendfile, open_file_cache, long keep-alive).
#   bash scripts/bench-exporter.sh
#   bash scripts/bench-exporter.sh static   # memory only: the release binary
#       beside the static one of the container image (scripts/build-static.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
command -v nginx >/dev/null || apt-get install -y -qq nginx >/dev/null
cargo build --release --workspace --bins >/dev/null 2>&1
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$work"/nginx-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# CPU seconds (user + system) of a process, from /proc at 10 ms resolution,
# read from outside so that scraping does not add to what is measured.
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }
wait_poll() {
  for _ in $(seq 1 600); do
    v=$(metric "$1" "nexrender_exporter_polls_total{account=\"main\",result=\"success\"}" || true)
    [ -n "$v" ] && [ "${v%.*}" -ge 1 ] && return 0
    sleep 0.5
  done
  echo "no successful poll on port $1" >&2; exit 1
}
start_sim() { # port prefill
  ./target/release/nexrender-simulator --listen 127.0.0.1:"$1" --prefill "$2" --token bench 2>"$work/sim-$1.log" &
  pids+=($!)
  for _ in $(seq 1 200); do grep -q listening "$work/sim-$1.log" && return 0; sleep 0.1; done
}
exporter_pid=()
start_exporter() { # port sim_port [gzip] [interval] [full_scan_interval]
  cat > "$work/exp-$1.yaml" <<YAML
poll:
  interval: ${4:-1h}
  full_scan_interval: ${5:-1h}
  gzip: ${3:-true}
  window: 48h
  page_size: 1000
  request_timeout: 60s
  timeout: 30m
  max_requests_per_second: 1000
accounts:
  - name: main
    api_url: http://127.0.0.1:$2/api/v2
    token: bench
YAML
  "${EXPORTER:-./target/release/nexrender-exporter}" --config "$work/exp-$1.yaml" --web.listen-address 127.0.0.1:"$1" --log.level warn 2>"$work/exp-$1.log" &
  pids+=($!)
  exporter_pid[$1]=$!
}

peak_of() { awk '/VmHWM/ {print $2 * 1024}' "/proc/$1/status"; }
# The peak and resting memory of a later whole-window read: every poll reads
# the whole window here (full_scan_interval 0s), 20 s apart; the kernel's
# peak is reset after the first poll (clear_refs 5), so the peak read is
# the second poll's, with the first poll's table alive beside the new one
# and the scan.
second_read() { # port sim_port
  start_exporter "$1" "$2" true 20s 0s
  wait_poll "$1"
  echo 5 > "/proc/${exporter_pid[$1]}/clear_refs"
  for _ in $(seq 1 120); do
    v=$(metric "$1" 'nexrender_exporter_polls_total{account="main",result="success"}' || true)
    [ -n "$v" ] && [ "${v%.*}" -ge 2 ] && break
    sleep 0.5
  done
  echo "second whole-window read: peak RSS $(peak_of "${exporter_pid[$1]}") bytes, RSS after $(metric "$1" process_resident_memory_bytes) bytes"
  kill "${exporter_pid[$1]}"
}

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1024)" MiB"}' /proc/meminfo), $(uname -r)"
if [ "${1:-}" = static ]; then
  static=$(bash scripts/build-static.sh)
  start_sim 18102 1000000
  port=19110
  for bin in ./target/release/nexrender-exporter "$static"; do
    echo "== $bin ($(file -b "$bin" | cut -d, -f1-2))"
    EXPORTER=$bin start_exporter $port 18102 true
    wait_poll $port
    echo "first poll: $(metric $port 'nexrender_exporter_tracked_jobs{account="main"}') jobs tracked, RSS $(metric $port process_resident_memory_bytes) bytes, peak $(peak_of "${exporter_pid[$port]}") bytes"
    kill "${exporter_pid[$port]}"
    EXPORTER=$bin second_read $((port + 1)) 18102
    port=$((port + 2))
  done
  exit 0
fi
start_sim 18101 0
start_exporter 19101 18101
wait_poll 19101
idle_rss=$(metric 19101 process_resident_memory_bytes)
echo "idle exporter (empty window) RSS: $idle_rss bytes"

start_sim 18102 1000000
first_poll() { # port: the first poll's figures
  local p=$1 pid=${exporter_pid[$1]}
  tracked=$(metric "$p" 'nexrender_exporter_tracked_jobs{account="main"}')
  took=$(metric "$p" 'nexrender_exporter_poll_duration_seconds{account="main"}')
  lists=$(metric "$p" 'nexrender_exporter_api_requests_total{account="main",code="200",endpoint="list_jobs"}')
  gets=$(metric "$p" 'nexrender_exporter_api_requests_total{account="main",code="200",endpoint="get_job"}')
  cpu1=$(cpu_of "$pid")
  bytes=$(metric "$p" 'nexrender_exporter_api_response_bytes_total{account="main",endpoint="list_jobs"}')
  echo "first poll over $tracked jobs ($2): ${took}s wall, ${cpu1}s CPU (whole process), $lists list requests, ${gets:-0} look-ups, $(( ${bytes%.*} / 1000 )) kB read"
}
# The API's answers not compressed, as first measured.
start_exporter 19103 18102 false
wait_poll 19103
first_poll 19103 "gzip off"
kill "${exporter_pid[19103]}"

start_exporter 19102 18102 true
wait_poll 19102
first_poll 19102 "gzip on"
rss=$(metric 19102 process_resident_memory_bytes)
peak=$(peak_of "${exporter_pid[19102]}")
echo "peak RSS during that poll: $peak bytes"
echo "RSS with $tracked jobs tracked: $rss bytes; above idle: $(( (${rss%.*} - ${idle_rss%.*}) / ${tracked%.*} )) bytes per job"
sleep 10
cpu2=$(cpu_of "${exporter_pid[19102]}")
echo "CPU between polls over 10 s: $(echo "$cpu2 - $cpu1" | bc -l) s"

second_read 19104 18102

curl -s http://127.0.0.1:19102/metrics > "$work/metrics.txt"
curl -s -H 'Accept-Encoding: gzip' http://127.0.0.1:19102/metrics > "$work/metrics.txt.gz"
nginx_conf() { # name workers extra-http-directives
  cat > "$work/nginx-$1.conf" <<NGINX
worker_processes $2;
pid $work/nginx-$1.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  $3
  server {
    listen 127.0.0.1:$4;
    location = /metrics { default_type text/plain; alias $work/metrics.txt; }
    location = /metrics.gz { default_type text/plain; add_header Content-Encoding gzip; alias $work/metrics.txt.gz; }
  }
}
NGINX
  nginx -c "$work/nginx-$1.conf"
}
nginx_conf one 1 "" 19199
nginx_conf tuned auto "sendfile on; tcp_nopush on; open_file_cache max=16 inactive=60s; keepalive_requests 1000000;" 19198
sleep 0.5
echo "== /metrics: $(wc -c < "$work/metrics.txt") bytes, $(wc -c < "$work/metrics.txt.gz") gzipped; wrk 5 s per row, 1 thread for 1 connection, else 2; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   nginx-1: worker_processes 1 (as first measured); nginx-auto: a worker per core, sendfile, open_file_cache, keepalive_requests 1000000"
printf '%-12s %-9s %-6s %14s %10s\n' server encoding conns requests/s p99
for c in 1 10 100; do
  t=$([ "$c" -eq 1 ] && echo 1 || echo 2)
  for enc in identity gzip; do
    for target in "exporter 19102 /metrics" "nginx-1 19199 /metrics" "nginx-auto 19198 /metrics"; do
      set -- $target
      path=$3
      hdr=()
      if [ "$enc" = gzip ]; then
        hdr=(-H 'Accept-Encoding: gzip')
        [ "$1" != exporter ] && path=/metrics.gz
      fi
      out=$(wrk -t"$t" -c"$c" -d5s --latency "${hdr[@]}" "http://127.0.0.1:$2$path")
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
      printf '%-12s %-9s %-6s %14s %10s\n' "$1" "$enc" "$c" "$rps" "$p99"
    done
  done
done
