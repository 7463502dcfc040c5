#!/usr/bin/python3
"""Remote takeover through the simulator (README "Remote takeover").

Requests are built, signed (HMAC-SHA256 over the canonical string of
src/takeover.h, computed here with hmac/hashlib) and published by the
test's own paho MQTT 5 client; results are read on
<base>/<host>/<vm>/result/takeover (and on MQTT 5 response topics).
Whether QEMU was told to fail over is read from the simulator itself: its
"recv VM x-colo-lost-heartbeat" lines and its `count` (heartbeats=N).

Checked: every refusal reason that needs no QEMU fault (bad_signature for
a wrong key, a truncated and an uppercase signature; stale and future
issued_us; bad_request for malformed JSON and oversized payloads;
disabled; precondition_failed; not_in_colo; not_connected; rate_limited
for two requests at once and for min_interval_s; replay) with no heartbeat
reaching the VM; a request for an unknown VM gets no answer and a log line;
a retained request is never executed; a QoS 1 duplicate is answered with
the first result and executed once; a success (one heartbeat, mode none);
the response topic and correlation data; a bridge restart with a retained
request on the broker triggers nothing; auth = "acl"; qmp2mqtt-ctl's
command line errors and exit statuses.  Real QEMU: test_takeover_qemu.py.
"""
# TIMEOUT = 120

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import threading
import time

import harness as h
from harness import check, check_eq

CTL_BIN = os.path.join(h.BUILD, "qmp2mqtt-ctl")
HB = "x-colo-lost-heartbeat"
STATUS_POLL_S = 1       # bridge.status_interval_s: a QMP barrier per second


# ---------------------------------------------------------------- helpers
# (not in harness.py: a takeover-aware daemon config, signing, an MQTT 5
# client that publishes with properties and records correlation data, a
# wait on the daemon's stderr, qmp2mqtt-ctl runs)

def now_us():
    return int(time.time() * 1000000)


