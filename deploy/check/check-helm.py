#!/usr/bin/env python3
"""Lints and renders the Helm chart offline (helm-python-sdk bundles Helm's
Go library), then validates each rendering like the kustomize output.

    python3 deploy/check/check-helm.py OUT_DIR
"""
import pathlib
import subprocess
import sys

import helm_python as helm
import yaml

CHART = pathlib.Path(__file__).resolve().parents[1] / "helm/nexrender-exporter"
VALIDATE = pathlib.Path(__file__).with_name("validate-manifests.py")
CORE = ["Deployment", "Service", "ConfigMap"]

IMAGE = {"repository": "registry.example.com/ops/nexrender-exporter"}

# name -> (values, the kinds the rendering must hold)
CASES = {
    "defaults": ({"image": IMAGE, "token": {"value": "t0ken"}}, CORE + ["Secret"]),
    # A kube-prometheus-stack install (its release label on the monitoring
    # objects), an image from a private registry, several teams' tokens in
    # one existing Secret, and the extras a platform adds.
    "kube-prometheus-stack": (
        {
            "image": {"repository": "registry.internal:5000/ops/nexrender-exporter", "tag": "0.1.0"},
            "imagePullSecrets": [{"name": "registry-internal"}],
            "fullnameOverride": "renders",
            "token": {"existingSecret": "nexrender-tokens", "existingSecretKey": ""},
            "config": {
                "accounts": [
                    {"name": "team-a", "token_file": "/run/secrets/nexrender/team-a"},
                    {"name": "team-b", "token_file": "/run/secrets/nexrender/team-b"},
                ]
            },
            "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.internal:3128"}],
            "extraVolumes": [{"name": "ca", "configMap": {"name": "internal-ca"}}],
            "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/certs", "readOnly": True}],
            "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {
                "enabled": True,
                "runbookUrl": "https://git.example.com/ops/nexrender-exporter/blob/main/docs/runbook.md",
                "labels": {"release": "kube-prometheus-stack"},
            },
        },
        CORE + ["ServiceMonitor", "PrometheusRule"],
    ),
    "everything": (
        {
            "image": IMAGE,
            "token": {"existingSecret": "nexrender-token", "existingSecretKey": "api-token"},
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {
                "enabled": True,
                "runbookUrl": "https://git.example.com/ops/nexrender-exporter/blob/main/docs/runbook.md",
            },
            "dashboards": {"enabled": True},
        },
        CORE + ["ServiceMonitor", "PrometheusRule"],
    ),
    # An HA pair behind a NetworkPolicy and a PodDisruptionBudget, with TLS
    # and basic auth on /metrics: the probes and the ServiceMonitor speak
    # HTTPS, the ServiceMonitor sends credentials.
    "ha-secured": (
        {
            "image": IMAGE,
            "token": {"value": "t0ken"},
            "replicaCount": 2,
            "podDisruptionBudget": {"minAvailable": 1},
            "networkPolicy": {
                "enabled": True,
                "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                "webhooksFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
            },
            "webConfig": {"existingSecret": "renders-web", "tls": True},
            "webhooks": {"enabled": True, "secrets": {"main": "hook-secret"}},
            "serviceMonitor": {
                "enabled": True,
                "tlsConfig": {"ca": {"secret": {"name": "renders-web", "key": "ca.crt"}}, "serverName": "renders"},
                "basicAuth": {
                    "username": {"name": "renders-scrape", "key": "username"},
                    "password": {"name": "renders-scrape", "key": "password"},
                },
            },
        },
        CORE + ["Secret", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"],
    ),
    "webhooks": (
        {
            "image": IMAGE,
            "token": {"value": "t0ken"},
            "webhooks": {
                "enabled": True,
                "secrets": {"main": "hook-secret"},
                "ingress": {
                    "enabled": True,
                    "className": "nginx",
                    "host": "renders-hooks.example.com",
                    "tls": [{"secretName": "renders-hooks-tls", "hosts": ["renders-hooks.example.com"]}],
                },
            },
        },
        CORE + ["Secret", "Ingress"],
    ),
}
WIRING = pathlib.Path(__file__).with_name("check-webhook-wiring.py")
LABELS = pathlib.Path(__file__).with_name("check-monitoring-labels.py")



