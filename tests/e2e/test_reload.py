#!/usr/bin/python3
"""Live reload on SIGHUP (README "Live reload").

Against the simulator and a real mosquitto:
  - VMs added, removed and changed by a reload while events stream: the
    unchanged VMs keep their QMP connection (the simulator counts no new
    connect), no event is lost and seq continues; a removed VM goes
    offline with its retained state marked "gone"; an added one comes
    online; a VM whose peer changed keeps its connection and shows the
    new peer;
  - an invalid file: logged with FILE:LINE, published in bridge/state
    (config_error), the running configuration stays (the next valid
    reload clears it);
  - a restart-only setting (state_dir): refused the same way;
  - changed broker settings: exactly one reconnect, nothing lost;
  - bridge.removed_vm_state = "clear": a removed VM's retained topics are
    cleared;
  - a VM removed while the broker is down still ends "gone" there;
  - bridge.host changed: the old host's bridge/state goes offline and its
    VMs' states gone.
"""
# TIMEOUT = 120

import os
import signal

import harness as h
from harness import check, check_eq


def config_text(d, port, vms, bridge=None, mqtt=None):
    """The text h.Daemon writes, for other VMs or settings."""
    b = {"host": h.HOST, "id": d.bridge_id, "backoff_min_ms": 50,
         "backoff_max_ms": 500}
    b.update(bridge or {})
    m = {"uri": "tcp://127.0.0.1:%d" % port, "client_id": d.client_id,
         "version": 5, "qos": 1, "keepalive": 5, "base_topic": h.BASE}
    m.update(mqtt or {})
    return h.render_config(vms, b, m)


def reload(d, text, what):
    mark = len(d.log_text().splitlines())
    with open(d.conf, "w") as f:
        f.write(text)
    d.signal(signal.SIGHUP)
    for _ in h.deadline_loop(10 * h.SLOW, 0.02):
        lines = d.log_text().splitlines()[mark:]
        done = [ln for ln in lines if "reload: " in ln and "applied" in ln
                or "reload refused" in ln or "reload: " in ln and
                "cannot change" in ln]
        if done:
            h.log("%s: %s" % (what, done[0]))
            return done[0]
    h.fail("%s: no reload line in the daemon's log" % what)


def connects(sim, vm):
    return sim.count(vm)["connects"]


def bridge_state(sub, pred, what):
    return sub.wait_json(h.bridge_topic("state"), pred, 10, what).json()


def test_add_remove_change(ctx):
    broker = ctx.mosquitto()
    sim = ctx.sim(4)
    sub = ctx.subscriber(broker.port)
    vm = dict(sim.vms())
    listed = [{"name": n, "qmp": vm[n]} for n in ("vm1", "vm2", "vm3")]
    d = ctx.daemon(vms=listed, port=broker.port)
    sim.wait_ready(3, 20)
    h.wait_online(sub, ["vm1", "vm2", "vm3"], 20)
    c0 = {n: connects(sim, n) for n in ("vm1", "vm2", "vm3")}
    # Events stream on vm1 while the configuration changes.
    sim.cmd("burst vm1 200 400")
    new = [{"name": "vm1", "qmp": vm["vm1"]},
           {"name": "vm2", "qmp": vm["vm2"], "peer": "hv2/other"},
           {"name": "vm4", "qmp": vm["vm4"]}]
    line = reload(d, config_text(d, broker.port, new), "reload")
    check("applied" in line, "reload not applied: %s" % line)
    sim.wait_ready(3, 20)
    sub.wait_payload(h.avail_topic("vm4"), "online", 10)
    sub.wait_payload(h.avail_topic("vm3"), "offline", 10)
    st = sub.wait_json(h.state_topic("vm3"), lambda s: s.get("gone") is
                       True, 10, "vm3 state gone")
    check(st.retain, "gone state not retained")
    st = sub.wait_json(h.state_topic("vm2"), lambda s: (s.get("peer") or {})
                       .get("host") == "hv2", 10, "vm2's new peer")
    check_eq(st.json()["peer"]["vm"], "other", "vm2's peer")
    # The burst arrives whole and in order.
    sub.wait(lambda s: len(s.by_topic.get(h.event_topic("vm1"), [])) >= 200,
             30, "200 events of vm1")
    seqs = [m.json()["seq"] for m in sub.on(h.event_topic("vm1"))]
    check_eq(sorted(set(seqs)), list(range(1, 201)), "vm1's seqs")
    check_eq(seqs, sorted(seqs), "vm1's events in order")
    for n in ("vm1", "vm2"):
        check_eq(connects(sim, n), c0[n], "QMP connects of %s (unchanged "
                 "VM: its connection must stay)" % n)
    # vm3's connection is closed, vm4's made.
    sim.wait_async(r"^client vm3 closed$", 10)
    check_eq(connects(sim, "vm4"), 1, "connects of vm4")
    st = h.stats_request(sub, d, lambda s: "vm4" in s["vms"] and
                         "vm3" not in s["vms"])
    check_eq(st.json()["totals"]["mqtt_connects"], 1, "broker connects")
    # seq continues on a kept VM after the reload.
    mark = sub.mark(h.event_topic("vm1"))
    sim.cmd("exit vm1 primary error")
    m = sub.wait_for(lambda m: True, 10, topic=h.event_topic("vm1"),
                     since=mark)
    check_eq(m.json()["seq"], 201, "seq after the reload")


