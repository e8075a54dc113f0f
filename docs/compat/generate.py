#!/usr/bin/env python3
"""Writes docs/compat/ecs.md and docs/compat/ecr.md: every operation of the ECS
and ECR service models, as berth's AWS front end supports it, and the tests that
cover it.

    python3 docs/compat/generate.py            # (re)writes the two files
    python3 docs/compat/generate.py --check    # exits 1, naming the stale file, if they would change

Three inputs, all read, none changed:

- The service models that ship with Debian's awscli
  (/usr/lib/python3/dist-packages/awscli/botocore/data/{ecs,ecr}/<apiVersion>/service-2.json;
  --models for another data directory). Their operations are the rows.
- The operation tables of src/aws/ecs.cc and src/aws/ecr.cc (--source-dir for
  another directory), one entry per supported operation:
      {"UpdateCluster", Support::kPartial, UpdateCluster, "settings, configuration"},
  An operation in the table is supported (kFull) or partial (kPartial, with the
  fields berth accepts and ignores); any other is not supported.
- tests/integration/test_aws*.py (--tests for another glob). A `def test_...` covers an operation when a
  string literal in it (docstrings excluded) holds the CLI spelling as a word
  (`create-cluster`, botocore's xform_name with "-"), is the operation name
  itself (`"CreateCluster"`) or ends in `<X-Amz-Target prefix>.<Operation>`.
  A literal in a module-level helper covers the tests that call the helper.
  A CLI spelling both models have (`tag-resource`) counts for the service the
  literal names (`ecs`/`ecr` as a word), else the one the function names, else both.

--out-dir writes elsewhere than docs/compat (tests use it with a fixture).
Paths given are relative to the repository root. Python 3 standard library only. Exit status: 0 done (or up to date), 1 stale
(--check), 2 an input is missing or malformed.
"""

import argparse
import ast
import difflib
import glob
import json
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_MODELS = "/usr/lib/python3/dist-packages/awscli/botocore/data"
SERVICES = [  # (model directory, source file, title, output file)
    ("ecs", "ecs.cc", "Amazon ECS", "ecs.md"),
    ("ecr", "ecr.cc", "Amazon ECR", "ecr.md"),
]
TESTS_GLOB = "tests/integration/test_aws*.py"

# One table entry: {"Name", Support::kFull|kPartial, Handler, "ignored, fields"}
# The ignored fields may be adjacent string literals over several lines, as C++ joins them.
ENTRY_RE = re.compile(r'\{\s*"([A-Za-z0-9]+)"\s*,\s*Support::k(Full|Partial)\s*,\s*([^,"{}]+?)\s*,\s*'
                      r'("[^"]*"(?:\s*"[^"]*")*)\s*\}')
# What starts an entry; each must be one ENTRY_RE reads (code elsewhere may use Support:: freely).
ENTRY_START_RE = re.compile(r'\{\s*"\w+"\s*,\s*Support::k\w+')


class InputError(Exception):
    """An input is missing or malformed; the message says which and how."""


# botocore's xform_name(name, "-") (awscli/botocore/__init__.py), which makes
# the CLI's operation names: DescribeContainerInstances -> describe-container-instances.
_FIRST_CAP = re.compile("(.)([A-Z][a-z]+)")
_END_CAP = re.compile("([a-z0-9])([A-Z])")
_PLURAL_ACRONYM = re.compile("[A-Z]{2,}s$")  # ListWebACLs -> list-web-acls


def cli_name(operation):
    name = operation
    m = _PLURAL_ACRONYM.search(name)
    if m:
        name = name[:-len(m.group())] + "-" + m.group().lower()
    return _END_CAP.sub(r"\1-\2", _FIRST_CAP.sub(r"\1-\2", name)).lower()


def load_model(models_dir, service):
    """(operations in model order, metadata) of the newest model of `service`."""
    paths = sorted(glob.glob(os.path.join(models_dir, service, "*", "service-2.json")))
    if not paths:
        raise InputError("no %s service model under %s (apt-get install awscli, or --models DIR)"
                         % (service, os.path.join(models_dir, service, "*", "service-2.json")))
    with open(paths[-1]) as f:
        model = json.load(f)
    return list(model["operations"]), model["metadata"]


def awscli_version(models_dir):
    """awscli's __version__ from the package holding the models, or "unknown"."""
    init = os.path.join(os.path.dirname(os.path.dirname(os.path.normpath(models_dir))), "__init__.py")
    try:
        with open(init) as f:
            m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", f.read(), re.M)
        return m.group(1) if m else "unknown"
    except OSError:
        return "unknown"


