#!/usr/bin/python3
"""Persistence under faults: nothing lost, nothing reordered, no seq reused.

(a) test_crash_after_state / test_crash_after_spool: the daemon dies
    (QMP2MQTT_TEST_CRASH_AFTER: _exit(137), like kill -9) right after the
    state save that precedes the spool write of a VM's first COLO_EXIT,
    or right after the spool write.  The restarted bridge publishes the
    exit exactly once: reconciled in the first case (nothing was spooled,
    the state still says "in COLO, not exited"), the real event with
    QEMU's timestamp and seq 1 in the second (from the spool, rolled
    forward into the state, so not reconciled a second time).
(b) test_full_disk_keeps_running: state_dir on a full 64 KiB tmpfs: the
    bridge keeps publishing, counts spool_errors/state_errors, says
    "degraded" with its problems in bridge/state; after kill -9 and a
    restart (disk still full) new events get seqs above every seq used
    before; once space is back, degraded is false again.
(c) test_start_on_full_disk: unacknowledged events in the spool, the
    disk then full, kill -9: the bridge starts anyway and delivers them.
(d) test_event_during_negotiation: a COLO_EXIT that QEMU sends before its
    qmp_capabilities reply is published, with QEMU's timestamp.
(e) test_lock_and_stop_count: a second bridge on the same state_dir
    refuses to start, naming the first one's pid; SIGTERM with the broker
    down logs how many events stay spooled, and the next start sends them.

The tmpfs tests mount their own tmpfs (root needed: skipped otherwise)
and always unmount it.
"""
# TIMEOUT = 240

import errno
import os
import re
import signal
import subprocess

import harness as h
from harness import check, check_eq
from test_reliability_bridge import read_spool, poll_file, read_vmstate

BRIDGE_ID = "bridge-persist"


class Tmpfs:
    """A small tmpfs mounted on DIR for one test; unmounted at cleanup."""

    def __init__(self, ctx, name="state", size="64k"):
        self.dir = ctx.subdir(name)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size,
                            "tmpfs", self.dir], capture_output=True,
                           timeout=10)
        if r.returncode != 0:
            raise h.Skip("cannot mount a tmpfs (%s)" %
                         r.stderr.decode(errors="replace").strip())
        self.mounted = True
        ctx.register(self)      # closed after the daemons started later
        self.filler = os.path.join(self.dir, "filler")

    def fill(self):
        """Writes a file until the filesystem is full; returns its size."""
        n = 0
        with open(self.filler, "ab", buffering=0) as f:
            while True:
                try:
                    n += f.write(b"\0" * 4096)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        # a partial page may be left: fill it byte by byte
        with open(self.filler, "ab", buffering=0) as f:
            while True:
                try:
                    n += f.write(b"\0")
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        h.log("tmpfs %s full (filler %d bytes)" % (self.dir, n))
        return n

    def free(self):
        os.unlink(self.filler)
        h.log("tmpfs %s: filler removed" % self.dir)

    def close(self):
        if self.mounted:
            r = subprocess.run(["umount", self.dir], capture_output=True,
                               timeout=10)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", self.dir], timeout=10)
            self.mounted = False

    def logs(self):
        return []


def start_with_env(d, env):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return d.start()
    finally:
        for k, v in old.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def wait_bridge_state(sub, pred, what, timeout=15, since=0):
    t = h.bridge_topic("state")
    try:
        return sub.wait_json(t, pred, timeout, what, since=since).json()
    except h.TestFailure:
        last = sub.last(t)
        h.fail("bridge/state never showed %s; last: %s" %
               (what, last.payload.decode() if last else None))


def setup_vm(ctx, sub, sim, state, name, env=None, port=None):
    d = h.Daemon(ctx, vms=sim.vms(), port=port, name=name,
                 bridge={"state_dir": state, "id": BRIDGE_ID})
    if env:
        start_with_env(d, env)
    else:
        d.start()
    return d


def wait_in_colo(sub, state, vm, since=0):
    sub.wait_json(h.state_topic(vm), lambda s: s["mode"] == "primary" and
                  s["qmp"] == "connected", 15, "%s in mode primary" % vm,
                  since=since)
    poll_file("%s's state file with mode primary" % vm, 10,
              lambda: (read_vmstate(state, vm) or {}).get("mode") ==
              "primary")


# ------------------------------------------------------ (a) crash points

