#!/usr/bin/env bash
# Checks every deployment artifact in deploy/ offline: installs the tools
# it needs (pinned), then the container image (built and run against the
# simulator), the systemd unit, the kustomize and Helm renderings, the
# compose stack's files. scripts/test-all.sh runs it; the end-to-end alert
# test through Alertmanager is tests/alerting.rs, in the cargo test run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# --- tools (scripts/tools.sh: pinned, Python ones in .tools/venv) ---------
source scripts/tools.sh
tools_install

# --- generated copies are current ----------------------------------------
python3 deploy/kubernetes/generate.py --check

# --- container image -----------------------------------------------------
echo "== container image"
hadolint deploy/container/Dockerfile
bin=$(bash scripts/build-static.sh)
file "$bin" | grep -q 'static-pie linked\|statically linked' || { file "$bin"; echo "not static: $bin"; exit 1; }
file "$bin" | grep -q ', stripped' || { file "$bin"; echo "not stripped: $bin"; exit 1; }
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
image=localhost/nexrender-exporter:check
buildah bud --quiet --iidfile "$out/iid" --format docker --build-arg VERSION=0.1.0 \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -f deploy/container/Dockerfile -t "$image" "$(dirname "$bin")" >/dev/null
test "$(buildah inspect --format '{{.Docker.Config.User}}' "$image")" = 65534:65534
ctr=$(buildah from "$image")
# The container and the image go at the end: each run would leave a copy.
cleanup_ctr() {
  buildah rm "$ctr" >/dev/null 2>&1 || true
  buildah rmi -f "$(cat "$out/iid")" >/dev/null 2>&1 || true
  rm -rf "$out"
}
trap cleanup_ctr EXIT
# Only the binary: no shell, no libraries.
files=$(cd "$(buildah mount "$ctr")" && find . -type f -o -type l | sort | tr '\n' ' ')
buildah umount "$ctr" >/dev/null
[ "$files" = "./bin/nexrender-exporter " ] || { echo "the image holds more than the binary: $files"; exit 1; }
# Run it against the simulator (host network, chroot isolation).
cargo build --quiet -p nexrender-simulator --bin nexrender-simulator
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sim_port=$(port); exp_port=$(port)
target/debug/nexrender-simulator --demo --listen "127.0.0.1:$sim_port" --token image-check-token >"$out/sim.log" 2>&1 &
sim_pid=$!
# The port through the environment, as a user of the image would set it:
# the image's own HEALTHCHECK command (read from the image) must find it.
listen_env=NEXRENDER_EXPORTER_WEB__LISTEN_ADDRESS="127.0.0.1:$exp_port"
buildah run --isolation chroot --network host --env "$listen_env" \
  --env NEXRENDER_API_URL="http://127.0.0.1:$sim_port/api/v2" --env NEXRENDER_API_TOKEN=image-check-token \
  "$ctr" -- /bin/nexrender-exporter >"$out/exporter.log" 2>&1 &
run_pid=$!
mapfile -t probe < <(buildah inspect --format '{{range .Docker.Config.Healthcheck.Test}}{{println .}}{{end}}' "$image" | sed '/^$/d')
[ "${probe[0]:-}" = CMD ] || { echo "the image's HEALTHCHECK is not an exec-form CMD: ${probe[*]:-none}"; exit 1; }
up=""
for _ in $(seq 60); do
  if buildah run --isolation chroot --network host --env "$listen_env" "$ctr" -- "${probe[@]:1}" 2>"$out/probe.log"; then
    up=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$exp_port/metrics').read().decode())" \
      | grep '^nexrender_up{account="default"}' || true)
    [ "$up" = 'nexrender_up{account="default"} 1' ] && break
  fi
  sleep 1
done
# The process in the container runs as 65534.
exp_uid=$(ps -o uid= --ppid "$(pgrep -P "$run_pid" | head -1)" 2>/dev/null | tr -d ' ' | head -1 || true)
kill "$run_pid" "$sim_pid" 2>/dev/null || true
wait "$run_pid" "$sim_pid" 2>/dev/null || true
if [ "$up" != 'nexrender_up{account="default"} 1' ]; then
  echo "the image's HEALTHCHECK (${probe[*]:1}) did not pass with nexrender_up 1 against the simulator"
  cat "$out/probe.log" "$out/exporter.log"; exit 1
