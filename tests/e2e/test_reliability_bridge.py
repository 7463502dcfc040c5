#!/usr/bin/python3
"""Reliability: the bridge itself dies (kill -9) or loses QMP; with
bridge.state_dir nothing it accepted is lost and no COLO exit goes unseen.

(a) test_spool_survives_kill9: broker DOWN, simulated VMs burst events;
    the bridge reads and spools them (every event's record is found,
    CRC-checked, unacknowledged, in STATE_DIR/spool.log);
    then kill -9.  A new bridge with the same state_dir, against a broker
    that is up now, publishes every one of them: per VM exactly k = 1..N,
    with the seq the first run gave (seq == k), first copies in order,
    duplicates only with the same seq.  New events then get seq above
    everything the first run used.
(b) test_qemu_reconcile_after_kill9 (real QEMU 7.2): a first COLO pair
    fails over under a bridge with a state_dir (seq 1 used on both VMs);
    a second pair with the same VM names comes up under a new bridge on
    that state_dir; the bridge is killed -9; the pair fails over through
    the test's own monitors (x-colo-lost-heartbeat on the secondary; the
    primary then reports COLO_EXIT error and waits, still in mode primary,
    until it is told x-colo-lost-heartbeat too, as in the reference
    transcript hb-secondary.txt); a restarted bridge publishes one exit
    per VM with "reconciled": true, "time_source": "bridge", mode =
    query-colo-status' last-mode, reason = its reason, and a seq above
    the previous runs'; a further restart publishes nothing more.
(c) test_reconcile_on_qmp_reconnect (simulator, no bridge restart): a VM
    in mode primary is unlistened, its state set to mode none / last-mode
    primary / reason error (COLO ended while nobody listened), listened
    again: one reconciled exit is published; a further reconnect
    publishes none.
"""
# TIMEOUT = 240

import json
import os
import re
import signal
import struct
import time
import zlib

import harness as h
from harness import check, check_eq

BRIDGE_ID = "bridge-rel"
LOG_EXIT_RE = r" %s/%s: COLO_EXIT mode=\S+ reason=\S+ seq=(\d+)"


# ----------------------------------------------------------------- helpers

def read_spool(path):
    """Parses STATE_DIR/spool.log as laid out in src/spool.c:
    u8 kind ('M'|'A'), u8 qos, u8 flags, u8 pad, u32 topic_len,
    u32 payload_len, u64 id, topic, payload, u32 crc32 (little endian).
    Returns (unacknowledged [(id, topic, payload)] in order, torn tail)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], False
    msgs, acked = [], set()
    off = 0
    torn = False
    while off < len(data):
        if len(data) - off < 24:
            torn = True
            break
        kind, qos, flags, _, tlen, plen, rid = struct.unpack_from(
            "<BBBBIIQ", data, off)
        end = off + 20 + tlen + plen + 4
        if end > len(data):
            torn = True
            break
        crc, = struct.unpack_from("<I", data, end - 4)
        if zlib.crc32(data[off:end - 4]) != crc:
            torn = True
            break
        if kind == ord("M"):
            topic = data[off + 20:off + 20 + tlen].decode()
            msgs.append((rid, topic, data[off + 20 + tlen:end - 4]))
        elif kind == ord("A"):
            acked.add(rid)
        else:
            h.fail("spool %s: unknown record kind %r at offset %d (layout "
                   "of src/spool.c changed?)" % (path, kind, off))
        off = end
    return [m for m in msgs if m[0] not in acked], torn


def poll_file(what, timeout, fn, interval=0.05):
    """Bounded poll of something written to disk (nothing notifies);
    returns fn()'s first truthy value."""
    r = None
    for _ in h.deadline_loop(timeout * h.SLOW, interval):
        r = fn()
        if r:
            return r
    h.fail("timeout (%.0fs) waiting for %s" % (timeout * h.SLOW, what))


def log_seqs(daemon, vm):
    """seq values of the COLO_EXITs the daemon logged for vm."""
    return [int(m.group(1)) for m in
            re.finditer(LOG_EXIT_RE % (h.HOST, vm), daemon.log_text())]


def vmstate_file(state_dir, vm, host=h.HOST):
    return os.path.join(state_dir, "vm_%s_%s.json" % (host, vm))


