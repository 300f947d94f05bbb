#!/usr/bin/env python3
"""Validates a rendered manifest stream offline, one way per kind of object.

    python3 deploy/check/validate-manifests.py rendered.yaml KIND...

- core objects: `kubernetes-validate --strict` (unexpected fields rejected);
- ServiceMonitor, PrometheusRule: the operator's CRD schemas through
  deploy/check/validate-monitoring-objects.mjs (NODE_PATH must hold
  @kubernetes-models/prometheus-operator);
- each PrometheusRule's spec: `promtool check rules`.

The KINDs after the file are the kinds the stream must hold, so a template
that renders nothing cannot pass by validating nothing.
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import yaml

path, expected = sys.argv[1], set(sys.argv[2:])
docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
kinds = {d["kind"] for d in docs}
if expected - kinds:
    sys.exit(f"{path}: missing {sorted(expected - kinds)}; has {sorted(kinds)}")

core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
monitoring = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
with tempfile.TemporaryDirectory() as tmp:
    core_file = pathlib.Path(tmp, "core.yaml")
    core_file.write_text(yaml.safe_dump_all(core))
    subprocess.run(["kubernetes-validate", "--strict", "--quiet", str(core_file)], check=True)
    if monitoring:
        subprocess.run(
            ["node", str(pathlib.Path(__file__).with_name("validate-monitoring-objects.mjs"))],
            input=json.dumps(monitoring), text=True, check=True,
        )
    for d in monitoring:
        if d["kind"] == "PrometheusRule":
            rules = pathlib.Path(tmp, d["metadata"]["name"] + ".rules.yml")
            rules.write_text(yaml.safe_dump(d["spec"]))
            subprocess.run(["promtool", "check", "rules", str(rules)], check=True)
            urls = [
                r["annotations"]["runbook_url"]
                for g in d["spec"]["groups"] for r in g["rules"] if "alert" in r
            ]
            bad = [u for u in urls if not u.startswith(("https://", "http://"))]
            if not urls or bad:
                sys.exit(f"{path}: runbook_url not absolute: {bad or 'no alerts'}")
print(f"{path}: {len(docs)} objects valid ({', '.join(sorted(kinds))})")