fi
[ "$exp_uid" = 65534 ] || { echo "the exporter in the image ran as uid '$exp_uid', not 65534"; exit 1; }
echo "image: $files; runs as uid $exp_uid; its HEALTHCHECK (${probe[*]:1}) passes; $up"

# --- systemd -------------------------------------------------------------
echo "== systemd"
# verify wants ExecStart's binary to exist: the copy runs /bin/true
# instead of /usr/local/bin/nexrender-exporter (the only change).
mkdir "$out/unit"
sed 's|^ExecStart=/usr/local/bin/nexrender-exporter |ExecStart=/bin/true |' \
  deploy/systemd/nexrender-exporter.service >"$out/unit/nexrender-exporter.service"
verify=$(systemd-analyze verify "$out/unit/nexrender-exporter.service" 2>&1) || { echo "$verify"; exit 1; }
[ -z "$verify" ] || { echo "systemd-analyze verify said: $verify"; exit 1; }
# Exposure at most 1.5 of 10 ("OK"; node_exporter's upstream unit scores far higher).
systemd-analyze security --offline=true --threshold=15 deploy/systemd/nexrender-exporter.service | tail -1
# Then for real: the README's steps on systemd booted in a container.
bash deploy/check/check-systemd.sh "$bin" target/debug/nexrender-simulator

# --- Prometheus and Alertmanager configs ----------------------------------
echo "== prometheus and alertmanager configs"
cp deploy/compose/prometheus.yml deploy/prometheus/nexrender.rules.yml "$out/"
promtool check config "$out/prometheus.yml"
amtool check-config deploy/alertmanager/alertmanager.yml

# --- Kubernetes: kustomize ------------------------------------------------
echo "== kustomize"
# The example overlay with a token file, as a user would write it.
cp -r deploy/kubernetes "$out/kubernetes"
printf %s kustomize-check-token >"$out/kubernetes/overlays/example/token"
kubectl kustomize "$out/kubernetes/overlays/example" >"$out/kustomize.yaml"
python3 deploy/check/validate-manifests.py "$out/kustomize.yaml" \
  Namespace Deployment Service ConfigMap Secret ServiceMonitor PrometheusRule
python3 deploy/check/check-monitoring-labels.py "$out/kustomize.yaml" release
# The webhook receiver's overlay, with its two secret files.
printf %s kustomize-check-token >"$out/kubernetes/overlays/webhooks-example/token"
printf %s kustomize-check-webhook-secret >"$out/kubernetes/overlays/webhooks-example/webhook-secret"
kubectl kustomize "$out/kubernetes/overlays/webhooks-example" >"$out/kustomize-webhooks.yaml"
python3 deploy/check/validate-manifests.py "$out/kustomize-webhooks.yaml" \
  Namespace Deployment Service ConfigMap Secret Ingress
python3 deploy/check/check-webhook-wiring.py "$out/kustomize-webhooks.yaml"
# The sharded overlay: a StatefulSet whose pods take their shard from their
# ordinal, the same pod otherwise as the example overlay's.
printf %s kustomize-check-token >"$out/kubernetes/overlays/sharded-example/token"
kubectl kustomize "$out/kubernetes/overlays/sharded-example" >"$out/kustomize-sharded.yaml"
python3 deploy/check/validate-manifests.py "$out/kustomize-sharded.yaml" \
  Namespace StatefulSet Service ConfigMap Secret ServiceMonitor PrometheusRule
python3 deploy/check/check-monitoring-labels.py "$out/kustomize-sharded.yaml" release
python3 deploy/check/check-shard-wiring.py "$out/kustomize-sharded.yaml" "$out/kustomize.yaml"
kubectl kustomize "$out/kubernetes/base" >"$out/base.yaml"
python3 deploy/check/validate-manifests.py "$out/base.yaml" Deployment Service ConfigMap

# --- Kubernetes: Helm -----------------------------------------------------
echo "== helm"
python3 deploy/check/check-helm.py "$out"

# --- compose --------------------------------------------------------------
echo "== compose"
check-jsonschema --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
docker-compose -f deploy/compose/compose.yaml config -q
# Every path the stack names exists as resolved (a build's Dockerfile
# against its context, as compose resolves it), and the image's build
# context holds only the binary (build-static.sh ran above).
docker-compose -f deploy/compose/compose.yaml config --format json | python3 deploy/check/check-compose-paths.py
echo "compose: every path resolved and present; the build context is the binary alone"
echo "deploy checks: all passed"
