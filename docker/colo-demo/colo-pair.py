#!/usr/bin/python3
"""A demo QEMU COLO pair for docker/compose.yaml: two QEMUs without a guest
(-machine none,accel=tcg), the secondary waiting with -incoming, the
primary migrating to it with the x-colo capability, as tests/e2e/harness.py
(QemuPair) does.

Each QEMU has two QMP sockets: a private one in CTL_DIR that this script
uses to set COLO up (and to log COLO_EXIT), and one for the bridge in
SOCKET_DIR (the volume shared with the qmp2mqtt container):
SOCKET_DIR/pri.qmp and SOCKET_DIR/sec.qmp, mode 0770 (umask 007), group
of this process (the gid the bridge runs with).

Runs until SIGTERM/SIGINT (then stops both QEMUs and exits 0) or until
both QEMUs are gone (exit 1).  A takeover leaves the survivor running.

Environment: SOCKET_DIR (/run/qmp2mqtt), CTL_DIR (/run/colo),
MIGRATE_PORT (7001, on the container's loopback), CHECKPOINT_DELAY_MS
(2000), QEMU (qemu-system-x86_64), SETUP_TIMEOUT_S (60).
"""

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

SOCKET_DIR = os.environ.get("SOCKET_DIR", "/run/qmp2mqtt")
CTL_DIR = os.environ.get("CTL_DIR", "/run/colo")
PORT = int(os.environ.get("MIGRATE_PORT", "7001"))
DELAY = int(os.environ.get("CHECKPOINT_DELAY_MS", "2000"))
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
SETUP_TIMEOUT = float(os.environ.get("SETUP_TIMEOUT_S", "60"))
SIDES = {"pri": "primary", "sec": "secondary"}


def say(*a):
    print("colo-pair:", *a, flush=True)


class Stop(Exception):
    pass


def on_signal(sig, frame):
    raise Stop("signal %d" % sig)


class QMP:
    """A minimal QMP client: commands one at a time, events kept."""

    def __init__(self, path, deadline):
        while True:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.s.connect(path)
                break
            except OSError as e:
                self.s.close()
                if time.monotonic() > deadline:
                    raise RuntimeError("QMP %s: %s" % (path, e))
                time.sleep(0.05)
        self.path = path
        self.buf = b""
        self.events = []
        self.deadline = deadline
        self.read_msg()                         # the greeting
        self.cmd("qmp_capabilities")

    def read_msg(self):
        while b"\n" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("QMP %s: no answer" % self.path)
            self.s.settimeout(left)
            data = self.s.recv(65536)
            if not data:
                raise RuntimeError("QMP %s: closed" % self.path)
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None):
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            m = self.read_msg()
            if "event" in m:
                self.events.append(m)
                continue
            if "error" in m:
                raise RuntimeError("QMP %s: %s: %s" % (self.path, name,
                                                       m["error"]))
            return m.get("return")


def qemu(side, extra):
    return subprocess.Popen(
        [QEMU, "-machine", "none,accel=tcg", "-m", "16", "-smp", "1",
         "-nodefaults", "-no-user-config", "-display", "none",
         "-name", SIDES[side],
         "-qmp", "unix:%s/%s.qmp,server=on,wait=on" % (CTL_DIR, side),
         "-qmp", "unix:%s/%s.qmp,server=on,wait=off" % (SOCKET_DIR, side)]
        + extra, stdin=subprocess.DEVNULL)


def setup(procs):
    deadline = time.monotonic() + SETUP_TIMEOUT
    sec = QMP("%s/sec.qmp" % CTL_DIR, deadline)
    pri = QMP("%s/pri.qmp" % CTL_DIR, deadline)
    caps = {"capabilities": [{"capability": "x-colo", "state": True}]}
    sec.cmd("migrate-set-capabilities", caps)
    pri.cmd("migrate-set-capabilities", caps)
    pri.cmd("migrate-set-parameters", {"x-checkpoint-delay": DELAY})
    pri.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % PORT})
    status = None
    while time.monotonic() < deadline:
        status = pri.cmd("query-migrate").get("status")
        if status in ("colo", "failed", "cancelled"):
            break
        if any(p.poll() is not None for p in procs.values()):
            break
        time.sleep(0.05)
    if status != "colo":
        raise RuntimeError("no COLO: query-migrate status %r" % status)
    while True:
        p = pri.cmd("query-colo-status").get("mode")
        s = sec.cmd("query-colo-status").get("mode")
        if (p, s) == ("primary", "secondary"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("query-colo-status: %r/%r" % (p, s))
        time.sleep(0.05)
    for m in (pri, sec):
        m.s.settimeout(None)
    return {"pri": pri, "sec": sec}


QUIET = re.compile(rb'"event": *"(STOP|RESUME)"')


def watch(procs, mons):
    """Logs the events of the control monitors until both QEMUs exit."""
    for side, m in mons.items():
        for ev in m.events:
            if ev.get("event") in ("STOP", "RESUME"):
                continue
            say("%s: %s" % (SIDES[side], json.dumps(ev)))
        m.events.clear()
    while any(p.poll() is None for p in procs.values()):
        socks = {m.s: side for side, m in mons.items() if m.s is not None}
        r = select.select(list(socks), [], [], 1.0)[0] if socks else \
            time.sleep(1.0) or []
        for s in r:
            side = socks[s]
            m = mons[side]
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                s.close()
                m.s = None
                say("%s: QMP closed (QEMU exited with %s)" %
                    (SIDES[side], procs[side].wait()))
                continue
            m.buf += data
            while b"\n" in m.buf:
                line, m.buf = m.buf.split(b"\n", 1)
                if QUIET.search(line):
                    continue    # every checkpoint stops and resumes both
                say("%s: %s" % (SIDES[side], line.decode("utf-8",
                                                         "replace")))


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    os.umask(0o007)     # sockets srwxrwx---: the bridge's group may connect
    for d in (SOCKET_DIR, CTL_DIR):
        os.makedirs(d, exist_ok=True)
        for side in SIDES:
            try:
                os.unlink(os.path.join(d, side + ".qmp"))
            except FileNotFoundError:
                pass
    procs = {}
    rc = 1
    try:
        procs["sec"] = qemu("sec", ["-incoming", "tcp:127.0.0.1:%d" % PORT])
        procs["pri"] = qemu("pri", ["-S"])
        say("QEMU primary pid %d, secondary pid %d" %
            (procs["pri"].pid, procs["sec"].pid))
        mons = setup(procs)
        say("primary and secondary in COLO (checkpoint delay %d ms); "
            "bridge sockets %s/pri.qmp and %s/sec.qmp" %
            (DELAY, SOCKET_DIR, SOCKET_DIR))
        watch(procs, mons)
        say("both QEMUs exited")
    except Stop as e:
        say("stopping (%s)" % e)
        rc = 0
    except Exception as e:
        say("error: %s" % e)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return rc


if __name__ == "__main__":
    sys.exit(main())
