#!/usr/bin/python3
"""The broker goes away; no event is lost.

(a) The broker is down when the daemon starts: it keeps retrying, keeps
    the events that arrive meanwhile and delivers all of them, in order and
    once each, when the broker comes up on that port.
(b) The broker is restarted (SIGTERM, persistence on) in the middle of a
    stream of events: a subscriber with a persistent session (fixed client
    id, clean_start false, session expiry, QoS 1) gets every event;
    duplicates are allowed (QoS 1) and recognised by their seq.

Events reach a subscriber that is offline through its persistent session,
so the test never races the daemon's (re)connection.
"""
# TIMEOUT = 180

import os
import threading
import time

import harness as h
from harness import check, check_eq


def make_session(ctx, broker, client_id):
    """Creates the persistent session (subscription) and disconnects."""
    sub = h.Subscriber(ctx, broker.port, session=True, client_id=client_id)
    sub.start()
    check(not sub.session_present, "fresh broker has a session already")
    sub.stop()
    return sub


def per_vm(sub, daemon, names):
    out = {}
    for n in names:
        out[n] = [h.check_event(m, n, daemon)
                  for m in sub.on(h.event_topic(n))]
    return out


def test_broker_down_at_start(ctx):
    nvms, first, second = 3, 20, 15
    port = h.free_port()
    broker = h.Mosquitto(ctx, port=port, persistence=True)
    broker.start()
    cid = "e2e-persist-%d-a" % os.getpid()
    sub = make_session(ctx, broker, cid)
    broker.stop()

    sim = ctx.sim(nvms)
    names = [sim.vm(i) for i in range(1, nvms + 1)]
    daemon = ctx.daemon(sim.vms(), port)
    # QMP does not wait for MQTT.
    sim.wait_ready(nvms, timeout=20)
    sim.cmd("burst all %d" % first)
    # The scenario: the broker stays away for a while (several of the
    # daemon's 50..500 ms retries), and more events come meanwhile.
    time.sleep(1.5)
    daemon.check_alive()
    sim.cmd("burst all %d" % second)
    time.sleep(0.5)
    daemon.check_alive()
    check(not h.port_accepts(port), "something else listens on %d" % port)

    broker.start()
    sub.start()
    check(sub.session_present, "the broker lost the persistent session "
          "(harness/broker problem, not the daemon)")
    total = nvms * (first + second)
    try:
        sub.wait(lambda s: s.n_events >= total, 30, "%d events" % total)
    except h.TestFailure:
        h.fail("after the broker came up: %d of %d events arrived (%s)" %
               (sub.n_events, total,
                {n: sub.count(h.event_topic(n)) for n in names}))
    evs = per_vm(sub, daemon, names)
    want = list(range(1, first + second + 1))
    for n in names:
        check_eq([h.sim_k(e) for e in evs[n]], want,
                 "%s: event numbers (in order, once each)" % n)
        check_eq([e["seq"] for e in evs[n]], want, "%s: seq" % n)
    h.wait_online(sub, names, 15)
    sub.wait_json(h.bridge_topic("state"),
                  lambda s: s.get("state") == "online", 10)
    daemon.check_alive()


def test_broker_restart_mid_stream(ctx):
    nvms, rounds, per_round = 5, 60, 5
    broker = ctx.mosquitto(persistence=True)
    cid = "e2e-persist-%d-b" % os.getpid()
    sub = h.Subscriber(ctx, broker.port, session=True, client_id=cid)
    sub.start()
    sim = ctx.sim(nvms)
    names = [sim.vm(i) for i in range(1, nvms + 1)]
    daemon = ctx.daemon(sim.vms(), broker.port)
    h.wait_online(sub, names, 20)

    errors = []

    def stream():
        # Paced event generation; ~3 s in all.
        try:
            for _ in range(rounds):
                sim.cmd("burst all %d" % per_round)
                time.sleep(0.05)
        except BaseException as e:   # reported by the main thread
            errors.append(e)

    th = threading.Thread(target=stream, daemon=True)
    th.start()
    sub.wait(lambda s: s.n_events >= nvms * per_round * 10, 20,
             "the stream to be flowing")
    h.log("restarting the broker after %d events" % sub.n_events)
    broker.stop()
    down_at = sub.n_events
    # The broker stays down a moment while the stream goes on.
    time.sleep(0.7)
    broker.start()
    th.join(60)
    check(not th.is_alive(), "event generator stuck")
    check(not errors, "event generator: %r" % errors)
    total = nvms * rounds * per_round

    def complete(s):
        for n in names:
            ks = set()
            for m in s.by_topic.get(h.event_topic(n), []):
                ks.add(h.sim_k(m.json()))
            if len(ks) < rounds * per_round:
                return False
        return True
    try:
        sub.wait(complete, 60, "every event of every VM")
    except h.TestFailure:
        lost = {}
        for n in names:
            got = {h.sim_k(m.json()) for m in sub.on(h.event_topic(n))}
            miss = sorted(set(range(1, rounds * per_round + 1)) - got)
            if miss:
                lost[n] = miss[:30]
        h.fail("events lost across the broker restart (missing k per VM, "
               "first 30): %s" % lost)
    evs = per_vm(sub, daemon, names)
    dups = 0
    for n in names:
        firsts = []
        seen = set()
        for e in evs[n]:
            k = h.sim_k(e)
            check_eq(e["seq"], k, "%s: seq of event k=%d" % (n, k))
            if k in seen:
                dups += 1
            else:
                seen.add(k)
                firsts.append(k)
        check_eq(firsts, list(range(1, rounds * per_round + 1)),
                 "%s: first deliveries in order" % n)
    h.log("%d events, %d duplicates; %d had arrived when the broker "
          "stopped" % (total, dups, down_at))
    check(sub.connects >= 2, "subscriber did not reconnect?")
    h.wait_online(sub, names, 15)
    daemon.check_alive()


def test_mqtt_311(ctx):
    """mqtt.version = 3 (3.1.1): the same topics and payloads."""
    broker = ctx.mosquitto()
    sim = ctx.sim(2)
    sub = ctx.subscriber(broker.port, protocol=3)
    daemon = ctx.daemon(sim.vms(), broker.port, mqtt={"version": 3})
    names = [sim.vm(1), sim.vm(2)]
    h.wait_online(sub, names, 20)
    broker.wait_log(r"as %s \(p2," % daemon.client_id, 5)
    sim.cmd("exit %s primary error" % names[0])
    m = sub.wait_for(lambda m: True, 10, topic=h.event_topic(names[0]))
    h.check_event(m, names[0], daemon, mode="primary", reason="error",
                  seq=1, time_us=h.SIM_EPOCH_US + 1)
    check_eq(daemon.stop(), 0, "exit code")
    m = sub.wait_json(h.bridge_topic("state"),
                      lambda s: s.get("state") == "offline", 10)
    for n in names:
        sub.wait_payload(h.avail_topic(n), "offline", 10)


if __name__ == "__main__":
    h.main(test_broker_down_at_start, test_broker_restart_mid_stream,
           test_mqtt_311)