def check_ha_secured(name, docs):
    """The HA, NetworkPolicy, PDB and web-config values, field by field."""
    by_kind = {d["kind"]: d for d in docs}
    deployment = by_kind["Deployment"]["spec"]
    container = deployment["template"]["spec"]["containers"][0]
    policy = by_kind["NetworkPolicy"]["spec"]
    endpoint = by_kind["ServiceMonitor"]["spec"]["endpoints"][0]
    problems = [
        what
        for what, ok in (
            ("two replicas, rolled one at a time", deployment["replicas"] == 2
             and deployment["strategy"]["rollingUpdate"]["maxSurge"] == 0),
            ("the PDB", by_kind["PodDisruptionBudget"]["spec"].get("minAvailable") == 1),
            ("the web config flag", "--web.config.file=/etc/nexrender-exporter/web/web-config.yml" in container["args"]),
            ("the web config mounted", any(m["mountPath"] == "/etc/nexrender-exporter/web" for m in container["volumeMounts"])),
            ("HTTPS probes", container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
             and container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"),
            ("the scrape over HTTPS with credentials", endpoint["scheme"] == "https"
             and endpoint["tlsConfig"]["serverName"] == "renders" and "basicAuth" in endpoint),
            ("both ports in the policy, each from its peers", [
                (r["ports"][0]["port"], list(r["from"][0]["namespaceSelector"]["matchLabels"].values())[0])
                for r in policy["ingress"]] == [("http-metrics", "monitoring"), ("http-webhooks", "ingress-nginx")]),
            ("egress left open", policy["policyTypes"] == ["Ingress"]),
        )
        if not ok
    ]
    if problems:
        sys.exit(f"helm ({name}): not rendered as asked: {problems}")


out_dir = pathlib.Path(sys.argv[1])
chart = helm.Chart.load(CHART)
for name, (values, kinds) in CASES.items():
    report = helm.lint(CHART, values, strict=True)
    # Severity 1 is information (e.g. "icon is recommended"); 2 and 3 fail.
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    if problems:
        sys.exit(f"helm lint ({name}): {problems}")
    rendered = chart.render(values, name="nexrender", namespace="monitoring", is_install=True)
    text = "".join(
        f"---\n# {path}\n{body}\n" for path, body in sorted(rendered.items()) if path.endswith(".yaml")
    )
    out = out_dir / f"helm-{name}.yaml"
    out.write_text(text)
    subprocess.run([sys.executable, str(VALIDATE), str(out), *kinds], check=True)
    if values.get("webhooks", {}).get("enabled"):
        subprocess.run([sys.executable, str(WIRING), str(out)], check=True)
    if name == "ha-secured":
        check_ha_secured(name, [d for d in yaml.safe_load_all(text) if d])
    if name == "kube-prometheus-stack":
        subprocess.run([sys.executable, str(LABELS), str(out), "release"], check=True)
        docs = [d for d in yaml.safe_load_all(text) if d]
        pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
        token = next(v for v in pod["volumes"] if v["name"] == "token")["secret"]
        problems = [
            what
            for what, ok in (
                ("every key of the token Secret mounted", "items" not in token and token["secretName"] == "nexrender-tokens"),
                ("the pull secret", pod.get("imagePullSecrets") == [{"name": "registry-internal"}]),
                ("the image", pod["containers"][0]["image"] == "registry.internal:5000/ops/nexrender-exporter:0.1.0"),
                ("the extra env", pod["containers"][0].get("env", [{}])[0].get("name") == "HTTPS_PROXY"),
                ("the extra volume and its mount", any(v["name"] == "ca" for v in pod["volumes"])
                 and any(m["name"] == "ca" for m in pod["containers"][0]["volumeMounts"])),
                ("the pod security context", pod["securityContext"]["runAsUser"] == 10001),
                ("the fullname override", all(d["metadata"]["name"].startswith("renders") for d in docs)),
            )
            if not ok
        ]
        if problems:
            sys.exit(f"helm ({name}): not rendered as asked: {problems}")

# Without an image (none is published), a token, or with rules but no
# runbook URL, the chart refuses, saying which value.
for values, needs in (
    ({"token": {"value": "x"}}, "image.repository"),
    ({"image": IMAGE}, "token.value"),
    ({"image": IMAGE, "token": {"value": "x"}, "prometheusRule": {"enabled": True}}, "runbookUrl"),
    ({"image": IMAGE, "token": {"value": "x"}, "webhooks": {"enabled": True}}, "webhooks.secrets"),
    ({"image": IMAGE, "token": {"value": "x"}, "podDisruptionBudget": {"minAvailable": 1}}, "replicaCount: 2"),
):
    try:
        chart.render(values, name="nexrender", namespace="monitoring", is_install=True)
        sys.exit(f"the chart rendered without {needs}")
    except helm.HelmError as e:
        if needs not in str(e):
            sys.exit(f"the chart refused without {needs}, but said: {e}")
print("helm chart: lint clean, renderings valid")
