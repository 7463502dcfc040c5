#!/usr/bin/python3
"""The pair rules on a real QEMU 7.2 COLO pair served by two bridges.

Bridge A (host hvA) serves the primary "pri", bridge B (host hvB) the
secondary "sec"; each names the other half as its peer
(peer = "hvB/sec", peer = "hvA/pri") and follows it through the broker.
The test drives and checks QEMU through its own monitors, and sends
signed requests with its own MQTT 5 client.  Checked (README "Pair
rules"):
  - a request for the secondary while the primary runs: peer_alive, and
    QEMU received no heartbeat (both still in COLO);
  - requests for both halves published back to back: exactly one ok (the
    primary) and one refusal (the secondary), one heartbeat in all;
  - kill -9 of the primary QEMU: its bridge publishes liveness "gone";
    then the secondary's request is ok;
  - the primary's bridge killed (Last Will: offline) with the primary
    QEMU still running: the secondary's request is peer_unknown, QEMU
    untouched; the same request with "force": true executes, and the
    bridge logs it as forced.
"""
# TIMEOUT = 150

import harness as h
from harness import check, check_eq
from test_takeover import (Client, cmd_topic, enc, request, result_topic,
                           takeover_daemon, write_key)

A, B = "hvA", "hvB"


def topic(host, vm, suffix):
    return "%s/%s/%s/%s" % (h.BASE, host, vm, suffix)


class Fleet:
    """A QEMU pair, a broker, two bridges (one half each), a subscriber
    and the operator's client."""

    def __init__(self, ctx, name="colo"):
        self.ctx = ctx
        self.pair = ctx.qemu_pair(name=name)
        self.broker = ctx.mosquitto()
        self.sub = ctx.subscriber(self.broker.port)
        self.keyfile, self.key = write_key(ctx)
        tk = {"enabled": True, "key_file": self.keyfile}
        self.da = takeover_daemon(
            ctx, [{"name": "pri", "qmp": "unix:" + self.pair.pri_bridge,
                   "peer": B + "/sec"}], self.broker.port, tk,
            bridge={"host": A}, name="bridgeA-" + name,
            mqtt={"keepalive": 2})
        self.db = takeover_daemon(
            ctx, [{"name": "sec", "qmp": "unix:" + self.pair.sec_bridge,
                   "peer": A + "/pri"}], self.broker.port, tk,
            bridge={"host": B}, name="bridgeB-" + name)
        # Each half in COLO, and each bridge sees the other half.
        for host, vm, mode in ((A, "pri", "primary"), (B, "sec",
                                                        "secondary")):
            self.state(host, vm, lambda s, mode=mode: s.get("mode") == mode
                       and (s.get("peer") or {}).get("bridge") == "online"
                       and (s.get("peer") or {}).get("liveness") == "alive",
                       "%s in COLO, peer seen alive" % mode)
        self.ops = Client(ctx, self.broker.port)

    def state(self, host, vm, pred, what, timeout=20):
        t = topic(host, vm, "state")
        try:
            return self.sub.wait_json(t, pred, timeout, what)
        except h.TestFailure:
            last = self.sub.last(t)
            h.fail("state of %s/%s never showed %s; last: %s" %
                   (host, vm, what, last.payload.decode() if last else None))

    def send(self, host, vm, **kw):
        o = request(self.key, vm, host=host, **kw)
        mark = self.sub.mark(topic(host, vm, "result/takeover"))
        self.ops.publish(cmd_topic(vm, host), enc(o))
        return o["id"], mark

    def result(self, host, vm, rid, mark, timeout=20):
        m = self.sub.wait_for(lambda m: m.json().get("id") == rid, timeout,
                              topic=topic(host, vm, "result/takeover"),
                              since=mark, what="result of %s" % rid)
        r = m.json()
        h.log("result %s/%s: %s" % (host, vm, m.payload.decode()))
        return r

    def modes(self):
        return (self.pair.pri_mon.cmd("query-colo-status").get("mode"),
                self.pair.sec_mon.cmd("query-colo-status").get("mode"))


def expect(r, status, reason, sent):
    check_eq((r.get("status"), r.get("reason"), r.get("sent")),
             (status, reason, sent), "result %r" % r)


