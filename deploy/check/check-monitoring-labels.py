#!/usr/bin/env python3
"""Every Prometheus-operator object of a rendered stream carries a label.

    python3 deploy/check/check-monitoring-labels.py rendered.yaml release

kube-prometheus-stack's Prometheus selects ServiceMonitors and
PrometheusRules by its `release` label: without it they are silently
neither scraped nor loaded. Exits 1 naming each object without it.
"""
import pathlib
import sys

import yaml

path, label = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
monitoring = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
bad = [
    f"{d['kind']}/{d['metadata']['name']}"
    for d in monitoring
    if not (d["metadata"].get("labels") or {}).get(label)
]
if not monitoring or bad:
    sys.exit(f"{path}: without the {label} label: {bad or 'no monitoring objects'}")
print(f"{path}: {len(monitoring)} monitoring objects labelled {label}")
