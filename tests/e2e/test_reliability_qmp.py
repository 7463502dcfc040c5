#!/usr/bin/python3
"""Reliability: hostile and broken QMP endpoints next to healthy ones.

The daemon must stay up, keep every healthy VM delivering, recover each
broken endpoint once it behaves, and leak neither descriptors nor memory.

test_connection_faults: at the same time, one bridge serves
    - a TCP port and a unix socket that refuse (bound, not listening),
    - a simulated VM muted before the bridge came (accepts, never greets),
    - a fake QMP server of the test's own that greets and then never
      answers qmp_capabilities (greet, then stall),
    - a simulated VM muted after negotiation (commands time out),
    - healthy simulated VMs.
    The healthy VM delivers every event of bursts sent meanwhile; the
    stats count timeouts/reconnects on the broken ones and none on the
    healthy one; the silent endpoints are dropped after the greeting /
    command timeout (not earlier); then every broken endpoint is fixed
    (listen, unmute, answer) and comes online, and delivers.
test_stall_after_negotiation: a negotiated VM stops answering: its
    command times out; the README says a timeout drops the connection
    (availability offline), and the VM must come back once it answers.
test_inband_faults: on one connection (vm1): close in the middle of a
    message, a valid 10 MB message and 10 MB of random garbage (max_message
    1 MiB), 20 MB without a newline (peak RSS bounded; the healthy VM
    delivers while it streams in), invalid UTF-8, NUL bytes, JSON nested
    100 000 and 65 deep and an event with a 70-deep value.  After each:
    the daemon is alive, vm1's next event is published (k and seq), a
    burst on the healthy VM arrives complete, and the bad input itself was
    never published.
test_connect_close_cycles: 1000 connect/close cycles on one VM (the
    simulator closes it, the bridge reconnects and renegotiates; each
    cycle waits for "client VM ready"): afterwards the daemon's number of
    open descriptors is exactly what it was after a warm-up of 100 cycles
    (the VM reconnected in both cases), VmRSS grew by less than 1 MiB
    (not checked under the sanitizers, whose quarantine keeps freed
    memory), the healthy VM delivers, and stats show >= 1100 reconnects.
"""
# TIMEOUT = 240

import json
import os
import selectors
import signal
import socket
import threading
import time

import harness as h
from harness import check, check_eq

CRLF = "\\r\\n"            # the simulator's escape for CR LF
GREETING_MS = 500
COMMAND_MS = 500
GREETING = (b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, '
            b'"major": 7}, "package": "fake"}, "capabilities": ["oob"]}}'
            b'\r\n')


# ----------------------------------------------------------------- helpers

