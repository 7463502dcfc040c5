#!/usr/bin/python3
"""Hostile or broken QMP peers (simulated), one fault per test.

Every test runs a simulator with a faulty VM (vm1), a control VM (vm2) and
an idle one (vm3).  After each fault: the next normal event of the faulty
VM arrives (for in-band faults it is sent right behind the bad input, on
the same connection, which must survive), the control VM keeps delivering,
the daemon is alive, and the stats (SIGUSR1) count the fault: invalid,
oversized, reconnects, timeouts, malformed, unexpected.
"""
# TIMEOUT = 300

import signal
import time

import harness as h
from harness import check, check_eq

NVMS = 3
FAULTY, CONTROL = "vm1", "vm2"
GREETING_TIMEOUT_MS = 500
CRLF = "\\r\\n"          # the simulator's escape for CR LF


class Rig:
    def __init__(self, ctx, bridge=None):
        self.ctx = ctx
        self.broker = ctx.mosquitto()
        self.sim = ctx.sim(NVMS)
        self.sub = ctx.subscriber(self.broker.port)
        b = {"greeting_timeout_ms": GREETING_TIMEOUT_MS}
        b.update(bridge or {})
        self.daemon = ctx.daemon(self.sim.vms(), self.broker.port, bridge=b)
        self.names = [self.sim.vm(i) for i in range(1, NVMS + 1)]
        self.sim.wait_ready(NVMS, 20)
        h.wait_online(self.sub, self.names, 20)
        self.k = {n: 0 for n in self.names}     # simulator's event number
        self.seq = {n: 0 for n in self.names}   # daemon's published seq

    def connects(self, vm):
        return self.sim.count(vm)["connects"]

    def event(self, vm, mode="primary", reason="error", timeout=10,
              what=""):
        """Sends one COLO_EXIT on vm; returns its published JSON."""
        topic = h.event_topic(vm)
        mark = self.sub.mark(topic)
        self.sim.cmd("exit %s %s %s" % (vm, mode, reason))
        self.k[vm] += 1
        self.seq[vm] += 1
        got = self.sim.count(vm)["events"]
        check_eq(got, self.k[vm], "simulator's event count of %s (was the "
                 "VM connected when the event was sent?)" % vm)
        try:
            m = self.sub.wait_for(lambda m: True, timeout, topic=topic,
                                  since=mark)
        except h.TestFailure:
            h.fail("event k=%d of %s %snever published" %
                   (self.k[vm], vm, what and "(%s) " % what))
        e = h.check_event(m, vm, self.daemon, mode=mode, reason=reason,
                          time_us=h.SIM_EPOCH_US + self.k[vm],
                          seq=self.seq[vm])
        return e

    def raw(self, vm, text):
        self.sim.cmd("raw %s %s" % (vm, text))

    def published(self, vm, since, timeout=10):
        """The next published event of vm after index since."""
        m = self.sub.wait_for(lambda m: True, timeout,
                              topic=h.event_topic(vm), since=since)
        self.seq[vm] += 1
        e = m.json()
        check_eq(e.get("seq"), self.seq[vm], "seq of %s" % vm)
        return e

    def stats(self, pred=lambda s: True, timeout=15, what="stats"):
        """Asks for stats (SIGUSR1) until pred(stats) holds."""
        topic = h.bridge_topic("stats")
        end = time.monotonic() + timeout * h.SLOW
        last = None
        while True:
            mark = self.sub.mark(topic)
            self.daemon.signal(signal.SIGUSR1)
            m = self.sub.wait_for(lambda m: True, 10, topic=topic,
                                  since=mark, what="stats after SIGUSR1")
            last = m.json()
            if pred(last):
                return last
            if time.monotonic() > end:
                h.fail("stats never showed %s within %.0fs; last: vms=%s "
                       "totals=%s" % (what, timeout * h.SLOW,
                                      last.get("vms"), last.get("totals")))
            # Nothing notifies a counter change: ask again shortly.
            time.sleep(0.2)

    def vm_stats(self, vm, st):
        check(vm in st.get("vms", {}), "stats lack VM %s: %s" % (vm, st))
        return st["vms"][vm]

    def check_totals(self, st):
        """totals.X is the sum over the VMs for the per-VM counters."""
        for k in ("events_in", "malformed", "invalid", "oversized",
                  "unexpected", "reconnects", "timeouts"):
            s = sum(v.get(k, 0) for v in st["vms"].values())
            check_eq(st["totals"][k], s, "totals.%s vs the sum over VMs" % k)

    def wait_avail_cycle(self, vm, mark, timeout=15):
        """availability of vm goes offline, then online again, after
        mark."""
        t = h.avail_topic(vm)
        off = self.sub.wait_payload(t, "offline", timeout, since=mark)
        lst = self.sub.on(t)
        i = lst.index(off) + 1
        self.sub.wait_payload(t, "online", timeout, since=i)

    def after_fault(self, what, reconnect=False, connects=None):
        """The faulty VM delivers its next event; the control VM too."""
        self.daemon.check_alive()
        if not reconnect and connects is not None:
            check_eq(self.connects(FAULTY), connects,
                     "connections to %s after %s (the connection should "
                     "survive in-band garbage)" % (FAULTY, what))
        self.event(FAULTY, what=what)
        self.event(CONTROL, mode="secondary", reason="request",
                   what="control VM after %s on %s" % (what, FAULTY))
        self.daemon.check_alive()


