#!/usr/bin/python3
"""Remote takeover of real QEMU 7.2 COLO pairs through qmp2mqtt-ctl, one
bridge serving both halves (each names the other as its peer).

The bridge watches both VMs' second monitors ("pri", "sec") with takeover
enabled (HMAC key file of mode 0600); the test drives and checks QEMU
through its own monitors.  Checked: a refused takeover (precondition) does
not touch QEMU (query-colo-status still shows COLO); `takeover hv1 sec`
while the primary runs is refused peer_alive and QEMU gets no heartbeat
(that heartbeat would leave both halves running); `takeover hv1 pri`
fails the pair over: exit 0, result ok with colo.mode none / last_mode
primary, both sides' COLO_EXIT published, the retained state of pri mode
none, `qmp2mqtt-ctl status` prints it; then `takeover hv1 sec` is refused
peer_took_over.  After kill -9 of the primary (sec's COLO_EXIT reason
error, sec still reports secondary; the bridge publishes pri's liveness
"gone"), `takeover --expect secondary` completes the failover (no second
COLO_EXIT).  Two bridges, one half each: test_pair_qemu.py.
"""
# TIMEOUT = 150

import json
import os
import stat

import harness as h
from harness import check, check_eq
from test_takeover import (result_topic, run_ctl, takeover_daemon,
                           wait_subscribed, write_key)

MODES = {"pri": "primary", "sec": "secondary"}


def setup(ctx):
    pair = ctx.qemu_pair()
    broker = ctx.mosquitto()
    sub = ctx.subscriber(broker.port)
    keyfile, _ = write_key(ctx)
    check_eq(stat.S_IMODE(os.stat(keyfile).st_mode), 0o600, "key file mode")
    d = takeover_daemon(ctx, [{"name": "pri", "qmp": "unix:" + pair.pri_bridge,
                               "peer": h.HOST + "/sec"},
                              {"name": "sec", "qmp": "unix:" + pair.sec_bridge,
                               "peer": h.HOST + "/pri"}],
                        broker.port, {"enabled": True, "key_file": keyfile})
    h.wait_online(sub, list(MODES), 20)
    for vm, mode in MODES.items():
        sub.wait_json(h.state_topic(vm), lambda s, mode=mode:
                      s.get("mode") == mode and s.get("qmp") == "connected",
                      20, "state of %s mode %s" % (vm, mode))
    wait_subscribed(broker, d)
    return pair, broker, sub, d


def ctl_json(out, what):
    try:
        r = json.loads(out)
    except ValueError as e:
        h.fail("%s: qmp2mqtt-ctl did not print one JSON object (%s): %r" %
               (what, e, out))
    check(isinstance(r, dict), "%s: printed %r" % (what, r))
    return r


def colo_status(mon):
    return mon.cmd("query-colo-status")


def wait_state(sub, vm, pred, what, timeout=15):
    try:
        return sub.wait_json(h.state_topic(vm), pred, timeout, what)
    except h.TestFailure:
        last = sub.last(h.state_topic(vm))
        h.fail("state of %s never showed %s; last: %s" %
               (vm, what, last.payload.decode() if last else None))


def check_status_cmd(d, vm, mode, last_mode):
    rc, out, err, _ = run_ctl(["-c", d.conf, "status", h.HOST, vm,
                               "--wait", "5"])
    check_eq(rc, 0, "qmp2mqtt-ctl status exit status (stderr %r)" % err)
    st = ctl_json(out, "status")
    check_eq((st.get("vm"), st.get("mode"), st.get("last_mode")),
             (vm, mode, last_mode), "state printed by qmp2mqtt-ctl status")


