#!/usr/bin/python3
"""The daemon under valgrind (memcheck) through an end-to-end scenario.

    valgrind --leak-check=full --show-leak-kinds=definite,indirect
             --errors-for-leak-kinds=definite,indirect --error-exitcode=99
             --track-fds=no qmp2mqtt -c CONF -v

Scenario (state_dir and HMAC takeover on, so the spool, the per-VM state
files and the takeover code run too): 3 simulated VMs come online; bursts
of events; garbage, an oversized message and deep nesting on one VM; the
broker is restarted (the bridge reconnects, resubscribes, delivers what
came meanwhile); a QMP reconnect; a missed COLO exit reconciled on a QMP
reconnect; takeover requests refused (bad signature, precondition failed)
and one executed; SIGUSR1; then SIGTERM.  Asserted: everything arrives as
in the other tests, the daemon exits 0 (valgrind's error exit code is 99)
and valgrind reports "ERROR SUMMARY: 0 errors" (memory errors and
definitely/indirectly lost blocks; "possibly lost" blocks of Paho's
threads do not count).

Skipped (exit 77) when valgrind is not installed or the build is the
sanitizer build (ASan and valgrind do not mix).
"""
# TIMEOUT = 300

import hashlib
import hmac
import json
import os
import re
import signal
import time

import harness as h
from harness import check, check_eq

VALGRIND = os.environ.get("VALGRIND", "valgrind")
VG_SLOW = 10.0         # generous waits: everything runs ~20x slower
VG_OPTS = ["--leak-check=full", "--show-leak-kinds=definite,indirect",
           "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99",
           "--track-fds=no", "--num-callers=30"]


class ValgrindDaemon(h.Daemon):
    """h.Daemon started under valgrind (the process is the daemon itself:
    signals reach it); valgrind's report goes to its own file."""

    def start(self):
        self.vglog = os.path.join(self.dir, "valgrind.log")
        argv = [VALGRIND] + VG_OPTS + ["--log-file=" + self.vglog,
                                       h.DAEMON_BIN, "-c", self.conf, "-v"]
        self.proc = h.Proc(self.name, argv, self.logpath, cwd=self.dir)
        h.log("%s started under valgrind (pid %d)" %
              (self.name, self.proc.pid))
        return self

    def logs(self):
        return [(self.name, self.logpath), ("valgrind", self.vglog)]


def write_key(ctx):
    path = os.path.join(ctx.dir, "takeover.key")
    key = os.urandom(24).hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return path, key.encode()


def signed(key, vm, rid, expect=None, bad=False, force=False,
           resp_topic=None, corr=None):
    """A request signed with the v2 canonical string (src/takeover.h);
    force is put in the request too; resp_topic and corr (bytes) are only
    signed: the publisher must send them as MQTT 5 properties."""
    issued = int(time.time() * 1e6)
    canon = "qmp2mqtt-takeover-v2\n%s\n%s\n%s\n%d\n%s\n%s\n%s\n%s" % (
        h.HOST, vm, rid, issued, expect or "", "1" if force else "0",
        resp_topic or "", (corr or b"").hex())
    sig = hmac.new(key, canon.encode(), hashlib.sha256).hexdigest()
    if bad:
        sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    o = {"id": rid, "issued_us": issued, "sig": sig}
    if expect:
        o["expect_mode"] = expect
    if force:
        o["force"] = True
    return json.dumps(o, separators=(",", ":")).encode()