# ------------------------------------------------------------ in-band faults

def test_garbage(ctx):
    r = Rig(ctx)
    r.event(FAULTY)
    c0 = r.connects(FAULTY)
    for size in (1, 100, 5000, 200000):
        r.sim.cmd("garbage %s %d" % (FAULTY, size))
        # Right behind the garbage, on the same connection.
        r.after_fault("garbage %d bytes" % size, connects=c0)
    st = r.stats(lambda s: s["vms"][FAULTY]["invalid"] >= 1,
                 what="invalid >= 1 for %s" % FAULTY)
    check_eq(r.vm_stats(CONTROL, st)["invalid"], 0, "invalid of control VM")
    r.check_totals(st)


def test_invalid_json_lines(ctx):
    r = Rig(ctx)
    c0 = r.connects(FAULTY)
    lines = [
        '{"event": oops}',
        '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": '
        '"COLO_EXIT", "data": {"mode": "primary", "reason": error}}',
        '{"a": 1 "b": 2}',
        '{"a": tru}',
        '}}}',
        ']',
        'not json at all',
        '{"unterminated": "string}',
        '"\\\\u12"',
    ]
    for ln in lines:
        r.raw(FAULTY, ln + CRLF)
        r.after_fault("invalid line %r" % ln, connects=c0)
    st = r.stats(lambda s: s["vms"][FAULTY]["invalid"] >= 5,
                 what="invalid >= 5 for %s" % FAULTY)
    check_eq(r.sub.count(h.event_topic(FAULTY)), r.seq[FAULTY],
             "only the good events of %s were published" % FAULTY)
    r.check_totals(st)


def test_nul_bytes(ctx):
    r = Rig(ctx)
    c0 = r.connects(FAULTY)
    r.raw(FAULTY, "\\x00\\x00\\x00" + CRLF)
    r.after_fault("NUL bytes between messages", connects=c0)
    # A NUL inside a string of an otherwise good COLO_EXIT: invalid JSON.
    r.raw(FAULTY, '{"timestamp": {"seconds": 1700000000, "microseconds": '
          '999}, "event": "COLO_EXIT", "data": {"mode": "pri\\x00mary", '
          '"reason": "error"}}' + CRLF)
    r.after_fault("NUL inside a string", connects=c0)
    r.raw(FAULTY, '\\x00{"timestamp": \\x00' + CRLF)
    r.after_fault("NUL inside an object", connects=c0)
    st = r.stats(lambda s: s["vms"][FAULTY]["invalid"] >= 2,
                 what="invalid >= 2 for %s" % FAULTY)
    for m in r.sub.on(h.event_topic(FAULTY)):
        check(m.json()["time_us"] != 1700000000000999,
              "the event with a NUL in a string was published: %r" % m)
    r.check_totals(st)


