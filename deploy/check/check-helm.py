#!/usr/bin/env python3
"""Lints and renders the Helm chart offline (helm-python-sdk bundles Helm's
Go library), then validates each rendering like the kustomize output.

    python3 deploy/check/check-helm.py OUT_DIR
"""
import pathlib
import subprocess
import sys

import helm_python as helm

CHART = pathlib.Path(__file__).resolve().parents[1] / "helm/nexrender-exporter"
VALIDATE = pathlib.Path(__file__).with_name("validate-manifests.py")
CORE = ["Deployment", "Service", "ConfigMap"]

# name -> (values, the kinds the rendering must hold)
CASES = {
    "defaults": ({"token": {"value": "t0ken"}}, CORE + ["Secret"]),
    "everything": (
        {
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
    "webhooks": (
        {
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

# Without a token, or with rules but no runbook URL, the chart refuses.
for values, needs in (
    ({}, "token.value"),
    ({"token": {"value": "x"}, "prometheusRule": {"enabled": True}}, "runbookUrl"),
    ({"token": {"value": "x"}, "webhooks": {"enabled": True}}, "webhooks.secrets"),
):
    try:
        chart.render(values, name="nexrender", namespace="monitoring", is_install=True)
        sys.exit(f"the chart rendered without {needs}")
    except helm.HelmError as e:
        if needs not in str(e):
            sys.exit(f"the chart refused without {needs}, but said: {e}")
print("helm chart: lint clean, renderings valid")