def crash_scenario(ctx, point):
    broker = ctx.mosquitto()
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(1)
    vm = sim.vm(1)
    state = ctx.subdir("state")
    d1 = setup_vm(ctx, sub, sim, state, "run1", port=broker.port,
                  env={"QMP2MQTT_TEST_CRASH_AFTER": point})
    wait_in_colo(sub, state, vm)
    # COLO ends: QEMU's state first (as query-colo-status will say), then
    # its event.
    sim.cmd("state %s none primary error" % vm)
    sim.cmd("exit %s primary error" % vm)
    rc = d1.proc.wait(10 * h.SLOW)
    d1.expect_exit = True
    check_eq(rc, 137, "run 1 exit status at the crash point %r" % point)
    pre = sub.count(h.event_topic(vm))
    if point == "state":
        check_eq(pre, 0, "exits published before the crash")
    # (After the spool write Paho may already have sent it: the restart
    # then resends it, a QoS 1 duplicate with the same seq.)
    st_mark = sub.mark(h.state_topic(vm))
    d2 = setup_vm(ctx, sub, sim, state, "run2", port=broker.port)
    first = sub.wait_for(lambda m: True, 15, topic=h.event_topic(vm),
                         since=pre, what="the exit after the restart")
    # The state after run 2 read query-colo-status: any reconciled exit
    # would have been queued before it.
    sub.wait_json(h.state_topic(vm), lambda s: s["mode"] == "none" and
                  s["qmp"] == "connected" and s["colo_status"] == "ok",
                  15, "run 2's state mode none", since=st_mark)
    exits = [m.json() for m in sub.on(h.event_topic(vm))]
    h.log("exits published: %s" % exits)
    check_eq([e for e in exits if e != exits[0]], [],
             "exits published for the one COLO end (crash after %s): one, "
             "or copies of it" % point)
    last = sub.last(h.state_topic(vm)).json()
    check_eq(last["last_exit"], exits[0], "state's last_exit")
    d2.check_alive()
    return first, d2


def test_crash_after_state(ctx):
    m, d2 = crash_scenario(ctx, "state")
    e = m.json()
    check_eq(e.get("reconciled"), True, "the exit is reconciled")
    check_eq((e["mode"], e["reason"]), ("primary", "error"),
             "reconciled mode/reason")
    check(e["seq"] >= 1, "seq %r" % e["seq"])


def test_crash_after_spool(ctx):
    m, d2 = crash_scenario(ctx, "spool")
    e = h.check_event(m, "vm1", d2, time_us=h.SIM_EPOCH_US + 1, seq=1,
                      mode="primary", reason="error")
    check("reconciled" not in e, "the spooled event is the real one: %r" % e)


# ----------------------------------------------------- (b) full disk

def test_full_disk_keeps_running(ctx):
    fs = Tmpfs(ctx)
    state = fs.dir
    broker = ctx.mosquitto()
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(1)
    vm = sim.vm(1)
    d1 = setup_vm(ctx, sub, sim, state, "run1", port=broker.port)
    wait_in_colo(sub, state, vm)
    wait_bridge_state(sub, lambda s: s["state"] == "online" and
                      s.get("degraded") is False and s["problems"] == [],
                      "online, not degraded")
    fs.fill()
    n = 50
    bmark = sub.mark(h.bridge_topic("state"))
    sim.cmd("burst %s %d" % (vm, n), timeout=30)
    sub.wait(lambda s: len(s.by_topic.get(h.event_topic(vm), [])) >= n, 20,
             "%d events on a full disk" % n)
    seqs = [m.json()["seq"] for m in sub.on(h.event_topic(vm))]
    ks = [h.sim_k(m.json()) for m in sub.on(h.event_topic(vm))]
    check_eq(ks, list(range(1, n + 1)), "events delivered in order")
    check(seqs == sorted(set(seqs)), "seqs increasing: %s" % seqs[:10])
    bs = wait_bridge_state(sub, lambda s: s.get("degraded") is True,
                           "degraded", since=bmark)
    h.log("bridge/state on a full disk: %s" % bs)
    check("spool_write_failed" in bs["problems"] and
          "state_save_failed" in bs["problems"],
          "problems %r name the spool and the state" % bs["problems"])
    st = h.stats_until(sub, d1, lambda s: s["totals"]["spool_errors"] >= n,
                       10, "spool_errors >= %d" % n)
    check(st["totals"]["state_errors"] >= 1, "state_errors: %r" %
          st["totals"])
    check(len(re.findall(r"spool \S+: message write failed",
                         d1.log_text())) <= 3,
          "spool failures logged rate-limited, not once per event")
    d1.check_alive()
    d1.kill9()

    # Restart on the still full disk: no seq used before is used again.
    d2 = setup_vm(ctx, sub, sim, state, "run2", port=broker.port)
    sim.wait_ready(1, timeout=20)
    h.wait_online(sub, [vm], 20)
    mark = sub.mark(h.event_topic(vm))
    sim.cmd("burst %s 3" % vm, timeout=30)
    sub.wait(lambda s: len(s.by_topic.get(h.event_topic(vm), [])) >=
             mark + 3, 20, "3 events of run 2")
    new = [m.json()["seq"] for m in sub.on(h.event_topic(vm))[mark:]]
    h.log("run 1 seqs %d..%d, run 2 seqs %s" % (seqs[0], seqs[-1], new))
    check(min(new) > max(seqs) and new == sorted(set(new)),
          "run 2 reused seqs: %s after run 1's up to %d" % (new, max(seqs)))

    # Space again: the next writes work, degraded goes away.
    fs.free()
    bmark = sub.mark(h.bridge_topic("state"))
    sim.cmd("burst %s 1" % vm, timeout=30)
    bs = wait_bridge_state(sub, lambda s: s.get("degraded") is False,
                           "degraded false once space is back",
                           since=bmark)
    check_eq(bs["problems"], [], "problems once space is back")
    d2.check_alive()