def test_oversized_2mib(ctx):
    r = Rig(ctx)   # max_message: default 1 MiB
    c0 = r.connects(FAULTY)
    r.sim.cmd("big %s %d" % (FAULTY, 2 * 1024 * 1024), timeout=30)
    r.after_fault("a 2 MiB message", connects=c0)
    r.sim.cmd("big %s %d" % (FAULTY, 5 * 1024 * 1024), timeout=30)
    r.after_fault("a 5 MiB message", connects=c0)
    # Just under the limit is accepted (not oversized).
    r.sim.cmd("big %s %d" % (FAULTY, 512 * 1024), timeout=30)
    r.after_fault("a 512 KiB message", connects=c0)
    st = r.stats(lambda s: s["vms"][FAULTY]["oversized"] >= 2,
                 what="oversized >= 2 for %s" % FAULTY)
    check_eq(r.vm_stats(FAULTY, st)["oversized"], 2,
             "oversized count of %s (2 MiB and 5 MiB; not 512 KiB)" % FAULTY)
    check_eq(r.vm_stats(CONTROL, st)["oversized"], 0,
             "oversized of control VM")
    r.check_totals(st)


def test_small_max_message(ctx):
    r = Rig(ctx, bridge={"max_message": 4096})
    c0 = r.connects(FAULTY)
    r.sim.cmd("big %s %d" % (FAULTY, 5000))
    r.after_fault("a 5000 byte message over max_message 4096", connects=c0)
    r.sim.cmd("big %s %d" % (FAULTY, 3000))
    r.after_fault("a 3000 byte message", connects=c0)
    st = r.stats(lambda s: s["vms"][FAULTY]["oversized"] >= 1,
                 what="oversized >= 1")
    check_eq(r.vm_stats(FAULTY, st)["oversized"], 1, "oversized of %s" %
             FAULTY)


def test_endless(ctx):
    r = Rig(ctx)
    c0 = r.connects(FAULTY)
    hwm0 = mem_kib(r.daemon.pid, "VmHWM")
    # An unterminated string, 48 MiB on one line: memory must stay bounded
    # (max_message is 1 MiB); once the line ends (a raw CR LF inside a JSON
    # string is invalid) framing resynchronises and the next event arrives.
    r.sim.cmd("endless %s %d" % (FAULTY, 48 * 1024 * 1024), timeout=30)
    r.raw(FAULTY, CRLF)
    r.after_fault("48 MiB endless string, then CR LF", connects=c0)
    hwm1 = mem_kib(r.daemon.pid, "VmHWM")
    h.log("daemon peak RSS: %d KiB before, %d KiB after the endless "
          "message" % (hwm0, hwm1))
    if not h.SANITIZED:
        check(hwm1 - hwm0 < 24 * 1024,
              "daemon peak RSS grew by %d KiB while skipping a 48 MiB "
              "message (max_message 1 MiB)" % (hwm1 - hwm0))
    st = r.stats(lambda s: s["vms"][FAULTY]["oversized"] >= 1,
                 what="oversized >= 1 after the endless message")
    # The same, ended by the peer closing the connection instead.
    mark = r.sub.mark(h.avail_topic(FAULTY))
    smark = r.sim.mark()
    r.sim.cmd("endless %s %d" % (FAULTY, 2 * 1024 * 1024), timeout=30)
    r.stats(lambda s: s["vms"][FAULTY]["oversized"] >= 2,
            what="oversized >= 2 during the second endless message")
    r.sim.cmd("close %s" % FAULTY)
    r.sim.wait_async(r"^client %s ready" % FAULTY, 15, since=smark)
    r.wait_avail_cycle(FAULTY, mark)
    r.after_fault("endless string, then close", reconnect=True)
    st = r.stats()
    check_eq(r.vm_stats(FAULTY, st)["oversized"], 2, "oversized of %s" %
             FAULTY)
    r.check_totals(st)


