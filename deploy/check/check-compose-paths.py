#!/usr/bin/env python3
"""Every path deploy/compose/compose.yaml names exists, as compose resolves it.

    docker-compose -f deploy/compose/compose.yaml config --format json | python3 deploy/check/check-compose-paths.py

A build's Dockerfile is resolved against its context (as compose does: the
path that once pointed above the repository passed every linter), the
image's build context must hold the binary alone (scripts/build-static.sh
writes it), and every bind-mounted file must exist. Exits 1 naming each
problem.
"""
import json
import os
import sys


def main():
    cfg = json.load(sys.stdin)
    bad = []
    for name, svc in cfg["services"].items():
        build = svc.get("build")
        if build:
            ctx = build["context"]
            dockerfile = os.path.normpath(os.path.join(ctx, build.get("dockerfile", "Dockerfile")))
            if not os.path.isdir(ctx):
                bad.append(f"{name}: build context {ctx} is not a folder")
            elif sorted(os.listdir(ctx)) != ["nexrender-exporter"]:
                bad.append(f"{name}: build context {ctx} holds more than the binary: {sorted(os.listdir(ctx))[:5]}")
            if not os.path.isfile(dockerfile):
                bad.append(f"{name}: dockerfile {dockerfile} does not exist")
        for volume in svc.get("volumes", []):
            source = volume.get("source", "")
            if volume.get("type") == "bind" and not os.path.exists(source):
                bad.append(f"{name}: volume source {source} does not exist")
    for b in bad:
        print("compose:", b, file=sys.stderr)
    print(f"compose: {len(cfg['services'])} services, {len(bad)} missing paths")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
