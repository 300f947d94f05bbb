#!/usr/bin/env python3
"""Checks the shape of the code: short functions, and a README that maps it.

Rule 1, function length: no Rust function outside tests is longer than
LIMIT (80) lines, counted from its `fn` line to its closing `}` inclusive.
Scanned: src/**/*.rs and simulator/src/**/*.rs. Skipped: files under any
tests/ directory, and every item marked `#[cfg(test)]` or `#[test]` (a test
module, from `mod tests {` to its closing brace). Nested `fn` items are
measured on their own; the outer fn still counts all its lines. Trait method
declarations ending in `;` have no body and are not measured.

Rule 2, README.md's Layout section (`## Layout`, else the first heading
containing "Layout") is checked against the root crate:
  * every file src/**/*.rs is mentioned there by its path relative to src
    (`metrics.rs`, `api/client.rs`, `cycle/memory.rs`; a `src/` prefix is
    fine; `api/mod.rs` may also be mentioned as the directory `api/`);
  * every `*.rs` path mentioned there exists (relative to src/, else to the
    repository root, so `tests/alerting.rs` is fine);
  * the module graph, if there is one, matches the code. The graph is the
    first fenced block of the section holding a `←` or `→`; each line is
        a ← b               b uses a
        {a, b} ← c          c uses a and b
        c → a, b            c uses a and b (`{}` optional on either side)
        a, b, c             modules that are in the graph (no edges implied)
    and may end in a parenthesised comment: `clock, secret   (use nothing else)`.
    Nodes are the top-level modules of src/ (src/foo.rs and src/foo/** are
    `foo`; lib.rs and main.rs are crate roots, not nodes). An edge a -> b is
    in the code when a file of a names `crate::b` (`use crate::b::...`,
    `crate::b::x(...)`, `use crate::{b::X, ...}`) outside `#[cfg(test)]`
    items and `//` comments. Both directions are reported: edges missing
    from the graph and graph edges the code does not have.

Assumption: the code is rustfmt-formatted, so an item whose signature ends
in `{` at indentation N closes at the first later line that is exactly N
spaces and `}`. Bodies are not parsed, so braces in strings are harmless,
except a multi-line string holding such a line, which would end the item
early. `//` comments are stripped naively (not after `:`, sparing "http://").

Usage: check-code-shape.py [--list | --self-test]
  (none)       print violations, exit 1 if any
  --list       print a full report (also what the Layout section holds), exit 0
  --self-test  run the embedded cases, exit 1 if one fails
"""
import re
import sys
from pathlib import Path

LIMIT = 80
ROOT = Path(__file__).resolve().parent.parent
FN_RE = re.compile(r'^(\s*)(?:#\[.*?\]\s*)*'
                   r'(?:(?:pub(?:\([\w: ]+\))?|const|async|unsafe|default|extern\s+"[^"]*")\s+)*'
                   r'fn\s+(\w+)')
TEST_ATTR_RE = re.compile(r'^\s*#\[(?:cfg\(test\)|test)\]\s*(.*)$')
RS_PATH_RE = re.compile(r'(?<![\w./*-])((?:[\w.-]+/)*[\w-]+\.rs)(?![\w/])')
DIR_RE = re.compile(r'(?<![\w./-])((?:[\w-]+/)+)(?![\w.*])')


def strip_comment(line):
    return re.sub(r'(?<!:)//.*', '', line)


def item_extent(lines, i):
    """(last line index, has_body) of the item whose first line is lines[i]."""
    indent = re.match(r'\s*', lines[i]).group()
    for j in range(i, len(lines)):
        code = strip_comment(lines[j]).rstrip()
        if code.endswith(';'):
            return j, False
        if code.endswith('}'):
            return j, True
        if code.endswith('{'):
            for k in range(j + 1, len(lines)):
                if lines[k].rstrip() == indent + '}':
                    return k, True
            return len(lines) - 1, True
    return len(lines) - 1, False


def test_lines(lines):
    """Indices of the lines of items marked #[cfg(test)] or #[test]."""
    skip, i = set(), 0
    while i < len(lines):
        m = TEST_ATTR_RE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i if m.group(1) else i + 1
        while j < len(lines) and re.match(r'\s*(#\[|//)', lines[j]) and j > i:
            j += 1
        last = item_extent(lines, j)[0] if j < len(lines) else j
        skip.update(range(i, last + 1))
        i = last + 1
    return skip


def functions(text):
    """[(line number, name, length)] of every fn with a body outside tests."""
    lines = text.split('\n')
    skip, found = test_lines(lines), []
    for i, line in enumerate(lines):
        m = FN_RE.match(line)
        if m and i not in skip:
            last, has_body = item_extent(lines, i)
            if has_body:
                found.append((i + 1, m.group(2), last - i + 1))
    return found