def test_total_input_bound(ctx):
    # Two VMs each hold an incomplete 550 kB message: together they would
    # exceed max_input_total (1 MB), so the one that crosses the bound loses
    # its partial message (counted oversized); both recover at the line end.
    r = Rig(ctx, bridge={"max_message": 600000, "max_input_total": 1000000})
    c0 = r.connects(FAULTY)
    r.sim.cmd("endless %s %d" % (FAULTY, 550000), timeout=30)
    r.sim.cmd("endless vm3 %d" % 550000, timeout=30)
    st = r.stats(lambda s: s["totals"]["oversized"] >= 1,
                 what="a partial message dropped at the total input bound")
    check(st["totals"]["input_buffered"] <= 1000000,
          "input_buffered %d over max_input_total" %
          st["totals"]["input_buffered"])
    check_eq(st["totals"]["oversized"], 1, "oversized total")
    r.raw(FAULTY, CRLF)
    r.raw("vm3", CRLF)
    r.after_fault("two partial messages over max_input_total", connects=c0)
    r.event("vm3", what="vm3 after the total input bound")
    st = r.stats()
    check_eq(st["totals"]["input_buffered"], 0, "input_buffered at rest")
    r.check_totals(st)


def mem_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def test_deep_nesting(ctx):
    r = Rig(ctx)
    c0 = r.connects(FAULTY)
    r.sim.cmd("deep %s %d" % (FAULTY, 100000), timeout=30)
    r.after_fault("nesting 100000 deep", connects=c0)
    r.sim.cmd("deep %s %d" % (FAULTY, 5000), timeout=30)
    r.after_fault("nesting 5000 deep", connects=c0)
    r.sim.cmd("deep %s %d" % (FAULTY, 20))
    r.after_fault("nesting 20 deep", connects=c0)
    st = r.stats(lambda s: s["vms"][FAULTY]["invalid"] >= 2,
                 what="invalid >= 2 for %s" % FAULTY)
    r.check_totals(st)


def test_slow(ctx):
    r = Rig(ctx)
    c0 = r.connects(FAULTY)
    r.sim.cmd("slow %s on" % FAULTY)
    # One byte per write, ~1 ms apart: each event takes ~0.15 s.
    for reason in ("error", "request", "error"):
        r.event(FAULTY, reason=reason, timeout=20, what="slow mode")
        r.event(CONTROL, what="control VM while %s is slow" % FAULTY)
    r.sim.cmd("big %s %d" % (FAULTY, 1500))
    r.event(FAULTY, timeout=20, what="after a 1500 byte slow message")
    r.sim.cmd("slow %s off" % FAULTY)
    r.after_fault("slow mode", connects=c0)
    st = r.stats()
    v = r.vm_stats(FAULTY, st)
    for k in ("invalid", "oversized", "malformed", "timeouts"):
        check_eq(v[k], 0, "%s of the slow VM" % k)


# ------------------------------------------------------ connection faults

