#!/usr/bin/python3
"""The pair rules and bridge clashes on the simulator (README "Pair rules",
"Two bridges, one VM").  Real QEMU: test_pair_qemu.py.

  - one bridge serving both halves (vm1 primary, vm2 secondary, peers set
    both ways): requests for both published back to back end with exactly
    one heartbeat (the primary's), the secondary refused;
  - the state payload shows the peer (bridge, mode, liveness);
  - no peer configured: peer_unknown; force overrides it (logged) but
    never the other checks (a forced request for a VM not in COLO is
    still not_in_colo);
  - a VM given a peer (served here) by a reload, then none again: its
    state shows the peer then null, its takeovers follow the pair rules
    then are peer_unknown (the pair view is allocated on demand);
  - two bridges publishing the same <host>/<vm> (same bridge.host, same
    VM name, each its own QEMU): the one started second logs the clash,
    counts it, refuses takeovers for that VM ("clash"); a request then
    executes on one QEMU only.
"""
# TIMEOUT = 120

import harness as h
from harness import check, check_eq
from test_takeover import (Client, HB, cmd_topic, enc, request, result_topic,
                           takeover_daemon, wait_subscribed, write_key)


def result(sub, vm, rid, mark, timeout=10):
    m = sub.wait_for(lambda m: m.json().get("id") == rid, timeout,
                     topic=result_topic(vm), since=mark,
                     what="result of %s" % rid)
    h.log("result %s: %s" % (vm, m.payload.decode()))
    return m.json()


def test_one_bridge_both_halves(ctx):
    broker = ctx.mosquitto()
    sim = ctx.sim(3)                       # vm1 vm2 vm3, all primary
    sim.cmd("state vm2 secondary none none")
    sub = ctx.subscriber(broker.port)
    keyfile, key = write_key(ctx)
    vms = [{"name": n, "qmp": a} for n, a in sim.vms()]
    vms[0]["peer"] = h.HOST + "/vm2"
    vms[1]["peer"] = h.HOST + "/vm1"
    d = takeover_daemon(ctx, vms, broker.port,
                        {"enabled": True, "key_file": keyfile,
                         "min_interval_s": 0})
    sim.wait_ready(3, 20)
    wait_subscribed(broker, d)
    st = sub.wait_json(h.state_topic("vm2"), lambda s: (s.get("peer") or {})
                       .get("mode") == "primary", 10, "vm2's peer primary")
    peer = st.json()["peer"]
    check_eq((peer["host"], peer["vm"], peer["bridge"], peer["liveness"],
              peer["qmp"]), (h.HOST, "vm1", "online", "alive", "connected"),
             "vm2's peer as shown in its state")
    check_eq(st.json().get("liveness"), "alive", "vm2's own liveness")
    check(sub.wait_json(h.state_topic("vm3"), lambda s: "peer" in s, 10,
                        "vm3 state").json()["peer"] is None,
          "a VM without peer shows peer null")
    ops = Client(ctx, broker.port)
    a, b = request(key, "vm1"), request(key, "vm2")
    ma, mb = sub.mark(result_topic("vm1")), sub.mark(result_topic("vm2"))
    ops.publish(cmd_topic("vm1"), enc(a))
    ops.publish(cmd_topic("vm2"), enc(b))
    ra, rb = result(sub, "vm1", a["id"], ma), result(sub, "vm2", b["id"], mb)
    check_eq((ra["status"], ra["reason"]), ("ok", "ok"), "the primary")
    check(rb["status"] == "rejected" and rb["reason"] in
          ("peer_alive", "peer_took_over"), "the secondary: %r" % rb)
    check_eq((sim.count("vm1")["heartbeats"], sim.count("vm2")["heartbeats"]),
             (1, 0), "heartbeats (vm1, vm2)")

    # No peer: refused; force overrides only the pair rules.
    c = request(key, "vm3")
    mc = sub.mark(result_topic("vm3"))
    ops.publish(cmd_topic("vm3"), enc(c))
    rc = result(sub, "vm3", c["id"], mc)
    check_eq((rc["status"], rc["reason"], rc["sent"]),
             ("rejected", "peer_unknown", False), "vm3 without peer")
    sim.cmd("state vm3 none primary request")
    c = request(key, "vm3", force=True)
    mc = sub.mark(result_topic("vm3"))
    ops.publish(cmd_topic("vm3"), enc(c))
    check_eq(result(sub, "vm3", c["id"], mc)["reason"], "not_in_colo",
             "forced request for a VM out of COLO")
    sim.cmd("state vm3 primary none none")
    c = request(key, "vm3", force=True)
    mc = sub.mark(result_topic("vm3"))
    ops.publish(cmd_topic("vm3"), enc(c))
    rc = result(sub, "vm3", c["id"], mc)
    check_eq((rc["status"], rc["reason"]), ("ok", "ok"), "forced vm3")
    check(any(c["id"] in ln and "FORCED" in ln
              for ln in d.log_text().splitlines()),
          "forced takeover not logged as forced")
    check_eq(sim.count("vm3")["heartbeats"], 1, "heartbeats of vm3")
    st = h.stats_request(sub, d, lambda s: s["commands"].get("forced") == 1)
    by = st.json()["commands"]["by_reason"]
    check_eq(by.get("peer_unknown"), 1, "stats peer_unknown")
    check_eq(by.get("not_in_colo"), 1, "stats not_in_colo")