def load_table(path, operations, service):
    """{operation: (status, ignored fields)} from the operation table in `path`."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise InputError("%s does not exist: the %s operation table is read from it (--source-dir DIR for "
                         "another directory)" % (path, service)) from None
    table = {}
    known = set(operations)
    for m in ENTRY_RE.finditer(text):
        name, support, _handler, literals = m.groups()
        ignored = "".join(re.findall(r'"([^"]*)"', literals))
        line = text.count("\n", 0, m.start()) + 1
        # An operation newer than this model (e.g. ECS's DeleteTaskDefinitions, 2023,
        # after awscli 2.9) is listed apart: berth answers it, this CLI cannot send it.
        if name in table:
            raise InputError("%s:%d: %s is in the table twice" % (path, line, name))
        fields = [x.strip() for x in ignored.split(",") if x.strip()]
        if support == "Partial" and not fields:
            raise InputError("%s:%d: %s is kPartial but names no ignored field" % (path, line, name))
        table[name] = ("supported" if support == "Full" else "partial", fields)
    entries = [m.span() for m in ENTRY_RE.finditer(text)]
    for m in ENTRY_START_RE.finditer(text):
        if not any(start <= m.start() < end for start, end in entries):
            line = text.count("\n", 0, m.start()) + 1
            raise InputError('%s:%d: not an entry of the form {"Name", Support::kFull|kPartial, Handler, '
                             '"ignored, fields"}: %s' % (path, line, text.splitlines()[line - 1].strip()))
    if not table:
        raise InputError('%s holds no operation table entry ({"Name", Support::kFull, Handler, ""})' % path)
    return table


def _strings(node, skip=()):
    """Every string literal under `node` (f-strings by their literal parts), but those in `skip`."""
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip:
            yield n.value


def _docstring_nodes(tree):
    skip = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body:
            first = n.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                skip.add(id(first.value))
    return skip


def find_coverage(test_paths, services):
    """{service: {operation: [file::test, ...]}} from the test files.

    `services` is {service: (operations, target prefix)}."""
    by_cli = {}  # cli spelling -> [(service, operation)]
    for svc, (ops, _) in services.items():
        for op in ops:
            by_cli.setdefault(cli_name(op), []).append((svc, op))
    cli_re = re.compile(r"(?<![\w-])(%s)(?![\w-])" % "|".join(sorted(map(re.escape, by_cli), key=len, reverse=True)))
    word = {svc: re.compile(r"(?<![\w-])%s(?![\w-])" % svc) for svc in services}
    exact = {}  # literal -> [(service, operation)]
    for svc, (ops, prefix) in services.items():
        for op in ops:
            exact.setdefault(op, []).append((svc, op))
            exact.setdefault("%s.%s" % (prefix, op), []).append((svc, op))

    cover = {svc: {} for svc in services}
    for path in test_paths:
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        rel = os.path.basename(path)
        skip = _docstring_nodes(tree)
        funcs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        hits = {}  # function -> {(service, operation)}
        for fname, fn in funcs.items():
            literals = list(_strings(fn, skip))
            named = {svc for svc in services if any(word[svc].search(s) for s in literals)}
            found = set()
            for s in literals:
                found.update(exact.get(s, ()))
                in_literal = {svc for svc in services if word[svc].search(s)}
                for m in cli_re.finditer(s):
                    cands = by_cli[m.group(1)]
                    if len(cands) > 1:
                        narrowed = [c for c in cands if c[0] in (in_literal or named)]
                        cands = narrowed or cands
                    found.update(cands)
            hits[fname] = found
        # A helper's operations count for the tests that call it (through other helpers too).
        calls = {f: {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
                 & set(funcs) for f, fn in funcs.items()}
        for fname in funcs:
            if not fname.startswith("test_"):
                continue
            seen, todo, ops = {fname}, [fname], set()
            while todo:
                f = todo.pop()
                ops |= hits[f]
                for g in calls[f] - seen:
                    seen.add(g)
                    todo.append(g)
            for svc, op in ops:
                cover[svc].setdefault(op, []).append("%s::%s" % (rel, fname))
    return cover


def _cell(text):
    return text.replace("|", "\\|")


def render(title, service, source_rel, tests_rel, ops, metadata, version, table, cover):
    counts = {"supported": 0, "partial": 0, "not supported": 0}
    rows = []
    newer = sorted(set(table) - set(ops))
    for op in sorted(ops):
        status, fields = table.get(op, ("not supported", []))
        counts[status] += 1
        tests = cover.get(op, [])
        rows.append("| %s | `aws %s %s` | %s | %s | %s |" % (
            op, service, cli_name(op), status, _cell(", ".join(fields)) if fields else "",
            _cell(", ".join("`%s`" % t for t in tests)) if tests else "—"))
    out = [
        "# %s operations in berth" % title,
        "",
        "Generated by `docs/compat/generate.py` from awscli %s's %s service model, API version %s "
        "(`X-Amz-Target: %s.<operation>`), the operation table in `%s` and `%s`. Do not edit: "
        "rerun `python3 docs/compat/generate.py`." % (version, service, metadata["apiVersion"],
                                                     metadata.get("targetPrefix", "?"), source_rel, tests_rel),
        "",
        "**%d supported, %d partial, %d not supported, of %d operations.** A partial operation "
        "accepts the fields listed and reports them back as ignored; an operation not supported "
        "answers with an error naming it." % (counts["supported"], counts["partial"], counts["not supported"],
                                               len(ops)),
        "",
        "| operation | CLI | status | ignored fields | tests |",
        "| --- | --- | --- | --- | --- |",
    ]
    if newer:
        rows += ["", "Operations berth answers that are newer than this model (SDKs and CLIs with a newer "
                 "model send them; this CLI cannot):", "",
                 "| operation | status | ignored fields | tests |", "| --- | --- | --- | --- |"]
        for op in newer:
            status, fields = table[op]
            tests = cover.get(op, [])
            rows.append("| %s | %s | %s | %s |" % (
                op, status, _cell(", ".join(fields)) if fields else "",
                _cell(", ".join("`%s`" % t for t in tests)) if tests else "—"))
    return "\n".join(out + rows) + "\n"


def generate(models_dir, source_dir, tests_glob, out_dir):
    """{output path: text}."""
    version = awscli_version(models_dir)
    models = {svc: load_model(models_dir, svc) for svc, _, _, _ in SERVICES}
    tables = {svc: load_table(os.path.join(source_dir, src), models[svc][0], svc) for svc, src, _, _ in SERVICES}
    tests = sorted(glob.glob(tests_glob))
    cover = find_coverage(tests, {svc: (sorted(set(ops) | set(tables[svc])), meta.get("targetPrefix", ""))
                                  for svc, (ops, meta) in models.items()})
    out = {}
    for svc, src, title, path in SERVICES:
        ops, meta = models[svc]
        source_rel = os.path.relpath(os.path.join(source_dir, src), ROOT)
        tests_rel = os.path.relpath(tests_glob, ROOT)
        out[os.path.join(out_dir, path)] = render(title, svc, source_rel, tests_rel, ops, meta, version,
                                                  tables[svc], cover[svc])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    ap.add_argument("--source-dir", default="src/aws", help="where ecs.cc and ecr.cc are (default src/aws)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help="botocore's data directory (default %(default)s)")
    ap.add_argument("--tests", default=TESTS_GLOB, help="the test files to search (default %(default)s)")
    ap.add_argument("--out-dir", default="docs/compat", help="where ecs.md and ecr.md go (default docs/compat)")
    a = ap.parse_args()
    # Paths are relative to the repo root (an absolute one stays as it is).
    source_dir, tests_glob, out_dir = (os.path.join(ROOT, p) for p in (a.source_dir, a.tests, a.out_dir))
    try:
        files = generate(a.models, source_dir, tests_glob, out_dir)
    except InputError as e:
        print("generate.py: %s" % e, file=sys.stderr)
        return 2
    stale = []
    for full, text in files.items():
        path = os.path.relpath(full, ROOT)
        try:
            with open(full) as f:
                old = f.read()
        except FileNotFoundError:
            old = None
        if old == text:
            continue
        if not a.check:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)
            print("wrote %s" % path)
            continue
        if old is None:
            stale.append("%s is missing" % path)
            continue
        diff = list(difflib.unified_diff(old.splitlines(), text.splitlines(), path + " (on disk)",
                                         path + " (generated)", lineterm="", n=0))
        changed = [l for l in diff[2:] if l[:1] in "+-"]
        summary = "%s is stale: %d line(s) would go, %d would come" % (
            path, sum(l.startswith("-") for l in changed), sum(l.startswith("+") for l in changed))
        stale.append(summary + "\n" + "\n".join("    " + l for l in diff[:24]) +
                     ("\n    ..." if len(diff) > 24 else ""))
    if stale:
        print("\n".join(stale), file=sys.stderr)
        print("generate.py: run `python3 docs/compat/generate.py` and commit the result", file=sys.stderr)
        return 1
    if a.check:
        print("%s up to date" % ", ".join(os.path.relpath(p, ROOT) for p in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