def test_close_mid_message(ctx):
    r = Rig(ctx)
    r.event(FAULTY)
    for partial in ('{"timestamp": {"seconds": 17',
                    '{"timestamp": {"seconds": 1700000000, "microseconds": '
                    '77}, "event": "COLO_EXIT", "data": {"mode": "prim'):
        mark = r.sub.mark(h.avail_topic(FAULTY))
        smark = r.sim.mark()
        c0 = r.connects(FAULTY)
        r.raw(FAULTY, partial)
        r.sim.cmd("close %s" % FAULTY)
        r.sim.wait_async(r"^client %s ready" % FAULTY, 15, since=smark)
        check(r.connects(FAULTY) > c0, "no reconnection")
        r.wait_avail_cycle(FAULTY, mark)
        st = r.sub.wait_json(h.state_topic(FAULTY),
                             lambda s: s.get("qmp") == "connected", 10)
        r.after_fault("close in the middle of a message", reconnect=True)
    for m in r.sub.on(h.event_topic(FAULTY)):
        check(m.json()["time_us"] != 1700000000000077,
              "a partial message was published: %r" % m)
    st = r.stats(lambda s: s["vms"][FAULTY]["reconnects"] >= 2,
                 what="reconnects >= 2 for %s" % FAULTY)
    check_eq(r.vm_stats(FAULTY, st)["ready"] in (True, 1), True,
             "stats: %s ready" % FAULTY)
    r.check_totals(st)


def test_unlisten_listen(ctx):
    r = Rig(ctx)
    mark = r.sub.mark(h.avail_topic(FAULTY))
    c0 = r.connects(FAULTY)
    r.sim.cmd("unlisten %s" % FAULTY)
    r.sub.wait_payload(h.avail_topic(FAULTY), "offline", 10, since=mark)
    r.sub.wait_json(h.state_topic(FAULTY),
                    lambda s: s.get("qmp") == "disconnected", 10)
    # It keeps trying (and failing): its reconnect count grows.
    s1 = r.vm_stats(FAULTY, r.stats())
    r.stats(lambda s: s["vms"][FAULTY]["reconnects"] >=
            s1["reconnects"] + 2, timeout=15,
            what="reconnect attempts growing while nothing listens")
    r.event(CONTROL, what="control VM while %s is unreachable" % FAULTY)
    check_eq(r.connects(FAULTY), c0, "connections while not listening")
    smark = r.sim.mark()
    r.sim.cmd("listen %s" % FAULTY)
    r.sim.wait_async(r"^client %s ready" % FAULTY, 15, since=smark)
    r.sub.wait_payload(h.avail_topic(FAULTY), "online", 10, since=mark)
    r.after_fault("unlisten/listen", reconnect=True)
    st = r.stats()
    check(r.vm_stats(FAULTY, st)["reconnects"] >= 3,
          "reconnects of %s: %s" % (FAULTY, r.vm_stats(FAULTY, st)))
    check_eq(r.vm_stats(CONTROL, st)["reconnects"], 0,
             "reconnects of the control VM")
    r.check_totals(st)


def test_mute_greeting_timeout(ctx):
    r = Rig(ctx)
    mark = r.sub.mark(h.avail_topic(FAULTY))
    smark = r.sim.mark()
    r.sim.cmd("mute %s on" % FAULTY)
    r.sim.cmd("close %s" % FAULTY)
    # The daemon connects, gets no greeting, gives up after the greeting
    # timeout and tries again.
    conn = r.sim.wait_async(r"^client %s connected" % FAULTY, 10,
                            since=smark)
    closed = r.sim.wait_async(r"^client %s closed" % FAULTY, 10,
                              since=conn.i + 1)
    waited = closed.t - conn.t
    h.log("muted connection dropped by the daemon after %.2fs" % waited)
    # Lines are timed as the test reads them: allow for scheduling.
    check(waited >= GREETING_TIMEOUT_MS / 1000.0 * 0.5,
          "daemon dropped the silent connection after %.2fs, before the "
          "greeting timeout %d ms" % (waited, GREETING_TIMEOUT_MS))
    check(waited < 5.0 * h.SLOW, "greeting timeout took %.1fs" % waited)
    r.sub.wait_payload(h.avail_topic(FAULTY), "offline", 10, since=mark)
    st = r.stats(lambda s: s["vms"][FAULTY]["timeouts"] >= 1,
                 what="timeouts >= 1 for %s" % FAULTY)
    r.event(CONTROL, what="control VM while %s is mute" % FAULTY)
    i = r.sim.mark()
    r.sim.cmd("mute %s off" % FAULTY)
    r.sim.wait_async(r"^client %s ready" % FAULTY, 15, since=i)
    r.wait_avail_cycle(FAULTY, mark)
    r.after_fault("mute/unmute", reconnect=True)
    st = r.stats()
    check(r.vm_stats(FAULTY, st)["timeouts"] >= 1, "timeouts of %s" % FAULTY)
    check_eq(r.vm_stats(CONTROL, st)["timeouts"], 0,
             "timeouts of the control VM")
    r.check_totals(st)


