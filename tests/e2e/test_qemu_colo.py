#!/usr/bin/python3
"""Real QEMU 7.2 COLO pairs through the bridge to a real mosquitto.

Each QEMU has two QMP monitors: the test drives COLO through its own, the
daemon watches the other ("pri" and "sec").  Checked: availability and
state while in COLO; a failover (x-colo-lost-heartbeat on the secondary,
then on the primary of a fresh pair) publishes both sides' COLO_EXIT
normalized, with QEMU's own timestamps, not retained; the retained state
follows query-colo-status; a killed primary leaves the secondary's error
exit and marks pri offline/disconnected; a late subscriber gets the
retained state.
"""
# TIMEOUT = 150

import re

import harness as h
from harness import check, check_eq, check_event, check_state

VMS = ("pri", "sec")


def setup(ctx):
    pair = ctx.qemu_pair()
    broker = ctx.mosquitto()
    sub = ctx.subscriber(broker.port)
    daemon = ctx.daemon([("pri", "unix:" + pair.pri_bridge),
                         ("sec", "unix:" + pair.sec_bridge)], broker.port)
    h.wait_online(sub, VMS, timeout=20)
    version = pair.version()
    check(re.match(r"^7\.2\.\d+$", version), "QEMU is not 7.2.x: %s" %
          version)
    for vm, mode in (("pri", "primary"), ("sec", "secondary")):
        st = sub.wait_json(
            h.state_topic(vm),
            lambda s, mode=mode: s.get("mode") == mode and
            s.get("qmp") == "connected", timeout=20,
            what="state of %s with mode %s, qmp connected" % (vm, mode))
        m = sub.last(h.state_topic(vm))
        check(m.retain, "state of %s not retained" % vm)
        st = check_state(m, vm)
        check_eq(st["mode"], mode, "%s state mode" % vm)
        check_eq(st["qemu"], version, "%s state qemu" % vm)
        check(re.match(r"^7\.2\.\d+$", st["qemu"] or ""),
              "%s state qemu not 7.2.x-like: %r" % (vm, st["qemu"]))
        check_eq(st["colo_status"], "ok", "%s state colo_status" % vm)
        check_eq(st["last_exit"], None, "%s state last_exit before any exit"
                 % vm)
    bs = sub.wait_json(h.bridge_topic("state"),
                       lambda s: s.get("state") == "online", timeout=10)
    check_eq(bs.json().get("vms"), 2, "bridge/state vms")
    check_eq(bs.json().get("bridge"), daemon.bridge_id, "bridge/state bridge")
    check(sub.last(h.bridge_topic("state")).retain,
          "bridge/state not retained")
    return pair, broker, sub, daemon


def wait_state(sub, vm, pred, what, timeout=15):
    try:
        return sub.wait_json(h.state_topic(vm), pred, timeout, what)
    except h.TestFailure:
        last = sub.last(h.state_topic(vm))
        h.fail("state of %s never showed %s; last state: %s" %
               (vm, what, last.payload.decode() if last else None))


