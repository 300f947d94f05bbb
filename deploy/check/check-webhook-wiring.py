#!/usr/bin/env python3
"""Checks that a rendering with the webhook receiver is wired end to end:
the config's webhook.listen_address port is the Deployment's http-webhooks
port, which the webhooks Service targets and the Ingress reaches; every
account's webhook_secret_file is a key of the Secret mounted at that path;
and the metrics Service does not expose the receiver.

    python3 deploy/check/check-webhook-wiring.py rendered.yaml
"""
import pathlib
import sys

import yaml

docs = [d for d in yaml.safe_load_all(pathlib.Path(sys.argv[1]).read_text()) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)


def fail(why):
    sys.exit(f"{sys.argv[1]}: webhook wiring: {why}")


(deployment,) = by_kind["Deployment"]
pod = deployment["spec"]["template"]["spec"]
(container,) = pod["containers"]
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
config_volume = next(v for v in pod["volumes"] if "configMap" in v)
config_map = next(c for c in by_kind["ConfigMap"] if c["metadata"]["name"] == config_volume["configMap"]["name"])
config = yaml.safe_load(config_map["data"]["config.yaml"])
listen = config.get("webhook", {}).get("listen_address", "")
if not listen or int(listen.rsplit(":", 1)[1]) != ports.get("http-webhooks"):
    fail(f"webhook.listen_address {listen!r} is not the http-webhooks port {ports.get('http-webhooks')}")
services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
hooks = [s for s in services.values() if any(p["targetPort"] == "http-webhooks" for p in s["spec"]["ports"])]
if len(hooks) != 1 or len(hooks[0]["spec"]["ports"]) != 1:
    fail("one Service must target http-webhooks, and only it")
if any(p["targetPort"] == "http-metrics" for p in hooks[0]["spec"]["ports"]):
    fail("the webhooks Service exposes the metrics port")
for ingress in by_kind.get("Ingress", []):
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]["name"]
            if backend != hooks[0]["metadata"]["name"] or not path["path"].startswith("/webhooks"):
                fail(f"Ingress {ingress['metadata']['name']} routes {path['path']} to {backend}")
mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
volumes = {v["name"]: v for v in pod["volumes"]}
secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
taking = [a for a in config["accounts"] if "webhook_secret_file" in a]
if not taking:
    fail("no account has a webhook_secret_file")
for account in taking:
    directory, key = account["webhook_secret_file"].rsplit("/", 1)
    volume = volumes.get(mounts.get(directory, ""), {})
    secret_name = volume.get("secret", {}).get("secretName")
    items = {i["path"]: i["key"] for i in volume.get("secret", {}).get("items", [])}
    if secret_name is None:
        fail(f"{account['name']}: nothing mounted at {directory}")
    secret = secrets.get(secret_name)
    if secret is not None:
        keys = set(secret.get("data", {})) | set(secret.get("stringData", {}))
        if items.get(key, key) not in keys:
            fail(f"{account['name']}: Secret {secret_name} has no key {items.get(key, key)}")
print(f"{sys.argv[1]}: webhook receiver wired (port {listen}, {len(taking)} account(s))")
