#!/usr/bin/env python3
"""Checks that the README and the runbook say what the rules do.

    python3 scripts/check-alert-docs.py

For every alert in deploy/prometheus/nexrender.rules.yml: a row in the
README's alert table, a row in docs/runbook.md's table with the rule's
severity, a `## <alert>` section in the runbook, and a runbook_url that
points at that section. And no row or section for an alert that is gone.
Exits 1 naming each mismatch. Plain text parsing: no YAML library needed.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def rules():
    """(alert, severity, runbook_url) for each alert, in file order."""
    text = (ROOT / "deploy/prometheus/nexrender.rules.yml").read_text()
    out = []
    for block in re.split(r"\n      - (?=alert: |record: )", text)[1:]:
        name = re.match(r"alert: (\w+)", block)
        if not name:
            continue
        severity = re.search(r"\n\s+severity: (\w+)", block)
        url = re.search(r'\n\s+runbook_url: "([^"]+)"', block)
        out.append((name.group(1), severity and severity.group(1), url and url.group(1)))
    return out


def table_rows(text):
    """The first cell of every Markdown table row naming an alert."""
    return {
        m.group(1): line
        for line in text.splitlines()
        if (m := re.match(r"\| (Nexrender\w+) \|", line))
    }


def main():
    readme = table_rows((ROOT / "README.md").read_text())
    runbook_text = (ROOT / "docs/runbook.md").read_text()
    runbook = table_rows(runbook_text)
    sections = set(re.findall(r"(?m)^## (Nexrender\w+)$", runbook_text))
    problems = []
    alerts = rules()
    names = {a for a, _, _ in alerts}
    for name, severity, url in alerts:
        if severity not in ("critical", "warning"):
            problems.append(f"{name}: severity {severity!r} is neither critical nor warning")
        if name not in readme:
            problems.append(f"{name}: no row in README.md's alert table")
        row = runbook.get(name)
        if row is None:
            problems.append(f"{name}: no row in docs/runbook.md's table")
        elif not row.rstrip().endswith(f"| {severity} |"):
            problems.append(f"{name}: docs/runbook.md's row does not end with its severity {severity}: {row}")
        if name not in sections:
            problems.append(f"{name}: no '## {name}' section in docs/runbook.md")
        if url != f"docs/runbook.md#{name.lower()}":
            problems.append(f"{name}: runbook_url {url!r} is not docs/runbook.md#{name.lower()}")
    for gone in (set(readme) | set(runbook) | sections) - names:
        problems.append(f"{gone}: documented, but no such alert in the rules")
    for p in problems:
        print(f"check-alert-docs: {p}", file=sys.stderr)
    print(f"check-alert-docs: {len(alerts)} alerts, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