def test_invalid_and_restart_only(ctx):
    broker = ctx.mosquitto()
    sim = ctx.sim(2)
    sub = ctx.subscriber(broker.port)
    vms = [{"name": n, "qmp": a} for n, a in sim.vms()]
    d = ctx.daemon(vms=vms[:1], port=broker.port)
    sim.wait_ready(1, 20)
    h.wait_online(sub, ["vm1"], 20)
    good = config_text(d, broker.port, vms[:1])
    bad = good.replace("vms = (", "vms = (\n  { name = \"x\"; qmp = 7; },")
    line = reload(d, bad, "invalid reload")
    check("reload refused" in line and "qmp2mqtt.conf:" in line,
          "invalid reload: %s" % line)
    st = bridge_state(sub, lambda s: s.get("config_error"), "config_error")
    check("vms" in st["config_error"] and ":" in st["config_error"],
          "config_error: %r" % st["config_error"])
    h.log("config_error: %s" % st["config_error"])
    d.check_alive()
    # Still serving as before: an event goes through.
    mark = sub.mark(h.event_topic("vm1"))
    sim.cmd("exit vm1 primary error")
    sub.wait_for(lambda m: True, 10, topic=h.event_topic("vm1"), since=mark)
    # state_dir cannot change while running.
    line = reload(d, config_text(d, broker.port, vms[:1], bridge={
        "state_dir": ctx.subdir("state")}), "state_dir reload")
    check("state_dir" in line and "cannot change" in line,
          "state_dir reload: %s" % line)
    st = bridge_state(sub, lambda s: "state_dir" in (s.get("config_error")
                                                      or ""), "error")
    # A valid one clears the error and applies.
    line = reload(d, config_text(d, broker.port, vms), "valid reload")
    check("applied" in line, "valid reload: %s" % line)
    bridge_state(sub, lambda s: s.get("config_error") is None and
                 s.get("vms") == 2, "config_error cleared, 2 VMs")
    h.wait_online(sub, ["vm1", "vm2"], 20)


def test_broker_settings_and_clear(ctx):
    broker = ctx.mosquitto()
    sim = ctx.sim(2)
    sub = ctx.subscriber(broker.port)
    vms = [{"name": n, "qmp": a} for n, a in sim.vms()]
    d = ctx.daemon(vms=vms, port=broker.port,
                   bridge={"removed_vm_state": "clear"})
    sim.wait_ready(2, 20)
    h.wait_online(sub, ["vm1", "vm2"], 20)
    sim.cmd("burst vm1 300 600")
    line = reload(d, config_text(d, broker.port, vms[:1], bridge={
        "removed_vm_state": "clear"}, mqtt={"keepalive": 7}),
        "broker reload")
    check("reconnecting" in line, "broker settings reload: %s" % line)
    sub.wait(lambda s: len(s.by_topic.get(h.event_topic("vm1"), [])) >= 300,
             30, "300 events of vm1")
    seqs = [m.json()["seq"] for m in sub.on(h.event_topic("vm1"))]
    check_eq(sorted(set(seqs)), list(range(1, 301)), "vm1's seqs (nothing "
             "lost across the reconnect)")
    st = h.stats_until(sub, d, lambda s: s["totals"]["mqtt_connects"] >= 2,
                       10, "the reconnect")
    check_eq(st["totals"]["mqtt_connects"], 2, "exactly one reconnect")
    # vm2 was removed with "clear": its retained topics are empty.
    sub.wait(lambda s: any(m.payload == b"" for m in
                           s.by_topic.get(h.state_topic("vm2"), [])), 10,
             "vm2's state cleared")
    late = ctx.subscriber(broker.port)
    late.wait_for(lambda m: True, 10, topic=h.state_topic("vm1"))
    check_eq(late.on(h.state_topic("vm2")), [], "retained state of vm2 for "
             "a late subscriber")