class FakeQMP:
    """A QMP endpoint of the test's own, on a unix path or a loopback TCP
    port, served by one thread (selectors):
      'refuse'  bound but not listening: connect() gets ECONNREFUSED;
      'stall'   accepts, greets, reads and never answers;
      'ok'      greets and answers every command ({"return": {}};
                query-colo-status: mode none).
    Each accepted connection is recorded: open/close times, who closed."""

    def __init__(self, ctx, name, unix_path=None, mode="refuse"):
        self.ctx = ctx
        self.name = name
        self.lock = threading.Lock()
        self.mode = mode
        self.conns = []        # dicts: t_open, t_close, peer_closed, cmds
        self.listening = False
        self.stopping = False
        if unix_path:
            self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.lsock.bind(unix_path)
            self.addr = "unix:" + unix_path
        else:
            self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.lsock.bind(("127.0.0.1", 0))
            self.addr = "tcp:127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.lsock.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()
        if mode != "refuse":
            self.set_mode(mode)
        ctx.register(self)

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode
            if mode != "refuse" and not self.listening:
                self.lsock.listen(16)
                self.listening = True
                self.sel.register(self.lsock, selectors.EVENT_READ, None)

    def _run(self):
        while not self.stopping:
            try:
                ready = self.sel.select(timeout=0.1)
            except (OSError, ValueError):
                continue
            for key, _ in ready:
                if key.data is None:
                    self._accept()
                else:
                    self._read(key.fileobj, key.data)

    def _accept(self):
        try:
            s, _ = self.lsock.accept()
        except OSError:
            return
        rec = {"t_open": time.monotonic(), "t_close": None,
               "peer_closed": None, "cmds": [], "buf": ""}
        with self.lock:
            self.conns.append(rec)
        try:
            s.sendall(GREETING)
        except OSError:
            pass
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ, rec)

    def _read(self, s, rec):
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(s)
            s.close()
            with self.lock:
                rec["t_close"] = time.monotonic()
                rec["peer_closed"] = True
            return
        with self.lock:
            mode = self.mode
        if mode != "ok":
            return                       # stall: read and ignore
        rec["buf"] += data.decode("utf-8", "replace")
        dec = json.JSONDecoder()
        while True:
            b = rec["buf"].lstrip()
            if not b:
                rec["buf"] = ""
                break
            try:
                obj, end = dec.raw_decode(b)
            except ValueError:
                rec["buf"] = b
                break
            rec["buf"] = b[end:]
            cmd = obj.get("execute") if isinstance(obj, dict) else None
            with self.lock:
                rec["cmds"].append(cmd)
            ret = {}
            if cmd == "query-colo-status":
                ret = {"last-mode": "none", "mode": "none", "reason": "none"}
            out = {"return": ret}
            if isinstance(obj, dict) and "id" in obj:
                out["id"] = obj["id"]
            try:
                s.sendall((json.dumps(out) + "\r\n").encode())
            except OSError:
                pass

    def connections(self):
        with self.lock:
            return [dict(c) for c in self.conns]

    def close(self):
        self.stopping = True
        self.th.join(2)
        for key in list(self.sel.get_map().values()):
            try:
                key.fileobj.close()
            except OSError:
                pass
        self.sel.close()
        self.lsock.close()

    def logs(self):
        return []


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_list(pid):
    out = []
    for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
        try:
            out.append("%s->%s" % (fd, os.readlink("/proc/%d/fd/%s" %
                                                   (pid, fd))))
        except OSError:
            pass
    return out


def mem_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Rig:
    """Broker, subscriber, simulator (vm1 faulty, vm2 healthy, ...), and
    a daemon with short timeouts; tracks the simulator's k and the
    published seq per VM."""

    def __init__(self, ctx, nvms=3, extra_vms=(), bridge=None, before=None):
        self.ctx = ctx
        self.broker = ctx.mosquitto()
        self.sim = ctx.sim(nvms)
        self.sub = ctx.subscriber(self.broker.port)
        if before:
            before(self.sim)
        b = {"greeting_timeout_ms": GREETING_MS,
             "command_timeout_ms": COMMAND_MS, "status_interval_s": 1}
        b.update(bridge or {})
        self.daemon = ctx.daemon(self.sim.vms() + list(extra_vms),
                                 self.broker.port, bridge=b)
        self.k = {}
        self.seq = {}

    def ready(self, names, timeout=20):
        self.sim.wait_ready(len(names), timeout)
        h.wait_online(self.sub, names, timeout)
        for n in names:
            self.k[n] = self.sim.count(n)["events"]
            self.seq[n] = self.k[n]

    def event(self, vm, what):
        """One COLO_EXIT on vm; it must be published as the next k/seq."""
        topic = h.event_topic(vm)
        mark = self.sub.mark(topic)
        self.sim.cmd("exit %s primary error" % vm)
        self.k[vm] += 1
        self.seq[vm] += 1
        check_eq(self.sim.count(vm)["events"], self.k[vm],
                 "simulator's event count of %s (%s)" % (vm, what))
        try:
            m = self.sub.wait_for(lambda m: True, 10, topic=topic,
                                  since=mark)
        except h.TestFailure:
            h.fail("%s: event k=%d of %s never published" %
                   (what, self.k[vm], vm))
        return h.check_event(m, vm, self.daemon, mode="primary",
                             reason="error",
                             time_us=h.SIM_EPOCH_US + self.k[vm],
                             seq=self.seq[vm])

    def burst(self, vm, n, what, timeout=15):
        """A burst of n on a healthy VM: all published, in order."""
        topic = h.event_topic(vm)
        mark = self.sub.mark(topic)
        self.sim.cmd("burst %s %d" % (vm, n), timeout=30)
        try:
            self.sub.wait(lambda s: len(s.by_topic.get(topic, [])) >=
                          mark + n, timeout, "burst on %s" % vm)
        except h.TestFailure:
            h.fail("%s: healthy VM %s published %d of a burst of %d" %
                   (what, vm, self.sub.count(topic) - mark, n))
        ks = [h.sim_k(m.json()) for m in self.sub.on(topic)[mark:]]
        check_eq(ks, list(range(self.k[vm] + 1, self.k[vm] + n + 1)),
                 "%s: k of the burst on healthy VM %s" % (what, vm))
        self.k[vm] += n
        self.seq[vm] += n

    def stats(self, pred, timeout, what):
        return h.stats_until(self.sub, self.daemon, pred, timeout, what)

    def not_published(self, vm, time_us, what):
        for m in self.sub.on(h.event_topic(vm)):
            check(m.json().get("time_us") != time_us,
                  "%s was published: %r" % (what, m))


