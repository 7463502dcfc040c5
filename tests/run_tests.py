#!/usr/bin/python3
"""qmp2mqtt test runner.

    run_tests.py --build BUILD [-k PATTERN] [UNIT_BINARY ...] -- [E2E_DIR ...]

Runs every unit-test binary given before "--" and every test_*.py found in
the directories after "--" (sorted), each as its own process, in its own
process group, with a timeout (unit tests 60 s; an end-to-end script may say
"# TIMEOUT = N" on a line of its own, default 180 s).  Each test gets
QMP2MQTT_BUILD=<absolute build dir> in its environment; its output goes to
BUILD/logs/<name>.log and is printed (tail) when it fails.

One line per test: "PASS name (1.2s)", "FAIL name", "SKIP name"; then
"N passed, N failed" (", N skipped" when any).  Exit status 1 on any failure.
Exit code 77 from a test means skipped.  Stdlib only.
"""

import argparse
import fnmatch
import os
import re
import signal
import subprocess
import sys
import time

UNIT_TIMEOUT = 60
E2E_TIMEOUT = 180
SKIP_CODE = 77
TAIL_LINES = 80
TERM_GRACE = 5.0   # seconds between SIGTERM and SIGKILL on timeout

TIMEOUT_RE = re.compile(r"^#\s*TIMEOUT\s*=\s*(\d+)\s*$", re.M)


def python_for_tests():
    """Debian's python3 has python3-paho-mqtt; a pyenv one on PATH may not."""
    p = os.environ.get("QMP2MQTT_PYTHON")
    if p:
        return p
    if os.access("/usr/bin/python3", os.X_OK):
        return "/usr/bin/python3"
    return sys.executable


