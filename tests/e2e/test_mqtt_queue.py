#!/usr/bin/python3
"""The bridge's outbound MQTT queue and inbound bounds, against mosquitto.

(a) test_state_coalesced: the broker is frozen (SIGSTOP) while the bridge
    is connected; 400 events fill the in-flight window (256) and queue up
    behind it; then 40 stats messages (retained state, one topic) are
    asked for with SIGUSR1.  At most one of them may wait in the queue:
    the bridge's "stats: ... buffered=N" debug line shows the same N every
    time (it grew by one per stats message before), and once the broker
    runs again (SIGCONT) the subscriber gets at most 2 of those 40
    (one may have been in flight), after every event.
(b) test_refused_acl: MQTT 5, an ACL denying vm2's event topic: mosquitto
    answers PUBACK 0x87 (not authorized).  The denied events are dropped
    and counted ("N refused so far" in the log, rate-limited), vm1's
    events queued after them are all delivered, nothing stays buffered or
    in flight.
(c) test_refused_transient: mosquitto cannot refuse a publish for now,
    so a minimal MQTT 5 broker of the test's own (FakeBroker) answers
    PUBACK 0x97 (quota exceeded) to the first copy of 3 chosen events and
    accepts everything else.  The bridge retries them after a backoff
    (logged "for now ... retrying"): every event is accepted in the end,
    the refused ones after a delay, nothing dropped.
(d) test_inbound_large: a 5 MB message on the bridge's command topic.
    MQTT 5: the bridge told the broker its Maximum Packet Size (1 MiB), so
    mosquitto does not send it; MQTT 3.1.1: the bridge drops it on arrival
    (mqtt_in_dropped 1).  Either way the bridge keeps publishing, and its
    peak RSS stays small (under MQTT 5 well below the 5 MB).
(e) test_lazy_ack_bound: a PUBACK does not wake the bridge's loop while
    the in-flight window has room (lazy acks, src/mqttcb.c post()); the
    loop collects it when it next wakes, or within ACK_LAZY_MS (100 ms).
    One COLO_EXIT on an idle bridge; once the event and the state after
    it reached the subscriber, nothing touches the bridge for 0.5 s; then
    one stats message (its counters are read when SIGUSR1 ends the wait,
    before the loop collects anything queued) must show both published,
    nothing in flight or buffered.  Without the bound the last ack would
    still be queued.  Then a burst larger than the window (the acks wake
    the loop again once it is half full): every event delivered, in order.
"""
# TIMEOUT = 180

import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import harness as h
from harness import check, check_eq

STATS_RE = re.compile(r"debug: stats: events_in=(\d+) .* buffered=(\d+)")


def stats_lines(d):
    return STATS_RE.findall(d.log_text())


def wait_stats_line(d, n0, timeout=5.0):
    """Waits for the daemon's debug line of stats message number n0 + 1
    (polled: nothing notifies; bounded); returns (events_in, buffered)."""
    for _ in h.deadline_loop(timeout * h.SLOW, 0.01):
        d.check_alive()
        lines = stats_lines(d)
        if len(lines) > n0:
            return tuple(int(x) for x in lines[n0])
    h.fail("no new 'stats:' debug line within %.0fs" % (timeout * h.SLOW))


