#!/usr/bin/python3
"""Edge layout: a mosquitto per rack, bridged into a central one
(docs/notes-secure.md "Edge brokers"):

    connection rackN
    address 127.0.0.1:CENTRAL
    topic qmp2mqtt/# out 1
    topic qmp2mqtt/+/+/cmd/# in 1

Two edge brokers, a qmp2mqtt on each (hosts rack1-hv, rack2-hv, simulated
VMs), one consumer on the central broker: it sees both hosts (availability,
events), and a takeover request published on the central broker reaches
rack1-hv's VM (one heartbeat on the simulator) and its result comes back.
"""
# TIMEOUT = 90

import json
import os
import time

import harness as h
from harness import check, check_eq

HOSTS = ("rack1-hv", "rack2-hv")


def edge(ctx, central, n):
    conf = "\n".join([
        "connection rack%d" % n,
        "address 127.0.0.1:%d" % central.port,
        "remote_clientid rack%d-bridge" % n,
        "cleansession false",
        "restart_timeout 1 2",
        "topic %s/# out 1" % h.BASE,
        "topic %s/+/+/cmd/# in 1" % h.BASE])
    b = h.Mosquitto(ctx, extra=conf).start()
    central.wait_log(r"Sending SUBACK to rack%d-bridge" % n, 15)
    return b


def test_edge_bridging(ctx):
    central = ctx.mosquitto()
    consumer = ctx.subscriber(central.port)
    edges = [edge(ctx, central, 1), edge(ctx, central, 2)]
    sims, daemons = [], []
    for i, (b, host) in enumerate(zip(edges, HOSTS), 1):
        sim = ctx.sim(1, prefix="vm", name="sim%d" % i,
                      args=("--mode", "primary"))
        d = h.Daemon(ctx, vms=sim.vms(), port=b.port, name=host,
                     bridge={"host": host, "status_interval_s": 1})
        d.text += 'takeover = { enabled = true; auth = "acl"; };\n'
        with open(d.conf, "w") as f:
            f.write(d.text)
        d.start()
        sims.append(sim)
        daemons.append(d)
    for sim in sims:
        sim.wait_ready(1, 20)

    def online(s):
        return all(s.last(h.avail_topic("vm1", host)) is not None and
                   s.last(h.avail_topic("vm1", host)).payload == b"online"
                   for host in HOSTS)
    consumer.wait(online, 20, "both racks' VMs online on the central broker")
    for sim in sims:
        sim.cmd("exit vm1 primary error")
    for host, d in zip(HOSTS, daemons):
        m = consumer.wait_for(lambda m: True, 10,
                              topic=h.event_topic("vm1", host),
                              what="%s's event on the central broker" % host)
        h.check_event(m, "vm1", d, host=host)

    # A command from the central broker reaches rack1-hv's VM.
    import paho.mqtt.client as mqtt
    ops = mqtt.Client(client_id="ops-%d" % os.getpid(), protocol=mqtt.MQTTv5)
    ops.connect("127.0.0.1", central.port)
    ops.loop_start()
    try:
        rt = "%s/%s/vm1/result/takeover" % (h.BASE, HOSTS[0])
        mark = consumer.mark(rt)
        req = {"id": "edge-%d" % os.getpid(),
               "issued_us": int(time.time() * 1e6),
               "expect_mode": "primary", "force": True}
        ops.publish("%s/%s/vm1/cmd/takeover" % (h.BASE, HOSTS[0]),
                    json.dumps(req), qos=1).wait_for_publish(5)
        r = consumer.wait_for(lambda m: m.json().get("id") == req["id"], 15,
                              topic=rt, since=mark,
                              what="takeover result via the central broker"
                              ).json()
    finally:
        ops.loop_stop()
        ops.disconnect()
    h.log("result: %s" % r)
    check_eq((r["status"], r["reason"]), ("ok", "ok"), "forced takeover")
    check_eq(sims[0].count("vm1")["heartbeats"], 1, "heartbeats on rack1")
    check_eq(sims[1].count("vm1")["heartbeats"], 0, "heartbeats on rack2")


if __name__ == "__main__":
    h.main(test_edge_bridging)