def test_ctl_takeover_one_bridge(ctx):
    pair, broker, sub, d = setup(ctx)

    # A refusal first (precondition on pri): QEMU is not touched.
    rc, out, err, _ = run_ctl(["-c", d.conf, "takeover", h.HOST, "pri",
                               "--expect", "secondary", "--wait", "10"])
    check_eq(rc, 1, "exit status of a refused takeover (stderr %r)" % err)
    r = ctl_json(out, "refused takeover")
    check_eq((r.get("status"), r.get("reason")),
             ("rejected", "precondition_failed"), "refused takeover result")
    check_eq((r.get("colo") or {}).get("mode"), "primary",
             "refused takeover colo.mode")
    check_eq(r.get("sent"), False, "refused takeover: sent")
    check_eq(colo_status(pair.pri_mon).get("mode"), "primary",
             "pri query-colo-status after the refusal (no heartbeat)")
    check_eq(colo_status(pair.sec_mon).get("mode"), "secondary",
             "sec query-colo-status after the refusal")

    # The secondary while its primary runs: split brain, refused.
    rc, out, err, _ = run_ctl(["-c", d.conf, "takeover", h.HOST, "sec",
                               "--wait", "10"])
    check_eq(rc, 1, "exit status of takeover hv1 sec with the primary alive "
             "(stderr %r)" % err)
    r = ctl_json(out, "takeover of the secondary")
    check_eq((r.get("status"), r.get("reason"), r.get("sent")),
             ("rejected", "peer_alive", False), "takeover of the secondary")
    check_eq(colo_status(pair.sec_mon).get("mode"), "secondary",
             "sec query-colo-status after the refusal (no heartbeat)")
    check_eq(colo_status(pair.pri_mon).get("mode"), "primary",
             "pri query-colo-status after the refusal")

    mark = sub.mark(result_topic("pri"))
    rc, out, err, _ = run_ctl(["-c", d.conf, "takeover", h.HOST, "pri",
                               "--wait", "20"])
    check_eq(rc, 0, "qmp2mqtt-ctl takeover hv1 pri exit status (stderr %r)"
             % err)
    r = ctl_json(out, "takeover")
    check_eq((r.get("status"), r.get("reason")), ("ok", "ok"),
             "takeover result status/reason")
    check_eq((r.get("host"), r.get("vm")), (h.HOST, "pri"), "result host/vm")
    check_eq(r.get("sent"), True, "result sent")
    check(isinstance(r.get("colo"), dict), "result colo: %r" % r)
    check_eq(r["colo"].get("mode"), "none", "result colo.mode")
    check_eq(r["colo"].get("last_mode"), "primary", "result colo.last_mode")
    check(isinstance(r.get("sig"), str) and len(r["sig"]) == 64,
          "result not signed: %r" % r)
    m = sub.wait_for(lambda m: m.json().get("id") == r.get("id"), 10,
                     topic=result_topic("pri"), since=mark)
    check(not m.retain, "result retained")
    check_eq(m.json().get("status"), "ok", "published result status")

    # QEMU's own view, and both sides' COLO_EXIT as QEMU emitted them.
    q = colo_status(pair.pri_mon)
    check_eq((q.get("mode"), q.get("last-mode")), ("none", "primary"),
             "pri query-colo-status after the takeover")
    qev = {"pri": pair.pri_mon.wait_event("COLO_EXIT", 10),
           "sec": pair.sec_mon.wait_event("COLO_EXIT", 10)}
    version = pair.version()
    pub = {}
    for vm in ("pri", "sec"):
        em = sub.wait_for(lambda m: True, 10, topic=h.event_topic(vm),
                          what="colo_exit of %s" % vm)
        pub[vm] = h.check_event(
            em, vm, d, time_us=h.qmp_time_us(qev[vm]), seq=1,
            mode=MODES[vm],
            reason=("request", "error") if vm == "pri" else "error",
            qemu=version)
        check_eq(pub[vm]["reason"], qev[vm]["data"]["reason"],
                 "%s reason vs QEMU's event" % vm)
        h.log("published %s: %s" % (vm, em.payload.decode()))

    wait_state(sub, "pri", lambda s: s.get("mode") == "none" and
               s.get("last_mode") == "primary",
               "mode none, last_mode primary")
    check(sub.last(h.state_topic("pri")).retain, "state of pri not retained")
    late = ctx.subscriber(broker.port)
    lm = late.wait_for(lambda m: True, 10, topic=h.state_topic("pri"))
    check(lm.retain and lm.json().get("mode") == "none",
          "late subscriber: retained state of pri: %r" % lm)
    check_status_cmd(d, "pri", "none", "primary")

    # The secondary now waits (its error exit); its peer took over: a
    # heartbeat would start a second copy.  Refused, QEMU untouched.
    wait_state(sub, "sec", lambda s: (s.get("peer") or {}).get("mode") ==
               "none", "peer (pri) mode none")
    rc, out, err, _ = run_ctl(["-c", d.conf, "takeover", h.HOST, "sec",
                               "--wait", "10"])
    check_eq(rc, 1, "exit status of takeover hv1 sec after pri took over")
    r = ctl_json(out, "takeover of the secondary after the primary's")
    check_eq((r.get("status"), r.get("reason"), r.get("sent")),
             ("rejected", "peer_took_over", False),
             "takeover of the secondary after the primary's")
    check_eq(colo_status(pair.sec_mon).get("mode"), "secondary",
             "sec query-colo-status after the refusal (no heartbeat)")
    d.check_alive()


