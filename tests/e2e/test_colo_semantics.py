#!/usr/bin/python3
"""What real QEMU 7.2 COLO does on a failover: the facts the bridge's
takeover decision table (docs/FAILOVER.md) relies on.

Only the test's own QMP monitors (QemuPair.pri_mon / sec_mon), no bridge,
no broker.  Checked:

  R1  heartbeat to the secondary while the primary lives: both run, the
      primary still reads mode primary (split brain)
  R2  heartbeat to the primary: it runs alone (mode none); the secondary
      gets COLO_EXIT error and stays in mode secondary (it does not take
      over by itself; its runstate stays that of a COLO secondary)
  R3  ...and a heartbeat to that secondary afterwards is accepted and
      makes a second running copy; a repeated heartbeat is refused
  R4  kill -9 of the primary: the secondary's COLO_EXIT error comes at
      once, it waits in mode secondary; the heartbeat makes it mode none
  R5  kill -9 of the secondary: the primary notices at its next checkpoint
      and keeps running in mode primary; the heartbeat makes it mode none
  R6  a SIGKILLed QEMU leaves its QMP socket files: connect() gives
      ECONNREFUSED; quit / SIGTERM unlink them: ENOENT
  R7  a heartbeat to both halves at once: both accepted, both run; a
      SIGSTOPped primary accepts connections but never greets, and its
      secondary notices nothing; a `stop` of the primary in COLO is undone
      by the next checkpoint

Fixed windows (STEADY seconds) only where the point is that nothing
changes; everything else waits on an observable condition with a bound.
"""
# TIMEOUT = 120

import errno
import os
import signal
import socket
import time

import harness as h
from harness import check, check_eq

STEADY = 1.5          # "nothing happens" observation window, seconds
DELAY = 200           # x-checkpoint-delay of the pairs, ms


def status(mon):
    """(query-status runstate, query-colo-status) of one QEMU."""
    return mon.cmd("query-status")["status"], mon.cmd("query-colo-status")


def colo(mon):
    c = mon.cmd("query-colo-status")
    return c.get("mode"), c.get("last-mode")


def wait_status(mon, pred, what, timeout=5.0):
    """Polls query-status/query-colo-status (nothing notifies them) until
    pred(runstate, colo_status); bounded."""
    last = None
    for _ in h.deadline_loop(timeout * h.SLOW, 0.02):
        last = status(mon)
        if pred(*last):
            return last
    h.fail("%s: never %s; last: %r" % (mon.name, what, last))


def steady(pair, secs, checks):
    """For secs seconds, every 0.25 s, checks(pri_status, sec_status) must
    hold (each status as from status(), None for a dead side)."""
    end = time.monotonic() + secs
    n = 0
    while True:
        p = status(pair.pri_mon) if pair.pri.alive() else None
        s = status(pair.sec_mon) if pair.sec.alive() else None
        checks(p, s)
        n += 1
        if time.monotonic() >= end:
            break
        time.sleep(min(0.25, max(0.0, end - time.monotonic())))
    h.log("steady for %.1fs (%d samples): pri %r, sec %r" % (secs, n, p, s))
    return p, s


