#!/usr/bin/python3
"""The hardened command path (README "Safety rules", "Safe fleet set-up").

Against the simulator (secondaries whose primary is proven gone, as in
test_takeover.py), each case counting what must stay quiet:
  - a validly signed but stale request replayed 2 000 times, and 2 000
    duplicates of an executed one: answers capped (20 a second), never
    spooled (spool.log stays small), nothing on the VM's event topic, and
    a legitimate takeover right after still executes;
  - a Response Topic pointing at a VM's event topic: refused, nothing
    published there;
  - qmp2mqtt-ctl does not believe an unsigned "ok" with its id (a third
    party answering first): it says so and exits 1 when the bridge
    refused;
  - nor a real, signed result whose "authenticated" was flipped (the
    bridge's refusal of a forged request with ctl's id, made to pass for
    the answer to ctl's own request): the result signature v2 covers
    every member;
  - a request dated 20 s ahead executes once, and after kill -9 and a
    restart (replay store in state_dir) the same payload is refused;
    without state_dir such a request is stale;
  - 500 requests for an unknown VM, and 1 000 lines of garbage from a
    QMP peer: counted, logged a few times with a summary line;
  - qmp2mqtt-ctl genkey: a 0600 key the daemon accepts; a short key, a
    group-readable one, a FIFO and a symlink are refused at start with a
    clear message;
  - acl auth without identity and MQTT 3.1.1 with takeover on: warnings
    from -n, at start, and in bridge/stats.
"""
# TIMEOUT = 150

import hashlib
import hmac
import os
import stat
import subprocess
import threading
import time

import harness as h
from harness import check, check_eq
from test_takeover import (CTL_BIN, REPLY, Client, Rig, cmd_topic, enc,
                           now_us, request, result_sig, result_topic,
                           run_ctl,
                           takeover_daemon, wait_subscribed,
                           with_dead_peer, write_key)

DAEMON_BIN = os.path.join(h.BUILD, "qmp2mqtt")


def answers(sub, vm, mark, rid):
    return [m for m in sub.on(result_topic(vm))[mark:]
            if m.json().get("id") == rid]


def spool_size(state):
    p = os.path.join(state, "spool.log")
    return os.path.getsize(p) if os.path.exists(p) else 0