# ---------------------------------------------------- connection faults

def test_connection_faults(ctx):
    rdir = ctx.subdir("fake")
    tcp_refuse = FakeQMP(ctx, "tcp-refuse")
    unix_refuse = FakeQMP(ctx, "unix-refuse",
                          unix_path=os.path.join(rdir, "refuse.qmp"))
    stall = FakeQMP(ctx, "stall", unix_path=os.path.join(rdir, "stall.qmp"),
                    mode="stall")
    extra = [("tcprefuse", tcp_refuse.addr), ("unixrefuse", unix_refuse.addr),
             ("stall", stall.addr)]
    # vm1 muted before the bridge comes: accepted, never greeted.
    r = Rig(ctx, nvms=3, extra_vms=extra,
            before=lambda sim: sim.cmd("mute vm1 on"))
    healthy, mute_late = "vm2", "vm3"
    r.ready([healthy, mute_late])
    t_start = time.monotonic()
    r.burst(healthy, 50, "while endpoints refuse and stall")

    # vm3 stalls after negotiation: its next command times out (what the
    # bridge then does with the connection: test_stall_after_negotiation).
    r.sim.cmd("mute %s on" % mute_late)
    r.burst(healthy, 50, "while %s is stalled after negotiation" % mute_late)

    # The stalled greeting is dropped after the greeting timeout (not
    # before), over and over.
    conns = None
    for _ in h.deadline_loop(15 * h.SLOW, 0.05):
        conns = [c for c in stall.connections() if c["t_close"]]
        if len(conns) >= 2:
            break
    check(conns and len(conns) >= 2, "the bridge did not drop and retry "
          "the greet-then-stall endpoint: %s" % stall.connections())
    held = [c["t_close"] - c["t_open"] for c in conns]
    h.log("greet-then-stall connections held %s s" %
          ["%.2f" % x for x in held])
    check(min(held) >= GREETING_MS / 1000.0 * 0.8,
          "a greeted connection was dropped after %.2fs, before the "
          "greeting timeout (%d ms)" % (min(held), GREETING_MS))
    check(max(held) < 5.0 * h.SLOW, "a greeted, stalled connection was "
          "held %.1fs (greeting timeout %d ms)" % (max(held), GREETING_MS))
    check(all(c["cmds"] == [] for c in conns), "stall mode answered?")

    def broken_counted(st):
        v = st["vms"]
        return (v["vm1"]["timeouts"] >= 2 and v["stall"]["timeouts"] >= 2 and
                v[mute_late]["timeouts"] >= 1 and
                v["tcprefuse"]["reconnects"] >= 3 and
                v["unixrefuse"]["reconnects"] >= 3)
    st = r.stats(broken_counted, 20, "timeouts and reconnects counted on "
                 "every broken endpoint")
    for n in ("vm1", "stall", "tcprefuse", "unixrefuse"):
        check(not st["vms"][n]["ready"], "%s ready while broken" % n)
    check_eq({k: st["vms"][healthy][k] for k in ("timeouts", "reconnects",
                                                 "invalid")},
             {"timeouts": 0, "reconnects": 0, "invalid": 0},
             "healthy VM's fault counters")
    check(st["totals"]["vms_ready"] <= 2, "vms_ready %d while 4 never "
          "negotiate" % st["totals"]["vms_ready"])
    h.log("after %.1fs of faults: %s" % (time.monotonic() - t_start,
          {n: st["vms"][n] for n in ("vm1", "stall", "tcprefuse",
                                     "unixrefuse", mute_late)}))
    r.daemon.check_alive()
    r.burst(healthy, 50, "after the broken endpoints were counted")

    # Fix everything: each comes online.
    r.sim.cmd("mute vm1 off")
    r.sim.cmd("mute %s off" % mute_late)
    for f in (tcp_refuse, unix_refuse, stall):
        f.set_mode("ok")
    names = ["vm1", healthy, mute_late, "tcprefuse", "unixrefuse", "stall"]
    h.wait_online(r.sub, names, 20)
    r.sim.wait_ready(3, 20)
    for n in ("vm1", mute_late):
        r.k[n] = r.sim.count(n)["events"]
        r.seq[n] = r.sub.count(h.event_topic(n))
    for n in ("vm1", mute_late):
        r.event(n, "after %s was fixed" % n)
    for f, n in ((tcp_refuse, "tcprefuse"), (unix_refuse, "unixrefuse"),
                 (stall, "stall")):
        c = [x for x in f.connections() if "qmp_capabilities" in x["cmds"]]
        check(c, "%s: no connection negotiated with the fake server" % n)
        st = h.state_topic(n)
        r.sub.wait_json(st, lambda s: s["qmp"] == "connected" and
                        s["mode"] == "none", 10,
                        "state of %s after the fix" % n)
    r.burst(healthy, 50, "after every endpoint was fixed")
    st = r.stats(lambda s: s["totals"]["vms_ready"] == 6, 15, "all 6 ready")
    r.daemon.check_alive()