def e2e_timeout(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            m = TIMEOUT_RE.search(f.read())
        if m:
            return int(m.group(1))
    except OSError:
        pass
    return E2E_TIMEOUT


def selected(name, patterns):
    if not patterns:
        return True
    for p in patterns:
        if p in name or fnmatch.fnmatch(name, p):
            return True
    return False


def reap_group(pgid, log):
    """Kills whatever the test left behind in its process group."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return
    log.write("\n[run_tests] leftover processes in the test's process group: "
              "killed\n")
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_one(name, argv, timeout, env, logpath, cwd):
    """Returns (status, seconds, detail); status in PASS/FAIL/SKIP."""
    t0 = time.monotonic()
    detail = ""
    with open(logpath, "w", encoding="utf-8", errors="replace") as log:
        log.write("[run_tests] %s\n[run_tests] timeout %ds\n" %
                  (" ".join(argv), timeout))
        log.flush()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    env=env, cwd=cwd, start_new_session=True)
        except OSError as e:
            log.write("[run_tests] cannot start: %s\n" % e)
            return "FAIL", time.monotonic() - t0, "cannot start: %s" % e
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGTERM first so the test's cleanup (atexit, finally) can run,
            # then SIGKILL the whole group.
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=TERM_GRACE)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            rc = None
            detail = "timeout after %ds" % timeout
        reap_group(proc.pid, log)
        secs = time.monotonic() - t0
        if rc is None:
            log.write("\n[run_tests] %s\n" % detail)
            return "FAIL", secs, detail
        log.write("\n[run_tests] exit status %d (%.1fs)\n" % (rc, secs))
        if rc == 0:
            return "PASS", secs, ""
        if rc == SKIP_CODE:
            return "SKIP", secs, ""
        if rc < 0:
            try:
                sig = signal.Signals(-rc).name
            except ValueError:
                sig = str(-rc)
            return "FAIL", secs, "killed by %s" % sig
        return "FAIL", secs, "exit status %d" % rc


CTRL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def printable(line):
    """A log line made safe for a terminal (tests feed NUL bytes etc.)."""
    return CTRL_RE.sub(lambda m: "\\x%02x" % ord(m.group()), line)


def tail(path, n):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return []
    return [printable(ln.rstrip("\n")) + "\n" for ln in lines[-n:]]


ERROR_RE = re.compile(r"^(\w+\.)*\w*(Error|Failure|Exception|Exit)\b.*:|"
                      r"^--- FAIL |^\[  FAILED  \]|^\[  ERROR   \]")


def error_lines(path, limit=30):
    """Exception lines of tracebacks and failure markers (the harness'
    "--- FAIL name", cmocka's "[  FAILED  ]"), so that a failure's cause
    shows even when the tail is filled with logs."""
    out = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if ERROR_RE.search(line):
                    out.append(printable(line.rstrip("\n"))[:500])
    except OSError:
        pass
    return out[:limit]


def skip_reason(path):
    """The last 'SKIP:' line a skipped test printed, if any."""
    for line in reversed(tail(path, 200)):
        if "SKIP" in line and ":" in line:
            return line.strip()
    return ""


def main():
    argv = sys.argv[1:]
    if "--" in argv:
        i = argv.index("--")
        head, e2e_dirs = argv[:i], argv[i + 1:]
    else:
        head, e2e_dirs = argv, []
    ap = argparse.ArgumentParser(description="qmp2mqtt test runner")
    ap.add_argument("--build", required=True, help="build directory")
    ap.add_argument("-k", dest="patterns", action="append", default=[],
                    help="run only tests whose name contains PATTERN "
                         "(or matches it as a glob); repeatable")
    ap.add_argument("units", nargs="*", help="unit-test binaries")
    args = ap.parse_args(head)

    root = os.getcwd()
    build = os.path.abspath(args.build)
    logdir = os.path.join(build, "logs")
    os.makedirs(logdir, exist_ok=True)

    env = dict(os.environ)
    env["QMP2MQTT_BUILD"] = build
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"

    tests = []   # (name, argv, timeout, logname)
    for u in args.units:
        name = os.path.basename(u)
        tests.append((name, [os.path.abspath(u)], UNIT_TIMEOUT,
                      "unit_%s.log" % name))
    py = python_for_tests()
    for d in e2e_dirs:
        try:
            files = sorted(f for f in os.listdir(d)
                           if f.startswith("test_") and f.endswith(".py"))
        except OSError as e:
            print("run_tests: %s: %s" % (d, e), file=sys.stderr)
            files = []
        for f in files:
            path = os.path.abspath(os.path.join(d, f))
            base = f[:-3]
            name = "%s/%s" % (os.path.basename(os.path.normpath(d)), base)
            tests.append((name, [py, path], e2e_timeout(path),
                          "%s.log" % name.replace("/", "_")))

    npass = nfail = nskip = 0
    for name, targv, timeout, logname in tests:
        if not selected(name, args.patterns):
            continue
        logpath = os.path.join(logdir, logname)
        if not os.path.exists(targv[-1]):
            with open(logpath, "w") as log:
                log.write("[run_tests] missing: %s\n" % targv[-1])
            print("FAIL %s" % name)
            print("    missing: %s" % targv[-1])
            nfail += 1
            sys.stdout.flush()
            continue
        status, secs, detail = run_one(name, targv, timeout, env, logpath,
                                       root)
        if status == "PASS":
            npass += 1
            print("PASS %s (%.1fs)" % (name, secs))
        elif status == "SKIP":
            nskip += 1
            print("SKIP %s" % name)
            why = skip_reason(logpath)
            if why:
                print("    %s" % why)
        else:
            nfail += 1
            print("FAIL %s" % name)
            print("    %s (%.1fs); log: %s" % (detail, secs, logpath))
            errs = error_lines(logpath)
            if errs:
                print("    errors:")
                for line in errs:
                    print("    ! " + line)
            for line in tail(logpath, TAIL_LINES):
                print("    | " + line.rstrip("\n"))
        sys.stdout.flush()

    summary = "%d passed, %d failed" % (npass, nfail)
    if nskip:
        summary += ", %d skipped" % nskip
    print(summary)
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