def test_state_coalesced(ctx):
    NEV = 400
    NSTATS = 40
    broker = ctx.mosquitto()
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(1)
    vm = sim.vm(1)
    d = h.Daemon(ctx, vms=sim.vms(), port=broker.port,
                 mqtt={"keepalive": 60}).start()
    sim.wait_ready(1, timeout=20)
    h.wait_online(sub, [vm], 20)
    stopic = h.bridge_topic("stats")
    broker.proc.signal(signal.SIGSTOP)
    try:
        smark = sim.mark()
        check_eq(sim.cmd("burst %s %d" % (vm, NEV), timeout=30), "ok burst",
                 "burst")
        # Every event read (and queued) before the stats messages.
        for _ in h.deadline_loop(10 * h.SLOW, 0.05):
            n0 = len(stats_lines(d))
            d.signal(signal.SIGUSR1)
            ev, buf0 = wait_stats_line(d, n0)
            if ev == NEV:
                break
        check_eq(ev, NEV, "events read by the bridge")
        # The state after the last exit is queued after a short debounce
        # (vm.c REFRESH_DELAY_MS): its query-colo-status reaches the VM,
        # then the reply queues the state.  The reference is taken once
        # the queue stopped growing (two stats in a row alike).
        sim.wait_async(r"^recv %s query-colo-status$" % vm, 10,
                       since=smark)
        prev = None
        for _ in h.deadline_loop(5 * h.SLOW, 0.01):
            n0 = len(stats_lines(d))
            d.signal(signal.SIGUSR1)
            ev, buf0 = wait_stats_line(d, n0)
            if prev is not None and buf0 == prev:
                break
            prev = buf0
        check(buf0 > 0, "events wait behind the window (buffered %d)" % buf0)
        bufs = []
        for i in range(NSTATS):
            n0 = len(stats_lines(d))
            d.signal(signal.SIGUSR1)
            bufs.append(wait_stats_line(d, n0)[1])
        h.log("buffered before each stats message: %s" % bufs)
        check(max(bufs) <= buf0 + 1, "state messages pile up while the "
              "broker is slow: buffered went %d -> %d over %d stats "
              "messages" % (buf0, max(bufs), NSTATS))
    finally:
        broker.proc.signal(signal.SIGCONT)
    etopic = h.event_topic(vm)
    sub.wait(lambda s: len(s.by_topic.get(etopic, [])) >= NEV, 30,
             "every event")
    t = h.stats_until(sub, d, lambda st: st["totals"]["buffered"] == 0 and
                      st["totals"]["inflight"] == 0, 30, "queue drained")
    msgs = [m.json() for m in sub.on(stopic)]
    frozen = [m for m in msgs if m["totals"]["events_in"] == NEV]
    p0 = min(m["totals"]["published"] for m in frozen)
    during = [m for m in frozen if m["totals"]["published"] == p0]
    h.log("RESULT coalesced: %d stats messages asked for while the broker "
          "was frozen, %d delivered" % (NSTATS + 1, len(during)))
    check(len(during) <= 2, "%d of the %d stats messages queued while the "
          "broker was frozen were delivered (want at most 2)" %
          (len(during), NSTATS + 1))
    check_eq(t["totals"]["dropped"], 0, "dropped")


def test_refused_acl(ctx):
    acl = os.path.join(ctx.dir, "acl")
    with open(acl, "w") as f:
        f.write("topic deny %s/#\n" % os.path.dirname(h.event_topic("vm2"))
                + "topic readwrite #\n")
    broker = ctx.mosquitto(extra="acl_file %s" % acl)
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(2)
    d = h.Daemon(ctx, vms=sim.vms(), port=broker.port).start()
    sim.wait_ready(2, timeout=20)
    h.wait_online(sub, ["vm1", "vm2"], 20)
    check_eq(sim.cmd("burst vm2 20", timeout=30), "ok burst", "burst vm2")
    check_eq(sim.cmd("burst vm1 20", timeout=30), "ok burst", "burst vm1")
    sub.wait(lambda s: len(s.by_topic.get(h.event_topic("vm1"), [])) >= 20,
             15, "vm1's events after vm2's denied ones")
    t = h.stats_until(sub, d, lambda st: st["totals"]["events_in"] == 40 and
                      st["totals"]["buffered"] == 0 and
                      st["totals"]["inflight"] == 0, 15, "queue drained")
    check_eq(sub.count(h.event_topic("vm2")), 0, "vm2 events delivered")
    text = d.log_text()
    check(re.search(r"broker refused publish to \S+vm2\S+: not authorized "
                    r"\(reason 0x87\); dropped; \d+ refused so far", text),
          "the refusal logged with its reason")
    nlines = len(re.findall(r"refused publish to|more publish", text))
    check(nlines < 20, "refusal log lines rate-limited: %d" % nlines)
    # A summary line reports the rest within a second or two.
    for _ in h.deadline_loop(5 * h.SLOW, 0.1):
        m = re.findall(r"(\d+) refused so far", d.log_text())
        if m and int(m[-1]) == 20:
            break
    check_eq(int(m[-1]) if m else 0, 20, "refused count in the log")
    check_eq(t["totals"]["dropped"], 0, "dropped (refusals are counted "
             "apart)")