def test_replayed_signed_request(ctx):
    state = ctx.subdir("state")
    rig = Rig(ctx, 2, bridge={"state_dir": state},
              reply_topics=(REPLY + "#",))
    vm, key, sub = "vm1", rig.key, rig.sub
    n = 2000
    # A validly signed request, an hour old, with its own Response Topic.
    old = request(key, vm, issued_us=now_us() - 3600 * 1000000,
                  resp_topic=REPLY + "old", corr=b"c")
    ev_topic = h.event_topic("vm2")
    emark = sub.mark(ev_topic)
    mark = sub.mark(result_topic(vm))
    size0 = spool_size(state)
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    own = Properties(PacketTypes.PUBLISH)
    own.ResponseTopic = REPLY + "old"
    own.CorrelationData = b"c"
    for _ in range(n):
        rig.ops.c.publish(cmd_topic(vm), enc(old), qos=0, properties=own)
    # The same one steered at another VM's event topic: no longer signed.
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = ev_topic
    props.CorrelationData = b"c"
    for _ in range(200):
        rig.ops.c.publish(cmd_topic(vm), enc(old), qos=0, properties=props)
    st = h.stats_until(sub, rig.daemon, lambda s: s["commands"]["by_reason"]
                       ["stale"] + s["commands"]["by_reason"]
                       ["bad_signature"] >= n + 200, 30, "all counted")
    by = st["commands"]["by_reason"]
    check_eq((by["stale"], by["bad_signature"]), (n, 200),
             "stale and bad_signature counts")
    got = answers(sub, vm, mark, old["id"])
    h.log("%d answers to %d replays; unanswered %d" %
          (len(got), n + 200, st["commands"]["unanswered"]))
    check(0 < len(got) < 400, "answers to %d replays: %d (cap 20 a second)"
          % (n + 200, len(got)))
    check(st["commands"]["unanswered"] >= n + 200 - len(got),
          "unanswered count: %r" % st["commands"])
    check_eq(sub.on(ev_topic)[emark:], [], "messages on %s" % ev_topic)
    check(len(rig.ops.on(REPLY + "old")) < 400, "answers on the response "
          "topic: %d" % len(rig.ops.on(REPLY + "old")))
    check(spool_size(state) - size0 < 64 * 1024, "spool.log grew by %d "
          "bytes" % (spool_size(state) - size0))

    # A legitimate request right after is executed.
    o = request(key, vm)
    m = rig.send(vm, o)
    r, _ = rig.result(vm, m, o["id"], timeout=10)
    check_eq((r["status"], r["reason"]), ("ok", "ok"), "legitimate request")
    # Its duplicates, 2 000 of them: capped too, never executed again.
    mark = sub.mark(result_topic(vm))
    size0 = spool_size(state)
    for _ in range(n):
        rig.ops.c.publish(cmd_topic(vm), enc(o), qos=0)
    st = h.stats_until(sub, rig.daemon, lambda s: s["commands"]["by_reason"]
                       .get("replay", 0) + len(answers(sub, vm, mark,
                                                       o["id"])) >= n
                       or s["commands"]["unanswered"] >= 2 * n, 30,
                       "duplicates handled")
    got = answers(sub, vm, mark, o["id"])
    check(len(got) < 400, "answers to %d duplicates: %d" % (n, len(got)))
    check(all(g.json() == r for g in got), "duplicate answered with "
          "another result")
    check_eq(rig.heartbeats(vm), 1, "heartbeats after duplicates")
    check(spool_size(state) - size0 < 64 * 1024, "spool.log grew by %d "
          "bytes" % (spool_size(state) - size0))


def test_ctl_ignores_forged_result(ctx):
    """A third party reads ctl's request id off the command topic and
    answers "ok" first (the VM is muted, so the bridge's own answer waits
    for it); ctl ignores the unsigned forgery and prints the bridge's
    refusal."""
    rig = Rig(ctx, 1)
    forger = Client(ctx, rig.broker.port, (cmd_topic("vm1"),))
    res = {}

    def ctl():
        # vm1 is a secondary: --expect primary is refused (precondition).
        res["ctl"] = run_ctl(["-c", rig.daemon.conf, "takeover", h.HOST,
                              "vm1", "--expect", "primary", "--wait", "15"])
    rig.sim.cmd("mute vm1 on")
    t = threading.Thread(target=ctl, daemon=True)
    t.start()
    try:
        m = forger.wait_on(cmd_topic("vm1"), 20)
        rid = m.json()["id"]
        mark = rig.sub.mark(result_topic("vm1"))
        forger.publish(result_topic("vm1"), enc(
            {"schema": 1, "id": rid, "host": h.HOST, "vm": "vm1",
             "status": "ok", "reason": "ok", "error": None, "colo": None,
             "sent": True, "authenticated": True, "time_us": now_us()}))
        rig.sub.wait_for(lambda m: m.json().get("id") == rid, 10,
                         topic=result_topic("vm1"), since=mark)
    finally:
        rig.sim.cmd("mute vm1 off")
    t.join(30 * h.SLOW)
    check("ctl" in res, "qmp2mqtt-ctl did not finish")
    rc, out, err, _ = res["ctl"]
    check("ignoring an unsigned result" in err, "ctl did not say it "
          "ignored the forgery: %r" % err)
    check_eq(rc, 1, "ctl exit status (the bridge refused)")
    check('"precondition_failed"' in out, "ctl printed %r" % out)
    check_eq(rig.heartbeats("vm1"), 0, "heartbeats")


