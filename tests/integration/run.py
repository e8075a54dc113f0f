#!/usr/bin/env python3
"""Runs the integration tests against a real `berth` binary.

    python3 tests/integration/run.py --binary build/berth [-k SUBSTRING]... [-j N] [-v]

Finds `test_*` functions in `test_*.py` beside this file (after each module's
`setup_suite()`, if it has one, ran once), runs each in its own
Python process (so a hung test can be killed with every server it started),
prints `PASS name` or `FAIL name: reason`, and ends with `N passed, N failed`.
Exits non-zero if any test failed or none was selected. With BERTH_IT_KEEP=1
each test's scratch directory (/tmp/berth-it-*: data directories, server and
agent logs) is left for a look instead of removed.
"""

import argparse
import concurrent.futures
import importlib
import inspect
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TIMEOUT = 30


def discover():
    """[(module name, function name, timeout)] in file order, then source order."""
    sys.path.insert(0, HERE)
    found = []
    for fname in sorted(os.listdir(HERE)):
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        mod = importlib.import_module(fname[:-3])
        fns = [(n, f) for n, f in vars(mod).items()
               if n.startswith("test_") and inspect.isfunction(f) and f.__module__ == mod.__name__]
        fns.sort(key=lambda nf: nf[1].__code__.co_firstlineno)
        for n, f in fns:
            found.append((mod.__name__, n, getattr(f, "timeout", DEFAULT_TIMEOUT)))
    return found


def run_child(module, name):
    """In the child process: runs one test; prints the reason and exits 1 on failure."""
    sys.path.insert(0, HERE)
    import harness

    try:
        fn = getattr(importlib.import_module(module), name)
        fn()
    except BaseException as e:  # noqa: BLE001 - any failure is the test's result
        tb = traceback.extract_tb(e.__traceback__)
        where = next((f"{os.path.basename(fr.filename)}:{fr.lineno}" for fr in reversed(tb)
                      if os.path.basename(fr.filename).startswith("test_")), "?")
        traceback.print_exc(file=sys.stderr)
        kind = "" if isinstance(e, AssertionError) else type(e).__name__ + ": "
        reason = (kind + str(e)).strip() or type(e).__name__
        sys.stderr.flush()
        print("REASON %s (%s)" % (reason.replace("\n", "\n    "), where), flush=True)
        return 1
    finally:
        harness.cleanup()
    return 0


def run_one(binary, module, name, limit, verbose):
    """In the parent: runs a test in a child process; returns (ok, report line, details)."""
    started = time.monotonic()
    scratch = tempfile.mkdtemp(prefix="berth-it-%s-" % name[5:][:30])
    env = dict(os.environ, BERTH_BINARY=binary, BERTH_IT_SCRATCH=scratch, PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", module + "::" + name]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate(timeout=limit)
        timed_out = False
    except subprocess.TimeoutExpired:
        # The child leads its own process group, which holds the servers it started.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
        timed_out = True
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers, if the child died abruptly
    except (ProcessLookupError, PermissionError):
        pass
    if not os.environ.get("BERTH_IT_KEEP"):
        shutil.rmtree(scratch, ignore_errors=True)
    text = out.decode("utf-8", "replace")
    label = "%s.%s" % (module, name)
    took = " (%.1fs)" % (time.monotonic() - started)  # informational only
    if timed_out:
        return False, "FAIL %s: timed out after %ss" % (label, limit), text
    if proc.returncode == 0:
        return True, "PASS %s%s" % (label, took), text
    idx = text.find("\nREASON ") + 1 if not text.startswith("REASON ") else 0
    if idx > 0 or text.startswith("REASON "):
        reason = text[idx + len("REASON "):].rstrip()
    else:
        reason = "exit %d: %s" % (proc.returncode, text.strip().splitlines()[-1] if text.strip() else "")
    return False, "FAIL %s: %s" % (label, reason), text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="build/berth", help="the berth binary to test")
    ap.add_argument("-k", action="append", default=[], metavar="SUBSTRING",
                    help="run only tests whose module.name contains SUBSTRING (repeatable: any)")
    ap.add_argument("-j", type=int, default=1, help="tests to run at once (default 1)")
    ap.add_argument("-v", action="store_true", help="print the full output of failed tests")
    ap.add_argument("--list", action="store_true", help="list the tests and exit")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.child:
        module, name = a.child.split("::")
        sys.exit(run_child(module, name))

    binary = os.path.abspath(a.binary)
    if not os.access(binary, os.X_OK):
        print("run.py: %s is not an executable (build it first: make build)" % binary, file=sys.stderr)
        sys.exit(2)
    tests = [t for t in discover() if not a.k or any(k in "%s.%s" % (t[0], t[1]) for k in a.k)]
    if a.list:
        for m, n, lim in tests:
            print("%s.%s (timeout %ss)" % (m, n, lim))
        return
    if not tests:
        print("no tests selected")
        print("0 passed, 0 failed")
        sys.exit(1)

    # A module's setup_suite() runs once here before its tests (e.g. starting
    # Docker and building the test image), so no test pays for it within its timeout.
    for module in sorted({m for m, _, _ in tests}):
        setup = getattr(importlib.import_module(module), "setup_suite", None)
        if setup:
            try:
                setup()
            except Exception as e:  # noqa: BLE001 - reported, and every test of the module then fails on its own
                print("setup_suite of %s failed: %s" % (module, e), flush=True)

    passed = failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.j)) as pool:
        futures = [pool.submit(run_one, binary, m, n, lim, a.v) for m, n, lim in tests]
        for fut in futures:
            ok, line, text = fut.result()
            print(line, flush=True)
            if ok:
                passed += 1
            else:
                failed += 1
                if a.v:
                    print("    " + text.rstrip().replace("\n", "\n    "), flush=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