def test_stall_after_negotiation(ctx):
    """README, Behaviour under faults: "any EOF, error or timeout drops the
    connection and retries".  A negotiated VM that stops answering (the
    simulator's mute on a connected client: nothing read, nothing sent)
    makes the next query-colo-status (every status_interval_s = 1 s) time
    out after command_timeout_ms (500 ms): the bridge must count the
    timeout, drop the connection (availability offline, state qmp
    disconnected), and, once the VM answers again, reconnect and deliver.
    The healthy VM delivers throughout."""
    r = Rig(ctx, nvms=2)
    vm, healthy = "vm1", "vm2"
    r.ready([vm, healthy])
    amark = r.sub.mark(h.avail_topic(vm))
    r.sim.cmd("mute %s on" % vm)
    t0 = time.monotonic()
    st = r.stats(lambda s: s["vms"][vm]["timeouts"] >= 1, 10,
                 "a command timeout on the stalled %s" % vm)
    h.log("stalled VM: timeouts counted after %.1fs: %s" %
          (time.monotonic() - t0, st["vms"][vm]))
    r.burst(healthy, 20, "while %s is stalled" % vm)
    try:
        r.sub.wait_payload(h.avail_topic(vm), "offline", 5, since=amark)
    except h.TestFailure:
        st = r.stats(lambda s: True, 5, "stats")
        h.fail("%s stopped answering; %d command timeout(s) counted, but "
               "the connection was kept: availability still %r, stats %s; "
               "daemon log: %s" %
               (vm, st["vms"][vm]["timeouts"],
                r.sub.last(h.avail_topic(vm)).payload.decode(),
                st["vms"][vm],
                [ln for ln in r.daemon.log_text().splitlines()
                 if " %s:" % vm in ln and ("timed out" in ln or
                                           "lost" in ln or
                                           "failed" in ln)][-6:]))
    r.sub.wait_json(h.state_topic(vm), lambda s: s["qmp"] == "disconnected",
                    5, "state qmp disconnected")
    smark = r.sim.mark()
    r.sim.cmd("mute %s off" % vm)
    r.sim.wait_async(r"^client %s ready" % vm, 15, since=smark)
    h.wait_online(r.sub, [vm], 10)
    r.k[vm] = r.sim.count(vm)["events"]
    r.event(vm, "after the stall ended")
    r.daemon.check_alive()


# ------------------------------------------------------- in-band faults