def failover(ctx, told):
    """x-colo-lost-heartbeat to `told` ("sec" or "pri") of a fresh pair."""
    pair, broker, sub, daemon = setup(ctx)
    version = pair.version()
    mons = {"pri": pair.pri_mon, "sec": pair.sec_mon}
    modes = {"pri": "primary", "sec": "secondary"}
    peer = "pri" if told == "sec" else "sec"

    h.log("x-colo-lost-heartbeat on %s" % told)
    mons[told].cmd("x-colo-lost-heartbeat")
    qev = {told: mons[told].wait_event("COLO_EXIT", 10),
           peer: mons[peer].wait_event("COLO_EXIT", 10)}
    h.log("QEMU events: %s" % qev)
    # The reference: the told side usually says request, sometimes error;
    # its peer always says error.
    check_eq(qev[peer]["data"]["reason"], "error",
             "QEMU's own %s COLO_EXIT reason" % peer)

    pub = {}
    for vm in (told, peer):
        m = sub.wait_for(lambda m: True, timeout=10, topic=h.event_topic(vm),
                         what="colo_exit of %s" % vm)
        d = qev[vm]["data"]
        pub[vm] = check_event(
            m, vm, daemon, time_us=h.qmp_time_us(qev[vm]), seq=1,
            mode=modes[vm],
            reason=("request", "error") if vm == told else "error",
            qemu=version)
        check_eq(pub[vm]["mode"], d["mode"], "%s mode vs QEMU's event" % vm)
        check_eq(pub[vm]["reason"], d["reason"],
                 "%s reason vs QEMU's event" % vm)
        h.log("published %s: %s" % (vm, m.payload.decode()))

    # The told side leaves COLO: state as query-colo-status says.
    q = mons[told].cmd("query-colo-status")
    check_eq(q.get("mode"), "none", "query-colo-status mode of %s" % told)
    check_eq(q.get("last-mode"), modes[told],
             "query-colo-status last-mode of %s" % told)
    wait_state(sub, told, lambda s: s.get("mode") == "none" and
               s.get("last_mode") == modes[told] and
               s.get("last_exit") == pub[told],
               "mode none, last_mode %s, last_exit = the published event" %
               modes[told])
    st = check_state(sub.last(h.state_topic(told)), told)
    check_eq(st["reason"], q.get("reason"),
             "state reason of %s vs query-colo-status" % told)
    check_eq(st["qmp"], "connected", "state qmp of %s" % told)

    # The peer exited with error; QEMU still reports its COLO mode.
    qp = mons[peer].cmd("query-colo-status")
    wait_state(sub, peer, lambda s: s.get("last_exit") == pub[peer] and
               s.get("mode") == qp.get("mode"),
               "last_exit = the published event and mode %r "
               "(query-colo-status)" % qp.get("mode"))

    # Late subscriber: retained state and availability, no event.
    late = ctx.subscriber(broker.port)
    for vm in VMS:
        m = late.wait_for(lambda m: True, 10, topic=h.avail_topic(vm))
        check(m.retain and m.payload == b"online",
              "late subscriber: availability of %s: %r" % (vm, m))
        m = late.wait_for(lambda m: True, 10, topic=h.state_topic(vm))
        check(m.retain, "late subscriber: state of %s not retained" % vm)
        check_eq(m.json()["last_exit"], pub[vm],
                 "late subscriber: last_exit of %s" % vm)
    late.wait_for(lambda m: m.json().get("state") == "online", 10,
                  topic=h.bridge_topic("state"))
    ev = [m for m in late.all() if "/event/" in m.topic]
    check(not ev, "late subscriber received events (retained?): %r" % ev)
    for vm in VMS:
        check_eq(sub.count(h.event_topic(vm)), 1,
                 "number of colo_exit messages of %s" % vm)
    daemon.check_alive()


def test_heartbeat_secondary(ctx):
    failover(ctx, "sec")


def test_heartbeat_primary(ctx):
    failover(ctx, "pri")


def test_kill_primary(ctx):
    pair, broker, sub, daemon = setup(ctx)
    version = pair.version()
    pair.kill("pri")
    qe = pair.sec_mon.wait_event("COLO_EXIT", 10)
    check_eq(qe["data"], {"mode": "secondary", "reason": "error"},
             "QEMU's own secondary COLO_EXIT data")
    m = sub.wait_for(lambda m: True, 10, topic=h.event_topic("sec"),
                     what="colo_exit of sec")
    ev = check_event(m, "sec", daemon, time_us=h.qmp_time_us(qe), seq=1,
                     mode="secondary", reason="error", qemu=version)
    h.log("published sec: %s" % m.payload.decode())

    sub.wait_payload(h.avail_topic("pri"), "offline", 15)
    wait_state(sub, "pri", lambda s: s.get("qmp") == "disconnected",
               "qmp disconnected")
    check(sub.last(h.avail_topic("pri")).retain,
          "pri availability offline not retained")
    wait_state(sub, "sec", lambda s: s.get("last_exit") == ev,
               "last_exit = the published event")

    late = ctx.subscriber(broker.port)
    m = late.wait_for(lambda m: True, 10, topic=h.avail_topic("pri"))
    check(m.retain and m.payload == b"offline",
          "late subscriber: pri availability: %r" % m)
    m = late.wait_for(lambda m: True, 10, topic=h.state_topic("pri"))
    check(m.retain, "late subscriber: pri state not retained")
    st = check_state(m, "pri")
    check_eq(st["qmp"], "disconnected", "late subscriber: pri state qmp")
    m = late.wait_for(lambda m: True, 10, topic=h.avail_topic("sec"))
    check(m.retain and m.payload == b"online",
          "late subscriber: sec availability: %r" % m)
    m = late.wait_for(lambda m: True, 10, topic=h.state_topic("sec"))
    check_eq(m.json()["last_exit"], ev, "late subscriber: sec last_exit")
    check(not [x for x in late.all() if "/event/" in x.topic],
          "late subscriber received events")
    check_eq(sub.count(h.event_topic("pri")), 0, "colo_exit messages of pri")
    check_eq(sub.count(h.event_topic("sec")), 1, "colo_exit messages of sec")
    daemon.check_alive()


if __name__ == "__main__":
    h.main(test_heartbeat_secondary, test_heartbeat_primary,
           test_kill_primary)
