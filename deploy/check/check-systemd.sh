#!/usr/bin/env bash
# The README's systemd steps, run as written on a real systemd: PID 1 of a
# systemd-nspawn container booted on this machine's own root (under a
# tmpfs overlay, so nothing is installed on the host), against the
# simulator.
#
#   bash deploy/check/check-systemd.sh STATIC_BINARY SIMULATOR_BINARY
#
# The steps are the ```sh block under "### systemd" in README.md, taken
# from there, so the test and the docs cannot drift. They run in a folder
# holding what they name (the binary, deploy/systemd/), the token on their
# standard input. Then, as a user would, the config's api_url is pointed
# at the simulator and the service reloaded. It must then be active with
# no restart, report nexrender_up 1, a real process start time, an open
# files limit that covers both listeners, and the reload; and a new token
# takes effect by the README's means (write it, restart).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$1
sim=$2
out=$(mktemp -d)
source scripts/tools.sh
tools_install
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metrics() { python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9847/metrics', timeout=5).read().decode())" 2>/dev/null || true; }
value() { metrics | awk -v s="$1" '$1 == s { print $2 }'; }

# What the steps name, in their working folder.
awk '/^### systemd/{f=1} f && /^```sh/{g=1; next} g && /^```/{exit} g' README.md >"$out/steps.sh"
grep -q 'systemctl daemon-reload' "$out/steps.sh" || { echo "no systemd steps found in README.md"; exit 1; }
mkdir -p "$out/w/deploy"
cp -r deploy/systemd "$out/w/deploy/"
cp "$bin" "$out/w/nexrender-exporter"
cp "$out/steps.sh" "$out/w/steps.sh"

sim_port=$(port)
"$sim" --listen "127.0.0.1:$sim_port" --token systemd-check-token >"$out/sim.log" 2>&1 &
sim_pid=$!
marker="nexrender-check-$$-$RANDOM"
# A volatile root (a tmpfs) with the host's /usr and /etc overlaid by
# folders of the check's own that take every write: an /etc as a Debian
# machine has it (/etc/default included), and nothing left on the host.
mkdir -p "$out/usr" "$out/etc"
systemd-nspawn --keep-unit --register=no --volatile=yes -D / \
  --overlay="/usr:$out/usr:/usr" --overlay="/etc:$out/etc:/etc" \
  --bind-ro="$out/w:/w" -b -- systemd.firstboot=off "systemd.setenv=CHECK=$marker" >"$out/nspawn.log" 2>&1 &
nspawn_pid=$!
cleanup() {
  kill "$sim_pid" 2>/dev/null || true
  # SIGTERM asks the container's systemd to shut down; past 10 s it is
  # killed (the overlay and the volatile root go with it).
  kill -TERM "$nspawn_pid" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$nspawn_pid" 2>/dev/null || true
  wait "$nspawn_pid" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT
init=""
for _ in $(seq 60); do
  init=$( (pgrep -f "CHECK=$marker" || true) | while read -r p; do
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = systemd ] && echo "$p"
  done | head -1 || true)
  [ -n "$init" ] && break
  sleep 0.5
done
[ -n "$init" ] || { echo "systemd did not boot in the container"; cat "$out/nspawn.log"; exit 1; }
inside() { nsenter -t "$init" -a "$@"; }
journal() { inside journalctl -u nexrender-exporter --no-pager -o cat 2>/dev/null || true; }
fail() { echo "systemd: $*"; journal | tail -20; exit 1; }
inside systemctl is-system-running --wait >/dev/null || true

# The README's steps, as written.
printf %s systemd-check-token | inside sh -c 'cd /w && bash -e steps.sh' >"$out/steps.log" 2>&1 \
  || { echo "the README's systemd steps failed:"; cat "$out/steps.log"; exit 1; }
# Type=notify: the steps' start returns once the exporter is listening,
# so it answers at once, and a reload right away is taken (with
# Type=simple, one in the first milliseconds got EPERM from kill, the
# process still being set up). Point the account at the simulator, reload.
[ -n "$(metrics)" ] || fail "not answering on :9847 when systemctl start returned"
inside sed -i "s#https://api.nexrender.com/api/v2#http://127.0.0.1:$sim_port/api/v2#" /etc/nexrender-exporter/config.yaml
inside systemctl reload nexrender-exporter || fail "systemctl reload failed"
wait_up() {
  for _ in $(seq 60); do
    [ "$(value 'nexrender_up{account="main"}')" = 1 ] && return 0
    sleep 1
  done
  echo "nexrender_up{account=\"main\"} is not 1 $1"; inside systemctl status nexrender-exporter --no-pager || true; journal | tail -20; exit 1
}
wait_up "after the steps and a reload"

[ "$(inside systemctl show -p ActiveState --value nexrender-exporter)" = active ] || fail "not active"
[ "$(inside systemctl show -p NRestarts --value nexrender-exporter)" = 0 ] || fail "restarted $(inside systemctl show -p NRestarts --value nexrender-exporter) times"
python3 - "$(value process_start_time_seconds)" "$(value process_max_fds)" <<'EOF' || fail "process metrics"
import sys, time
start, fds = float(sys.argv[1] or 0), float(sys.argv[2] or 0)
assert abs(time.time() - start) < 600, f"process_start_time_seconds {start} is not the start"
assert fds >= 8192 + 64, f"process_max_fds {fds} does not cover both listeners (4096 each)"
print(f"systemd: start time {start:.0f}, open files limit {fds:.0f}")
EOF
[ "$(value nexrender_exporter_config_last_reload_successful)" = 1 ] || fail "the reload was not taken"
journal | grep -q 'configuration reloaded' || fail "no 'configuration reloaded' in the journal"
! journal | grep -q 'cannot tell systemd' || fail "READY=1 not delivered"

# A new token: the old one revoked (the simulator takes only the new),
# written where the README says, and the service restarted.
kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true
"$sim" --listen "127.0.0.1:$sim_port" --token systemd-check-token-2 >"$out/sim2.log" 2>&1 &
sim_pid=$!
printf %s systemd-check-token-2 | inside sh -c 'install -m 0600 /dev/stdin /etc/nexrender-exporter/token'
inside systemctl restart nexrender-exporter || fail "systemctl restart failed"
sleep 2
wait_up "with the new token after a restart"
journal | grep -qi 'systemd-check-token' && fail "a token is in the journal"
echo "systemd: the README's steps ran on systemd $(inside systemctl --version | head -1 | cut -d' ' -f2): active, no restart, nexrender_up 1, reload taken, new token taken on restart"