def test_peer_by_reload(ctx):
    from test_reload import config_text, reload
    broker = ctx.mosquitto()
    sim = ctx.sim(2)                       # vm1 primary, vm2 secondary
    sim.cmd("state vm2 secondary none none")
    sub = ctx.subscriber(broker.port)
    keyfile, key = write_key(ctx)
    tk = {"enabled": True, "key_file": keyfile, "min_interval_s": 0}
    vms = [{"name": n, "qmp": a} for n, a in sim.vms()]
    d = takeover_daemon(ctx, vms, broker.port, tk)
    sim.wait_ready(2, 20)
    wait_subscribed(broker, d)
    check(sub.wait_json(h.state_topic("vm2"), lambda s: "peer" in s, 10,
                        "vm2 state").json()["peer"] is None,
          "vm2 without peer shows peer null")
    ops = Client(ctx, broker.port)

    def takeover(what):
        r = request(key, "vm2")
        m = sub.mark(result_topic("vm2"))
        ops.publish(cmd_topic("vm2"), enc(r))
        res = result(sub, "vm2", r["id"], m)
        h.log("%s: %r" % (what, res))
        return res["reason"]

    check_eq(takeover("no peer"), "peer_unknown", "vm2 without peer")
    vms[1]["peer"] = h.HOST + "/vm1"
    text = config_text(d, broker.port, vms) + \
        "takeover = %s;\n" % h._cfg_value(tk)
    check("applied" in reload(d, text, "peer added"), "reload not applied")
    st = sub.wait_json(h.state_topic("vm2"), lambda s: (s.get("peer") or {})
                       .get("mode") == "primary", 10, "vm2's peer primary")
    check_eq(st.json()["peer"]["vm"], "vm1", "vm2's peer")
    check_eq(takeover("local peer alive"), "peer_alive",
             "vm2 with its primary alive")
    del vms[1]["peer"]
    text = config_text(d, broker.port, vms) + \
        "takeover = %s;\n" % h._cfg_value(tk)
    check("applied" in reload(d, text, "peer removed"), "reload not applied")
    sub.wait_json(h.state_topic("vm2"), lambda s: "peer" in s and
                  s["peer"] is None, 10, "vm2's peer gone")
    check_eq(takeover("peer removed"), "peer_unknown", "vm2 without peer")
    check_eq(sim.count("vm2")["heartbeats"], 0, "heartbeats of vm2")


def test_clash(ctx):
    broker = ctx.mosquitto()
    sim_a = ctx.sim(1, name="simA")
    sim_b = ctx.sim(1, name="simB")
    sub = ctx.subscriber(broker.port)
    keyfile, key = write_key(ctx)
    tk = {"enabled": True, "key_file": keyfile}
    first = takeover_daemon(ctx, sim_a.vms(), broker.port, tk, name="first")
    sim_a.wait_ready(1, 20)
    wait_subscribed(broker, first)
    st = sub.wait_json(h.state_topic("vm1"), lambda s: s.get("qmp") ==
                       "connected", 10, "vm1 of the first bridge")
    inst_a = st.json()["instance"]
    bmark = broker.mark()
    second = takeover_daemon(ctx, sim_b.vms(), broker.port, tk,
                             name="second")
    sim_b.wait_ready(1, 20)
    wait_subscribed(broker, second, since=bmark)
    # The second learns it is second (it started later), the first only
    # warns.
    for _ in h.deadline_loop(15 * h.SLOW, 0.05):
        if any("already serves" in ln for ln in
               second.log_text().splitlines()):
            break
    else:
        h.fail("the second bridge never reported the clash; log:\n%s" %
               second.log_text()[-3000:])
    check(any("started later" in ln for ln in first.log_text().splitlines()),
          "the first bridge did not mention the second one")
    check(not any("already serves" in ln for ln in
                  first.log_text().splitlines()),
          "the first bridge thinks it is second")
    st = h.stats_until(sub, second, lambda s: s["totals"].get("clashes")
                       == 1, 10, "clashes 1")
    check(st["vms"]["vm1"].get("clash") is True, "per-VM clash flag")

    # One request, seen by both bridges (same command topic): the first
    # executes it (forced: the simulated VM has no peer), the second
    # refuses with "clash"; one heartbeat in all.
    ops = Client(ctx, broker.port)
    o = request(key, "vm1", force=True)
    mark = sub.mark(result_topic("vm1"))
    ops.publish(cmd_topic("vm1"), enc(o))
    got = {}
    sub.wait(lambda s: len([m for m in s.by_topic.get(result_topic("vm1"),
                                                      [])[mark:]
                            if m.json().get("id") == o["id"]]) >= 2, 10,
             "two results")
    for m in sub.on(result_topic("vm1"))[mark:]:
        r = m.json()
        if r.get("id") == o["id"]:
            got[r["reason"]] = r
    check_eq(sorted(got), ["clash", "ok"], "the two bridges' answers")
    check_eq(got["clash"]["sent"], False, "the clash refusal's sent")
    check_eq((sim_a.count("vm1")["heartbeats"],
              sim_b.count("vm1")["heartbeats"]), (1, 0),
             "heartbeats (first bridge's VM, second's)")
    check(inst_a != "", "instance id")