def test_inband_faults(ctx):
    r = Rig(ctx, nvms=3, bridge={"greeting_timeout_ms": 2000,
                                 "command_timeout_ms": 5000})
    bad, healthy = "vm1", "vm2"
    r.ready([bad, healthy, "vm3"])
    r.event(bad, "first event")
    c0 = r.sim.count(bad)["connects"]

    def after(what, same_conn=True):
        r.daemon.check_alive()
        if same_conn:
            check_eq(r.sim.count(bad)["connects"], c0, "connections to %s "
                     "after %s (in-band garbage must not cost the "
                     "connection)" % (bad, what))
        r.event(bad, "after " + what)
        r.burst(healthy, 20, "after %s on %s" % (what, bad))

    # Close in the middle of a message (twice: in a key, in a value).
    for i, partial in enumerate((
            '{"timestamp": {"seconds": 17',
            '{"timestamp": {"seconds": 1700000000, "microseconds": 888001}, '
            '"event": "COLO_EXIT", "data": {"mode": "prim')):
        smark = r.sim.mark()
        r.sim.cmd("raw %s %s" % (bad, partial))
        r.sim.cmd("close %s" % bad)
        r.sim.wait_async(r"^client %s ready" % bad, 15, since=smark)
        h.wait_online(r.sub, [bad], 10)
        c0 = r.sim.count(bad)["connects"]
        after("close mid-message %d" % (i + 1), same_conn=False)
    r.not_published(bad, 1700000000888001, "the half message")

    # 10 MB: a valid message, and a garbage line.
    hwm0 = mem_kib(r.daemon.pid, "VmHWM")
    r.sim.cmd("big %s %d" % (bad, 10 * 1000 * 1000), timeout=60)
    after("a valid 10 MB message")
    r.sim.cmd("garbage %s %d" % (bad, 10 * 1000 * 1000), timeout=60)
    after("10 MB of garbage")

    # 20 MB without a newline; the healthy VM delivers meanwhile.
    errors = []
    done = threading.Event()

    def endless():
        try:
            r.sim.cmd("endless %s %d" % (bad, 20 * 1000 * 1000), timeout=60)
        except BaseException as e:     # reported by the main thread
            errors.append(e)
        done.set()
    th = threading.Thread(target=endless, daemon=True)
    th.start()
    done.wait(60 * h.SLOW)
    check(done.is_set() and not errors, "endless: %r" % errors)
    r.burst(healthy, 20, "right after 20 MB without a newline on %s" % bad)
    hwm1 = mem_kib(r.daemon.pid, "VmHWM")
    h.log("peak RSS %d KiB before the 10/10/20 MB inputs, %d after" %
          (hwm0, hwm1))
    if not h.SANITIZED:
        check(hwm1 - hwm0 < 16 * 1024, "peak RSS grew by %d KiB over "
              "10-20 MB inputs with max_message 1 MiB" % (hwm1 - hwm0))
    r.sim.cmd("raw %s %s" % (bad, CRLF))
    after("20 MB without a newline, then CR LF")

    # Invalid UTF-8: in a string of a COLO_EXIT, and a bare line.
    ts = '"timestamp": {"seconds": 1700000000, "microseconds": %d}'
    r.sim.cmd("raw %s {%s, \"event\": \"COLO_EXIT\", \"data\": {\"mode\": "
              "\"pri\\xff\\xfemary\", \"reason\": \"error\"}}%s" %
              (bad, ts % 888002, CRLF))
    after("invalid UTF-8 inside an event")
    r.sim.cmd("raw %s \\xc3\\x28\\xa0\\xa1\\xf0\\x28\\x8c\\x28%s" %
              (bad, CRLF))
    after("a line of invalid UTF-8")
    r.sim.cmd("raw %s {\"a\": \"\\xed\\xa0\\x80\"}%s" % (bad, CRLF))
    after("an encoded surrogate")
    r.not_published(bad, 1700000000888002, "the event with invalid UTF-8")

    # NUL bytes: between messages, inside a string, inside an object.
    r.sim.cmd("raw %s \\x00\\x00\\x00%s" % (bad, CRLF))
    after("NUL bytes between messages")
    r.sim.cmd("raw %s {%s, \"event\": \"COLO_EXIT\", \"data\": {\"mode\": "
              "\"pri\\x00mary\", \"reason\": \"error\"}}%s" %
              (bad, ts % 888003, CRLF))
    after("a NUL inside an event's string")
    r.sim.cmd("raw %s \\x00{\"timestamp\": \\x00%s" % (bad, CRLF))
    after("NULs inside an object")
    r.not_published(bad, 1700000000888003, "the event with a NUL")

    # Deep nesting.
    r.sim.cmd("deep %s 100000" % bad, timeout=30)
    after("JSON nested 100 000 deep")
    r.sim.cmd("deep %s 65" % bad)
    after("JSON nested 65 deep")
    r.sim.cmd("raw %s {%s, \"event\": \"COLO_EXIT\", \"data\": {\"mode\": "
              "\"primary\", \"reason\": \"error\", \"x\": %s%s}}%s" %
              (bad, ts % 888004, "[" * 70, "]" * 70, CRLF))
    after("an event with a value nested 70 deep")
    r.not_published(bad, 1700000000888004, "the 70-deep event")

    st = r.stats(lambda s: s["vms"][bad]["invalid"] >= 8 and
                 s["vms"][bad]["oversized"] >= 2, 15,
                 "invalid >= 8, oversized >= 2 on %s" % bad)
    h.log("stats of %s: %s" % (bad, st["vms"][bad]))
    check_eq({k: st["vms"][healthy][k] for k in ("invalid", "oversized",
                                                 "reconnects", "timeouts")},
             {"invalid": 0, "oversized": 0, "reconnects": 0, "timeouts": 0},
             "healthy VM's fault counters")
    check_eq(st["vms"][bad]["reconnects"], 2, "reconnects of %s (the two "
             "closes only)" % bad)
    check_eq(r.sub.count(h.event_topic(bad)), r.seq[bad],
             "events published for %s (only the good ones)" % bad)


