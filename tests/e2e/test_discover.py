#!/usr/bin/python3
"""Socket discovery (README "Socket discovery").

The bridge's configuration names a glob instead of (or besides) VMs:
  discover = ( { glob = "DIR/*.qmp"; host = "hv1"; } );
Against simulators whose sockets live in DIR and a real mosquitto:
  - every matching socket becomes a VM named after its file (vm1.qmp ->
    vm1), online;
  - a socket that appears (a second simulator starting in DIR) is picked
    up and online within seconds (inotify; the time is logged);
  - a socket that disappears (unlisten: the file is removed) is closed,
    its availability goes offline and its retained state says "gone";
    it comes back when the socket does;
  - a VM listed in `vms` wins over a discovered one of the same name (the
    listed socket is used, the discovered one is never connected);
  - the name and peer templates ("%s" = file name without extension).
"""
# TIMEOUT = 120

import os
import time

import harness as h
from harness import check, check_eq


def sim_in(ctx, sockdir, n, prefix, name):
    """A simulator whose sockets are in sockdir (shared with others)."""
    s = h.Sim(ctx, n, prefix=prefix, name=name)
    s.sockdir = sockdir
    s.argv[s.argv.index("--dir") + 1] = sockdir
    return s.start()


def test_discover(ctx):
    broker = ctx.mosquitto()
    sockdir = ctx.subdir("sockets")
    a = sim_in(ctx, sockdir, 3, "vm", "simA")
    other = ctx.sim(1, name="simC")          # vm1 elsewhere: listed
    tdir = ctx.subdir("templated")
    t = sim_in(ctx, tdir, 2, "vm", "simD")   # the templated glob's
    sub = ctx.subscriber(broker.port)
    raw = h.render_config(
        [("vm1", other.addr(1))],
        {"host": h.HOST, "id": "bridge-disc", "backoff_min_ms": 50,
         "backoff_max_ms": 500},
        {"uri": "tcp://127.0.0.1:%d" % broker.port,
         "client_id": "qmp2mqtt-e2e-%d-disc" % os.getpid(), "version": 5,
         "keepalive": 5, "base_topic": h.BASE},
        extra='discover = ( { glob = "%s/*.qmp"; host = "%s"; },\n'
              '  { glob = "%s/*.qmp"; host = "hv9"; name = "d-%%s"; '
              'peer = "hv8/%%s-peer"; } );' % (sockdir, h.HOST, tdir))
    d = h.Daemon(ctx, raw=raw, port=broker.port, name="disc")
    d.client_id = "qmp2mqtt-e2e-%d-disc" % os.getpid()
    d.bridge_id = "bridge-disc"
    d.start()
    h.wait_online(sub, ["vm1", "vm2", "vm3"], 20)
    # vm1 is the listed one (simC), simA's vm1 is never connected.
    other.wait_ready(1, 10)
    check_eq(a.count("vm1")["connects"], 0, "connects to the discovered vm1 "
             "(the listed vm1 wins)")
    check_eq(other.count("vm1")["connects"], 1, "connects to the listed vm1")
    # The second glob: host hv9, templates.
    st = sub.wait_json(h.state_topic("d-vm2", host="hv9"), lambda s:
                       s.get("qmp") == "connected" or True, 10,
                       "state of hv9/d-vm2").json()
    check_eq((st["host"], st["vm"]), ("hv9", "d-vm2"), "templated name")
    check_eq(((st.get("peer") or {}).get("host"),
              (st.get("peer") or {}).get("vm")), ("hv8", "vm2-peer"),
             "templated peer")

    # A socket disappears, then comes back.
    a.cmd("unlisten vm2")
    sub.wait_payload(h.avail_topic("vm2"), "offline", 10)
    sub.wait_json(h.state_topic("vm2"), lambda s: s.get("gone") is True,
                  10, "vm2 gone")
    sub.wait_json(h.bridge_topic("state"), lambda s: s.get("vms") == 5, 10,
                  "bridge/state vms 5 (1 listed + 2 + 2 discovered)")
    mark = sub.mark(h.avail_topic("vm2"))
    a.cmd("listen vm2")
    sub.wait_payload(h.avail_topic("vm2"), "online", 10, since=mark)
    st = sub.wait_json(h.state_topic("vm2"), lambda s: s.get("gone") is
                       None and s.get("qmp") == "connected", 10,
                       "vm2 back").json()
    check("gone" not in st, "a VM back from gone: %r" % st)

    # New sockets appear: a second simulator starts in the directory.
    t0 = time.monotonic()
    b = sim_in(ctx, sockdir, 2, "new", "simB")
    h.wait_online(sub, ["new1", "new2"], 10)
    dt = time.monotonic() - t0
    h.log("new sockets online %.2f s after the simulator started" % dt)
    b.wait_ready(2, 10)
    # They stream like any VM.
    mark = sub.mark(h.event_topic("new2"))
    b.cmd("exit new2 secondary error")
    m = sub.wait_for(lambda m: True, 10, topic=h.event_topic("new2"),
                     since=mark)
    check_eq(m.json()["seq"], 1, "first event of a discovered VM")
    st = h.stats_request(sub, d, lambda s: "new2" in s["vms"])
    check_eq(st.json()["totals"]["mqtt_connects"], 1, "broker connects")
    d.check_alive()


if __name__ == "__main__":
    h.main(test_discover)
