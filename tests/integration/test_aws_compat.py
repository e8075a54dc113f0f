"""docs/compat/ecs.md and ecr.md, the AWS compatibility tables (issue 14): they
must be what docs/compat/generate.py makes from the awscli service models, the
operation tables in src/aws/ and the test_aws*.py tests, and the generator must
read those as documented (checked on the fixture in aws_compat/).

No server: these read files. They need Debian's awscli (its service models);
without it they say so and return, as the runner has no skipped state.

Operation names appear here only in aws_compat/ (the generator searches this file
too, and a name here would count as coverage).
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys

from harness import check, scratch_dir

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GENERATOR = os.path.join(ROOT, "docs", "compat", "generate.py")
FIXTURE = os.path.join(HERE, "aws_compat")
MODELS = "/usr/lib/python3/dist-packages/awscli/botocore/data"
DEBIAN_PYTHON = "/usr/bin/python3"  # the interpreter Debian's awscli (and its botocore) is installed for


def models_missing():
    """Why the service models are not there (a reason to print), or None."""
    for service in ("ecs", "ecr"):
        if not glob.glob(os.path.join(MODELS, service, "*", "service-2.json")):
            return "SKIP: no %s service model under %s (apt-get install awscli)" % (service, MODELS)
    return None


def generate(*args):
    return subprocess.run([sys.executable, GENERATOR] + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def table_rows(text):
    """{operation: [status, ignored fields, tests]} from a generated table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 5 and cells[0] not in ("operation", "---"):
            rows[cells[0]] = [cells[2], cells[3], cells[4].replace("`", "")]
    return rows


def test_aws_compat_tables_are_current():
    reason = models_missing()
    if reason:
        print(reason)
        return
    p = generate("--check")
    check(p.returncode == 0, "docs/compat is not what docs/compat/generate.py makes (exit %d):\n%s%s"
          % (p.returncode, p.stdout, p.stderr))


def test_aws_compat_generator_reads_the_fixture():
    reason = models_missing()
    if reason:
        print(reason)
        return
    with open(os.path.join(FIXTURE, "expected.json")) as f:
        expected = json.load(f)
    src, out = scratch_dir("src"), scratch_dir("out")
    for name in ("ecs.cc", "ecr.cc"):
        shutil.copy(os.path.join(FIXTURE, name), src)
    tests = os.path.join(FIXTURE, "test_aws*.py")
    args = ["--source-dir", src, "--tests", tests, "--out-dir", out]
    p = generate(*args)
    check(p.returncode == 0, "generate.py on the fixture: exit %d: %s" % (p.returncode, p.stderr))
    for name, want in expected.items():
        with open(os.path.join(out, name)) as f:
            text = f.read()
        check("do not edit" in text.lower() and "awscli" in text, "%s: no generated-by header: %r" % (name, text[:300]))
        rows = table_rows(text)
        model = json.load(open(glob.glob(os.path.join(MODELS, name[:3], "*", "service-2.json"))[-1]))
        check(sorted(rows) == sorted(model["operations"]),
              "%s: rows are not the model's operations: extra %s, missing %s"
              % (name, sorted(set(rows) - set(model["operations"])), sorted(set(model["operations"]) - set(rows))))
        full, partial = want["counts"]
        counts = "**%d supported, %d partial, %d not supported, of %d operations.**" % (
            full, partial, len(rows) - full - partial, len(rows))
        check(counts in text, "%s: counts line is not %r" % (name, counts))
        for op, row in want["rows"].items():
            check(rows.get(op) == row, "%s: row %s is %r, not %r" % (name, op, rows.get(op), row))

    p = generate("--check", *args)
    check(p.returncode == 0, "--check right after generating: exit %d: %s" % (p.returncode, p.stderr))
    # One supported operation becomes partial: the ECS table is stale, the ECR one is not.
    path = os.path.join(src, "ecs.cc")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(re.sub(r'Support::kFull, (\w+), ""', r'Support::kPartial, \1, "someField"', text, count=1))
    p = generate("--check", *args)
    check(p.returncode == 1, "--check on a changed table: exit %d, not 1: %s" % (p.returncode, p.stderr))
    check("ecs.md is stale" in p.stderr and "ecr.md" not in p.stderr, "--check names: %r" % p.stderr)

    os.remove(path)
    p = generate("--check", *args)
    check(p.returncode == 2 and "ecs.cc does not exist" in p.stderr, "no ecs.cc: exit %d: %r" % (p.returncode, p.stderr))


def test_aws_compat_cli_names_are_botocores():
    """generate.py's own xform_name gives every operation the name the aws CLI uses."""
    reason = models_missing()
    if reason:
        print(reason)
        return
    script = ("import glob, json, sys\n"
              "sys.path.insert(0, %r)\n"
              "import generate\n"
              "from awscli.botocore import xform_name\n"
              "bad = []\n"
              "for svc in ('ecs', 'ecr'):\n"
              "    for op in generate.load_model(%r, svc)[0]:\n"
              "        if generate.cli_name(op) != xform_name(op, '-'):\n"
              "            bad.append((op, generate.cli_name(op), xform_name(op, '-')))\n"
              "print(json.dumps(bad))\n") % (os.path.dirname(GENERATOR), MODELS)
    p = subprocess.run([DEBIAN_PYTHON, "-c", script], capture_output=True, text=True, timeout=60)
    if p.returncode != 0 and "No module named 'awscli" in p.stderr:
        print("SKIP: %s cannot import awscli.botocore" % DEBIAN_PYTHON)
        return
    check(p.returncode == 0, "%s: %s" % (DEBIAN_PYTHON, p.stderr))
    bad = json.loads(p.stdout)
    check(not bad, "operation, generate.py's CLI name, botocore's: %r" % bad)
