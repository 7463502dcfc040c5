#!/usr/bin/python3
"""A list of broker URIs (mqtt.uri = ["tcp://...:P1", "tcp://...:P2"]).

- The first broker down at start: the bridge connects to the second (its
  log names the URI it connected to) and publishes there.
- Connected to the first, which then goes away for good: the bridge
  reconnects to the second, with every event of a stream that ran through
  the switch delivered: observers on both brokers, each event number
  arrives on the second or arrived on the first before it stopped.
- All down: one failure line that names the list.
"""
# TIMEOUT = 90

import threading

import harness as h
from harness import check
import secure_util as su

N = 300


def uris(*ports):
    return ["tcp://127.0.0.1:%d" % p for p in ports]


def test_first_down_at_start(ctx):
    dead = h.free_port()            # nothing listens there
    b2 = ctx.mosquitto()
    sub = ctx.subscriber(b2.port)
    sim = ctx.sim(1)
    d = ctx.daemon(sim.vms(), b2.port, mqtt={"uri": uris(dead, b2.port)})
    h.wait_online(sub, ["vm1"], 20)
    su.daemon_log_wait(d, lambda ln: "mqtt: connected to tcp://127.0.0.1:%d"
                       % b2.port in ln, 10, "connected to the second URI")
    sim.wait_ready(1, 20)
    sim.cmd("exit vm1 primary error")
    sub.wait_for(lambda m: True, 10, topic=h.event_topic("vm1"),
                 what="event on the second broker")


def test_switch_mid_stream(ctx):
    b1 = ctx.mosquitto()
    b2 = ctx.mosquitto()
    s1 = ctx.subscriber(b1.port)
    s2 = ctx.subscriber(b2.port)
    sim = ctx.sim(1)
    d = ctx.daemon(sim.vms(), b1.port, mqtt={"uri": uris(b1.port, b2.port)})
    h.wait_online(s1, ["vm1"], 20)
    sim.wait_ready(1, 20)
    # ~2 s of events; the answer comes at the end: ask from a thread.
    ans = []
    t = threading.Thread(target=lambda: ans.append(
        sim.cmd("burst vm1 %d 150" % N, timeout=30)))
    t.start()
    try:
        # The first broker goes away mid-stream, for good.
        s1.wait(lambda s: s.n_events >= N // 3, 10, "a third of the stream")
        b1.stop()
    finally:
        t.join(40)
    check(ans and ans[0].startswith("ok"), "burst: %r" % ans)
    want = set(range(1, N + 1))

    def seen(s):
        return {h.sim_k(m.json()) for m in
                s.by_topic.get(h.event_topic("vm1"), [])}

    def all_arrived(_s):
        return want <= (seen(s1) | seen(s2))
    s2.wait(all_arrived, 30, "every event on one broker or the other")
    su.daemon_log_wait(d, lambda ln: "mqtt: connected to tcp://127.0.0.1:%d"
                       % b2.port in ln, 5, "connected to the second URI")
    h.log("first broker got %d, second %d" % (len(seen(s1)), len(seen(s2))))
    check(seen(s2), "nothing reached the second broker")


def test_all_down(ctx):
    p1, p2 = h.free_port(), h.free_port()
    d = ctx.daemon([("vm1", "unix:/nonexistent")], p1,
                   mqtt={"uri": uris(p1, p2)})
    line = su.daemon_log_wait(d, lambda ln: "mqtt: cannot connect" in ln, 10,
                              "failure line")
    h.log(line)
    check("any of tcp://127.0.0.1:%d .. tcp://127.0.0.1:%d (2 URIs" %
          (p1, p2) in line, "the line names the list: %s" % line)


if __name__ == "__main__":
    h.main(test_first_down_at_start, test_switch_mid_stream, test_all_down)