class FakeBroker:
    """Just enough MQTT 5 for the bridge: CONNACK, SUBACK, PINGRESP, and a
    PUBACK per QoS 1 PUBLISH whose reason code refuse(topic, payload)
    chooses (or (code, delay_s): that PUBACK is sent delay_s later, the
    others meanwhile).  Records (topic, payload, reason, time) in arrival
    order."""

    def __init__(self, refuse):
        self.refuse = refuse
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(4)
        self.port = self.s.getsockname()[1]
        self.cond = threading.Condition()
        self.pubs = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.s.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.s.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    @staticmethod
    def _varint(buf, i):
        n = mul = 0
        while True:
            b = buf[i]
            i += 1
            n += (b & 0x7F) << mul
            mul += 7
            if not b & 0x80:
                return n, i

    def _serve(self, c):
        buf = b""
        wlock = threading.Lock()
        c.settimeout(0.5)
        while not self.stop:
            try:
                data = c.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            buf += data
            while len(buf) >= 2:
                try:
                    n, i = self._varint(buf, 1)
                except IndexError:
                    break
                if len(buf) < i + n:
                    break
                t, body, buf = buf[0], buf[i:i + n], buf[i + n:]
                out = self._packet(t, body)
                if out is None:
                    c.close()
                    return
                delay = 0
                if isinstance(out, tuple):
                    out, delay = out
                if out and delay > 0:
                    threading.Timer(delay, self._send_late,
                                    (c, wlock, out)).start()
                elif out:
                    with wlock:
                        c.sendall(out)
        c.close()

    def _send_late(self, c, wlock, out):
        try:
            with wlock:
                c.sendall(out)
        except OSError:
            pass

    def _packet(self, t, body):
        kind = t >> 4
        if kind == 1:                           # CONNECT
            return b"\x20\x03\x00\x00\x00"
        if kind == 8:                           # SUBSCRIBE
            pid = body[:2]
            plen, i = self._varint(body, 2)
            i += plen
            codes = b""
            while i < len(body):
                tl = struct.unpack(">H", body[i:i + 2])[0]
                i += 2 + tl + 1
                codes += b"\x01"
            rest = pid + b"\x00" + codes
            return bytes([0x90, len(rest)]) + rest
        if kind == 3:                           # PUBLISH
            qos = (t >> 1) & 3
            tl = struct.unpack(">H", body[:2])[0]
            topic = body[2:2 + tl].decode()
            i = 2 + tl
            pid = body[i:i + 2] if qos else b""
            i += 2 if qos else 0
            plen, i = self._varint(body, i)
            payload = body[i + plen:]
            rc = self.refuse(topic, payload)
            delay = 0
            if isinstance(rc, tuple):
                rc, delay = rc
            with self.cond:
                self.pubs.append((topic, payload, rc, time.monotonic()))
                self.cond.notify_all()
            if not qos:
                return b""
            return b"\x40\x04" + pid + bytes([rc, 0]), delay
        if kind == 12:                          # PINGREQ
            return b"\xd0\x00"
        if kind == 14:                          # DISCONNECT
            return None
        return b""

    def wait(self, pred, timeout, what):
        end = time.monotonic() + timeout * h.SLOW
        with self.cond:
            while not pred(self.pubs):
                left = end - time.monotonic()
                if left <= 0:
                    h.fail("fake broker: timeout waiting for %s" % what)
                self.cond.wait(left)

    def close(self):
        self.stop = True
        self.s.close()