def test_ctl_refuses_flipped_authenticated(ctx):
    """A third party reads ctl's request id off the command topic, sends
    a request of its own with that id (bad signature), takes the bridge's
    real, signed refusal of it ("authenticated": false) and re-publishes
    it with "authenticated": true, twelve times, before the bridge's
    answer to ctl's request (the VM is muted until then).  Under result signature v1 that
    passed for the answer to ctl's request (ctl would have printed
    bad_signature and exited 1 while its takeover went on); now ctl says
    the signature is bad (ten lines, then a count), notes the genuine
    refusal, and prints the bridge's answer to its own request.  An "ok"
    signed with the key as an older bridge would (result signature v1) is
    refused too, as such."""
    rig = Rig(ctx, 1)
    forger = Client(ctx, rig.broker.port, (cmd_topic("vm1"),))
    res = {}

    def ctl():
        # vm1 is a secondary: --expect primary is refused (precondition).
        res["ctl"] = run_ctl(["-c", rig.daemon.conf, "takeover", h.HOST,
                              "vm1", "--expect", "primary", "--wait", "15"])
    rig.sim.cmd("mute vm1 on")
    t = threading.Thread(target=ctl, daemon=True)
    t.start()
    try:
        m = forger.wait_on(cmd_topic("vm1"), 20)
        rid = m.json()["id"]
        mark = rig.sub.mark(result_topic("vm1"))
        forger.publish(cmd_topic("vm1"), enc(
            {"id": rid, "issued_us": now_us(), "sig": "0" * 64}))
        real = rig.sub.wait_for(
            lambda m: m.json().get("id") == rid and
            m.json().get("reason") == "bad_signature", 10,
            topic=result_topic("vm1"), since=mark)
        r = real.json()
        check_eq((r["status"], r["authenticated"], r.get("sig_version")),
                 ("rejected", False, 2), "the bridge's refusal")
        # Signed as README says: every member (checked independently).
        check_eq(r["sig"], result_sig(rig.key, r), "sig of the refusal")
        flipped = real.payload.replace(b'"authenticated":false',
                                       b'"authenticated":true')
        check(flipped != real.payload, "nothing flipped in %r" %
              real.payload)
        # An "ok" signed as a bridge older than this change would (v1,
        # with the real key): not believed either.
        v1 = dict(r, status="ok", reason="ok", error=None,
                  authenticated=True, time_us=now_us())
        del v1["sig_version"]
        v1["sig"] = hmac.new(rig.key, (
            "qmp2mqtt-result-v1\n%s\nvm1\n%s\nok\nok\n0\n%d" %
            (h.HOST, rid, v1["time_us"])).encode(),
            hashlib.sha256).hexdigest()
        # Then the flipped one twelve times: ctl notes ten lines in all,
        # then only counts.
        mark = rig.sub.mark(result_topic("vm1"))
        forger.publish(result_topic("vm1"), enc(v1))
        for _ in range(12):
            forger.publish(result_topic("vm1"), flipped)
        seen = []
        rig.sub.wait_for(lambda m: m.payload == flipped and
                         (seen.append(m) or len(seen) == 12), 10,
                         topic=result_topic("vm1"), since=mark)
    finally:
        rig.sim.cmd("mute vm1 off")
    t.join(30 * h.SLOW)
    check("ctl" in res, "qmp2mqtt-ctl did not finish")
    rc, out, err, _ = res["ctl"]
    check("ignoring the result for id %s: signed by a bridge older than "
          "this client" % rid in err, "ctl did not refuse the v1 result: %r"
          % err)
    check_eq(err.count("ignoring a result with a bad signature for id %s: "
                       "signature does not match" % rid), 9,
             "flipped results noted by ctl: %r" % err)
    check("3 more results for id %s ignored (not shown)" % rid in err,
          "ctl did not count the rest: %r" % err)
    check("refused an unattributable request with this id (bad_signature)"
          in err, "ctl did not note the genuine refusal: %r" % err)
    check_eq(rc, 1, "ctl exit status (the bridge refused)")
    check('"precondition_failed"' in out and '"bad_signature"' not in out,
          "ctl printed %r" % out)
    check_eq(rig.heartbeats("vm1"), 0, "heartbeats")


