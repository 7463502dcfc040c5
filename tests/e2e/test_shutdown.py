#!/usr/bin/python3
"""Clean shutdown and Last Will.

SIGTERM (and SIGINT): the daemon exits 0 after publishing bridge/state
{"state":"offline",...} retained and its VMs' availability offline.
kill -9: the broker publishes the Last Will (bridge/state offline) once it
notices the dead connection (at the latest 1.5 x keepalive).
"""
# TIMEOUT = 120

import signal

import harness as h
from harness import check, check_eq

NVMS = 3


def offline_ok(d, daemon):
    return (d.get("state") == "offline" and d.get("schema") == 1 and
            d.get("host") == daemon.host and d.get("bridge") ==
            daemon.bridge_id)


def setup(ctx, **kw):
    broker = ctx.mosquitto()
    sim = ctx.sim(NVMS)
    sub = ctx.subscriber(broker.port)
    daemon = ctx.daemon(sim.vms(), broker.port, **kw)
    names = [sim.vm(i) for i in range(1, NVMS + 1)]
    h.wait_online(sub, names, 20)
    sub.wait_json(h.bridge_topic("state"),
                  lambda s: s.get("state") == "online", 10,
                  "bridge/state online")
    # mqtt.version = 5: mosquitto logs "(p5, ...)" for an MQTT 5 client.
    broker.wait_log(r"as %s \(p5," % daemon.client_id, 5)
    return broker, sim, sub, daemon, names


def clean_stop(ctx, sig):
    broker, sim, sub, daemon, names = setup(ctx)
    # An event just before the signal must not be lost in the flush.
    sim.cmd("exit %s primary error" % names[0])
    sub.wait_for(lambda m: True, 10, topic=h.event_topic(names[0]))
    daemon.expect_exit = True
    daemon.proc.signal(sig)
    rc = daemon.proc.wait(15 * h.SLOW)
    if rc is None:
        daemon.kill9()
        h.fail("daemon did not exit within %.0fs of %s" %
               (15 * h.SLOW, signal.Signals(sig).name))
    check_eq(rc, 0, "daemon exit code after %s" % signal.Signals(sig).name)
    m = sub.wait_json(h.bridge_topic("state"),
                      lambda s: s.get("state") == "offline", 5,
                      "bridge/state offline")
    check(m.retain, "bridge/state offline not retained")
    check(offline_ok(m.json(), daemon), "bridge/state offline payload: %r"
          % m.json())
    for n in names:
        sub.wait_payload(h.avail_topic(n), "offline", 5)
    reps = daemon.sanitizer_reports()
    check(not reps, "sanitizer reports: %s" % reps)
    # What a late subscriber sees.
    late = ctx.subscriber(broker.port)
    m = late.wait_for(lambda m: True, 10, topic=h.bridge_topic("state"))
    check(m.retain and offline_ok(m.json(), daemon),
          "late subscriber: bridge/state %r" % m)
    for n in names:
        m = late.wait_for(lambda m: True, 10, topic=h.avail_topic(n))
        check(m.retain and m.payload == b"offline",
              "late subscriber: availability of %s: %r" % (n, m))


def test_sigterm(ctx):
    clean_stop(ctx, signal.SIGTERM)


def test_sigint(ctx):
    clean_stop(ctx, signal.SIGINT)


def test_kill9_last_will(ctx):
    keepalive = 2
    broker, sim, sub, daemon, names = setup(
        ctx, mqtt={"keepalive": keepalive})
    daemon.kill9()
    # The socket closes with the process; keepalive bounds it anyway.
    m = sub.wait_json(h.bridge_topic("state"),
                      lambda s: s.get("state") == "offline",
                      1.5 * keepalive + 5, "Last Will (bridge/state offline)")
    check(offline_ok(m.json(), daemon), "Last Will payload: %r" % m.json())
    check(m.retain, "Last Will not retained")
    late = ctx.subscriber(broker.port)
    m = late.wait_for(lambda m: True, 10, topic=h.bridge_topic("state"))
    check(m.retain and offline_ok(m.json(), daemon),
          "late subscriber: bridge/state after kill -9: %r" % m)


def test_restart_online_again(ctx):
    """After a clean stop, a new daemon publishes online again."""
    broker, sim, sub, daemon, names = setup(ctx)
    check_eq(daemon.stop(), 0, "daemon exit code after SIGTERM")
    sub.wait_json(h.bridge_topic("state"),
                  lambda s: s.get("state") == "offline", 5)
    mark = sub.mark(h.bridge_topic("state"))
    d2 = h.Daemon(ctx, vms=sim.vms(), port=broker.port, name=daemon.name)
    d2.start()
    sub.wait_json(h.bridge_topic("state"),
                  lambda s: s.get("state") == "online" and
                  s.get("vms") == NVMS, 10, "bridge/state online again",
                  since=mark)
    h.wait_online(sub, names, 20)
    sim.cmd("exit %s secondary request" % names[1])
    m = sub.wait_for(lambda m: True, 10, topic=h.event_topic(names[1]))
    check(m.json()["mode"] == "secondary" and
          m.json()["reason"] == "request", "event after restart: %r" % m)


if __name__ == "__main__":
    h.main(test_sigterm, test_sigint, test_kill9_last_will,
           test_restart_online_again)