def test_takeover_after_primary_killed(ctx):
    pair, broker, sub, d = setup(ctx)
    pair.kill("pri")
    qe = pair.sec_mon.wait_event("COLO_EXIT", 10)
    check_eq(qe["data"], {"mode": "secondary", "reason": "error"},
             "QEMU's own sec COLO_EXIT")
    em = sub.wait_for(lambda m: True, 10, topic=h.event_topic("sec"),
                      what="colo_exit of sec")
    h.check_event(em, "sec", d, time_us=h.qmp_time_us(qe), seq=1,
                  mode="secondary", reason="error")
    # The survivor still reports COLO until told to take over.
    check_eq(colo_status(pair.sec_mon).get("mode"), "secondary",
             "sec query-colo-status after its error exit")
    wait_state(sub, "sec", lambda s: s.get("mode") == "secondary" and
               s.get("last_exit") == em.json(),
               "mode secondary with last_exit = the error exit")
    # The primary's socket now refuses connections: proof that it is gone.
    wait_state(sub, "pri", lambda s: s.get("liveness") == "gone",
               "liveness gone")
    wait_state(sub, "sec", lambda s: (s.get("peer") or {}).get("liveness")
               == "gone", "peer (pri) liveness gone")

    rc, out, err, _ = run_ctl(["-c", d.conf, "takeover", h.HOST, "sec",
                               "--expect", "secondary", "--wait", "20"])
    check_eq(rc, 0, "qmp2mqtt-ctl takeover --expect secondary exit status "
             "(stderr %r)" % err)
    r = ctl_json(out, "takeover")
    check_eq((r.get("status"), r.get("reason")), ("ok", "ok"),
             "takeover result")
    check_eq((r.get("colo") or {}).get("mode"), "none", "result colo.mode")
    check_eq((r.get("colo") or {}).get("last_mode"), "secondary",
             "result colo.last_mode")
    q = colo_status(pair.sec_mon)
    check_eq((q.get("mode"), q.get("last-mode")), ("none", "secondary"),
             "sec query-colo-status after the takeover")
    wait_state(sub, "sec", lambda s: s.get("mode") == "none" and
               s.get("last_mode") == "secondary",
               "mode none, last_mode secondary")
    # QEMU emits no second COLO_EXIT; the bridge must not invent one.
    check_eq(sub.count(h.event_topic("sec")), 1, "colo_exit messages of sec")
    check_eq(len(pair.sec_mon.events_named("COLO_EXIT")), 1,
             "COLO_EXIT events QEMU sent to the test monitor")
    check_status_cmd(d, "sec", "none", "secondary")
    d.check_alive()


if __name__ == "__main__":
    h.main(test_ctl_takeover_one_bridge, test_takeover_after_primary_killed)