def crate_refs(text):
    """[(line number, module)] for each `crate::module` outside tests and comments."""
    lines = text.split('\n')
    skip, refs = test_lines(lines), []
    for i, line in enumerate(lines):
        if i in skip:
            continue
        code = strip_comment(line)
        for m in re.finditer(r'\bcrate::(\w+|\{)', code):
            if m.group(1) != '{':
                refs.append((i + 1, m.group(1)))
                continue
            group, j = code[m.end() - 1:], i  # `use crate::{a::X, b}`, maybe multi-line
            while group.count('{') > group.count('}') and j + 1 < len(lines):
                j += 1
                group += strip_comment(lines[j])
            depth, expect = 0, False
            for tok in re.findall(r'[{},]|\w+', group):
                if tok == '{':
                    depth += 1
                    expect = depth == 1
                elif tok == '}':
                    depth -= 1
                    if depth == 0:
                        break
                elif tok == ',':
                    expect = depth == 1
                elif expect:
                    if tok != 'self':
                        refs.append((i + 1, tok))
                    expect = False
    return refs


def rust_files(base):
    return sorted(p for p in base.rglob('*.rs') if 'tests' not in p.relative_to(base).parts)


def check_functions(files):
    out = []
    for path in files:
        rel = path.relative_to(ROOT)
        for line, name, length in functions(path.read_text()):
            if length > LIMIT:
                out.append(f'{rel}:{line}: fn {name} is {length} lines (limit {LIMIT})')
    return out


def layout_section(readme):
    """(first line number, heading, lines) of the Layout section, or None."""
    lines, heads, fenced = readme.split('\n'), [], False
    for i, line in enumerate(lines):
        if line.lstrip().startswith('```'):
            fenced = not fenced
        elif not fenced and (m := re.match(r'(#{1,6})\s+(.*)', line)):
            heads.append((i, len(m.group(1)), m.group(2).strip()))
    pick = [h for h in heads if h[1] == 2 and h[2] == 'Layout'] or \
           [h for h in heads if 'layout' in h[2].lower()]
    if not pick:
        return None
    start, level, title = pick[0]
    end = next((i for i, lv, _ in heads if i > start and lv <= level), len(lines))
    return start + 1, lines[start], lines[start:end]


def parse_graph(lines, first):
    """From the section's lines: (block line number, nodes, {(a, b): line}, errors); a uses b."""
    blocks, cur = [], None
    for i, line in enumerate(lines):
        if line.lstrip().startswith('```'):
            if cur is None:
                cur = []
            else:
                blocks.append(cur)
                cur = None
        elif cur is not None:
            cur.append((first + i, line))
    graph = next((b for b in blocks if any('←' in l or '→' in l for _, l in b)), None)
    if graph is None:
        return None, set(), {}, []
    nodes, edges, errors = set(), {}, []
    for no, line in graph:
        body = re.sub(r'\s*\([^()]*\)\s*$', '', line).strip()
        if not body:
            continue
        parts = re.split(r'\s*([←→])\s*', body)
        sides = [re.sub(r'^\{(.*)\}$', r'\1', p.strip()) for p in parts[::2]]
        names = [[n.strip() for n in s.split(',')] for s in sides]
        if len(parts) not in (1, 3) or not all(re.fullmatch(r'\w+', n) for s in names for n in s):
            errors.append(f'README.md:{no}: cannot read graph line {line.strip()!r} '
                          '(expected `a ← b`, `{a, b} ← c`, `c → a, b` or `a, b, c`)')
            continue
        nodes.update(n for s in names for n in s)
        if len(parts) == 3:
            users, used = (names[1], names[0]) if parts[1] == '←' else (names[0], names[1])
            for u in users:
                for d in used:
                    edges.setdefault((u, d), no)
    return graph[0][0] - 1, nodes, edges, errors


def compare_graph(code_edges, modules, nodes, edges):
    """Messages for differences; code_edges maps (a, b) to 'file:line' of a use."""
    out = []
    for (a, b), where in sorted(code_edges.items()):
        if (a, b) not in edges:
            out.append(f'{where}: {a} uses {b} (crate::{b}); the README graph lacks `{b} ← {a}`')
    for (a, b), no in sorted(edges.items(), key=lambda e: e[1]):
        if (a, b) not in code_edges and a in modules and b in modules:
            out.append(f'README.md:{no}: graph says {a} uses {b}, but no crate::{b} in {a} outside tests')
    for name, rel in sorted(modules.items()):
        if name not in nodes:
            out.append(f'{rel}:1: module {name} is not in the README graph')
    for no_name in sorted(nodes - set(modules)):
        out.append(f'README.md: graph names {no_name}, which is not a module of src/')
    return out