def test_deaf_negotiation_timeout(ctx):
    """A monitor that greets but never answers qmp_capabilities (QEMU 7.2
    can lose a connection made while it starts): the daemon gives up after
    the greeting timeout with a log line that says so, counts a timeout,
    keeps the VM offline and connects again; once the VM answers, it is
    back."""
    r = Rig(ctx)
    mark = r.sub.mark(h.avail_topic(FAULTY))
    smark = r.sim.mark()
    r.sim.cmd("deaf %s on" % FAULTY)
    r.sim.cmd("close %s" % FAULTY)
    conn = r.sim.wait_async(r"^client %s connected" % FAULTY, 10,
                            since=smark)
    closed = r.sim.wait_async(r"^client %s closed" % FAULTY, 10,
                              since=conn.i + 1)
    h.log("greeted, unanswered connection dropped after %.2fs" %
          (closed.t - conn.t))
    check(closed.t - conn.t >= GREETING_TIMEOUT_MS / 1000.0 * 0.5,
          "dropped after %.2fs, before the greeting timeout %d ms" %
          (closed.t - conn.t, GREETING_TIMEOUT_MS))
    want = ("%s: QMP connect failed (negotiating): greeted, but "
            "qmp_capabilities was not answered" % FAULTY)
    for _ in h.deadline_loop(10 * h.SLOW, 0.05):
        if want in r.daemon.log_text():
            break
    else:
        h.fail("no log line %r; daemon log tail: %s" %
               (want, r.daemon.log_text()[-2000:]))
    check("(negotiating): no greeting" not in r.daemon.log_text(),
          "a greeted connection was logged as 'no greeting'")
    r.sub.wait_payload(h.avail_topic(FAULTY), "offline", 10, since=mark)
    r.stats(lambda s: s["vms"][FAULTY]["timeouts"] >= 1,
            what="timeouts >= 1 for %s" % FAULTY)
    r.event(CONTROL, what="control VM while %s is deaf" % FAULTY)
    i = r.sim.mark()
    r.sim.cmd("deaf %s off" % FAULTY)
    r.sim.wait_async(r"^client %s ready" % FAULTY, 15, since=i)
    r.wait_avail_cycle(FAULTY, mark)
    r.after_fault("deaf/hearing", reconnect=True)
    st = r.stats()
    check_eq(r.vm_stats(CONTROL, st)["timeouts"], 0,
             "timeouts of the control VM")
    r.check_totals(st)


# ---------------------------------------------- odd but well-formed input

