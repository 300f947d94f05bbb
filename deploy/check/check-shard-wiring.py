#!/usr/bin/env python3
"""Checks that a sharded rendering (components/sharded) is wired: one
StatefulSet and no Deployment; each pod's --shard.index is its ordinal
(the apps.kubernetes.io/pod-index label) and --shard.total the
StatefulSet's replicas; the selector picks the pods; and, but for those
flags, the pod template is the one of the same overlay without shards.

    python3 deploy/check/check-shard-wiring.py sharded.yaml unsharded.yaml
"""
import copy
import pathlib
import sys

import yaml


def load(path):
    docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    return by_kind


def fail(why):
    sys.exit(f"{sys.argv[1]}: shard wiring: {why}")


sharded, unsharded = load(sys.argv[1]), load(sys.argv[2])
if sharded.get("Deployment"):
    fail("a Deployment is left beside the StatefulSet: it would poll every account again")
(sts,) = sharded.get("StatefulSet", [None])
if sts is None:
    fail("no StatefulSet")
replicas = sts["spec"].get("replicas")
if not isinstance(replicas, int) or replicas < 1:
    fail(f"replicas {replicas!r}")
pod = sts["spec"]["template"]
(container,) = pod["spec"]["containers"]
env = {e["name"]: e for e in container.get("env", [])}
index_from = env.get("POD_INDEX", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
if index_from != "metadata.labels['apps.kubernetes.io/pod-index']":
    fail(f"POD_INDEX comes from {index_from!r}, not the pod-index label")
total = env.get("SHARD_TOTAL", {}).get("value")
if total != str(replicas):
    fail(f"--shard.total is {total!r} but the StatefulSet has {replicas} replicas: "
         "accounts would be polled by no shard or by two")
args = container.get("args", [])
for flag in ("--shard.index=$(POD_INDEX)", "--shard.total=$(SHARD_TOTAL)"):
    if args.count(flag) != 1:
        fail(f"{flag} is given {args.count(flag)} times")
if any(a.startswith("--shard.") and a not in ("--shard.index=$(POD_INDEX)", "--shard.total=$(SHARD_TOTAL)") for a in args):
    fail("another --shard flag overrides the ordinal")
labels = pod["metadata"].get("labels", {})
selector = sts["spec"].get("selector", {}).get("matchLabels", {})
if not selector or any(labels.get(k) != v for k, v in selector.items()):
    fail(f"the selector {selector} does not pick the pods {labels}")
# The same pod as without shards, but for the shard flags.
(deployment,) = unsharded["Deployment"]
bare = copy.deepcopy(pod)
(c,) = bare["spec"]["containers"]
c["args"] = [a for a in c["args"] if not a.startswith("--shard.")]
c["env"] = [e for e in c["env"] if e["name"] not in ("POD_INDEX", "SHARD_TOTAL")]
if not c["env"]:
    del c["env"]
if bare != deployment["spec"]["template"]:
    fail("the pod template differs from the unsharded Deployment's beyond the shard flags")
print(f"{sys.argv[1]}: {replicas} shards wired (--shard.index from the pod ordinal, --shard.total {total})")