def check_layout(info):
    readme = (ROOT / 'README.md').read_text()
    found = layout_section(readme)
    if found is None:
        return ['README.md:1: no Layout section (a heading containing "Layout")']
    first, heading, lines = found
    info.append(f'README.md:{first}: Layout section {heading!r}, {len(lines)} lines')
    text, src, out = '\n'.join(lines), ROOT / 'src', []
    mentioned = {m.removeprefix('src/') for m in RS_PATH_RE.findall(text)}
    dirs = set(DIR_RE.findall(text))
    files = rust_files(src)
    for path in files:
        rel = path.relative_to(src).as_posix()
        if rel not in mentioned and not (rel.endswith('/mod.rs') and rel[:-6] in dirs):
            out.append(f'src/{rel}:1: not mentioned in README.md\'s Layout section (as `{rel}`)')
    for m in sorted(mentioned):
        if not (src / m).is_file() and not (ROOT / m).is_file():
            no = first + next(i for i, l in enumerate(lines) if m in l)
            out.append(f'README.md:{no}: `{m}` is in the Layout section, but neither src/{m} nor {m} exists')
    modules, code_edges = {}, {}
    for path in files:
        rel = path.relative_to(src)
        name = rel.parts[0].removesuffix('.rs')
        if name in ('lib', 'main'):
            continue
        modules.setdefault(name, f'src/{name}.rs' if (src / f'{name}.rs').is_file() else f'src/{name}/mod.rs')
        for line, dep in crate_refs(path.read_text()):
            if dep != name:
                code_edges.setdefault((name, dep), f'src/{rel.as_posix()}:{line}')
    block, nodes, edges, errors = parse_graph(lines, first)
    if block is None:
        info.append('README.md: no module graph (fenced block with ← or →) in Layout; dependency check skipped')
        return out
    info.append(f'README.md:{block}: module graph, {len(nodes)} modules, {len(edges)} edges '
                f'(code: {len(modules)} modules, {len(code_edges)} edges)')
    return out + errors + compare_graph(code_edges, modules, nodes, edges)


def self_test():
    def fn(name, total, indent=''):
        return [f'{indent}fn {name}() {{'] + [f'{indent}    x();'] * (total - 2) + [f'{indent}}}']
    cases = []
    text = '\n'.join(fn('long', 81) + fn('ok', 80))
    cases.append(('81-line fn flagged, 80-line not',
                  [(n, l) for _, n, l in functions(text) if l > LIMIT] == [('long', 81)]))
    text = '\n'.join(['#[cfg(test)]', 'mod tests {'] + fn('t', 100, '    ') + ['}'] + fn('after', 3))
    cases.append(('fn in #[cfg(test)] mod skipped', [n for _, n, _ in functions(text)] == ['after']))
    text = '\n'.join(['pub trait T {', '    fn decl(&self) -> u32;', '    fn dflt(&self) {',
                      '        x();', '    }', '}', 'pub(crate) async fn one() { x() }'])
    cases.append(('trait declaration ignored', [(n, l) for _, n, l in functions(text)] == [('dflt', 3), ('one', 1)]))
    text = '\n'.join(['pub fn outer<T>(', '    a: T,', ') -> u32', 'where', '    T: Copy,', '{']
                     + fn('inner', 4, '    ') + ['    0', '}'])
    cases.append(('nested fn and where clause', [(n, l) for _, n, l in functions(text)] == [('outer', 12), ('inner', 4)]))
    text = 'use crate::{api::Job, clock,\n    self, status::Status};\n// crate::doc\nfn f() { crate::scan::x() }'
    cases.append(('crate refs', crate_refs(text) == [(1, 'api'), (1, 'clock'), (1, 'status'), (4, 'scan')]))
    graph = ['```', 'clock, api   (use nothing else)', '{clock, api} ← scan', 'cycle → scan', '```']
    _, nodes, edges, errors = parse_graph(graph, 1)
    mods = {m: f'src/{m}.rs' for m in ('clock', 'api', 'scan', 'cycle')}
    code = {('scan', 'clock'): 'src/scan.rs:1', ('cycle', 'scan'): 'src/cycle.rs:1', ('cycle', 'api'): 'src/cycle.rs:2'}
    diff = compare_graph(code, mods, nodes, edges)
    cases.append(('graph: missing and extra edges', not errors and len(diff) == 2
                  and 'lacks `api ← cycle`' in diff[0] and 'scan uses api' in diff[1]))
    _, _, _, errors = parse_graph(['```', 'a ← b ← c', '```'], 1)
    cases.append(('unreadable graph line reported', len(errors) == 1))
    failed = [name for name, ok in cases if not ok]
    for name in failed:
        print(f'check-code-shape self-test FAILED: {name}')
    print(f'check-code-shape self-test: {len(cases) - len(failed)}/{len(cases)} ok')
    return 1 if failed else 0


def main(args):
    if args == ['--self-test']:
        return self_test()
    if args not in ([], ['--list']):
        print(__doc__.split('\n\n')[-1], file=sys.stderr)
        return 2
    files = [f for d in ('src', 'simulator/src') for f in rust_files(ROOT / d)]
    long_fns, info = check_functions(files), []
    layout = check_layout(info)
    if args == ['--list']:
        print(f'== Rule 1: functions over {LIMIT} lines ({len(files)} files) ==')
        print('\n'.join(long_fns) or 'none')
        print('== Rule 2: README.md Layout ==')
        print('\n'.join(info + (layout or ['no mismatch'])))
        return 0
    for message in long_fns + layout:
        print(message)
    if long_fns or layout:
        print(f'check-code-shape: {len(long_fns)} long functions, {len(layout)} Layout mismatches')
        return 1
    print(f'check-code-shape: ok ({len(files)} files)')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