class Ops:
    """A plain paho publisher for takeover requests (QoS 1, waits for the
    PUBACK)."""

    def __init__(self, ctx, port):
        import paho.mqtt.client as mqtt
        self.c = mqtt.Client(client_id="vg-ops-%d" % os.getpid(),
                             protocol=mqtt.MQTTv5)
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        ctx.register(self)

    def publish(self, topic, payload):
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(30)
        check(info.is_published(), "no PUBACK for %s" % topic)

    def close(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()

    def logs(self):
        return []


def wait_subscribed(broker, daemon, since, timeout):
    cid = re.escape(daemon.client_id)
    broker.wait_log(r"Received SUBSCRIBE from %s\b" % cid, timeout, since)
    return broker.wait_log(r"Sending SUBACK to %s\b" % cid, timeout, since)


def test_valgrind(ctx):
    if not h.which(VALGRIND):
        raise h.Skip("valgrind not installed")
    if h.SANITIZED:
        raise h.Skip("sanitizer build: valgrind does not run ASan binaries")
    t_begin = time.monotonic()
    broker = ctx.mosquitto(persistence=True)
    sim = ctx.sim(4)
    names = [sim.vm(i) for i in (1, 2, 3)]     # vm4: for reconciliation
    # A persistent session: what the bridge delivers right after the
    # broker restart waits for the subscriber.
    sub = h.Subscriber(ctx, broker.port, session=True,
                       client_id="vg-sub-%d" % os.getpid()).start()
    keyfile, key = write_key(ctx)
    # vm1 follows a remote peer (the pair code runs; nobody publishes
    # it, so only a forced takeover passes the pair rules).
    vms = [{"name": n, "qmp": a} for n, a in sim.vms()]
    vms[0]["peer"] = "hv2/remote"
    d = ValgrindDaemon(ctx, vms=vms, port=broker.port,
                       bridge={"state_dir": ctx.subdir("state"),
                               "status_interval_s": 2,
                               "greeting_timeout_ms": 20000,
                               "command_timeout_ms": 20000},
                       mqtt={"keepalive": 30})
    d.text += ('takeover = { enabled = true; key_file = "%s"; '
               'min_interval_s = 1; timeout_s = 30; };\n' % keyfile)
    with open(d.conf, "w") as f:
        f.write(d.text)
    bmark = broker.mark()
    d.start()
    sim.wait_ready(4, timeout=60)
    h.wait_online(sub, names + ["vm4"], 60)
    wait_subscribed(broker, d, bmark, 60)
    h.log("online under valgrind after %.1fs" % (time.monotonic() - t_begin))
    k = {n: 0 for n in names}

    def burst(n, what, sel="vm1-vm3"):
        vms = names if sel == "vm1-vm3" else [sel]
        marks = {vm: sub.mark(h.event_topic(vm)) for vm in vms}
        sim.cmd("burst %s %d" % (sel, n), timeout=60)
        for vm in vms:
            try:
                sub.wait(lambda s, vm=vm: len(s.by_topic.get(
                    h.event_topic(vm), [])) >= marks[vm] + n, VG_SLOW * 3,
                    "burst on %s" % vm)
            except h.TestFailure:
                h.fail("%s: %d of %d events of %s published" %
                       (what, sub.count(h.event_topic(vm)) - marks[vm], n,
                        vm))
            got = [h.sim_k(m.json())
                   for m in sub.on(h.event_topic(vm))[marks[vm]:]]
            check_eq(got, list(range(k[vm] + 1, k[vm] + n + 1)),
                     "%s: k of %s" % (what, vm))
            k[vm] += n

    burst(20, "first burst")

    # In-band faults on vm1.
    sim.cmd("garbage vm1 5000")
    sim.cmd("big vm1 %d" % (2 * 1024 * 1024), timeout=60)
    sim.cmd("deep vm1 1000")
    sim.cmd("raw vm1 {\"event\": oops}\\r\\n")
    burst(5, "after garbage/oversized/deep input on vm1")

    # Broker restart: events meanwhile are buffered, then delivered.
    broker.stop()
    sim.cmd("burst vm1-vm3 10")
    for vm in names:
        k[vm] += 10
    broker.start()
    sub.wait_connected(30)
    check(sub.session_present, "persistent session lost by the broker")
    wait_subscribed(broker, d, 0, VG_SLOW * 3)    # in the new log

    def all_k(s):
        for vm in names:
            got = {h.sim_k(m.json())
                   for m in s.by_topic.get(h.event_topic(vm), [])}
            if len(got) < k[vm]:
                return False
        return True
    sub.wait(all_k, VG_SLOW * 3, "events buffered across the broker restart")
    burst(5, "after the broker restart")

    # A QMP reconnect.
    smark = sim.mark()
    sim.cmd("close vm2")
    sim.wait_async(r"^client vm2 ready", VG_SLOW * 3, since=smark)
    h.wait_online(sub, ["vm2"], VG_SLOW * 3)
    burst(5, "after vm2's QMP reconnect", sel="vm2")

    # A missed exit (vm4 never sent one), reconciled on a reconnect.
    amark = sub.mark(h.avail_topic("vm4"))
    sim.cmd("unlisten vm4")
    sub.wait_payload(h.avail_topic("vm4"), "offline", VG_SLOW * 3,
                     since=amark)
    sim.cmd("state vm4 none primary error")
    smark = sim.mark()
    sim.cmd("listen vm4")
    sim.wait_async(r"^client vm4 ready", VG_SLOW * 3, since=smark)
    m = sub.wait_for(lambda m: True, VG_SLOW * 3, topic=h.event_topic("vm4"),
                     what="reconciled exit of vm4")
    check_eq(m.json().get("reconciled"), True, "vm4's exit reconciled")

    # Takeover: refused twice, executed once.
    ops = Ops(ctx, broker.port)
    rt = "%s/%s/vm1/result/takeover" % (h.BASE, h.HOST)
    ct = "%s/%s/vm1/cmd/takeover" % (h.BASE, h.HOST)
    for rid, payload, reason in (
            ("vg-bad", signed(key, "vm1", "vg-bad", bad=True),
             "bad_signature"),
            ("vg-pre", signed(key, "vm1", "vg-pre", expect="secondary"),
             "precondition_failed"),
            ("vg-unknown", signed(key, "vm1", "vg-unknown",
                                  expect="primary"), "peer_unknown"),
            ("vg-ok", signed(key, "vm1", "vg-ok", expect="primary",
                             force=True), "ok")):
        mark = sub.mark(rt)
        ops.publish(ct, payload)
        r = sub.wait_json(rt, lambda o, rid=rid: o.get("id") == rid,
                          VG_SLOW * 3, "takeover result %s" % rid,
                          since=mark)
        check_eq(r.json().get("reason"), reason, "takeover %s reason" % rid)
    h.stats_request(sub, d, lambda s: s["commands"]["refused"] >= 2 and
                    s["commands"]["ok"] >= 1, VG_SLOW * 3)
    d.check_alive()

    # A live reload that removes vm3 and changes vm2's peer, then an
    # invalid one: the replaced configuration and the retired VM are freed.
    amark = sub.mark(h.avail_topic("vm3"))
    with open(d.conf) as f:
        text = f.read()
    lines = [ln for ln in text.splitlines() if '"vm3"' not in ln]
    new = "\n".join(lines).replace('name = "vm2";',
                                   'name = "vm2"; peer = "hv7/x";')
    new = new.replace("},\n);", "}\n);")
    with open(d.conf, "w") as f:
        f.write(new + "\n")
    d.signal(signal.SIGHUP)
    sub.wait_payload(h.avail_topic("vm3"), "offline", VG_SLOW * 3,
                     since=amark)
    with open(d.conf, "w") as f:
        f.write(new + "\nbogus = 1;\n")
    smark = sub.mark(h.bridge_topic("state"))
    d.signal(signal.SIGHUP)
    sub.wait_json(h.bridge_topic("state"), lambda o: o.get("config_error"),
                  VG_SLOW * 3, "config_error after an invalid reload",
                  since=smark)

    h.log("scenario done after %.1fs; SIGTERM" % (time.monotonic() - t_begin))
    rc = d.stop(timeout=120)
    vg = open(d.vglog, encoding="utf-8", errors="replace").read()
    summ = [ln for ln in vg.splitlines() if "ERROR SUMMARY" in ln or
            "definitely lost" in ln or "indirectly lost" in ln or
            "possibly lost" in ln or "still reachable" in ln]
    h.log("valgrind:\n  " + "\n  ".join(summ))
    errs = re.search(r"ERROR SUMMARY: (\d+) errors", vg)
    check(errs is not None, "no ERROR SUMMARY in %s (valgrind did not "
          "finish?)" % d.vglog)
    if errs.group(1) != "0" or rc != 0:
        # The first reports, for the failure message.
        blocks = re.split(r"\n==\d+== \n", vg)
        first = [b for b in blocks if re.search(
            r"Invalid|uninitialised|definitely lost in|indirectly lost in|"
            r"Mismatched|overlap|unaddressable", b)][:3]
        h.fail("valgrind: exit status %s (99 = errors), %s errors; first "
               "reports:\n%s" % (rc, errs.group(1), "\n\n".join(first)))
    check_eq(rc, 0, "exit status under valgrind")
    check_eq(errs.group(1), "0", "valgrind error count")


if __name__ == "__main__":
    h.main(test_valgrind)