def test_unconfirmed_heartbeat(ctx):
    """A heartbeat sent to the primary whose outcome is never read (QEMU
    takes the command and the connection is cut before it answers; then
    the QEMU is gone): the primary's state says heartbeat_unconfirmed, and
    the secondary's takeover is refused as peer_took_over although the
    primary is gone (it may have run alone since: the secondary's
    checkpoint would be old).  It holds across a bridge restart; a status
    read showing mode none clears it."""
    broker = ctx.mosquitto()
    sim = ctx.sim(2)
    sim.cmd("state vm2 secondary none none")
    sub = ctx.subscriber(broker.port)
    keyfile, key = write_key(ctx)
    state = ctx.subdir("state")
    vms = [{"name": n, "qmp": a} for n, a in sim.vms()]
    vms[0]["peer"] = h.HOST + "/vm2"
    vms[1]["peer"] = h.HOST + "/vm1"
    tk = {"enabled": True, "key_file": keyfile, "min_interval_s": 0}
    br = {"state_dir": state, "command_timeout_ms": 1000}
    d = takeover_daemon(ctx, vms, broker.port, tk, bridge=br)
    sim.wait_ready(2, 20)
    wait_subscribed(broker, d)
    sub.wait_json(h.state_topic("vm1"), lambda s: s.get(
        "heartbeat_unconfirmed") is False and s["mode"] == "primary", 10,
        "vm1 primary, nothing pending")
    ops = Client(ctx, broker.port)

    sim.cmd("stall vm1 x-colo-lost-heartbeat on")
    a = request(key, "vm1", expect="primary")
    ma = sub.mark(result_topic("vm1"))
    ops.publish(cmd_topic("vm1"), enc(a))
    ra = result(sub, "vm1", a["id"], ma, timeout=20)
    check_eq((ra["status"], ra["reason"], ra["sent"]),
             ("error", "not_connected", True),
             "the primary's takeover: sent, outcome unknown (%r)" % ra)
    sub.wait_json(h.state_topic("vm1"), lambda s: s.get(
        "heartbeat_unconfirmed") is True, 10, "vm1 heartbeat_unconfirmed")
    sim.cmd("unlisten vm1")             # its QEMU is gone
    sub.wait_json(h.state_topic("vm1"), lambda s: s["liveness"] == "gone",
                  10, "vm1 gone")

    def refused_for_vm2(what):
        b = request(key, "vm2", expect="secondary")
        mb = sub.mark(result_topic("vm2"))
        ops.publish(cmd_topic("vm2"), enc(b))
        rb = result(sub, "vm2", b["id"], mb)
        check_eq((rb["status"], rb["reason"], rb["sent"]),
                 ("rejected", "peer_took_over", False), what)
        check_eq(sim.count("vm2")["heartbeats"], 0, "heartbeats of vm2")
    refused_for_vm2("the secondary while the primary's heartbeat is "
                    "unconfirmed")

    # The flag is saved: a restarted bridge still refuses.
    check_eq(d.stop(), 0, "exit status")
    d2 = takeover_daemon(ctx, vms, broker.port, tk, bridge=br,
                         name="again")
    wait_subscribed(broker, d2)
    # (Its liveness now is only "unreachable": this bridge never saw it.
    # Without the saved flag the refusal would be peer_unknown.)
    sub.wait_json(h.state_topic("vm1"), lambda s: s.get(
        "heartbeat_unconfirmed") is True and s["bridge"] == d2.bridge_id,
        10, "vm1 still unconfirmed after the restart")
    sub.wait_json(h.state_topic("vm2"), lambda s: s["bridge"] ==
                  d2.bridge_id and s["qmp"] == "connected" and
                  s["mode"] == "secondary", 10, "vm2 connected to the "
                  "restarted bridge")
    refused_for_vm2("the secondary after a restart")

    # The QEMU back, reading mode none: the outcome is known, cleared.
    sim.cmd("state vm1 none primary request")
    sim.cmd("listen vm1")
    sub.wait_json(h.state_topic("vm1"), lambda s: s.get(
        "heartbeat_unconfirmed") is False and s["mode"] == "none", 15,
        "vm1 cleared by mode none")


if __name__ == "__main__":
    h.main(test_one_bridge_both_halves, test_peer_by_reload, test_clash,
           test_unconfirmed_heartbeat)