def test_secondary_refused_then_one_of_two(ctx):
    f = Fleet(ctx)
    rid, mark = f.send(B, "sec")
    r = f.result(B, "sec", rid, mark)
    expect(r, "rejected", "peer_alive", False)
    check_eq(f.modes(), ("primary", "secondary"),
             "COLO modes after the refused request (no heartbeat)")
    check_eq(f.pair.sec_mon.events_named("COLO_EXIT"), [],
             "COLO_EXIT on the secondary after the refusal")

    # Both halves at once.
    ra, ma = f.send(A, "pri")
    rb, mb = f.send(B, "sec")
    res = {"pri": f.result(A, "pri", ra, ma), "sec": f.result(B, "sec", rb,
                                                              mb)}
    oks = [vm for vm, r in res.items() if r["status"] == "ok"]
    check_eq(oks, ["pri"], "halves taken over (exactly one, the primary)")
    check(res["sec"]["status"] == "rejected" and res["sec"]["reason"] in
          ("peer_alive", "peer_took_over") and res["sec"]["sent"] is False,
          "the secondary's request: %r" % res["sec"])
    q = f.pair.pri_mon.cmd("query-colo-status")
    check_eq((q.get("mode"), q.get("last-mode")), ("none", "primary"),
             "primary after its takeover")
    # The secondary got the primary's failover as an error exit and
    # waits: it was never told to take over.
    ev = f.pair.sec_mon.wait_event("COLO_EXIT", 10)
    check_eq(ev["data"], {"mode": "secondary", "reason": "error"},
             "the secondary's COLO_EXIT")
    check_eq(f.pair.sec_mon.cmd("query-colo-status").get("mode"),
             "secondary", "the secondary waits (no heartbeat reached it)")
    # From now on the secondary is refused: its peer took over.
    f.state(B, "sec", lambda s: (s.get("peer") or {}).get("mode") == "none",
            "peer mode none")
    rid, mark = f.send(B, "sec")
    expect(f.result(B, "sec", rid, mark), "rejected", "peer_took_over",
           False)
    check_eq(f.pair.sec_mon.cmd("query-colo-status").get("mode"),
             "secondary", "the secondary after the peer_took_over refusal")
    f.da.check_alive()
    f.db.check_alive()


def test_primary_killed(ctx):
    f = Fleet(ctx)
    f.pair.kill("pri")
    f.pair.sec_mon.wait_event("COLO_EXIT", 10)
    f.state(A, "pri", lambda s: s.get("liveness") == "gone" and
            s.get("qmp") == "disconnected", "liveness gone")
    f.state(B, "sec", lambda s: (s.get("peer") or {}).get("liveness") ==
            "gone", "peer liveness gone")
    rid, mark = f.send(B, "sec", expect="secondary")
    r = f.result(B, "sec", rid, mark)
    expect(r, "ok", "ok", True)
    q = f.pair.sec_mon.cmd("query-colo-status")
    check_eq((q.get("mode"), q.get("last-mode")), ("none", "secondary"),
             "the secondary after its takeover")
    f.db.check_alive()


def test_primary_bridge_lost(ctx):
    f = Fleet(ctx)
    f.da.kill9()
    # The broker publishes bridge A's Last Will after its keepalive (2 s).
    f.sub.wait_json(h.bridge_topic("state", host=A),
                    lambda s: s.get("state") == "offline", 15,
                    "bridge A offline (Last Will)")
    f.state(B, "sec", lambda s: (s.get("peer") or {}).get("bridge") ==
            "offline", "peer bridge offline")
    rid, mark = f.send(B, "sec")
    expect(f.result(B, "sec", rid, mark), "rejected", "peer_unknown", False)
    check_eq(f.modes(), ("primary", "secondary"),
             "COLO modes after the peer_unknown refusal (no heartbeat)")
    # The operator knows better (e.g. the host was fenced): force.
    rid, mark = f.send(B, "sec", force=True)
    r = f.result(B, "sec", rid, mark)
    expect(r, "ok", "ok", True)
    check_eq(f.pair.sec_mon.cmd("query-colo-status").get("mode"), "none",
             "the secondary after the forced takeover")
    line = [ln for ln in f.db.log_text().splitlines()
            if rid in ln and "FORCED" in ln]
    check(line, "the forced takeover was not logged as forced")
    h.log("forced: %s" % line[0])
    f.db.check_alive()


if __name__ == "__main__":
    h.main(test_secondary_refused_then_one_of_two, test_primary_killed,
           test_primary_bridge_lost)