def burst_through(ctx, fb, n, timeout, what):
    """A bridge with one simulated VM against the fake broker fb: vm1 bursts
    n COLO_EXIT, and the broker must accept every one within timeout.
    Returns the daemon."""
    etopic = h.event_topic("vm1")
    sim = ctx.sim(1)
    d = h.Daemon(ctx, vms=sim.vms(), port=fb.port).start()
    sim.wait_ready(1, timeout=20)
    fb.wait(lambda p: any(t.endswith("/availability") for t, *_ in p),
            10, "the bridge's first publishes")
    check_eq(sim.cmd("burst vm1 %d" % n, timeout=10), "ok burst", "burst")

    def accepted(pubs):
        return {h.sim_k(json.loads(pl)) for t, pl, rc, _ in pubs
                if t == etopic and rc == 0}
    fb.wait(lambda p: len(accepted(p)) == n, timeout, what)
    return d


def test_refused_transient(ctx):
    N = 30
    REFUSE = {5, 12, 20}                # k of vm1's events refused once
    etopic = h.event_topic("vm1")
    refused = set()

    def refuse(topic, payload):
        if topic != etopic:
            return 0
        k = h.sim_k(json.loads(payload))
        if k in REFUSE and k not in refused:
            refused.add(k)
            return 0x97                 # quota exceeded: not now
        return 0
    fb = FakeBroker(refuse)
    try:
        d = burst_through(ctx, fb, N, 30, "every event accepted")
        with fb.cond:
            pubs = list(fb.pubs)
        ev = [(h.sim_k(json.loads(pl)), rc, tm) for t, pl, rc, tm in pubs
              if t == etopic]
        check_eq(refused, REFUSE, "events refused once")
        for k in REFUSE:
            t_ref = min(tm for kk, rc, tm in ev if kk == k and rc)
            t_ok = min(tm for kk, rc, tm in ev if kk == k and not rc)
            check(t_ok - t_ref >= 0.05, "k=%d retried after %.3fs: a "
                  "backoff, not at once" % (k, t_ok - t_ref))
        text = d.log_text()
        check(re.search(r"broker refused publish to \S+ for now: quota "
                        r"exceeded \(reason 0x97\)", text),
              "the transient refusal logged")
        check(not re.search(r"\); dropped|dropped the oldest|cannot publish",
                            text), "nothing dropped:\n%s" % text[-2000:])
        h.log("RESULT transient: %d events, %d refusals retried, order of "
              "first acceptance: %s" % (N, len(REFUSE),
                                        [k for k, rc, _ in ev if not rc]))
    finally:
        fb.close()


def test_refused_again_after_the_backoff(ctx):
    """Two events in flight refused for now: the first at once, the second
    only once the first one's backoff has run out (its PUBACK 0.5 s late).
    The second refusal starts a new backoff, after which both go again and
    everything behind them follows (the hold used to end only when its
    timer fired with nothing in flight: this timeline held the queue for
    good on a healthy connection)."""
    N = 10
    etopic = h.event_topic("vm1")
    refused = {}

    def refuse(topic, payload):
        if topic != etopic:
            return 0
        k = h.sim_k(json.loads(payload))
        if k in (1, 2) and k not in refused:
            refused[k] = time.monotonic()
            return (0x97, 0.0 if k == 1 else 0.5)
        return 0
    fb = FakeBroker(refuse)
    try:
        d = burst_through(ctx, fb, N, 10, "every event accepted after two "
                          "refusals for now")
        check_eq(sorted(refused), [1, 2], "events refused once")
        check(not re.search(r"\); dropped|dropped the oldest",
                            d.log_text()), "nothing dropped")
    finally:
        fb.close()


def rss_peak_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1])
    return 0