def test_future_request_across_restart(ctx):
    state = ctx.subdir("state")
    rig = Rig(ctx, 1, bridge={"state_dir": state})
    vm, key = "vm1", rig.key
    o = request(key, vm, issued_us=now_us() + 20 * 1000000)
    m = rig.send(vm, o)
    r, _ = rig.result(vm, m, o["id"])
    check_eq((r["status"], r["reason"]), ("ok", "ok"), "future-dated (20 s)")
    check_eq(rig.heartbeats(vm), 1, "heartbeats")
    rig.daemon.kill9()
    rig.sim.cmd("state %s secondary none none" % vm)   # back in COLO
    amark = rig.sub.mark(h.avail_topic(vm))
    bmark = rig.broker.mark()
    rig.daemon.expect_exit = False
    rig.daemon.start()
    wait_subscribed(rig.broker, rig.daemon, since=bmark)
    rig.sub.wait_payload(h.avail_topic(vm), "online", 20, since=amark)
    m = rig.send(vm, o)
    r, _ = rig.result(vm, m, o["id"])
    check_eq((r["status"], r["reason"], r["sent"]),
             ("rejected", "replay", False), "the same payload after a restart")
    rig.qmp_barrier(vm)
    check_eq(rig.heartbeats(vm), 1, "heartbeats after the restart")


def test_future_request_without_state_dir(ctx):
    rig = Rig(ctx, 1)
    o = request(rig.key, "vm1", issued_us=now_us() + 20 * 1000000)
    m = rig.send("vm1", o)
    r, _ = rig.result("vm1", m, o["id"])
    check_eq((r["status"], r["reason"]), ("rejected", "stale"),
             "a request dated 20 s ahead without state_dir")
    check_eq(rig.heartbeats("vm1"), 0, "heartbeats")


def test_unknown_vm_flood(ctx):
    rig = Rig(ctx, 1)
    n = 500
    for i in range(n):
        rig.ops.c.publish(cmd_topic("vm99"), b'{"id":"x%d"}' % i, qos=0)
    h.stats_until(rig.sub, rig.daemon, lambda s: s["commands"]["ignored"]
                  == n, 20, "%d ignored" % n)
    lines = [ln for ln in rig.daemon.log_text().splitlines()
             if "vm99" in ln]
    h.log("%d log lines about vm99" % len(lines))
    check(0 < len(lines) <= 20, "%d log lines for %d requests" %
          (len(lines), n))
    check(any("not logged" in ln for ln in
              rig.daemon.log_text().splitlines()), "no summary line")


def test_qmp_garbage_log_capped(ctx):
    rig = Rig(ctx, 2)
    n = 1000
    rig.sim.cmd("raw vm1 " + "{bad\\r\\n" * n)
    rig.sim.cmd("exit vm1 secondary error")     # still delivered after it
    rig.sub.wait_for(lambda m: True, 10, topic=h.event_topic("vm1"))
    st = h.stats_until(rig.sub, rig.daemon, lambda s: s["vms"]["vm1"]
                       ["invalid"] >= n, 20, "%d invalid" % n)
    check_eq(st["vms"]["vm1"]["invalid"], n, "invalid count")
    text = rig.daemon.log_text().splitlines()
    lines = [ln for ln in text if "vm1: invalid JSON skipped" in ln or
             "vm1: invalid QMP input skipped" in ln]
    h.log("%d log lines for %d garbage lines" % (len(lines), n))
    check(0 < len(lines) <= 60, "%d log lines for %d garbage lines" %
          (len(lines), n))
    check(any("bad QMP input not logged" in ln for ln in text),
          "no summary line")