def write_key(ctx, name="takeover.key", key=None):
    """A key file of mode 0600; returns (path, key bytes as the daemon
    uses them: trailing whitespace stripped)."""
    key = key or os.urandom(24).hex()
    path = os.path.join(ctx.dir, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    os.chmod(path, 0o600)
    return path, key.encode()


def canonical(host, vm, rid, issued_us, expect_mode, force=False,
              resp_topic=None, corr=None):
    """The v2 canonical request string (see src/takeover.h); corr is
    bytes (the MQTT 5 Correlation Data), signed as lowercase hex."""
    return "qmp2mqtt-takeover-v2\n%s\n%s\n%s\n%d\n%s\n%s\n%s\n%s" % (
        host, vm, rid, issued_us, expect_mode or "", "1" if force else "0",
        resp_topic or "", (corr or b"").hex())


def sign(key, host, vm, rid, issued_us, expect_mode=None, force=False,
         resp_topic=None, corr=None):
    return hmac.new(key, canonical(host, vm, rid, issued_us, expect_mode,
                                   force, resp_topic, corr).encode(),
                    hashlib.sha256).hexdigest()


def result_canonical(r):
    """The result canonical string v2 (see src/tkresult.h) of the result
    object r: every member but sig, strings as <byte length>:<bytes>,
    null as "-", booleans 1/0, integers in decimal."""
    def st(x):
        if x is None:
            return "-"
        b = x.encode()
        return "%d:%s" % (len(b), x)
    err = r["error"] or {"class": None, "desc": None}
    colo = r["colo"] or {"mode": None, "last_mode": None, "reason": None}
    return "\n".join(["qmp2mqtt-result-v2", str(r["schema"]), st(r["host"]),
                      st(r["vm"]), st(r["id"]), st(r["status"]),
                      st(r["reason"]), st(err["class"]), st(err["desc"]),
                      st(colo["mode"]), st(colo["last_mode"]),
                      st(colo["reason"]), "1" if r["sent"] else "0",
                      "1" if r["authenticated"] else "0", str(r["time_us"])])


def result_sig(key, r):
    """The sig a bridge keyed with key puts into the result r."""
    return hmac.new(key, result_canonical(r).encode(),
                    hashlib.sha256).hexdigest()


_ids = [0]


def new_id(tag="t"):
    _ids[0] += 1
    return "%s-%d-%d-%s" % (tag, os.getpid(), _ids[0], os.urandom(3).hex())


def request(key, vm, rid=None, issued_us=None, expect=None, host=h.HOST,
            sig=True, force=None, resp_topic=None, corr=None):
    """A request object; sig True: correct HMAC (binding force and the
    Response Topic and Correlation Data it will be published with), a
    string: that, None: no sig field (acl auth)."""
    rid = rid or new_id()
    issued_us = now_us() if issued_us is None else issued_us
    o = {"id": rid, "issued_us": issued_us}
    if expect is not None:
        o["expect_mode"] = expect
    if force is not None:
        o["force"] = force
    if sig is True:
        o["sig"] = sign(key, host, vm, rid, issued_us, expect, bool(force),
                        resp_topic, corr)
    elif sig is not None:
        o["sig"] = sig
    return o


def enc(o):
    return json.dumps(o, separators=(",", ":")).encode()


def cmd_topic(vm, host=h.HOST):
    return "%s/%s/%s/cmd/takeover" % (h.BASE, host, vm)


def result_topic(vm, host=h.HOST):
    return "%s/%s/%s/result/takeover" % (h.BASE, host, vm)


DEAD = "deadpri"


def with_dead_peer(ctx, vms):
    """The simulator's VMs are secondaries; the pair rules (README "Pair
    rules") let a secondary take over only once its primary is proven
    gone.  Adds a primary DEAD whose unix socket refuses connections (the
    file of a killed QEMU: bound, then closed, so connect() gives
    ECONNREFUSED) and makes it every VM's peer.  Pair cases of their own:
    test_pair.py, test_pair_qemu.py."""
    import socket
    path = os.path.join(ctx.dir, DEAD + ".qmp")
    if not os.path.exists(path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()
    out = []
    for vm in vms:
        d = dict(vm) if isinstance(vm, dict) else {"name": vm[0],
                                                   "qmp": vm[1]}
        d.setdefault("peer", "%s/%s" % (h.HOST, DEAD))
        out.append(d)
    out.append({"name": DEAD, "qmp": "unix:" + path, "takeover": False})
    return out


def takeover_daemon(ctx, vms, port, takeover, bridge=None, name=None,
                    start=True, mqtt=None):
    """h.Daemon with a `takeover = {...};` group appended (Daemon has no
    parameter for it).  takeover: dict of settings."""
    b = {"status_interval_s": STATUS_POLL_S}
    b.update(bridge or {})
    d = h.Daemon(ctx, vms=vms, port=port, bridge=b, name=name, mqtt=mqtt)
    d.text += "takeover = %s;\n" % h._cfg_value(takeover)
    with open(d.conf, "w") as f:
        f.write(d.text)
    if start:
        d.start()
    return d


def daemon_log_wait(daemon, pred, timeout=10.0, what="log line"):
    """Waits for a line of the daemon's stderr with pred(line) (a bounded
    poll: nothing notifies a write to a file); returns it."""
    for _ in h.deadline_loop(timeout * h.SLOW, 0.05):
        for line in daemon.log_text().splitlines():
            if pred(line):
                return line
    h.fail("daemon %s: no %s within %.1fs; stderr tail:\n%s" %
           (daemon.name, what, timeout * h.SLOW,
            "".join(h.tail_file(daemon.logpath, 30))))


def daemon_lines(daemon, *words):
    return [ln for ln in daemon.log_text().splitlines()
            if all(w in ln for w in words)]


def wait_subscribed(broker, daemon, since=0, timeout=10.0):
    """The broker acknowledged the daemon's command subscription (mosquitto
    logs the filter under "Received SUBSCRIBE from ID", then the SUBACK)."""
    cid = re.escape(daemon.client_id)
    broker.wait_log(r"Received SUBSCRIBE from %s\b" % cid, timeout, since)
    broker.wait_log(r"cmd/takeover", timeout, since)
    return broker.wait_log(r"Sending SUBACK to %s\b" % cid, timeout, since)


class RMsg:
    __slots__ = ("topic", "payload", "retain", "corr", "t")

    def __init__(self, m):
        self.topic = m.topic
        self.payload = bytes(m.payload)
        self.retain = bool(m.retain)
        props = getattr(m, "properties", None)
        self.corr = getattr(props, "CorrelationData", None) if props else None
        self.t = time.monotonic()

    def json(self):
        return json.loads(self.payload)

    def __repr__(self):
        return "RMsg(%s, %r, corr=%r)" % (self.topic, self.payload[:300],
                                          self.corr)


class Client:
    """The operator side: an MQTT 5 paho client that publishes requests
    (QoS 1, waits for the PUBACK; retain, Response Topic, Correlation Data)
    and optionally subscribes to response topics, recording correlation
    data (harness.Subscriber does not keep properties)."""

    _n = 0

    def __init__(self, ctx, port, topics=()):
        import paho.mqtt.client as mqtt
        Client._n += 1
        self.mqtt = mqtt
        self.cond = threading.Condition()
        self.msgs = []
        self.connected = False
        self.subacks = {}
        self.topics = list(topics)
        self.c = mqtt.Client(client_id="e2e-ops-%d-%d" % (os.getpid(),
                                                         Client._n),
                             protocol=mqtt.MQTTv5)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        self.c.connect_async("127.0.0.1", port, keepalive=10,
                             clean_start=True)
        self.c.loop_start()
        ctx.register(self)
        end = time.monotonic() + 10 * h.SLOW
        with self.cond:
            while not (self.connected and all(
                    v is not None for v in self.subacks.values()) and
                    len(self.subacks) == (1 if self.topics else 0)):
                left = end - time.monotonic()
                if left <= 0:
                    h.fail("ops client: not connected/subscribed on port %d"
                           % port)
                self.cond.wait(left)

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        with self.cond:
            self.connected = int(getattr(rc, "value", rc)) == 0
            self.cond.notify_all()
        if self.connected and self.topics:
            rc2, mid = self.c.subscribe([(t, 1) for t in self.topics])
            with self.cond:
                self.subacks.setdefault(mid, None)

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        with self.cond:
            self.subacks[mid] = granted
            self.cond.notify_all()

    def _on_message(self, client, userdata, m):
        with self.cond:
            self.msgs.append(RMsg(m))
            self.cond.notify_all()

    def publish(self, topic, payload, retain=False, response_topic=None,
                corr=None):
        props = None
        if response_topic is not None or corr is not None:
            from paho.mqtt.properties import Properties
            from paho.mqtt.packettypes import PacketTypes
            props = Properties(PacketTypes.PUBLISH)
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if corr is not None:
                props.CorrelationData = corr
        info = self.c.publish(topic, payload, qos=1, retain=retain,
                              properties=props)
        info.wait_for_publish(10 * h.SLOW)
        check(info.is_published(), "PUBACK for %s not received" % topic)

    def on(self, topic):
        with self.cond:
            return [m for m in self.msgs if m.topic == topic]

    def wait_on(self, topic, timeout=10.0):
        end = time.monotonic() + timeout * h.SLOW
        with self.cond:
            while True:
                for m in self.msgs:
                    if m.topic == topic:
                        return m
                left = end - time.monotonic()
                if left <= 0:
                    h.fail("nothing on response topic %s within %.1fs" %
                           (topic, timeout * h.SLOW))
                self.cond.wait(left)

    def close(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()

    def logs(self):
        return []


def run_ctl(args, timeout=40.0):
    """qmp2mqtt-ctl ARGS: (rc, stdout, stderr, seconds)."""
    check(os.access(CTL_BIN, os.X_OK), "not built: %s" % CTL_BIN)
    t0 = time.monotonic()
    try:
        p = subprocess.run([CTL_BIN] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout * h.SLOW)
    except subprocess.TimeoutExpired as e:
        h.fail("qmp2mqtt-ctl %s did not exit within %.0fs; stderr %r" %
               (" ".join(args), timeout * h.SLOW, (e.stderr or b"")[-2000:]))
    dt = time.monotonic() - t0
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    def ind(t):   # indented: the runner greps "...Exit...:" lines
        return "".join("\n    | " + ln for ln in t.strip().splitlines())
    h.log("qmp2mqtt-ctl %s -> %d (%.1fs); stdout:%s\n  stderr:%s" %
          (" ".join(args), p.returncode, dt, ind(out), ind(err)))
    return p.returncode, out, err, dt


class Rig:
    """broker + simulator (every VM secondary) + subscriber + daemon with
    takeover enabled (HMAC) + the ops client."""

    def __init__(self, ctx, nvms, vm_extra=None, takeover=None,
                 states=None, reply_topics=(), bridge=None):
        self.ctx = ctx
        self.broker = ctx.mosquitto()
        self.sim = ctx.sim(nvms, args=("--mode", "secondary"))
        for vm, st in (states or {}).items():
            self.sim.cmd("state %s %s" % (vm, st))
        self.sub = ctx.subscriber(self.broker.port)
        self.keyfile, self.key = write_key(ctx)
        tk = {"enabled": True, "key_file": self.keyfile}
        tk.update(takeover or {})
        vms = []
        for name, addr in self.sim.vms():
            d = {"name": name, "qmp": addr}
            d.update((vm_extra or {}).get(name, {}))
            vms.append(d)
        self.daemon = takeover_daemon(ctx, with_dead_peer(ctx, vms),
                                      self.broker.port, tk, bridge=bridge)
        self.names = [n for n, _ in self.sim.vms()]
        self.sim.wait_ready(nvms, 20)
        h.wait_online(self.sub, self.names, 20)
        wait_subscribed(self.broker, self.daemon)
        self.ops = Client(ctx, self.broker.port, reply_topics)

    # requests and results
    def send(self, vm, obj_or_bytes, host=h.HOST, **kw):
        """Publishes a request; returns the result topic's mark before."""
        payload = obj_or_bytes if isinstance(obj_or_bytes, bytes) else \
            enc(obj_or_bytes)
        mark = self.sub.mark(result_topic(vm, host))
        self.ops.publish(cmd_topic(vm, host), payload, **kw)
        return mark

    def result(self, vm, mark, rid, timeout=10.0):
        """The next result on vm's result topic after mark with this id
        (None: the request had no readable id)."""
        try:
            m = self.sub.wait_for(lambda m: m.json().get("id") == rid,
                                  timeout, topic=result_topic(vm),
                                  since=mark)
        except h.TestFailure:
            got = [x.payload for x in self.sub.on(result_topic(vm))[mark:]]
            h.fail("no result for id %r on %s within %.0fs (results seen: "
                   "%r); daemon log about it: %s" %
                   (rid, result_topic(vm), timeout * h.SLOW, got,
                    daemon_lines(self.daemon, vm)[-8:]))
        check(not m.retain, "result published retained: %r" % m)
        r = m.json()
        check_result_shape(r, vm, rid)
        return r, m

    def heartbeats(self, vm):
        """x-colo-lost-heartbeat commands the VM received, from count and
        from the recv lines (both must agree)."""
        n = self.sim.count(vm)["heartbeats"]
        lines = self.sim.out.count(r"^recv %s %s$" % (re.escape(vm), HB))
        check_eq(lines, n, "simulator recv %s lines vs count of %s" %
                 (HB, vm))
        return n

    def qmp_barrier(self, vm, timeout=5.0):
        """Waits until the simulator has read a fresh query-colo-status of
        the daemon's periodic poll: whatever the daemon sent this VM before
        has been read by the simulator by then."""
        mark = self.sim.mark()
        self.sim.wait_async(r"^recv %s query-colo-status$" % re.escape(vm),
                            timeout + STATUS_POLL_S, since=mark)


def check_result_shape(r, vm, rid):
    check(isinstance(r, dict), "result is not an object: %r" % r)
    for k in ("schema", "id", "host", "vm", "status", "reason", "error",
              "colo", "sent", "time_us"):
        check(k in r, "result lacks %r: %r" % (k, r))
    check_eq(r["schema"], 1, "result schema")
    check_eq(r["id"], rid, "result id")
    check_eq(r["host"], h.HOST, "result host")
    check_eq(r["vm"], vm, "result vm")
    check(isinstance(r["time_us"], int), "result time_us: %r" % r)
    check(isinstance(r["sent"], bool), "result sent: %r" % r)


def expect_refusal(rig, vm, r, reason, status="rejected", what=""):
    check_eq((r["status"], r["reason"]), (status, reason),
             "%s: (status, reason) of the result %r" % (what or reason, r))
    check(r["error"] is not None and isinstance(r["error"], dict),
          "%s: refusal without error object: %r" % (what, r))
    check_eq(r["sent"], False, "%s: result.sent" % what)


def expect_no_heartbeat(rig, vm, before=0, what=""):
    n = rig.heartbeats(vm)
    if n != before:
        h.fail("%s: %s received %s (%d -> %d): the refused request was "
               "executed; daemon log: %s" %
               (what, vm, HB, before, n, daemon_lines(rig.daemon, vm)[-8:]))


def check_logged(rig, vm, rid, reason):
    """README: every refused/accepted request is logged with its id, VM and
    outcome."""
    daemon_log_wait(rig.daemon, lambda ln: rid in ln and vm in ln and
                    reason in ln, 5, "log line with id %s, %s, %s" %
                    (rid, vm, reason))


# ---------------------------------------------------------------- tests

def test_refusals(ctx):
    """Every refusal that needs no QEMU fault; none reaches QEMU.  All cases
    run; the failures are reported together at the end."""
    AUTH, OFF, PRE, NONE, GONE = "vm1", "vm2", "vm3", "vm4", "vm5"
    rig = Rig(ctx, 5, vm_extra={OFF: {"takeover": False}},
              states={NONE: "none secondary request"})
    key = rig.key
    sub = rig.sub
    st = sub.wait_json(h.state_topic(NONE), lambda s: s.get("mode") == "none",
                       10, "state of %s mode none" % NONE)
    check(st.retain, "state not retained")
    failures = []

    def case(what, vm, payload, reason, status="rejected", rid=None,
             extra=None):
        h.log("case %s on %s" % (what, vm))
        try:
            hb0 = rig.heartbeats(vm)
            mark = rig.send(vm, payload)
            r, m = rig.result(vm, mark, rid)
            h.log("  result: %s" % m.payload.decode())
            expect_refusal(rig, vm, r, reason, status, what)
            if extra:
                extra(r)
            expect_no_heartbeat(rig, vm, hb0, what)
            if rid is not None:
                check_logged(rig, vm, rid, reason)
        except h.TestFailure as e:
            h.log("  FAILED: %s" % e)
            failures.append("%s: %s" % (what, e))

    # Wrong key: a correct HMAC under another key.
    other = b"another-key-of-24-bytes!"
    o = request(key, AUTH)
    o["sig"] = sign(other, h.HOST, AUTH, o["id"], o["issued_us"])
    case("wrong key", AUTH, o, "bad_signature", rid=o["id"])
    o = request(key, AUTH)
    o["sig"] = o["sig"][:63]
    case("truncated signature", AUTH, o, "bad_signature", rid=o["id"])
    o = request(key, AUTH)
    o["sig"] = o["sig"].upper()
    check(o["sig"] != o["sig"].lower(), "no hex letter in %s" % o["sig"])
    case("uppercase signature", AUTH, o, "bad_signature", rid=o["id"])
    # A signature bound to another VM (host/vm are in the canonical string).
    o = request(key, AUTH)
    o["sig"] = sign(key, h.HOST, PRE, o["id"], o["issued_us"])
    case("signature of another VM", AUTH, o, "bad_signature", rid=o["id"])
    # Signature over expect_mode: adding it after signing breaks it.
    o = request(key, AUTH)
    o["expect_mode"] = "secondary"
    case("expect_mode added after signing", AUTH, o, "bad_signature",
         rid=o["id"])
    hour = 3600 * 1000000
    o = request(key, AUTH, issued_us=now_us() - hour)
    case("stale (1 h ago)", AUTH, o, "stale", rid=o["id"])
    o = request(key, AUTH, issued_us=now_us() + hour)
    case("future (1 h ahead)", AUTH, o, "stale", rid=o["id"])
    case("malformed JSON", AUTH, b'{"id":"x1","issued_us":', "bad_request")
    case("not an object", AUTH, b'["id"]', "bad_request")
    o = request(key, AUTH)
    o["extra"] = 1
    case("unknown field", AUTH, enc(o), "bad_request", rid=o["id"])
    # Oversized: a valid, signed request padded with JSON whitespace to
    # 5000 bytes (over 4096): only its size is wrong.
    o = request(key, AUTH)
    body = enc(o)
    big = body[:1] + b" " * (5000 - len(body)) + body[1:]
    check_eq(len(big), 5000, "oversized payload length")
    case("oversized (5000 bytes)", AUTH, big, "bad_request")
    # Disabled for this VM (takeover = false; in its entry).
    o = request(key, OFF)
    case("takeover = false", OFF, o, "disabled", rid=o["id"])
    # Precondition: expect primary on a secondary.
    o = request(key, PRE, expect="primary")
    case("precondition", PRE, o, "precondition_failed", rid=o["id"],
         extra=lambda r: check(
             isinstance(r["colo"], dict) and
             r["colo"].get("mode") == "secondary",
             "precondition_failed: colo.mode should show the actual mode "
             "secondary: %r" % r))
    # Not in COLO (simulator state mode none).
    o = request(key, NONE)
    case("not in COLO", NONE, o, "not_in_colo", rid=o["id"])

    # The VM goes away: not_connected.
    amark = sub.mark(h.avail_topic(GONE))
    rig.sim.cmd("unlisten %s" % GONE)
    sub.wait_payload(h.avail_topic(GONE), "offline", 10, since=amark)
    o = request(key, GONE)
    case("VM disconnected", GONE, o, "not_connected", rid=o["id"])

    # Unknown VM on this host: no answer at all, a log line.
    ghost = "vm99"
    o = request(key, ghost)
    mark_all = sub.mark()
    rig.send(ghost, o)
    try:
        daemon_log_wait(rig.daemon, lambda ln: ghost in ln, 5,
                        "log line about the request for %s" % ghost)
        # Barrier: a later refusal's result comes after anything the daemon
        # published for vm99 (one publisher, in order).
        o2 = request(key, AUTH, issued_us=1)
        mk = rig.send(AUTH, o2)
        rig.result(AUTH, mk, o2["id"])
        stray = [m for m in sub.all()[mark_all:] if "/vm99/" in m.topic
                 and m.topic != cmd_topic(ghost)]   # not our own request
        check(not stray, "unknown VM: something was published: %r" % stray)
        # And a short bounded window for a late answer.
        try:
            m = sub.wait_for(lambda m: True, 0.5, topic=result_topic(ghost))
            h.fail("unknown VM: a result was published: %r" % m)
        except h.TestFailure as e:
            if "timeout" not in str(e):
                raise
        # Counted as ignored (README: bridge/stats commands.ignored).
        h.stats_request(sub, rig.daemon, lambda st: st.get(
            "commands", {}).get("ignored") == 1, 10)
    except h.TestFailure as e:
        failures.append("unknown VM: %s" % e)

    # Nothing queued in the daemon's QMP connections reached QEMU late.
    for vm in (AUTH, OFF, PRE, NONE):
        rig.qmp_barrier(vm)
        n = rig.heartbeats(vm)
        if n:
            failures.append("%s received %d %s in total" % (vm, n, HB))
    n = rig.heartbeats(GONE)
    if n:
        failures.append("%s received %d %s in total" % (GONE, n, HB))
    rig.daemon.check_alive()
    if failures:
        h.fail("%d refusal case(s) failed:\n  %s" %
               (len(failures), "\n  ".join(failures)))


def test_missing_signature(ctx):
    """README's table: bad_signature covers an HMAC that is *missing*
    (as well as truncated, not lowercase hex, not matching)."""
    rig = Rig(ctx, 1)
    o = request(rig.key, "vm1", sig=None)
    mark = rig.send("vm1", o)
    r, m = rig.result("vm1", mark, o["id"])
    h.log("result: %s" % m.payload.decode())
    expect_no_heartbeat(rig, "vm1", 0, "missing sig")
    check(r["status"] == "rejected" and r["reason"] != "ok",
          "a request without sig was not refused: %r" % r)
    expect_refusal(rig, "vm1", r, "bad_signature", what="missing sig")


def test_unauthenticated_flood(ctx):
    """A flood of requests that fail authentication is counted in full but
    answered at most 20 times a second, each answer marked
    unauthenticated, and no heartbeat is ever sent; a valid request right
    after the flood still executes and its result is authenticated."""
    rig = Rig(ctx, 1)
    n = 300
    bad_key = b"not-the-bridge-key-0123456789"
    mark = rig.sub.mark(result_topic("vm1"))
    for i in range(n):
        rig.ops.publish(cmd_topic("vm1"),
                        enc(request(bad_key, "vm1", rid="flood-%d" % i)))
    st = h.stats_request(
        rig.sub, rig.daemon,
        lambda s: s["commands"]["by_reason"]["bad_signature"] >= n, 30)
    cmds = st.json()["commands"]
    check_eq(cmds["by_reason"]["bad_signature"], n, "bad_signature count")
    answers = [m.json() for m in rig.sub.on(result_topic("vm1"))[mark:]]
    h.log("%d answers to %d bad requests" % (len(answers), n))
    check(0 < len(answers) < n // 2,
          "%d answers to %d unauthenticated requests (cap: 20 a second)" %
          (len(answers), n))
    check(all(a.get("authenticated") is False for a in answers),
          "answers to bad signatures not marked unauthenticated: %r" %
          [a for a in answers if a.get("authenticated") is not False][:2])
    expect_no_heartbeat(rig, "vm1", 0, "flood")
    o = request(rig.key, "vm1")
    mark = rig.send("vm1", o)
    r, _ = rig.result("vm1", mark, o["id"])
    check_eq((r["status"], r.get("authenticated")), ("ok", True),
             "the valid request after the flood")
    check_eq(rig.heartbeats("vm1"), 1, "heartbeats after the flood")


def test_request_issued_before_start(ctx):
    """The replay cache does not survive a restart: a signed request issued
    before the bridge started is stale even inside the window."""
    rig = Rig(ctx, 1)
    started = None
    for m in rig.sub.on(h.bridge_topic("state")):
        j = m.json()
        if j.get("state") == "online":
            started = j["started_us"]
    check(started is not None, "no bridge/state online seen")
    o = request(rig.key, "vm1", issued_us=started - 1000)
    mark = rig.send("vm1", o)
    r, _ = rig.result("vm1", mark, o["id"])
    expect_refusal(rig, "vm1", r, "stale", what="issued before the start")
    expect_no_heartbeat(rig, "vm1", 0, "issued before the start")


def test_retained_request(ctx):
    """A retained request (retain=True while the bridge is subscribed) is
    never executed: result retained, no heartbeat.  The retained message
    is cleared afterwards."""
    rig = Rig(ctx, 1)
    vm = "vm1"
    o = request(rig.key, vm)
    mark = rig.send(vm, o, retain=True)
    try:
        r, m = rig.result(vm, mark, o["id"])
        h.log("result of the retained request: %s" % m.payload.decode())
        rig.qmp_barrier(vm)
        n = rig.heartbeats(vm)
        if n or r["reason"] != "retained":
            h.fail("retained request: expected status rejected, reason "
                   "retained and no %s; got %s/%s, heartbeats=%d; daemon "
                   "log: %s" % (HB, r["status"], r["reason"], n,
                                daemon_lines(rig.daemon, o["id"])))
        expect_refusal(rig, vm, r, "retained", what="retained request")
    finally:
        # Clear it: an empty retained message deletes it on the broker.
        rig.ops.publish(cmd_topic(vm), b"", retain=True)
    # It is gone: a fresh subscription to the command topic gets nothing
    # retained (barrier: a message published after subscribing arrives).
    probe = Client(ctx, rig.broker.port, (cmd_topic(vm),))
    rig.ops.publish(cmd_topic(vm), b'{"probe":1}')
    first = probe.wait_on(cmd_topic(vm))
    check_eq(first.payload, b'{"probe":1}',
             "first message on the command topic after clearing")


def test_success_duplicate_replay_interval(ctx):
    """A valid request executes once (result ok, colo.mode none, one
    heartbeat, retained state mode none); its QoS 1 duplicate (same
    payload) is answered with the same result and not executed; the same
    id with another payload is a replay; another valid request right after
    is rate_limited (min_interval_s)."""
    rig = Rig(ctx, 2)
    vm, key = "vm1", rig.key
    o = request(key, vm, expect="secondary")
    payload = enc(o)
    mark = rig.send(vm, payload)
    r, m1 = rig.result(vm, mark, o["id"])
    h.log("result: %s" % m1.payload.decode())
    check_eq((r["status"], r["reason"]), ("ok", "ok"), "result of a valid "
             "request: %r" % r)
    check_eq(r["error"], None, "result.error of a success")
    check_eq(r["sent"], True, "result.sent")
    check(isinstance(r["colo"], dict), "result.colo: %r" % r)
    check_eq(r["colo"].get("mode"), "none", "result colo.mode")
    check_eq(r["colo"].get("last_mode"), "secondary", "result colo.last_mode")
    check_eq(rig.heartbeats(vm), 1, "heartbeats of %s after a success" % vm)
    check_logged(rig, vm, o["id"], "accepted")
    st = rig.sub.wait_json(h.state_topic(vm), lambda s: s.get("mode") ==
                           "none" and s.get("last_mode") == "secondary",
                           10, "state of %s mode none" % vm)
    check(st.retain, "state not retained")
    # State is published only when it changed: after the next status poll
    # (a barrier), no two state messages in a row differ only in
    # updated_us.
    rig.qmp_barrier(vm)
    rig.qmp_barrier(vm)
    states = [m.json() for m in rig.sub.on(h.state_topic(vm))]
    for a, b in zip(states, states[1:]):
        a2, b2 = dict(a), dict(b)
        a2.pop("updated_us", None)
        b2.pop("updated_us", None)
        check(a2 != b2, "state published twice unchanged: %r" % b)
    # The simulator's COLO_EXIT (reason request) was published too.
    ev = rig.sub.wait_for(lambda m: True, 10, topic=h.event_topic(vm))
    h.check_event(ev, vm, rig.daemon, mode="secondary", reason="request",
                  seq=1)

    # A signed but stale request reusing the id is refused and must not
    # change what the duplicate below is answered with.
    o_st = request(key, vm, rid=o["id"], issued_us=now_us() - 3600 * 1000000,
                   expect="secondary")
    mark = rig.send(vm, o_st)
    r_st, _ = rig.result(vm, mark, o["id"])
    expect_refusal(rig, vm, r_st, "stale", what="stale reuse of the id")

    # QoS 1 duplicate: same payload again.
    mark = rig.send(vm, payload)
    r2, m2 = rig.result(vm, mark, o["id"])
    h.log("duplicate answered: %s" % m2.payload.decode())
    check_eq(m2.json(), m1.json(), "answer to the duplicate vs the first "
             "result")
    rig.qmp_barrier(vm)
    check_eq(rig.heartbeats(vm), 1, "heartbeats after the duplicate (must "
             "not be executed twice)")

    # Replay: same id, another payload (validly signed).
    o3 = request(key, vm, rid=o["id"], issued_us=o["issued_us"] + 1,
                 expect="secondary")
    mark = rig.send(vm, o3)
    r3, m3 = rig.result(vm, mark, o["id"])
    h.log("replay: %s" % m3.payload.decode())
    expect_refusal(rig, vm, r3, "replay", what="replay")
    expect_no_heartbeat(rig, vm, 1, "replay")

    # min_interval_s (default 10): the VM is back in COLO, a new valid
    # request right after the completed one is refused.
    rig.sim.cmd("state %s secondary none none" % vm)
    o4 = request(key, vm, expect="secondary")
    mark = rig.send(vm, o4)
    r4, m4 = rig.result(vm, mark, o4["id"])
    h.log("second takeover: %s" % m4.payload.decode())
    expect_refusal(rig, vm, r4, "rate_limited", what="min_interval")
    rig.qmp_barrier(vm)
    expect_no_heartbeat(rig, vm, 1, "min_interval")
    # Another VM is not affected by vm1's interval.
    o5 = request(key, "vm2")
    mark = rig.send("vm2", o5)
    r5, _ = rig.result("vm2", mark, o5["id"])
    check_eq((r5["status"], r5["reason"]), ("ok", "ok"), "takeover of vm2")
    check_eq(rig.heartbeats("vm2"), 1, "heartbeats of vm2")


def test_concurrent_requests(ctx):
    """Two requests for one VM at once: the second is rate_limited while
    the first runs (the VM is muted so the first cannot finish before the
    second arrives); the first then succeeds; exactly one heartbeat.
    min_interval_s = 0 so that only the one-at-a-time rule can refuse."""
    rig = Rig(ctx, 1, takeover={"min_interval_s": 0})
    vm, key = "vm1", rig.key
    a, b = request(key, vm), request(key, vm)
    rig.sim.cmd("mute %s on" % vm)
    try:
        mark = rig.send(vm, a)
        rig.send(vm, b)
        rb, mb = rig.result(vm, mark, b["id"])
        h.log("second request: %s" % mb.payload.decode())
        expect_refusal(rig, vm, rb, "rate_limited", what="concurrent")
    finally:
        rig.sim.cmd("mute %s off" % vm)
    ra, ma = rig.result(vm, mark, a["id"])
    h.log("first request: %s" % ma.payload.decode())
    check_eq((ra["status"], ra["reason"]), ("ok", "ok"), "first request")
    check_eq(ra["colo"] and ra["colo"].get("mode"), "none",
             "first request colo.mode")
    rig.qmp_barrier(vm)
    check_eq(rig.heartbeats(vm), 1, "heartbeats after two concurrent "
             "requests")
    check_eq(len([m for m in rig.sub.on(result_topic(vm))
                  if m.json().get("id") == a["id"]]), 1,
             "results for the first request")


REPLY = h.BASE + "/reply/"      # takeover.reply_prefix (default)


def test_response_topic(ctx):
    """MQTT 5 Response Topic + Correlation Data: the result also goes to
    the response topic with the request's correlation data, once the
    request is authenticated (a bad signature gets no answer there).  Both
    are covered by the signature (v2), and the topic must lie under
    takeover.reply_prefix: a signed request re-published with another
    Response Topic, or one pointing elsewhere, gets no answer there."""
    rig = Rig(ctx, 1, reply_topics=(REPLY + "#", "elsewhere/#"))
    vm, key, ops = "vm1", rig.key, rig.ops

    bad = request(key, vm, resp_topic=REPLY + "leak", corr=b"leak")
    bad["sig"] = "0" * 64
    mark = rig.send(vm, bad, response_topic=REPLY + "leak", corr=b"leak")
    r, _ = rig.result(vm, mark, bad["id"])
    expect_refusal(rig, vm, r, "bad_signature", what="bad sig + resp topic")

    # Signed for one Response Topic, sent with another: forged steering.
    st = request(key, vm, resp_topic=REPLY + "mine", corr=b"c1")
    mark = rig.send(vm, st, response_topic=REPLY + "theirs", corr=b"c1")
    r, _ = rig.result(vm, mark, st["id"])
    expect_refusal(rig, vm, r, "bad_signature", what="response topic "
                   "changed after signing")
    st = request(key, vm, resp_topic=REPLY + "mine", corr=b"c1")
    mark = rig.send(vm, st, response_topic=REPLY + "mine", corr=b"c2")
    r, _ = rig.result(vm, mark, st["id"])
    expect_refusal(rig, vm, r, "bad_signature", what="correlation data "
                   "changed after signing")
    # Validly signed, but the topic is outside the reply prefix (e.g. a
    # VM's event topic): refused, nothing published there.
    ev = "elsewhere/hv1/vm2/event/colo_exit"
    st = request(key, vm, resp_topic=ev, corr=b"x")
    mark = rig.send(vm, st, response_topic=ev, corr=b"x")
    r, _ = rig.result(vm, mark, st["id"])
    expect_refusal(rig, vm, r, "bad_request", what="response topic outside "
                   "the reply prefix")

    stale = request(key, vm, issued_us=now_us() - 3600 * 1000000,
                    resp_topic=REPLY + "stale", corr=b"\x00stale\xff\x01")
    corr_s = b"\x00stale\xff\x01"
    mark = rig.send(vm, stale, response_topic=REPLY + "stale", corr=corr_s)
    r, m = rig.result(vm, mark, stale["id"])
    expect_refusal(rig, vm, r, "stale", what="stale + resp topic")
    rm = ops.wait_on(REPLY + "stale")
    check_eq(rm.payload, m.payload, "stale: response-topic payload vs "
             "result topic")
    check_eq(rm.corr, corr_s, "stale: correlation data")

    corr = b"corr-\x01\x02-" + os.urandom(8)
    good = request(key, vm, expect="secondary", resp_topic=REPLY + "ok",
                   corr=corr)
    mark = rig.send(vm, good, response_topic=REPLY + "ok", corr=corr)
    r, m = rig.result(vm, mark, good["id"])
    check_eq((r["status"], r["reason"]), ("ok", "ok"), "valid request")
    rm = ops.wait_on(REPLY + "ok")
    h.log("response topic got %r" % rm)
    check_eq(rm.payload, m.payload, "ok: response-topic payload vs result "
             "topic")
    check_eq(rm.corr, corr, "ok: correlation data")
    check(not rm.retain, "response published retained")
    check_eq(rig.heartbeats(vm), 1, "heartbeats")
    # The refused answers would have come before the two others.
    check_eq([x.topic for x in ops.msgs], [REPLY + "stale", REPLY + "ok"],
             "messages on the response topics")


def test_restart_with_retained_request(ctx):
    """A retained, valid, signed request sitting on the broker while the
    bridge is down is not executed when it comes back."""
    broker = ctx.mosquitto()
    sim = ctx.sim(1, args=("--mode", "secondary"))
    sub = ctx.subscriber(broker.port)
    keyfile, key = write_key(ctx)
    vm = "vm1"
    d = takeover_daemon(ctx, with_dead_peer(ctx, sim.vms()), broker.port,
                        {"enabled": True, "key_file": keyfile})
    sim.wait_ready(1, 20)
    h.wait_online(sub, [vm], 20)
    wait_subscribed(broker, d)
    check_eq(d.stop(), 0, "daemon exit code on SIGTERM")
    sub.wait_payload(h.avail_topic(vm), "offline", 10)

    ops = Client(ctx, broker.port)
    o = request(key, vm, expect="secondary")
    ops.publish(cmd_topic(vm), enc(o), retain=True)
    h.log("retained request %s on the broker; restarting the bridge" %
          o["id"])
    try:
        bmark = broker.mark()
        smark = sim.mark()
        amark = sub.mark(h.avail_topic(vm))
        d.expect_exit = False
        d.start()
        wait_subscribed(broker, d, since=bmark)
        sub.wait_payload(h.avail_topic(vm), "online", 20, since=amark)
        # Barrier 1: a request published after the subscription is
        # answered, so everything the broker had for the bridge before it
        # has been handled.
        rmark = sub.mark(result_topic(vm))
        ops.publish(cmd_topic(vm), b"{not json")
        sub.wait_for(lambda m: m.json().get("reason") == "bad_request", 10,
                     topic=result_topic(vm), since=rmark)
        # Barrier 2: the daemon's next QMP poll has been read by the VM.
        mk = sim.mark()
        sim.wait_async(r"^recv %s query-colo-status$" % vm,
                       5 + STATUS_POLL_S, since=mk)
        # A bounded window after the subscription for anything late.
        try:
            sim.wait_async(r"^recv %s %s$" % (vm, HB), 1.5, since=smark)
            hb = True
        except h.TestFailure:
            hb = False
        n = sim.count(vm)["heartbeats"]
        check(not hb and n == 0, "the retained request was executed after "
              "the restart (heartbeats=%d); daemon log: %s" %
              (n, daemon_lines(d, o["id"])))
        res = [m for m in sub.on(result_topic(vm))
               if m.json().get("id") == o["id"]]
        check(all(m.json().get("status") != "ok" for m in res),
              "the retained request got an ok result: %r" % res)
        # The broker never even sent it to the bridge (retain handling 2).
        sent = [ln for ln in broker.out.lines[bmark:]
                if re.search(r"Sending PUBLISH to %s\b.*cmd/takeover" %
                             re.escape(d.client_id), ln)]
        h.log("broker -> bridge command publishes after restart: %s" % sent)
        check(not [ln for ln in sent if re.search(r"\(d\d, q\d, r1,", ln)],
              "the broker delivered the retained request to the bridge "
              "(retain handling 2 not requested?): %s" % sent)
    finally:
        ops.publish(cmd_topic(vm), b"", retain=True)


def test_acl_auth(ctx):
    """auth = "acl": an unsigned request executes; qmp2mqtt-ctl works with
    no key."""
    broker = ctx.mosquitto()
    sim = ctx.sim(2, args=("--mode", "secondary"))
    sub = ctx.subscriber(broker.port)
    d = takeover_daemon(ctx, with_dead_peer(ctx, sim.vms()), broker.port,
                        {"enabled": True, "auth": "acl"})
    sim.wait_ready(2, 20)
    h.wait_online(sub, ["vm1", "vm2"], 20)
    wait_subscribed(broker, d)
    ops = Client(ctx, broker.port)
    o = request(None, "vm1", expect="secondary", sig=None)
    mark = sub.mark(result_topic("vm1"))
    ops.publish(cmd_topic("vm1"), enc(o))
    m = sub.wait_for(lambda m: m.json().get("id") == o["id"], 10,
                     topic=result_topic("vm1"), since=mark)
    r = m.json()
    h.log("unsigned request: %s" % m.payload.decode())
    check_eq((r["status"], r["reason"]), ("ok", "ok"), "unsigned request "
             "with auth acl")
    check_eq(r["colo"] and r["colo"].get("mode"), "none", "colo.mode")
    check_eq(sim.count("vm1")["heartbeats"], 1, "heartbeats of vm1")

    rc, out, err, _ = run_ctl(["-c", d.conf, "takeover", h.HOST, "vm2",
                               "--expect", "secondary", "--wait", "15"])
    check_eq(rc, 0, "qmp2mqtt-ctl takeover exit status with auth acl "
             "(stderr %r)" % err)
    res = json.loads(out)
    check_eq((res.get("status"), res.get("reason")), ("ok", "ok"),
             "qmp2mqtt-ctl printed result")
    check_eq(res["colo"]["mode"], "none", "colo.mode printed by ctl")
    check_eq(sim.count("vm2")["heartbeats"], 1, "heartbeats of vm2")
    rc, out, err, _ = run_ctl(["-c", d.conf, "status", h.HOST, "vm2"])
    check_eq(rc, 0, "qmp2mqtt-ctl status exit status")
    check_eq(json.loads(out).get("vm"), "vm2", "status printed the state")


def test_ctl_errors(ctx):
    """qmp2mqtt-ctl: --help 0; usage errors 2; no key 2; nobody serving
    the VM: 1 after --wait."""
    broker = ctx.mosquitto()
    keyfile, key = write_key(ctx)
    sock = os.path.join(ctx.dir, "vm1.qmp")   # nothing listens: not needed
    base = h.render_config(
        [("vm1", "unix:" + sock)], {"host": h.HOST},
        {"uri": "tcp://127.0.0.1:%d" % broker.port})
    with_key = os.path.join(ctx.dir, "with-key.conf")
    with open(with_key, "w") as f:
        f.write(base + 'takeover = { enabled = true; key_file = "%s"; };\n'
                % keyfile)
    no_key = os.path.join(ctx.dir, "no-key.conf")
    with open(no_key, "w") as f:
        f.write(base)

    rc, out, err, _ = run_ctl(["--help"])
    check_eq(rc, 0, "--help exit status")
    check("usage" in out.lower(), "--help prints no usage on stdout: %r" %
          out)
    for args, what in (
            ([], "no arguments"),
            (["-c", with_key, "takeover"], "takeover without HOST VM"),
            (["-c", with_key, "takeover", h.HOST], "takeover without VM"),
            (["-c", with_key, "frobnicate", h.HOST, "vm1"],
             "unknown command"),
            (["-c", with_key, "takeover", h.HOST, "vm1", "--expect",
              "tertiary"], "bad --expect"),
            (["-c", with_key, "takeover", h.HOST, "vm1", "--expect"],
             "--expect without value"),
            (["-c", with_key, "takeover", h.HOST, "vm1", "--wait", "0"],
             "bad --wait"),
            (["-c", with_key, "takeover", h.HOST, "vm1", "--bogus"],
             "unknown option"),
            (["-c", with_key, "takeover", h.HOST, "vm+1"], "bad VM name"),
            (["-c", no_key, "takeover", h.HOST, "vm1", "--wait", "2"],
             "config without key"),
            (["-c", os.path.join(ctx.dir, "missing.conf"), "status", h.HOST,
              "vm1"], "missing config file")):
        rc, out, err, dt = run_ctl(args, timeout=10)
        check_eq(rc, 2, "exit status for %s (stderr %r)" % (what, err))
        check(err.strip(), "%s: nothing on stderr" % what)
        check(dt < 5, "%s: took %.1fs (should fail at once)" % (what, dt))
    rc, out, err, _ = run_ctl(["-c", no_key, "takeover", h.HOST, "vm1",
                               "--wait", "2"], timeout=10)
    check("key" in err, "config without key: stderr does not mention the "
          "key: %r" % err)

    # Nobody serves hv1/vm1: no answer within --wait -> 1.
    mark = broker.mark()
    rc, out, err, dt = run_ctl(["-c", with_key, "takeover", h.HOST, "vm1",
                                "--wait", "2"], timeout=15)
    check_eq(rc, 1, "exit status with no bridge serving the VM (stderr %r)"
             % err)
    check(1.5 <= dt < 8, "ctl returned after %.1fs with --wait 2" % dt)
    check(err.strip(), "no message on stderr when no result came")
    check_eq(out.strip(), "", "stdout when no result came")
    # It did publish a request (and subscribed first).
    broker.wait_log(r"Received PUBLISH from qmp2mqtt-ctl-\d+.*cmd/takeover",
                    5, since=mark)
    rc, out, err, dt = run_ctl(["-c", with_key, "status", h.HOST, "vm1",
                                "--wait", "1"], timeout=15)
    check_eq(rc, 1, "status with no retained state (stderr %r)" % err)


def test_ctl_key_option(ctx):
    """The daemon's key given to it as a systemd credential, which only it
    can read: qmp2mqtt-ctl reads the daemon's configuration all the same,
    signs with --key FILE, and needs no key for status."""
    broker = ctx.mosquitto()
    sim = ctx.sim(1, args=("--mode", "secondary"))
    sub = ctx.subscriber(broker.port)
    keyfile, _ = write_key(ctx)
    d = takeover_daemon(ctx, with_dead_peer(ctx, sim.vms()), broker.port,
                        {"enabled": True, "key_file": keyfile})
    sim.wait_ready(1, 20)
    h.wait_online(sub, ["vm1"], 20)
    wait_subscribed(broker, d)
    cred = os.path.join(ctx.dir, "credentials", "takeover.key")  # absent
    check(keyfile in d.text, "the daemon's config names its key file")
    conf = os.path.join(ctx.dir, "ctl-view.conf")
    with open(conf, "w") as f:
        f.write(d.text.replace(keyfile, cred))

    rc, out, err, _ = run_ctl(["-c", conf, "status", h.HOST, "vm1"])
    check_eq(rc, 0, "status with an unreadable key_file (stderr %r)" % err)
    check_eq(json.loads(out).get("vm"), "vm1", "status printed the state")
    rc, out, err, _ = run_ctl(["-c", conf, "takeover", h.HOST, "vm1",
                               "--wait", "5"], timeout=15)
    check_eq(rc, 2, "takeover without --key (stderr %r)" % err)
    check("takeover.key_file" in err and cred in err,
          "the error names the key file: %r" % err)
    rc, out, err, _ = run_ctl(["-c", conf, "--key", keyfile, "status",
                               h.HOST, "vm1"], timeout=15)
    check_eq(rc, 2, "--key with status (stderr %r)" % err)

    # A key that is not the bridge's: the request is refused, and the
    # refusal, signed with the bridge's key, is not believed either.
    other, _ = write_key(ctx, "other.key")
    rc, out, err, _ = run_ctl(["-c", conf, "--key", other, "takeover",
                               h.HOST, "vm1", "--wait", "4"], timeout=15)
    check_eq(rc, 1, "takeover signed with another key (stderr %r)" % err)
    check("bad signature" in err, "the unverifiable result named: %r" % err)
    check_eq(sim.count("vm1")["heartbeats"], 0, "heartbeats after the "
             "refused request")

    rc, out, err, _ = run_ctl(["-c", conf, "--key", keyfile, "takeover",
                               h.HOST, "vm1", "--expect", "secondary",
                               "--wait", "15"], timeout=25)
    check_eq(rc, 0, "takeover with --key (stderr %r)" % err)
    res = json.loads(out)
    check_eq((res.get("status"), res.get("reason")), ("ok", "ok"),
             "the result ctl printed")
    check_eq(sim.count("vm1")["heartbeats"], 1, "heartbeats of vm1")


def test_interval_across_address_change(ctx):
    """min_interval_s counts from the VM's last heartbeat also when a
    reload moved the VM to another QMP address (the VM is set up anew):
    the next request within the interval is rate_limited."""
    broker = ctx.mosquitto()
    sim = ctx.sim(2, args=("--mode", "secondary"))
    sub = ctx.subscriber(broker.port)
    keyfile, key = write_key(ctx)
    a = dict(sim.vms())
    tk = {"enabled": True, "key_file": keyfile, "min_interval_s": 600}
    d = takeover_daemon(ctx, with_dead_peer(ctx, [("vm1", a["vm1"])]),
                        broker.port, tk)
    sim.wait_ready(1, 20)
    h.wait_online(sub, ["vm1"], 20)
    wait_subscribed(broker, d)
    ops = Client(ctx, broker.port)

    def ask(what):
        r = request(key, "vm1", expect="secondary")
        mark = sub.mark(result_topic("vm1"))
        ops.publish(cmd_topic("vm1"), enc(r))
        m = sub.wait_for(lambda m: m.json().get("id") == r["id"], 15,
                         topic=result_topic("vm1"), since=mark, what=what)
        return m.json()
    res = ask("the first takeover")
    check_eq((res["status"], res["reason"]), ("ok", "ok"), "first takeover")
    # vm1 moves to the other socket (a QEMU still in COLO there).
    text = d.text.replace(a["vm1"], a["vm2"])
    check(text != d.text, "the address is in the configuration")
    with open(d.conf, "w") as f:
        f.write(text)
    mark = len(d.log_text().splitlines())
    smark = sub.mark(h.state_topic("vm1"))
    d.signal(signal.SIGHUP)
    # The bridge's own word that vm1 is back (the simulator's "ready" line
    # comes before the bridge has read the reply).
    sub.wait_json(h.state_topic("vm1"), lambda s: s["mode"] == "secondary"
                  and s["qmp"] == "connected", 15, "vm1 at its new address",
                  since=smark)
    check(any("QMP address now" in ln for ln in
              d.log_text().splitlines()[mark:]), "vm1 reconnected")
    res = ask("the second takeover")
    check_eq((res["status"], res["reason"]), ("rejected", "rate_limited"),
             "a takeover within min_interval_s after the move")
    check_eq(sim.count("vm2")["heartbeats"], 0, "heartbeats at the new "
             "address")


if __name__ == "__main__":
    h.main(test_refusals, test_missing_signature, test_retained_request,
           test_success_duplicate_replay_interval, test_concurrent_requests,
           test_response_topic, test_restart_with_retained_request,
           test_acl_auth, test_ctl_errors, test_ctl_key_option,
           test_interval_across_address_change,
           test_unauthenticated_flood, test_request_issued_before_start)
