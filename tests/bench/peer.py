#!/usr/bin/python3
"""The Python peer of the benchmark: the bridge a user would write instead
of qmp2mqtt, the simplest way, with paho-mqtt (Debian python3-paho-mqtt).

Connects to every QMP socket (unix:PATH), sends qmp_capabilities,
publishes each COLO_EXIT as JSON on <base>/<host>/<vm>/event/colo_exit at
QoS 1 (the bridge's fields, so the subscriber counts seq and time_us), and
on <base>/<host>/<vm>/cmd/takeover sends x-colo-lost-heartbeat, then
publishes {"id":..,"status":"ok"|"failed"} on result/takeover (no signature
check, no pair check: less work than the bridge does).  Paho's network
thread (loop_start) runs the MQTT side; the main thread the QMP sockets.

  peer.py -p PORT -H HOST -b BASE -B BRIDGE_ID VM=PATH...   (or @FILE)

Prints "ready N" once N sockets are negotiated.  Stops on SIGTERM.
"""
import datetime
import json
import os
import selectors
import signal
import socket
import sys
import time

import paho.mqtt.client as mqtt


def main():
    args = sys.argv[1:]
    opts = {}
    while args and args[0].startswith("-"):
        opts[args[0]] = args[1]
        args = args[2:]
    if args and args[0].startswith("@"):
        with open(args[0][1:]) as f:
            args = f.read().split()
    port = int(opts["-p"])
    host, base, bridge = opts.get("-H", "hv1"), opts.get("-b", "qmp2mqtt"), \
        opts.get("-B", "peer")
    vms = dict(a.split("=", 1) for a in args)

    cli = mqtt.Client(client_id="peer-py-%d" % os.getpid(),
                      protocol=mqtt.MQTTv5)
    sel = selectors.DefaultSelector()
    conns = {}      # vm -> [sock, buffer, seq, negotiated]
    pending = {}    # vm -> takeover id waiting for its return
    ready = [0]

    def on_message(c, ud, msg):
        vm = msg.topic.split("/")[2]
        try:
            rid = json.loads(msg.payload).get("id", "")
        except ValueError:
            rid = ""
        st = conns.get(vm)
        if st is None:
            return
        pending[vm] = rid
        st[0].sendall(b'{"execute": "x-colo-lost-heartbeat"}\n')

    def on_connect(c, ud, flags, rc, props=None):
        c.subscribe("%s/%s/+/cmd/takeover" % (base, host), 1)

    cli.on_message = on_message
    cli.on_connect = on_connect
    cli.connect("127.0.0.1", port, 60)
    cli.loop_start()

    def connect(vm):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                s.connect(vms[vm])
                break
            except OSError:
                time.sleep(0.05)
        s.setblocking(False)
        conns[vm] = [s, b"", 0, False]
        sel.register(s, selectors.EVENT_READ, vm)

    for vm in vms:
        connect(vm)

    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))

    def handle(vm, st, msg):
        if "QMP" in msg:
            st[0].sendall(b'{"execute": "qmp_capabilities"}\n')
        elif "return" in msg and not st[3]:
            st[3] = True
            ready[0] += 1
            if ready[0] == len(vms):
                print("ready %d" % ready[0], flush=True)
        elif msg.get("event") == "COLO_EXIT":
            st[2] += 1
            ts = msg["timestamp"]
            t_us = ts["seconds"] * 1000000 + ts["microseconds"]
            data = msg.get("data", {})
            out = {"schema": 1, "event": "colo_exit", "host": host,
                   "vm": vm, "mode": data.get("mode"),
                   "reason": data.get("reason"),
                   "time": datetime.datetime.utcfromtimestamp(
                       t_us / 1e6).isoformat() + "Z",
                   "time_us": t_us, "seq": st[2], "bridge": bridge}
            cli.publish("%s/%s/%s/event/colo_exit" % (base, host, vm),
                        json.dumps(out, separators=(",", ":")), qos=1)
        elif ("return" in msg or "error" in msg) and vm in pending:
            rid = pending.pop(vm)
            cli.publish("%s/%s/%s/result/takeover" % (base, host, vm),
                        json.dumps({"id": rid, "status": "ok" if "return"
                                    in msg else "failed"},
                                   separators=(",", ":")), qos=1)

    while not stop:
        for key, _ in sel.select(1.0):
            vm = key.data
            st = conns[vm]
            try:
                data = st[0].recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(st[0])
                st[0].close()
                connect(vm)
                continue
            buf = st[1] + data
            *lines, st[1] = buf.split(b"\n")
            for ln in lines:
                if ln.strip():
                    handle(vm, st, json.loads(ln))
    cli.loop_stop()


if __name__ == "__main__":
    main()