def connect_errno(path):
    """errno name of connect() to a unix socket path, or "connected"."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return "connected"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()


def running_as(mode, last_mode):
    return lambda st, c: (st == "running" and c.get("mode") == mode and
                          c.get("last-mode") == last_mode)


def new_pair(ctx):
    pair = ctx.qemu_pair(checkpoint_delay=DELAY)
    v = pair.version()
    check(v.startswith("7.2."), "QEMU is not 7.2.x: %s" % v)
    return pair


# ---------------------------------------------------------------- R1

def test_r1_heartbeat_secondary_primary_alive(ctx):
    pair = new_pair(ctx)
    pair.sec_mon.cmd("x-colo-lost-heartbeat")
    pe = pair.pri_mon.wait_event("COLO_EXIT", 5)
    check_eq(pe["data"], {"mode": "primary", "reason": "error"},
             "primary COLO_EXIT")
    se = pair.sec_mon.wait_event("COLO_EXIT", 5)
    check_eq(se["data"]["mode"], "secondary", "secondary COLO_EXIT mode")
    wait_status(pair.sec_mon, running_as("none", "secondary"),
                "running with mode none, last-mode secondary")

    def split_brain(p, s):
        check_eq(p[0], "running", "primary runstate")
        check_eq(p[1]["mode"], "primary", "primary mode (still COLO)")
        check_eq(p[1]["reason"], "none", "primary reason after error exit")
        check_eq(s[0], "running", "secondary runstate")
        check_eq(s[1]["mode"], "none", "secondary mode")
    steady(pair, STEADY, split_brain)
    check_eq(pair.pri_mon.cmd("query-migrate").get("status"), "colo",
             "primary query-migrate status after its error exit")
    h.log("R1: split brain: both running, primary still mode primary")


# ---------------------------------------------------------------- R2, R3

def test_r2_r3_heartbeat_primary_then_secondary(ctx):
    pair = new_pair(ctx)
    t0 = time.monotonic()
    pair.pri_mon.cmd("x-colo-lost-heartbeat")
    se = pair.sec_mon.wait_event("COLO_EXIT", 5)
    check_eq(se["data"], {"mode": "secondary", "reason": "error"},
             "secondary COLO_EXIT")
    h.log("secondary COLO_EXIT %.3fs after the primary's heartbeat" %
          (se["_t"] - t0))
    pe = pair.pri_mon.wait_event("COLO_EXIT", 5)
    check_eq(pe["data"]["mode"], "primary", "primary COLO_EXIT mode")
    wait_status(pair.pri_mon, running_as("none", "primary"),
                "running with mode none, last-mode primary")

    # R2: the secondary never takes over by itself.  Its runstate stays
    # what a COLO secondary has (running between checkpoints, "colo"
    # during one): query-status alone cannot tell it from a live one.
    def alone(p, s):
        check_eq(p[0], "running", "primary runstate")
        check_eq(p[1]["mode"], "none", "primary mode")
        check(s[0] in ("running", "colo"),
              "secondary runstate %r" % s[0])
        check_eq(s[1], {"mode": "secondary", "last-mode": "none",
                        "reason": "none"}, "secondary query-colo-status")
    _, s = steady(pair, STEADY, alone)
    h.log("R2: secondary after the primary's takeover: %r" % (s,))

    # Repeated heartbeat to a half that already left COLO (7.2 wording).
    r = pair.pri_mon.cmd("x-colo-lost-heartbeat", check_error=False)
    check(isinstance(r, dict) and "error" in r,
          "second heartbeat to the primary accepted: %r" % r)
    check_eq(r["error"]["desc"], "The feature 'colo' is not enabled",
             "second heartbeat error")

    # R3: the heartbeat to that secondary is accepted and it runs too.
    check_eq(pair.sec_mon.cmd("x-colo-lost-heartbeat"), {},
             "heartbeat to the secondary after the primary's takeover")
    wait_status(pair.sec_mon, running_as("none", "secondary"),
                "running with mode none, last-mode secondary")
    check_eq(len(pair.sec_mon.events_named("COLO_EXIT")), 1,
             "secondary COLO_EXIT count (no second event)")

    def two_copies(p, s):
        check_eq((p[0], p[1]["mode"]), ("running", "none"), "primary")
        check_eq((s[0], s[1]["mode"]), ("running", "none"), "secondary")
    steady(pair, STEADY / 2, two_copies)
    h.log("R3: two running copies")


# ---------------------------------------------------------------- R4, R6

def test_r4_r6_kill_primary(ctx):
    pair = new_pair(ctx)
    t0 = time.monotonic()
    pair.kill("pri")          # returns once the process is reaped
    se = pair.sec_mon.wait_event("COLO_EXIT", 5)
    dt = se["_t"] - t0
    h.log("secondary COLO_EXIT %.3fs after kill -9 of the primary" % dt)
    check_eq(se["data"], {"mode": "secondary", "reason": "error"},
             "secondary COLO_EXIT")
    check(dt < 1.0 * h.SLOW, "secondary noticed only after %.3fs" % dt)

    # R6: the killed QEMU's sockets stay and refuse.
    for path in (pair.pri_test, pair.pri_bridge):
        check(os.path.exists(path), "socket file gone after kill -9: %s" %
              path)
        check_eq(connect_errno(path), "ECONNREFUSED",
                 "connect() to %s" % os.path.basename(path))

    def waiting(p, s):
        check(p is None, "primary alive")
        check(s[0] in ("running", "colo"), "secondary runstate %r" % s[0])
        check_eq(s[1], {"mode": "secondary", "last-mode": "none",
                        "reason": "none"}, "secondary query-colo-status")
    steady(pair, STEADY, waiting)
    check_eq(len(pair.sec_mon.events_named("COLO_EXIT")), 1,
             "secondary COLO_EXIT count before the heartbeat")

    check_eq(pair.sec_mon.cmd("x-colo-lost-heartbeat"), {}, "heartbeat")
    st = wait_status(pair.sec_mon, running_as("none", "secondary"),
                     "running with mode none, last-mode secondary")
    check_eq(st[1]["reason"], "request", "secondary reason after heartbeat")
    check_eq(len(pair.sec_mon.events_named("COLO_EXIT")), 1,
             "secondary COLO_EXIT count after the heartbeat")
    h.log("R4: %r" % (st,))


# ---------------------------------------------------------------- R5, R6

def test_r5_r6_kill_secondary(ctx):
    pair = new_pair(ctx)
    t0 = time.monotonic()
    pair.kill("sec")
    for path in (pair.sec_test, pair.sec_bridge):
        check(os.path.exists(path), "socket file gone after kill -9: %s" %
              path)
        check_eq(connect_errno(path), "ECONNREFUSED",
                 "connect() to %s" % os.path.basename(path))
    pe = pair.pri_mon.wait_event("COLO_EXIT", 5)
    dt = pe["_t"] - t0
    h.log("primary COLO_EXIT %.3fs after kill -9 of the secondary "
          "(x-checkpoint-delay %d ms)" % (dt, DELAY))
    check_eq(pe["data"], {"mode": "primary", "reason": "error"},
             "primary COLO_EXIT")
    check(dt < (DELAY / 1000.0 + 1.0) * h.SLOW,
          "primary noticed only after %.3fs" % dt)

    def alone(p, s):
        check(s is None, "secondary alive")
        check_eq(p[0], "running", "primary runstate before any heartbeat")
        check_eq(p[1], {"mode": "primary", "last-mode": "none",
                        "reason": "none"}, "primary query-colo-status")
    steady(pair, STEADY, alone)

    check_eq(pair.pri_mon.cmd("x-colo-lost-heartbeat"), {}, "heartbeat")
    st = wait_status(pair.pri_mon, running_as("none", "primary"),
                     "running with mode none, last-mode primary")
    check_eq(st[1]["reason"], "request", "primary reason after heartbeat")
    h.log("R5: %r" % (st,))


# ---------------------------------------------------------------- R6

def test_r6_clean_exit_unlinks(ctx):
    pair = new_pair(ctx)
    pair.pri_mon.cmd("x-colo-lost-heartbeat")
    pair.sec_mon.wait_event("COLO_EXIT", 5)
    pair.sec_mon.send_raw({"execute": "quit"})
    check(pair.sec.wait(10 * h.SLOW) is not None, "secondary did not quit")
    pair.pri.signal(signal.SIGTERM)
    check(pair.pri.wait(10 * h.SLOW) is not None,
          "primary did not exit on SIGTERM")
    for how, paths in (("quit", (pair.sec_test, pair.sec_bridge)),
                       ("SIGTERM", (pair.pri_test, pair.pri_bridge))):
        for path in paths:
            check(not os.path.exists(path), "socket file left after %s: %s"
                  % (how, path))
            check_eq(connect_errno(path), "ENOENT",
                     "connect() to %s after %s" % (os.path.basename(path),
                                                   how))


# ---------------------------------------------------------------- R7

def test_r7_heartbeat_both(ctx):
    pair = new_pair(ctx)
    pair.pri_mon.send_raw({"execute": "x-colo-lost-heartbeat", "id": "hp"})
    pair.sec_mon.send_raw({"execute": "x-colo-lost-heartbeat", "id": "hs"})
    wait_status(pair.pri_mon, running_as("none", "primary"),
                "running with mode none, last-mode primary")
    wait_status(pair.sec_mon, running_as("none", "secondary"),
                "running with mode none, last-mode secondary")
    for mon, cid in ((pair.pri_mon, "hp"), (pair.sec_mon, "hs")):
        with mon.cond:
            r = mon.replies.get(cid)
        check(r is not None and r.get("return") == {},
              "%s: heartbeat reply %r" % (mon.name, r))
    h.log("R7: heartbeat to both at once: both accepted, both running")


def test_r7_sigstopped_primary(ctx):
    pair = new_pair(ctx)
    os.kill(pair.pri_pid, signal.SIGSTOP)
    try:
        # A stopped QEMU's socket accepts (kernel backlog) but never greets.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(1.0)
        try:
            s.connect(pair.pri_bridge)
            try:
                data = s.recv(64)
                h.fail("greeting from a SIGSTOPped QEMU: %r" % data)
            except socket.timeout:
                pass
        finally:
            s.close()
        # QEMU has no heartbeat of its own: the secondary notices nothing.
        t0 = time.monotonic()
        while time.monotonic() - t0 < STEADY:
            check_eq(colo(pair.sec_mon), ("secondary", "none"),
                     "secondary mode while the primary is stopped")
            time.sleep(0.25)
        check_eq(pair.sec_mon.events_named("COLO_EXIT"), [],
                 "secondary COLO_EXIT while the primary is stopped")
    finally:
        os.kill(pair.pri_pid, signal.SIGCONT)
    wait_status(pair.pri_mon, running_as("primary", "none"),
                "back in COLO after SIGCONT")


def test_r7_primary_stop_undone(ctx):
    pair = new_pair(ctx)
    pair.pri_mon.cmd("stop")
    st = pair.pri_mon.cmd("query-status")["status"]
    h.log("primary runstate right after stop: %s" % st)
    check(st != "running", "primary still running right after stop")
    # colo_do_checkpoint_transaction() ends with vm_start(): the next
    # checkpoint resumes the primary whatever the user asked.
    wait_status(pair.pri_mon, running_as("primary", "none"),
                "running again (the checkpoint's vm_start)",
                timeout=(DELAY / 1000.0) * 5 + 2)


if __name__ == "__main__":
    h.main(test_r1_heartbeat_secondary_primary_alive,
           test_r2_r3_heartbeat_primary_then_secondary,
           test_r4_r6_kill_primary,
           test_r5_r6_kill_secondary,
           test_r6_clean_exit_unlinks,
           test_r7_heartbeat_both,
           test_r7_sigstopped_primary,
           test_r7_primary_stop_undone)
