#!/usr/bin/python3
"""MQTT 5 shared subscriptions for consumers that scale out: two consumers
in one share group ($share/colo/qmp2mqtt/+/+/event/colo_exit) on mosquitto;
every event of a stream from 4 simulated VMs is delivered to exactly one of
them (none lost, none twice), and both get some.
"""
# TIMEOUT = 60

import harness as h
from harness import check, check_eq

VMS, N = 4, 100
SHARE = "$share/colo/%s/+/+/event/colo_exit" % h.BASE


def test_share_group(ctx):
    broker = ctx.mosquitto()
    c1 = ctx.subscriber(broker.port, topics=(SHARE,))
    c2 = ctx.subscriber(broker.port, topics=(SHARE,))
    watch = ctx.subscriber(broker.port)
    sim = ctx.sim(VMS)
    ctx.daemon(sim.vms(), broker.port)
    sim.wait_ready(VMS, 20)
    h.wait_online(watch, [sim.vm(i) for i in range(1, VMS + 1)], 20)
    sim.cmd("burst all %d" % N, timeout=30)
    total = VMS * N

    def n(s):
        return s.n_events
    # Two clients: nothing notifies "one or the other": a bounded poll.
    for _ in h.deadline_loop(20 * h.SLOW, 0.05):
        if n(c1) + n(c2) >= total:
            break
    got = [(m.topic, m.json()["seq"]) for c in (c1, c2) for m in c.msgs]
    check_eq(len(got), total, "deliveries in the group")
    check_eq(len(set(got)), total, "distinct (vm, seq) in the group")
    h.log("consumer 1: %d, consumer 2: %d" % (n(c1), n(c2)))
    check(n(c1) > 0 and n(c2) > 0, "one consumer got nothing: %d / %d"
          % (n(c1), n(c2)))
    watch.wait(lambda s: s.n_events >= total, 10, "all events, plain sub")
    check_eq(watch.n_events, total, "events seen by a plain subscriber")


if __name__ == "__main__":
    h.main(test_share_group)