def test_ceiling_after_full_disk(ctx):
    """Time-based seqs handed out on a full disk (20 events over 20 ms, far
    past the ceiling reserved at the first of them) stay below the ceiling
    saved once space is back: killed -9 right after that save, before any
    new event, the bridge restarts above every seq it used."""
    fs = Tmpfs(ctx)
    state = fs.dir
    broker = ctx.mosquitto()
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(1)
    vm = sim.vm(1)
    d1 = setup_vm(ctx, sub, sim, state, "run1", port=broker.port)
    wait_in_colo(sub, state, vm)
    fs.fill()
    n = 20
    sim.cmd("burst %s %d 1000" % (vm, n), timeout=30)
    sub.wait(lambda s: len(s.by_topic.get(h.event_topic(vm), [])) >= n, 20,
             "%d events on a full disk" % n)
    seqs = [m.json()["seq"] for m in sub.on(h.event_topic(vm))]
    check(seqs[-1] - seqs[0] > 1000, "time-based seqs span %d µs" %
          (seqs[-1] - seqs[0]))
    fs.free()
    # The failed state save is retried every second: wait for it.
    poll_file("a ceiling saved once space is back", 10 * h.SLOW,
              lambda: (read_vmstate(state, vm) or {}).get(
                  "seq_reserved", 0) > seqs[0])
    h.log("ceiling saved: %d; seqs used %d..%d" % (
        read_vmstate(state, vm)["seq_reserved"], seqs[0], seqs[-1]))
    d1.kill9()

    setup_vm(ctx, sub, sim, state, "run2", port=broker.port)
    sim.wait_ready(1, timeout=20)
    h.wait_online(sub, [vm], 20)
    mark = sub.mark(h.event_topic(vm))
    sim.cmd("burst %s 3" % vm, timeout=30)
    sub.wait(lambda s: len(s.by_topic.get(h.event_topic(vm), [])) >=
             mark + 3, 20, "3 events of run 2")
    new = [m.json()["seq"] for m in sub.on(h.event_topic(vm))[mark:]]
    h.log("run 2 seqs %s" % new)
    check(min(new) > max(seqs), "run 2 reused seqs: %s after run 1's up to "
          "%d" % (new, max(seqs)))


# ------------------------------------------- (c) start on a full disk

