#!/usr/bin/python3
"""200 simulated VMs on one bridge.

The daemon connects to all of them (200 availability online), a burst of
50 events per VM is delivered exactly once and in order per VM (the
simulator's event k has time_us EPOCH + k; seq counts 1, 2, ...), and the
stats published on SIGUSR1 count exactly those events.
"""
# TIMEOUT = 240

import harness as h
from harness import check, check_eq

NVMS = 200
PER_VM = 50
SIM_VERSION = "7.2.0"


def test_many_vms_burst(ctx):
    broker = ctx.mosquitto()
    sim = ctx.sim(NVMS, args=["--version", SIM_VERSION])
    sub = ctx.subscriber(broker.port)
    daemon = ctx.daemon(sim.vms(), broker.port)
    names = [sim.vm(i) for i in range(1, NVMS + 1)]
    sim.wait_ready(NVMS, timeout=60)
    h.wait_online(sub, names, timeout=60)
    h.log("all %d VMs online" % NVMS)
    for n in (names[0], names[-1]):
        m = sub.wait_json(h.state_topic(n),
                          lambda s: s.get("qmp") == "connected", 10,
                          "state of %s: qmp connected" % n)
        st = h.check_state(m, n)
        check_eq(st["qmp"], "connected", "state qmp of %s" % n)
        check_eq(st["qemu"], SIM_VERSION, "state qemu of %s" % n)

    total = NVMS * PER_VM
    sim.cmd("burst all %d" % PER_VM, timeout=60)
    h.log("burst sent: %d events" % total)
    try:
        sub.wait(lambda s: s.n_events >= total, timeout=90,
                 what="%d events" % total)
    except h.TestFailure:
        short = {n: sub.count(h.event_topic(n)) for n in names
                 if sub.count(h.event_topic(n)) != PER_VM}
        h.fail("received %d of %d events; VMs short (vm: count): %s" %
               (sub.n_events, total, dict(list(short.items())[:20])))
    h.log("all %d events received" % total)

    problems = []
    for n in names:
        msgs = sub.on(h.event_topic(n))
        evs = [h.check_event(m, n, daemon, qemu=SIM_VERSION) for m in msgs]
        ks = [h.sim_k(e) for e in evs]
        seqs = [e["seq"] for e in evs]
        want = list(range(1, PER_VM + 1))
        if ks != want:
            problems.append("%s: k sequence %s" % (n, ks))
        elif seqs != want:
            problems.append("%s: seq sequence %s" % (n, seqs))
    check(not problems, "%d VMs with missing, duplicated or reordered "
          "events:\n  %s" % (len(problems), "\n  ".join(problems[:10])))

    c = sim.count("all")
    check_eq(c.get("events"), total, "simulator's own event count")

    m = h.stats_request(
        sub, daemon, lambda s: s["totals"]["events_in"] >= total and
        s["totals"]["events_out"] >= total, timeout=20)
    st = m.json()
    check(m.retain, "stats not retained")
    t = st["totals"]
    h.log("stats totals: %s" % t)
    check_eq(st.get("schema"), 1, "stats schema")
    check_eq(st.get("host"), h.HOST, "stats host")
    check_eq(st.get("bridge"), daemon.bridge_id, "stats bridge")
    check_eq(t["events_in"], total, "totals.events_in")
    check_eq(t["events_out"], total, "totals.events_out")
    for k in ("malformed", "invalid", "oversized", "unexpected", "dropped",
              "timeouts", "reconnects"):
        check_eq(t[k], 0, "totals.%s" % k)
    check_eq(t["vms_ready"], NVMS, "totals.vms_ready")
    check_eq(len(st["vms"]), NVMS, "number of VMs in stats")
    bad = {n: v for n, v in st["vms"].items()
           if v.get("events_in") != PER_VM or not v.get("ready")}
    check(not bad, "per-VM stats wrong for %d VMs, e.g. %s" %
          (len(bad), list(bad.items())[:5]))
    daemon.check_alive()


def test_stats_interval(ctx):
    """stats_interval_s = 1: stats published periodically, unasked."""
    broker = ctx.mosquitto()
    sim = ctx.sim(2)
    sub = ctx.subscriber(broker.port)
    daemon = ctx.daemon(sim.vms(), broker.port,
                        bridge={"stats_interval_s": 1})
    h.wait_online(sub, [sim.vm(1), sim.vm(2)], 20)
    sim.cmd("burst all 3")
    sub.wait(lambda s: s.n_events >= 6, 10, "6 events")
    topic = h.bridge_topic("stats")
    m = sub.wait_json(topic, lambda s: s["totals"]["events_in"] >= 6, 5,
                      "periodic stats counting 6 events")
    t0 = m.t
    m2 = sub.wait_for(lambda x: x.t > t0, 5, topic=topic,
                      what="a later periodic stats message")
    st = m2.json()
    check_eq(st["totals"]["events_in"], 6, "totals.events_in")
    check_eq(sorted(st["vms"]), [sim.vm(1), sim.vm(2)], "VMs in stats")
    check(isinstance(st.get("uptime_s"), int), "uptime_s: %r" % st)
    daemon.check_alive()


if __name__ == "__main__":
    h.main(test_many_vms_burst, test_stats_interval)