def run_n(conf):
    p = subprocess.run([DAEMON_BIN, "-n", "-c", conf], capture_output=True,
                       timeout=20 * h.SLOW)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_key_files(ctx):
    sock = os.path.join(ctx.dir, "vm1.qmp")
    base = h.render_config([("vm1", "unix:" + sock)], {"host": h.HOST},
                           {"uri": "tcp://127.0.0.1:1"})

    def conf(keyfile):
        p = os.path.join(ctx.dir, "k.conf")
        with open(p, "w") as f:
            f.write(base + 'takeover = { enabled = true; key_file = "%s"; };'
                    '\n' % keyfile)
        return p

    key = os.path.join(ctx.dir, "gen.key")
    rc, out, err, _ = run_ctl(["genkey", key])
    check_eq(rc, 0, "genkey exit status (%r)" % err)
    st = os.stat(key)
    check_eq(stat.S_IMODE(st.st_mode), 0o600, "genkey mode")
    text = open(key).read().strip()
    check(len(text) == 64 and all(c in "0123456789abcdef" for c in text),
          "genkey content %r" % text)
    rc, out, err = run_n(conf(key))
    check_eq((rc, out.strip()), (0, "configuration OK"), "generated key "
             "(%r)" % err)
    rc, _, err, _ = run_ctl(["genkey", key])
    check_eq(rc, 2, "genkey over an existing file")

    def refused(path, what, word):
        rc, out, err = run_n(conf(path))
        h.log("%s: %s" % (what, err.strip()))
        check_eq(rc, 1, "%s: exit status" % what)
        check(word in err, "%s: message %r lacks %r" % (what, err, word))

    short, _ = write_key(ctx, "short.key", "a" * 16)
    refused(short, "16-byte key", "32 bytes")
    loose, _ = write_key(ctx, "loose.key", "b" * 64)
    os.chmod(loose, 0o640)
    refused(loose, "group-readable key", "chmod")
    fifo = os.path.join(ctx.dir, "fifo.key")
    os.mkfifo(fifo, 0o600)
    refused(fifo, "FIFO", "regular file")
    link = os.path.join(ctx.dir, "link.key")
    os.symlink(key, link)
    refused(link, "symlink", "symbolic link")
    big, _ = write_key(ctx, "big.key", "c" * 5000)
    refused(big, "5000-byte key", "4096")


def test_unsafe_configurations(ctx):
    broker = ctx.mosquitto()
    sim = ctx.sim(1, args=("--mode", "secondary"))
    sub = ctx.subscriber(broker.port)
    d = takeover_daemon(ctx, with_dead_peer(ctx, sim.vms()), broker.port,
                        {"enabled": True, "auth": "acl"})
    rc, out, err = run_n(d.conf)
    check_eq((rc, out.strip()), (0, "configuration OK"), "-n on acl")
    check("warning:" in err and "acl" in err, "-n gave no acl warning: %r"
          % err)
    sim.wait_ready(1, 20)
    st = h.stats_request(sub, d, lambda s: len(s.get("warnings", [])) > 0)
    check(any("acl" in w for w in st.json()["warnings"]),
          "bridge/stats warnings: %r" % st.json()["warnings"])
    check(any("acl" in ln and "warning" in ln for ln in
              d.log_text().splitlines()), "no warning at start")
    keyfile, _ = write_key(ctx)
    d3 = takeover_daemon(ctx, with_dead_peer(ctx, sim.vms()), broker.port,
                         {"enabled": True, "key_file": keyfile},
                         mqtt={"version": 3}, start=False)
    rc, out, err = run_n(d3.conf)
    check_eq(rc, 0, "-n on MQTT 3.1.1 with takeover")
    check("warning:" in err and "3.1.1" in err, "-n gave no MQTT 3.1.1 "
          "warning: %r" % err)


if __name__ == "__main__":
    h.main(test_replayed_signed_request, test_ctl_ignores_forged_result,
           test_ctl_refuses_flipped_authenticated,
           test_future_request_across_restart,
           test_future_request_without_state_dir, test_unknown_vm_flood,
           test_qmp_garbage_log_capped,
           test_key_files, test_unsafe_configurations)