def test_start_on_full_disk(ctx):
    fs = Tmpfs(ctx)
    state = fs.dir
    port = h.free_port()
    broker = h.Mosquitto(ctx, port=port)        # down for run 1
    sim = ctx.sim(1)
    vm = sim.vm(1)
    n = 20
    d1 = setup_vm(ctx, None, sim, state, "run1", port=port)
    sim.wait_ready(1, timeout=20)
    sim.cmd("burst %s %d" % (vm, n), timeout=30)
    spool = os.path.join(state, "spool.log")
    topic = h.event_topic(vm)
    poll_file("%d events spooled" % n, 20, lambda: len(
        [m for m in read_spool(spool)[0] if m[1] == topic]) >= n)
    fs.fill()
    d1.kill9()
    broker.start()
    sub = ctx.subscriber(port)
    d2 = setup_vm(ctx, sub, sim, state, "run2", port=port)
    try:
        sub.wait(lambda s: len({h.sim_k(m.json()) for m in
                                s.by_topic.get(topic, [])}) >= n, 20,
                 "the %d spooled events" % n)
    except h.TestFailure:
        h.fail("run 2 on a full disk did not deliver the spool (alive: "
               "%s); log:\n%s" % (d2.alive(),
                                  "".join(h.tail_file(d2.logpath, 20))))
    firsts, seen = [], set()
    for m in sub.on(topic):
        e = h.check_event(m, vm, d1)
        if h.sim_k(e) not in seen:
            seen.add(h.sim_k(e))
            firsts.append((h.sim_k(e), e["seq"]))
    check_eq(firsts, [(k, k) for k in range(1, n + 1)],
             "(k, seq) of the recovered events, in order")
    d2.check_alive()
    # Acknowledgements cannot be written: degraded, until space is back.
    wait_bridge_state(sub, lambda s: s.get("degraded") is True,
                      "degraded while the disk is full")
    fs.free()
    bmark = sub.mark(h.bridge_topic("state"))
    sim.cmd("burst %s 1" % vm, timeout=30)
    wait_bridge_state(sub, lambda s: s.get("degraded") is False,
                      "degraded false once space is back", since=bmark)


# -------------------------------------- (d) event during negotiation

def test_event_during_negotiation(ctx):
    broker = ctx.mosquitto()
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(1)
    vm = sim.vm(1)
    sim.cmd("early %s secondary error" % vm)
    d = ctx.daemon(sim.vms(), broker.port)
    m = sub.wait_for(lambda m: True, 15, topic=h.event_topic(vm),
                     what="the COLO_EXIT sent before the capabilities reply")
    e = h.check_event(m, vm, d, time_us=h.SIM_EPOCH_US + 1, seq=1,
                      mode="secondary", reason="error")
    check("reconciled" not in e, "not reconciled: %r" % e)
    st = h.stats_until(sub, d, lambda s: s["vms"][vm]["ready"], 10,
                       "vm ready")
    check_eq(st["totals"]["events_out"], 1, "events_out")
    check_eq(sub.count(h.event_topic(vm)), 1, "exits published")


# ------------------------------------ (e) lock, stop count, next start

def test_lock_and_stop_count(ctx):
    port = h.free_port()
    broker = h.Mosquitto(ctx, port=port)        # down
    sim = ctx.sim(1)
    vm = sim.vm(1)
    state = ctx.subdir("state")
    d1 = setup_vm(ctx, None, sim, state, "run1", port=port)
    sim.wait_ready(1, timeout=20)
    # A second bridge on the same state_dir.
    conf2 = h.Daemon(ctx, vms=sim.vms(), port=port, name="second",
                     bridge={"state_dir": state, "id": "other"})
    rc, out, err = h.run_daemon(["-c", conf2.conf])
    check(rc != 0, "a second bridge on the same state_dir started")
    check("in use by another qmp2mqtt (pid %d)" % d1.pid in err,
          "the refusal names the first bridge's pid: %r" % err[-500:])
    n = 10
    sim.cmd("burst %s %d" % (vm, n), timeout=30)
    spool = os.path.join(state, "spool.log")
    topic = h.event_topic(vm)
    poll_file("%d events spooled" % n, 20, lambda: len(
        [m for m in read_spool(spool)[0] if m[1] == topic]) >= n)
    check_eq(d1.stop(), 0, "run 1 exit code")
    m = re.search(r"stopped with (\d+) event\(s\) spooled for the next "
                  r"start", d1.log_text())
    check(m is not None and int(m.group(1)) == n,
          "run 1's last words name %d spooled events: %r" %
          (n, m and m.group(0)))
    broker.start()
    sub = ctx.subscriber(port)
    setup_vm(ctx, sub, sim, state, "run2", port=port)
    sub.wait(lambda s: len(s.by_topic.get(topic, [])) >= n, 20,
             "the %d events spooled at the stop" % n)
    check_eq([h.sim_k(m.json()) for m in sub.on(topic)][:n],
             list(range(1, n + 1)), "events in order")


if __name__ == "__main__":
    h.main(test_crash_after_state, test_crash_after_spool,
           test_full_disk_keeps_running, test_ceiling_after_full_disk,
           test_start_on_full_disk,
           test_event_during_negotiation, test_lock_and_stop_count)