# ------------------------------------------------- connect/close cycles

def test_connect_close_cycles(ctx):
    warmup, cycles = 100, 1000
    r = Rig(ctx, nvms=2, bridge={"backoff_min_ms": 1, "backoff_max_ms": 20})
    vm, healthy = "vm1", "vm2"
    r.ready([vm, healthy])
    pid = r.daemon.pid

    def cycle(n):
        for _ in range(n):
            smark = r.sim.mark()
            r.sim.cmd("close %s" % vm)
            r.sim.wait_async(r"^client %s ready" % vm, 10, since=smark)

    def settle(what):
        """The VM is reconnected and its state read (stats: ready, and
        the state after the last handshake published); returns (fds,
        rss)."""
        h.wait_online(r.sub, [vm], 10)
        r.stats(lambda s: s["vms"][vm]["ready"] and
                s["totals"]["buffered"] == 0 and
                s["totals"]["inflight"] == 0, 15,
                "%s ready, queue empty (%s)" % (vm, what))
        return fd_count(pid), mem_kib(pid, "VmRSS")

    cycle(warmup)
    fds0, rss0 = settle("after warm-up")
    fdl0 = fd_list(pid)
    h.log("after %d warm-up cycles: %d fds, VmRSS %d KiB" %
          (warmup, fds0, rss0))
    t0 = time.monotonic()
    for i in range(cycles // 100):
        cycle(100)
        r.daemon.check_alive()
        if i == cycles // 200:
            r.burst(healthy, 20, "half-way through the cycles")
    dt = time.monotonic() - t0
    fds1, rss1 = settle("after the cycles")
    h.log("after %d more cycles (%.1fs, %.1f ms each): %d fds, VmRSS %d KiB "
          "(%+d KiB)" % (cycles, dt, dt * 1000 / cycles, fds1, rss1,
                         rss1 - rss0))
    check_eq(fds1, fds0, "daemon's open descriptors after %d connect/close "
             "cycles (before: %s; after: %s)" % (cycles, fdl0, fd_list(pid)))
    if not h.SANITIZED:
        check(rss1 - rss0 < 1024, "VmRSS grew by %d KiB over %d connect/"
              "close cycles" % (rss1 - rss0, cycles))
    r.burst(healthy, 50, "after the cycles")
    r.k[vm] = r.sim.count(vm)["events"]
    r.seq[vm] = r.sub.count(h.event_topic(vm))
    r.event(vm, "after %d cycles" % (warmup + cycles))
    st = r.stats(lambda s: s["vms"][vm]["reconnects"] >= warmup + cycles,
                 10, "reconnects >= %d" % (warmup + cycles))
    check_eq(st["vms"][vm]["timeouts"], 0, "timeouts of the cycled VM")
    check_eq(st["vms"][healthy]["reconnects"], 0, "reconnects of %s" %
             healthy)
    check_eq(r.sim.count(vm)["connects"], 1 + warmup + cycles,
             "connections the simulator accepted for %s" % vm)


if __name__ == "__main__":
    h.main(test_connection_faults, test_stall_after_negotiation,
           test_inband_faults, test_connect_close_cycles)