def test_malformed_and_unexpected(ctx):
    r = Rig(ctx)
    vm = FAULTY
    topic = h.event_topic(vm)
    c0 = r.connects(vm)

    def pub_raw(text):
        mark = r.sub.mark(topic)
        r.raw(vm, text + CRLF)
        return r.published(vm, mark)

    ts = '"timestamp": {"seconds": 1700000000, "microseconds": 42}'
    e = pub_raw('{%s, "event": "COLO_EXIT", "data": {"mode": "primary"}}'
                % ts)
    check_eq(e.get("malformed"), True, "malformed (no reason)")
    check_eq(e.get("reason"), None, "reason of an event without one")
    check_eq(e.get("time_us"), 1700000000000042, "time_us of malformed")
    e = pub_raw('{%s, "event": "COLO_EXIT"}' % ts)
    check_eq(e.get("malformed"), True, "malformed (no data)")
    check_eq((e.get("mode"), e.get("reason")), (None, None),
             "mode/reason of an event without data")
    e = pub_raw('{%s, "event": "COLO_EXIT", "data": {"mode": 7, '
                '"reason": "error"}}' % ts)
    check_eq(e.get("malformed"), True, "malformed (mode a number)")
    check_eq(e.get("mode"), None, "ill-typed mode")
    # Values this QEMU does not know yet pass through.
    e = pub_raw('{%s, "event": "COLO_EXIT", "data": {"mode": "tertiary", '
                '"reason": "processing"}}' % ts)
    check("malformed" not in e, "unknown values marked malformed: %r" % e)
    check_eq((e["mode"], e["reason"]), ("tertiary", "processing"),
             "unknown mode/reason passed through")
    # No usable timestamp: the bridge's clock, flagged.
    for bad_ts in ('"timestamp": {"seconds": -1, "microseconds": -1}, ', ''):
        before = int(time.time() * 1e6)
        e = pub_raw('{%s"event": "COLO_EXIT", "data": {"mode": "secondary",'
                    ' "reason": "error"}}' % bad_ts)
        after = int(time.time() * 1e6)
        check_eq(e.get("time_source"), "bridge",
                 "time_source with timestamp %r" % bad_ts)
        check(before - 2000000 <= e["time_us"] <= after + 2000000,
              "bridge time_us %d not near now [%d, %d]" %
              (e["time_us"], before, after))
        check_eq(e["time"], h.iso_time(e["time_us"]), "time vs time_us")
    # Valid JSON that is no QMP message, stray replies, other events:
    # nothing published.
    n0 = r.sub.count(topic)
    for text in ('{"foo": 1}', '[1, 2, 3]', '42',
                 '{"return": {}, "id": "not-a-command-of-ours"}',
                 '{%s, "event": "STOP"}' % ts,
                 '{%s, "event": "RESUME"}' % ts):
        r.raw(vm, text + CRLF)
    r.after_fault("valid JSON of no QMP shape", connects=c0)
    check_eq(r.sub.count(topic), n0 + 1, "events published for %s" % vm)
    st = r.stats(lambda s: s["vms"][vm]["malformed"] >= 3 and
                 s["vms"][vm]["unexpected"] >= 2,
                 what="malformed >= 3 and unexpected >= 2")
    check_eq(r.vm_stats(vm, st)["malformed"], 3, "malformed of %s" % vm)
    check_eq(st["totals"]["malformed"], 3, "totals.malformed")
    r.check_totals(st)


def test_fault_storm(ctx):
    """Faults back to back on vm1, then the control VM and vm1 deliver."""
    r = Rig(ctx)
    c0 = r.connects(FAULTY)
    for cmd in ("garbage %s 100000" % FAULTY,
                "big %s %d" % (FAULTY, 2 * 1024 * 1024),
                "deep %s 50000" % FAULTY,
                "raw %s \\x00\\x00{bad%s" % (FAULTY, CRLF),
                "raw %s {\"event\": oops}%s" % (FAULTY, CRLF),
                "garbage %s 3" % FAULTY):
        r.sim.cmd(cmd, timeout=30)
    r.after_fault("a storm of faults", connects=c0)
    r.event(FAULTY, what="second event after the storm")
    st = r.stats(lambda s: s["vms"][FAULTY]["invalid"] >= 3 and
                 s["vms"][FAULTY]["oversized"] >= 1,
                 what="invalid >= 3 and oversized >= 1")
    r.check_totals(st)


if __name__ == "__main__":
    h.main(test_garbage, test_invalid_json_lines, test_nul_bytes,
           test_oversized_2mib, test_small_max_message, test_endless,
           test_deep_nesting, test_slow, test_close_mid_message,
           test_unlisten_listen, test_mute_greeting_timeout,
           test_deaf_negotiation_timeout,
           test_malformed_and_unexpected, test_fault_storm,
           test_total_input_bound)