def inbound_large(ctx, version):
    broker = ctx.mosquitto()
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(1)
    d = h.Daemon(ctx, vms=sim.vms(), port=broker.port,
                 mqtt={"version": version}).start()
    sim.wait_ready(1, timeout=20)
    h.wait_online(sub, ["vm1"], 20)
    # The command subscription is in place once mosquitto logged it.
    broker.wait_log(r"\S+ 1 %s" % re.escape(
        "%s/%s/+/cmd/takeover" % (h.BASE, h.HOST)), 10)
    big = os.path.join(ctx.dir, "big")
    with open(big, "wb") as f:
        f.write(b"x" * (5 * 1000 * 1000))
    mark = broker.mark()
    subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-q", "1",
                    "-t", "%s/%s/vm1/cmd/takeover" % (h.BASE, h.HOST),
                    "-f", big], check=True, timeout=30)
    broker.wait_log(r"Received PUBLISH .*cmd/takeover", 10, since=mark)
    want = 1 if version == 3 else 0
    st = h.stats_until(sub, d, lambda s: s["totals"]["mqtt_in_dropped"] ==
                       want, 15, "mqtt_in_dropped %d" % want)
    # Then it still publishes.
    check_eq(sim.cmd("burst vm1 5", timeout=10), "ok burst", "burst")
    sub.wait(lambda s: len(s.by_topic.get(h.event_topic("vm1"), [])) >= 5,
             10, "events after the big message")
    kb = rss_peak_kb(d.pid)
    h.log("RESULT v%d: peak RSS %d kB, mqtt_in_dropped %d" %
          (version, kb, st["totals"]["mqtt_in_dropped"]))
    # MQTT 5: the 5 MB never reach the bridge (it had ~20 MB peak when
    # they did); 3.1.1: Paho reads them in, the bridge copies nothing.
    limit = 12000 if version == 5 else 40000
    if not h.SANITIZED:
        check(kb < limit, "peak RSS %d kB after a 5 MB command (limit %d)"
              % (kb, limit))


def test_inbound_large_v5(ctx):
    inbound_large(ctx, 5)


def test_inbound_large_v3(ctx):
    inbound_large(ctx, 3)


def test_lazy_ack_bound(ctx):
    NEV = 1000
    broker = ctx.mosquitto()
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(1)
    vm = sim.vm(1)
    d = h.Daemon(ctx, vms=sim.vms(), port=broker.port,
                 mqtt={"keepalive": 60}).start()
    sim.wait_ready(1, timeout=20)
    h.wait_online(sub, [vm], 20)
    idle = lambda st: (st["totals"]["buffered"] == 0 and
                       st["totals"]["inflight"] == 0)
    st0 = h.stats_until(sub, d, idle, 10, "an idle queue")
    etopic, stopic = h.event_topic(vm), h.state_topic(vm)
    smark = sub.mark(stopic)
    check_eq(sim.cmd("burst %s 1" % vm, timeout=10), "ok burst", "burst")
    sub.wait(lambda s: len(s.by_topic.get(etopic, [])) >= 1, 10, "the event")
    sub.wait_for(lambda m: True, 10, topic=stopic, since=smark,
                 what="the state after the exit")
    # Not a synchronisation: the bound is the quantity under test, and
    # nothing may wake the bridge meanwhile.
    time.sleep(0.5)
    st = h.stats_until(sub, d, lambda st: True, 10, "a stats message")
    h.log("totals before %s after %s" % (st0["totals"], st["totals"]))
    check(idle(st), "acks collected within the bound: buffered %d, "
          "inflight %d" % (st["totals"]["buffered"],
                           st["totals"]["inflight"]))
    # +3: the first stats message, the event, the state.
    check(st["totals"]["published"] >= st0["totals"]["published"] + 3,
          "published %d -> %d" % (st0["totals"]["published"],
                                  st["totals"]["published"]))
    # A burst past the window: acks become urgent, nothing stalls.
    check_eq(sim.cmd("burst %s %d" % (vm, NEV), timeout=30), "ok burst",
             "burst")
    sub.wait(lambda s: len(s.by_topic.get(etopic, [])) >= NEV + 1, 30,
             "every event")
    seqs = [h.sim_k(m.json()) for m in sub.on(etopic)]
    check(all(a < b for a, b in zip(seqs, seqs[1:])),
          "events in order")
    h.stats_until(sub, d, idle, 10, "the queue drained after the burst")


if __name__ == "__main__":
    h.main(test_state_coalesced, test_refused_acl, test_refused_transient,
           test_refused_again_after_the_backoff,
           test_inbound_large_v5,
           test_inbound_large_v3, test_lazy_ack_bound)