def read_vmstate(state_dir, vm):
    try:
        with open(vmstate_file(state_dir, vm)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check_reconciled(msg, vm, daemon, mode, reason, lo_us, hi_us,
                     min_seq, qemu=None):
    """A reconciled colo_exit: the contract's fields, reconciled true,
    time_source bridge with the bridge's clock in [lo_us, hi_us]."""
    check(msg.topic == h.event_topic(vm), "event on %s" % msg.topic)
    check(not msg.retain, "reconciled exit published retained: %r" % msg)
    e = msg.json()
    missing = [k for k in h.EVENT_KEYS if k not in e]
    check(not missing, "reconciled event lacks %s: %r" % (missing, e))
    check_eq(e.get("reconciled"), True, "%s: reconciled" % vm)
    check_eq(e.get("time_source"), "bridge", "%s: time_source" % vm)
    check_eq((e["schema"], e["event"], e["host"], e["vm"], e["bridge"]),
             (1, "colo_exit", h.HOST, vm, daemon.bridge_id),
             "%s: schema/event/host/vm/bridge" % vm)
    check_eq(e["mode"], mode, "%s: reconciled mode (last_mode)" % vm)
    check_eq(e["reason"], reason, "%s: reconciled reason" % vm)
    check("malformed" not in e, "%s: reconciled event malformed: %r" %
          (vm, e))
    check(lo_us - 2000000 <= e["time_us"] <= hi_us + 2000000,
          "%s: reconciled time_us %d is not the bridge's clock [%d, %d]" %
          (vm, e["time_us"], lo_us, hi_us))
    check_eq(e["time"], h.iso_time(e["time_us"]), "%s: time vs time_us" % vm)
    check(isinstance(e["seq"], int) and e["seq"] > min_seq,
          "%s: seq %r not above %d (used by earlier runs)" %
          (vm, e["seq"], min_seq))
    if qemu is not None:
        check_eq(e["qemu"], qemu, "%s: qemu" % vm)
    return e


stats_until = h.stats_until


def now_us():
    return int(time.time() * 1e6)


# ------------------------------------------------------------ (a) spool

def test_spool_survives_kill9(ctx):
    nvms, n = 5, 300
    port = h.free_port()
    broker = h.Mosquitto(ctx, port=port)       # not started: broker DOWN
    state = ctx.subdir("state")
    spool = os.path.join(state, "spool.log")
    sim = ctx.sim(nvms)
    names = [sim.vm(i) for i in range(1, nvms + 1)]
    cid = "qmp2mqtt-rel-%d" % os.getpid()
    conf = dict(vms=sim.vms(), port=port,
                bridge={"state_dir": state, "id": BRIDGE_ID},
                mqtt={"client_id": cid})
    d1 = h.Daemon(ctx, name="run1", **conf).start()
    sim.wait_ready(nvms, timeout=20)
    sim.cmd("burst all %d" % n, timeout=30)
    check_eq(sim.count("all")["events"], nvms * n, "simulator events sent")
    # Read and accepted: every event is spooled (CRC-valid record, not
    # acknowledged: the broker is down).
    want_topics = {h.event_topic(vm) for vm in names}

    def spooled():
        msgs, torn = read_spool(spool)
        ev = [m for m in msgs if m[1] in want_topics]
        return (ev, torn) if len(ev) >= nvms * n else None
    ev, torn = poll_file("%d events in %s" % (nvms * n, spool), 20, spooled)
    check(not torn, "the live spool ends in a torn record")
    check_eq(len(ev), nvms * n, "unacknowledged events in the spool")
    d1.check_alive()
    h.log("run 1: %d events read and spooled (%d bytes), broker down; "
          "kill -9" % (len(ev), os.path.getsize(spool)))
    d1.kill9()

    broker.start()
    sub = ctx.subscriber(port)
    d2 = h.Daemon(ctx, name="run2", **conf).start()
    d2_log_recovered = None
    total = nvms * n

    def complete(s):
        for vm in names:
            ks = {h.sim_k(m.json())
                  for m in s.by_topic.get(h.event_topic(vm), [])}
            if len(ks) < n:
                return False
        return True
    try:
        sub.wait(complete, 30, "every spooled event")
    except h.TestFailure:
        got = {vm: {h.sim_k(m.json()) for m in sub.on(h.event_topic(vm))}
               for vm in names}
        h.fail("after kill -9 and restart: %d of %d events published; "
               "missing per VM (first 20): %s; run 2 log: %s" %
               (sum(len(g) for g in got.values()), total,
                {vm: sorted(set(range(1, n + 1)) - got[vm])[:20]
                 for vm in names},
                [ln for ln in d2.log_text().splitlines()
                 if "spool" in ln][:5]))
    dups = 0
    for vm in names:
        by_seq, firsts = {}, []
        for m in sub.on(h.event_topic(vm)):
            e = h.check_event(m, vm, d1, mode="primary", reason="error")
            k = h.sim_k(e)
            if e["seq"] in by_seq:
                check_eq(k, by_seq[e["seq"]], "%s: duplicate seq %d with "
                         "another event" % (vm, e["seq"]))
                dups += 1
                continue
            by_seq[e["seq"]] = k
            check_eq(e["seq"], k, "%s: seq of k=%d as published by run 1"
                     % (vm, k))
            firsts.append(k)
        check_eq(firsts, list(range(1, n + 1)),
                 "%s: events of run 1 (every k once, in order)" % vm)
    m = re.search(r"spool \S+: (\d+) unsent message\(s\) recovered",
                  d2.log_text())
    d2_log_recovered = int(m.group(1)) if m else None
    h.log("run 2: %d events published from the spool (%s recovered per "
          "its log), %d duplicates" % (total, d2_log_recovered, dups))
    check(d2_log_recovered is not None and d2_log_recovered >= total,
          "run 2 did not log recovering >= %d spooled messages: %r" %
          (total, d2_log_recovered))

    # New events of run 2: seq above everything run 1 used.
    h.wait_online(sub, names, 20)
    sim.wait_ready(nvms, timeout=20)
    marks = {vm: sub.mark(h.event_topic(vm)) for vm in names}
    sim.cmd("burst all 3", timeout=30)
    for vm in names:
        seqs = []
        for i in range(3):
            mm = sub.wait_for(lambda m: True, 15, topic=h.event_topic(vm),
                              since=marks[vm] + i,
                              what="new event %d of %s" % (i + 1, vm))
            e = h.check_event(mm, vm, d2, time_us=h.SIM_EPOCH_US + n + i + 1)
            seqs.append(e["seq"])
        check(seqs[0] > n and seqs == sorted(set(seqs)),
              "%s: run 2's new seqs %s not increasing above run 1's %d" %
              (vm, seqs, n))
    h.log("run 2's new seqs start at %d" % seqs[0])
    st = stats_until(sub, d2, lambda s: s["totals"]["buffered"] == 0 and
                     s["totals"]["inflight"] == 0, 20,
                     "buffered 0, inflight 0")
    check_eq(st["totals"]["dropped"], 0, "run 2 stats dropped")
    # Everything acknowledged: the spool holds no live event any more
    # (acknowledgements are batched: written at the latest on shutdown).
    check_eq(d2.stop(), 0, "run 2 exit code")
    left, torn = read_spool(spool)
    check_eq([m for m in left if m[1] in want_topics], [],
             "events still unacknowledged in the spool after a clean stop")


# --------------------------------------------------------- (b) real QEMU

def wait_state(sub, vm, pred, what, timeout=20, since=0):
    try:
        return sub.wait_json(h.state_topic(vm), pred, timeout, what,
                             since=since)
    except h.TestFailure:
        last = sub.last(h.state_topic(vm))
        h.fail("state of %s never showed %s; last: %s" %
               (vm, what, last.payload.decode() if last else None))


def qemu_daemon(ctx, pair, port, state, name):
    return h.Daemon(ctx, vms=[("pri", "unix:" + pair.pri_bridge),
                              ("sec", "unix:" + pair.sec_bridge)],
                    port=port, name=name,
                    bridge={"state_dir": state, "id": BRIDGE_ID,
                            "status_interval_s": 1}).start()


def test_qemu_reconcile_after_kill9(ctx):
    h.require_qemu()
    broker = ctx.mosquitto()
    sub = ctx.subscriber(broker.port)
    state = ctx.subdir("state")
    modes = {"pri": "primary", "sec": "secondary"}

    # Run 1 on pair A: a normal failover, seq 1 used on both VMs.
    pair_a = h.QemuPair(ctx, name="colo-a").start()
    d1 = qemu_daemon(ctx, pair_a, broker.port, state, "run1")
    for vm in modes:
        wait_state(sub, vm, lambda s, vm=vm: s["mode"] == modes[vm] and
                   s["qmp"] == "connected", "mode %s" % modes[vm])
    pair_a.sec_mon.cmd("x-colo-lost-heartbeat")
    pair_a.pri_mon.wait_event("COLO_EXIT", 15)
    pair_a.pri_mon.cmd("x-colo-lost-heartbeat")
    prev = {}
    for vm in modes:
        m = sub.wait_for(lambda m: True, 15, topic=h.event_topic(vm),
                         what="run 1's colo_exit of %s" % vm)
        prev[vm] = m.json()["seq"]
        check_eq(prev[vm], 1, "run 1's seq of %s" % vm)
        wait_state(sub, vm, lambda s: s["mode"] == "none", "mode none")
    check_eq(d1.stop(), 0, "run 1 exit code")
    pair_a.stop()

    # Run 2 on pair B (the same VM names): in COLO, state saved; kill -9.
    pair_b = h.QemuPair(ctx, name="colo-b").start()
    version = pair_b.version()
    marks = {vm: sub.mark(h.state_topic(vm)) for vm in modes}
    d2 = qemu_daemon(ctx, pair_b, broker.port, state, "run2")
    for vm in modes:
        wait_state(sub, vm, lambda s, vm=vm: s["mode"] == modes[vm] and
                   s["qmp"] == "connected", "run 2: mode %s" % modes[vm],
                   since=marks[vm])
        poll_file("%s's state file with mode %s" % (vm, modes[vm]), 10,
                  lambda vm=vm: (read_vmstate(state, vm) or {}).get(
                      "mode") == modes[vm])
    h.log("run 2 saw both VMs in COLO: %s" %
          {vm: read_vmstate(state, vm) for vm in modes})
    d2.kill9()
    n_ev = {vm: sub.count(h.event_topic(vm)) for vm in modes}

    # The failover happens while no bridge listens.
    pair_b.sec_mon.cmd("x-colo-lost-heartbeat")
    qs = pair_b.sec_mon.wait_event("COLO_EXIT", 15)
    qp = pair_b.pri_mon.wait_event("COLO_EXIT", 15)
    h.log("QEMU (unseen by any bridge): sec %s, pri %s" %
          (qs["data"], qp["data"]))
    check_eq(qp["data"]["reason"], "error", "QEMU's primary exit reason")
    pri_mid = pair_b.pri_mon.cmd("query-colo-status")
    h.log("primary after its error exit: %s" % pri_mid)
    pair_b.pri_mon.cmd("x-colo-lost-heartbeat")    # the survivor goes on
    colo = {}
    for vm, mon in (("pri", pair_b.pri_mon), ("sec", pair_b.sec_mon)):
        for _ in h.deadline_loop(10 * h.SLOW, 0.05):
            colo[vm] = mon.cmd("query-colo-status")
            if colo[vm]["mode"] == "none":
                break
        check_eq(colo[vm]["mode"], "none", "%s mode after failover" % vm)
        check_eq(colo[vm]["last-mode"], modes[vm], "%s last-mode" % vm)
    h.log("query-colo-status after the failover: %s" % colo)

    # Run 3: the missed exits, reconciled.
    marks = {vm: sub.mark(h.event_topic(vm)) for vm in modes}
    lo = now_us()
    d3 = qemu_daemon(ctx, pair_b, broker.port, state, "run3")
    got = {}
    for vm in modes:
        try:
            m = sub.wait_for(lambda m: True, 20, topic=h.event_topic(vm),
                             since=marks[vm],
                             what="reconciled colo_exit of %s" % vm)
        except h.TestFailure:
            h.fail("run 3 published no exit for %s (query-colo-status: %s; "
                   "state file before: mode %s); run 3 log:\n%s" %
                   (vm, colo[vm], modes[vm], "".join(
                       h.tail_file(d3.logpath, 30))))
        got[vm] = check_reconciled(m, vm, d3, mode=colo[vm]["last-mode"],
                                   reason=colo[vm]["reason"], lo_us=lo,
                                   hi_us=now_us(), min_seq=prev[vm],
                                   qemu=version)
        h.log("reconciled %s: %s" % (vm, m.payload.decode()))
        wait_state(sub, vm, lambda s, vm=vm: s["mode"] == "none" and
                   s["last_exit"] == got[vm],
                   "mode none and last_exit = the reconciled exit")
    # Once only, also across a further restart.
    check_eq(d3.stop(), 0, "run 3 exit code")
    marks_s = {vm: sub.mark(h.state_topic(vm)) for vm in modes}
    d4 = qemu_daemon(ctx, pair_b, broker.port, state, "run4")
    for vm in modes:
        wait_state(sub, vm, lambda s: s["qmp"] == "connected" and
                   s["colo_status"] == "ok", "run 4: state read",
                   since=marks_s[vm])
    stats_until(sub, d4, lambda s: all(
        v["ready"] for v in s["vms"].values()), 15, "both VMs ready")
    for vm in modes:
        check_eq(sub.count(h.event_topic(vm)), n_ev[vm] + 1,
                 "exits of %s published after the failover (once, not "
                 "again by run 4)" % vm)
    d4.check_alive()


def test_qemu_survivor_decides_later(ctx):
    """The literal failover of the brief: only the secondary is told
    (x-colo-lost-heartbeat) while the bridge is dead.  The secondary's
    exit is reconciled at the restart.  The primary's COLO_EXIT (error)
    was emitted to nobody, and QEMU still reports it in mode primary
    (reason none) until it is told to take over too: no exit can be
    published for it yet, and none must be.  When it is told (by the
    test's own monitor, while the bridge runs; QEMU emits no second
    COLO_EXIT then), its COLO session ended unseen: the bridge, which
    polls query-colo-status every status_interval_s (1 s here), must
    publish it as a reconciled exit (mode primary from last-mode, reason
    request)."""
    h.require_qemu()
    broker = ctx.mosquitto()
    sub = ctx.subscriber(broker.port)
    state = ctx.subdir("state")
    modes = {"pri": "primary", "sec": "secondary"}
    pair = ctx.qemu_pair()
    version = pair.version()
    d1 = qemu_daemon(ctx, pair, broker.port, state, "run1")
    for vm in modes:
        wait_state(sub, vm, lambda s, vm=vm: s["mode"] == modes[vm] and
                   s["qmp"] == "connected", "mode %s" % modes[vm])
        poll_file("%s's state file with mode %s" % (vm, modes[vm]), 10,
                  lambda vm=vm: (read_vmstate(state, vm) or {}).get(
                      "mode") == modes[vm])
    d1.kill9()
    pair.sec_mon.cmd("x-colo-lost-heartbeat")
    pair.sec_mon.wait_event("COLO_EXIT", 15)
    qp = pair.pri_mon.wait_event("COLO_EXIT", 15)
    check_eq(qp["data"], {"mode": "primary", "reason": "error"},
             "QEMU's primary COLO_EXIT (seen by the test only)")
    pri_mid = pair.pri_mon.cmd("query-colo-status")
    sec_now = pair.sec_mon.cmd("query-colo-status")
    h.log("after the secondary's takeover: pri %s, sec %s" %
          (pri_mid, sec_now))

    marks = {vm: sub.mark(h.event_topic(vm)) for vm in modes}
    smark = sub.mark(h.state_topic("pri"))
    lo = now_us()
    d2 = qemu_daemon(ctx, pair, broker.port, state, "run2")
    m = sub.wait_for(lambda m: True, 20, topic=h.event_topic("sec"),
                     since=marks["sec"], what="reconciled exit of sec")
    check_reconciled(m, "sec", d2, mode="secondary",
                     reason=sec_now["reason"], lo_us=lo, hi_us=now_us(),
                     min_seq=0, qemu=version)
    wait_state(sub, "pri", lambda s: s["qmp"] == "connected" and
               s["colo_status"] == "ok", "run 2 read pri's state",
               since=smark)
    st = sub.last(h.state_topic("pri")).json()
    check_eq((st["mode"], st["last_mode"], st["reason"]),
             (pri_mid["mode"], pri_mid["last-mode"], pri_mid["reason"]),
             "pri state vs query-colo-status while it waits")
    check_eq(sub.count(h.event_topic("pri")), marks["pri"],
             "exits published for pri while QEMU still reports it in COLO")

    # The survivor is told to take over: no event from QEMU.
    lo = now_us()
    pair.pri_mon.cmd("x-colo-lost-heartbeat")
    for _ in h.deadline_loop(10 * h.SLOW, 0.05):
        q = pair.pri_mon.cmd("query-colo-status")
        if q["mode"] == "none":
            break
    check_eq(q["mode"], "none", "pri mode after its takeover")
    wait_state(sub, "pri", lambda s: s["mode"] == "none",
               "pri mode none (status poll)", timeout=15)
    try:
        m = sub.wait_for(lambda m: True, 5, topic=h.event_topic("pri"),
                         since=marks["pri"],
                         what="reconciled exit of pri")
    except h.TestFailure:
        h.fail("pri's COLO session ended unseen (its COLO_EXIT error went "
               "to nobody while the bridge was dead; the takeover emits "
               "none) and the bridge, which saw it in mode primary and "
               "then mode none (query-colo-status %s), published no exit "
               "for it; state now %s; run 2 log:\n%s" %
               (q, sub.last(h.state_topic("pri")).payload.decode(),
                "".join(ln for ln in h.tail_file(d2.logpath, 40)
                        if "pri" in ln)))
    check_reconciled(m, "pri", d2, mode="primary", reason=q["reason"],
                     lo_us=lo, hi_us=now_us(), min_seq=0, qemu=version)
    d2.check_alive()


# ------------------------------------------- (c) reconnect, no restart

def test_reconcile_on_qmp_reconnect(ctx):
    broker = ctx.mosquitto()
    sim = ctx.sim(2)
    sub = ctx.subscriber(broker.port)
    state = ctx.subdir("state")
    d = ctx.daemon(sim.vms(), broker.port,
                   bridge={"state_dir": state, "id": BRIDGE_ID})
    vm, other = sim.vm(1), sim.vm(2)
    h.wait_online(sub, [vm, other], 20)
    wait_state(sub, vm, lambda s: s["mode"] == "primary" and
               s["colo_status"] == "ok", "mode primary")
    ev0 = sub.mark(h.event_topic(vm))
    amark = sub.mark(h.avail_topic(vm))
    sim.cmd("unlisten %s" % vm)
    sub.wait_payload(h.avail_topic(vm), "offline", 10, since=amark)
    # COLO ended while nobody listened (QEMU drops events then).
    sim.cmd("state %s none primary error" % vm)
    smark = sim.mark()
    lo = now_us()
    sim.cmd("listen %s" % vm)
    sim.wait_async(r"^client %s ready" % vm, 15, since=smark)
    m = sub.wait_for(lambda m: True, 15, topic=h.event_topic(vm), since=ev0,
                     what="reconciled exit after the reconnect")
    e = check_reconciled(m, vm, d, mode="primary", reason="error", lo_us=lo,
                         hi_us=now_us(), min_seq=0, qemu="7.2.0")
    check_eq(e["seq"], 1, "seq of the first exit of %s" % vm)
    wait_state(sub, vm, lambda s: s["mode"] == "none" and
               s["last_mode"] == "primary" and s["last_exit"] == e,
               "mode none, last_exit = the reconciled exit")
    # A further reconnect: the state is read again, nothing is published.
    smark = sim.mark()
    st0 = sub.mark(h.state_topic(vm))
    sim.cmd("close %s" % vm)
    sim.wait_async(r"^client %s ready" % vm, 15, since=smark)
    sim.wait_async(r"^recv %s query-colo-status" % vm, 15, since=smark)
    wait_state(sub, vm, lambda s: s["qmp"] == "connected" and
               s["mode"] == "none", "state after the second reconnect",
               since=st0)
    st = stats_until(sub, d, lambda s: s["vms"][vm]["ready"] and
                     s["vms"][vm]["reconnects"] >= 2, 15,
                     "%s ready after 2 reconnects" % vm)
    check_eq(sub.count(h.event_topic(vm)), 1,
             "exits of %s published (once, not again after a second "
             "reconnect)" % vm)
    check_eq(st["totals"]["events_out"], 1, "stats events_out")
    check_eq(sub.count(h.event_topic(other)), 0,
             "exits of the untouched VM %s" % other)
    check_eq(log_seqs(d, vm), [1], "COLO_EXITs logged for %s" % vm)


if __name__ == "__main__":
    h.main(test_spool_survives_kill9, test_qemu_reconcile_after_kill9,
           test_qemu_survivor_decides_later, test_reconcile_on_qmp_reconnect)
