#!/usr/bin/python3
"""A clustered broker for real: two ejabberd 23.01 nodes (mod_mqtt) on
loopback, private node names, ports and directories, joined with
`ejabberdctl join_cluster`.

Two bridges: hvA connected to node A (uri list [A, B]), hvB to node B
([B, A]), simulated VMs without a peer: the request carries "force": true
(auth acl) to pass the pair rules.  Checked:
- a consumer on node A sees both hosts (availability, events);
- a takeover request published on node A reaches hvB's VM (connected to
  node B): one heartbeat, result ok seen on node A;
- node A stopped mid-stream (the simulator streaming hvA's events): hvA
  fails over to node B and a consumer with a persistent session on node B
  gets every (vm, seq) of the stream.
"""
# TIMEOUT = 180

import json
import os
import threading
import time

import harness as h
from harness import check, check_eq
import secure_util as su

N = 300


def node_uris(*nodes):
    return ["tcp://127.0.0.1:%d" % n.port for n in nodes]


def bridge(ctx, host, sim, first, second):
    pw = su.write_secret(os.path.join(ctx.dir, "pw-" + host), "any\n")
    d = h.Daemon(ctx, vms=sim.vms(), port=first.port, name=host,
                 bridge={"host": host, "status_interval_s": 1},
                 mqtt={"uri": node_uris(first, second),
                       "username": host + "@localhost",
                       "password_file": pw})
    d.text += 'takeover = { enabled = true; auth = "acl"; };\n'
    with open(d.conf, "w") as f:
        f.write(d.text)
    return d.start()


def consumer(ctx, node, name, session=False):
    return su.PwSubscriber(ctx, node.port, name + "@localhost", "x",
                           client_id="q2m-%s-%d" % (name, os.getpid()),
                           session=session).start(20)


def test_cluster(ctx):
    tag = os.getpid()
    a = su.Ejabberd(ctx, "q2mA%d" % tag).start()
    b = su.Ejabberd(ctx, "q2mB%d" % tag).start()
    rc, out = b.ctl("join_cluster", a.node)
    check_eq(rc, 0, "join_cluster (%s)" % out[-500:])
    b.wait_port()
    rc, out = a.ctl("list_cluster")
    check(a.node in out and b.node in out, "list_cluster: %s" % out)

    cons_a = consumer(ctx, a, "opsA")
    cons_b = consumer(ctx, b, "opsB", session=True)
    sim_a = ctx.sim(1, name="simA")
    sim_b = ctx.sim(1, name="simB")
    da = bridge(ctx, "hvA", sim_a, a, b)
    db = bridge(ctx, "hvB", sim_b, b, a)
    sim_a.wait_ready(1, 20)
    sim_b.wait_ready(1, 20)

    def online(s):
        return all(s.last(h.avail_topic("vm1", host)) is not None and
                   s.last(h.avail_topic("vm1", host)).payload == b"online"
                   for host in ("hvA", "hvB"))
    cons_a.wait(online, 20, "both hosts online seen on node A")
    su.daemon_log_wait(da, lambda ln: "connected to tcp://127.0.0.1:%d"
                       % a.port in ln, 5, "hvA on node A")
    su.daemon_log_wait(db, lambda ln: "connected to tcp://127.0.0.1:%d"
                       % b.port in ln, 5, "hvB on node B")
    for sim in (sim_a, sim_b):
        sim.cmd("exit vm1 primary error")
    for host, d in (("hvA", da), ("hvB", db)):
        m = cons_a.wait_for(lambda m: True, 10,
                            topic=h.event_topic("vm1", host),
                            what="%s's event on node A" % host)
        h.check_event(m, "vm1", d, host=host)

    # A takeover of hvB's VM, requested through node A.
    import paho.mqtt.client as mqtt
    ops = mqtt.Client(client_id="ops-%d" % tag, protocol=mqtt.MQTTv5)
    ops.username_pw_set("ops@localhost", "x")
    ops.connect("127.0.0.1", a.port)
    ops.loop_start()
    try:
        rt = "%s/hvB/vm1/result/takeover" % h.BASE
        mark = cons_a.mark(rt)
        req = {"id": "cl-%d" % tag, "issued_us": int(time.time() * 1e6),
               "expect_mode": "primary", "force": True}
        ops.publish("%s/hvB/vm1/cmd/takeover" % h.BASE, json.dumps(req),
                    qos=1).wait_for_publish(5)
        r = cons_a.wait_for(lambda m: m.json().get("id") == req["id"], 15,
                            topic=rt, since=mark,
                            what="result via node A").json()
    finally:
        ops.loop_stop()
        ops.disconnect()
    h.log("result: %s" % r)
    check_eq((r["status"], r["reason"]), ("ok", "ok"), "takeover via A")
    check_eq(sim_b.count("vm1")["heartbeats"], 1, "heartbeats on hvB's VM")

    # Node A stopped mid-stream: hvA fails over to B, nothing lost.
    ans = []
    t = threading.Thread(target=lambda: ans.append(
        sim_a.cmd("burst vm1 %d 100" % N, timeout=60)))
    t.start()
    try:
        cons_b.wait(lambda s: len(s.by_topic.get(
            h.event_topic("vm1", "hvA"), [])) >= 50, 15, "stream under way")
        a.stop()
        h.log("node A stopped")
    finally:
        t.join(70)
    check(ans and ans[0].startswith("ok"), "burst: %r" % ans)
    su.daemon_log_wait(da, lambda ln: "connected to tcp://127.0.0.1:%d"
                       % b.port in ln, 30, "hvA failed over to node B")
    topic = h.event_topic("vm1", "hvA")
    # k = 1 was the single exit above; the burst is k = 2 .. N + 1.
    want = set(range(1, N + 2))

    def ks(s):
        return {h.sim_k(m.json()) for m in s.by_topic.get(topic, [])}
    try:
        cons_b.wait(lambda s: want <= ks(s), 30, "every event on node B")
    finally:
        h.log("node B consumer: %d of %d distinct events, %d copies" %
              (len(ks(cons_b) & want), len(want),
               len(cons_b.by_topic.get(topic, []))))


if __name__ == "__main__":
    h.main(test_cluster)