def test_remove_while_broker_down(ctx):
    """A VM removed while the broker is away: its retained state still
    ends as "gone" once the broker is back (a state message is dropped by
    a reconnect, since the current state is published again then; a
    removed VM's last one has nobody to publish it again)."""
    broker = ctx.mosquitto(persistence=True)
    sim = ctx.sim(2)
    sub = ctx.subscriber(broker.port)
    vms = [{"name": n, "qmp": a} for n, a in sim.vms()]
    d = ctx.daemon(vms=vms, port=broker.port)
    sim.wait_ready(2, 20)
    h.wait_online(sub, ["vm1", "vm2"], 20)
    sub.wait_json(h.state_topic("vm2"), lambda s: s["qmp"] == "connected",
                  10, "vm2 connected")
    broker.stop()
    line = reload(d, config_text(d, broker.port, vms[:1]), "reload")
    check("applied" in line, "reload not applied: %s" % line)
    broker.start()
    late = ctx.subscriber(broker.port)
    st = late.wait_json(h.state_topic("vm2"), lambda s: s.get("gone") is
                        True, 20, "vm2's retained state gone").json()
    check_eq(st["vm"], "vm2", "the gone state's vm")
    late.wait_payload(h.avail_topic("vm2"), "offline", 10)
    late.wait_payload(h.avail_topic("vm1"), "online", 10)


def test_host_changed(ctx):
    """bridge.host changed by a reload: the old host's bridge/state says
    offline (a clean reconnect fires no Last Will) and its VMs' states say
    gone; the new host's are online."""
    broker = ctx.mosquitto()
    sim = ctx.sim(1)
    sub = ctx.subscriber(broker.port)
    vms = [{"name": n, "qmp": a} for n, a in sim.vms()]
    d = ctx.daemon(vms=vms, port=broker.port)
    sim.wait_ready(1, 20)
    h.wait_online(sub, ["vm1"], 20)
    bridge_state(sub, lambda s: s["state"] == "online", "online as hv1")
    line = reload(d, config_text(d, broker.port, vms,
                                 bridge={"host": "hv9"}), "host reload")
    check("reconnecting" in line, "a host change reconnects: %s" % line)
    late = ctx.subscriber(broker.port)
    late.wait_json(h.bridge_topic("state", host="hv9"), lambda s:
                   s["state"] == "online", 20, "hv9's bridge/state online")
    st = late.wait_json(h.bridge_topic("state"), lambda s: s["state"] ==
                        "offline", 10, "hv1's bridge/state offline").json()
    check_eq(st["host"], h.HOST, "the old topic's payload names hv1")
    late.wait_json(h.state_topic("vm1"), lambda s: s.get("gone") is True,
                   10, "hv1/vm1's state gone")
    late.wait_payload(h.avail_topic("vm1", host="hv9"), "online", 10)


def test_pair_leaves_at_once(ctx):
    """Both halves of a local pair (each the other's peer) leave in one
    reload, and in another one half's address changes while the other
    leaves: the bridge keeps running (under the sanitizers: without a
    use after free) and both end gone."""
    broker = ctx.mosquitto()
    sim = ctx.sim(5)
    sub = ctx.subscriber(broker.port)
    a = dict(sim.vms())

    def pair(x, y, qx=None):
        return [{"name": x, "qmp": qx or a[x], "peer": "%s/%s" % (h.HOST, y)},
                {"name": y, "qmp": a[y], "peer": "%s/%s" % (h.HOST, x)}]
    vms = pair("vm1", "vm2") + pair("vm3", "vm4") + [
        {"name": "vm5", "qmp": a["vm5"]}]
    d = ctx.daemon(vms=vms, port=broker.port)
    sim.wait_ready(5, 20)
    h.wait_online(sub, ["vm1", "vm2", "vm3", "vm4", "vm5"], 20)
    line = reload(d, config_text(d, broker.port, vms[2:]), "pair 1 leaves")
    check("applied" in line, "reload not applied: %s" % line)
    for vm in ("vm1", "vm2"):
        sub.wait_json(h.state_topic(vm), lambda s: s.get("gone") is True,
                      10, "%s gone" % vm)
    d.check_alive()
    # vm3 moves to vm1's socket while vm4 leaves.
    i = sim.mark()
    line = reload(d, config_text(d, broker.port, [
        {"name": "vm3", "qmp": a["vm1"], "peer": "%s/vm4" % h.HOST},
        vms[4]]), "vm3 moves, vm4 leaves")
    check("applied" in line, "reload not applied: %s" % line)
    sub.wait_json(h.state_topic("vm4"), lambda s: s.get("gone") is True,
                  10, "vm4 gone")
    sim.wait_async(r"^client vm1 ready$", 10, since=i)
    d.check_alive()
    sub.wait_payload(h.avail_topic("vm5"), "online", 10)


if __name__ == "__main__":
    h.main(test_add_remove_change, test_invalid_and_restart_only,
           test_broker_settings_and_clear, test_remove_while_broker_down,
           test_host_changed, test_pair_leaves_at_once)
