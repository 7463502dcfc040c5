#!/usr/bin/python3
"""User names with mqtt.password_file against mosquitto with
allow_anonymous false, a password file made with mosquitto_passwd and the
ACL of README "Safe fleet set-up" (%u = the user name = bridge.host).

Two bridges, hv1 and hv2, on simulated secondaries (a1 on hv1, b1 on hv2,
each the other's peer).  Checked:
- both connect with their password files and publish their own topics;
- hv1 reads its peer's state and bridge/state: a1's state shows peer b1
  online and alive;
- hv1 reads its commands: an operator's takeover request (auth acl) on
  hv1/a1 is answered (refused peer_alive: the pair rules saw the peer);
- hv1 cannot write hv2's topics: its VM a2 configured with host "hv2" is
  refused by the broker (PUBACK 0x87, counted mqtt_refused, logged "not
  authorized") and a dashboard subscribed to everything sees nothing under
  qmp2mqtt/hv2/a2;
- config rules: password_file of mode 0640 refused (FILE:LINE: key:),
  password and password_file together refused, inline password warned.
"""
# TIMEOUT = 90

import json
import os
import re

import harness as h
from harness import check, check_eq
import secure_util as su

ACL = """\
# bridges: their own host's topics only (user name = host name)
pattern write qmp2mqtt/%u/#
pattern read  qmp2mqtt/%u/+/cmd/takeover
pattern read  qmp2mqtt/%u/+/state
# every bridge follows peers on other hosts (state, availability, bridge/state)
pattern read  qmp2mqtt/+/+/state
pattern read  qmp2mqtt/+/+/availability
# operators: commands anywhere, read everything
user ops
topic write qmp2mqtt/+/+/cmd/takeover
topic read  qmp2mqtt/#
# dashboards: read only
user dashboard
topic read qmp2mqtt/#
"""

USERS = {"hv1": "pw-hv1 with spaces", "hv2": "pw-hv2",
         "ops": "pw-ops", "dashboard": "pw-dash"}


def auth_broker(ctx):
    su.require("mosquitto_passwd", "broker password file")
    d = ctx.subdir("auth")
    pwfile = os.path.join(d, "passwd")
    first = True
    for u, p in USERS.items():
        su.run(["mosquitto_passwd"] + (["-c"] if first else []) +
               ["-b", pwfile, u, p])
        first = False
    aclfile = os.path.join(d, "acl")
    with open(aclfile, "w") as f:
        f.write(ACL)
    return h.Mosquitto(ctx, extra="allow_anonymous false\npassword_file %s\n"
                       "acl_file %s" % (pwfile, aclfile)).start()


def pw_file(ctx, user, mode=0o600):
    return su.write_secret(os.path.join(ctx.dir, "pw-%s-%o" % (user, mode)),
                           USERS[user] + "\n", mode)


def bridge(ctx, broker, host, vms, name):
    d = h.Daemon(ctx, vms=vms, port=broker.port, name=name,
                 bridge={"host": host, "status_interval_s": 1},
                 mqtt={"username": host, "password_file": pw_file(ctx, host)})
    d.text += 'takeover = { enabled = true; auth = "acl"; };\n'
    with open(d.conf, "w") as f:
        f.write(d.text)
    return d.start()


def test_password_file_and_acl(ctx):
    broker = auth_broker(ctx)
    # Anonymous is refused: the observer must log in.
    dash = su.PwSubscriber(ctx, broker.port, "dashboard",
                           USERS["dashboard"]).start()
    sa = ctx.sim(2, prefix="a", args=("--mode", "secondary"), name="sima")
    sb = ctx.sim(1, prefix="b", args=("--mode", "secondary"), name="simb")
    a_vms = [{"name": "a1", "qmp": sa.addr(1), "peer": "hv2/b1"},
             {"name": "a2", "qmp": sa.addr(2), "host": "hv2",
              "takeover": False}]
    d1 = bridge(ctx, broker, "hv1", a_vms, "hv1")
    d2 = bridge(ctx, broker, "hv2", [{"name": "b1", "qmp": sb.addr(1),
                                      "peer": "hv1/a1"}], "hv2")
    sa.wait_ready(2, 20)
    sb.wait_ready(1, 20)
    dash.wait(lambda s: s.last(h.avail_topic("a1", "hv1")) is not None and
              s.last(h.avail_topic("a1", "hv1")).payload == b"online" and
              s.last(h.avail_topic("b1", "hv2")) is not None and
              s.last(h.avail_topic("b1", "hv2")).payload == b"online", 20,
              "both bridges online")
    broker.wait_log(r"New client connected .* u'hv1'", 5)

    # hv1 reads hv2's state and bridge/state: the peer in a1's state.
    def peer_seen(s):
        m = s.last(h.state_topic("a1", "hv1"))
        p = m and m.json().get("peer")
        return p and p.get("bridge") == "online" and \
            p.get("liveness") == "alive"
    m = dash.wait(peer_seen, 20, "a1's state showing peer hv2/b1 online, "
                  "alive")
    h.log("a1 state: %s" % dash.last(h.state_topic("a1", "hv1")).text)

    # hv1 reads its commands: an operator's request is answered.
    import paho.mqtt.client as mqtt
    ops = mqtt.Client(client_id="ops-%d" % os.getpid(),
                      protocol=mqtt.MQTTv5)
    ops.username_pw_set("ops", USERS["ops"])
    ops.connect("127.0.0.1", broker.port)
    ops.loop_start()
    try:
        rt = "%s/hv1/a1/result/takeover" % h.BASE
        mark = dash.mark(rt)
        req = {"id": "auth-%d" % os.getpid(),
               "issued_us": int(__import__("time").time() * 1e6),
               "expect_mode": "secondary"}
        ops.publish("%s/hv1/a1/cmd/takeover" % h.BASE, json.dumps(req),
                    qos=1).wait_for_publish(5)
        r = dash.wait_for(lambda m: m.json().get("id") == req["id"], 15,
                          topic=rt, since=mark, what="takeover result").json()
        h.log("result: %s" % r)
        check_eq((r["status"], r["reason"]), ("rejected", "peer_alive"),
                 "request answered after the pair rules read the peer")
        check_eq(sa.count("a1")["heartbeats"], 0, "heartbeats to a1")
    finally:
        ops.loop_stop()
        ops.disconnect()

    # hv1 cannot write hv2's topics: a2 (host hv2) is refused.
    sa.cmd("exit a2 secondary error")
    line = su.daemon_log_wait(d1, lambda ln: "refused publish to" in ln and
                              "/hv2/a2/" in ln, 15, "a2's publish refused")
    h.log("refused: %s" % line)
    check("not authorized (reason 0x87)" in line, "refusal reason: %s" % line)
    st = h.stats_until(dash, d1, lambda s: s["totals"].get("mqtt_refused", 0)
                       >= 1, 10, "mqtt_refused >= 1")
    h.log("hv1 totals: %s" % st["totals"])
    # hv1's own topics still work.
    mark = dash.mark(h.event_topic("a1", "hv1"))
    sa.cmd("exit a1 secondary error")
    dash.wait_for(lambda m: True, 10, topic=h.event_topic("a1", "hv1"),
                  since=mark, what="hv1's own event after a refusal")
    got = [m for m in dash.all() if m.topic.startswith(h.BASE + "/hv2/a2")]
    check(not got, "something reached hv2's topics from hv1: %r" % got[:3])
    # A subscriber on hv2's topics has seen hv2's own VM, nothing of a2.
    check(dash.last(h.avail_topic("b1", "hv2")) is not None,
          "hv2's own topics seen")


def test_password_file_rules(ctx):
    broker = auth_broker(ctx)
    d = h.Daemon(ctx, vms=[("vm1", "unix:/nonexistent")], port=broker.port,
                 mqtt={"username": "hv1",
                       "password_file": pw_file(ctx, "hv1", 0o640)})
    rc, out, err = h.run_daemon(["-n", "-c", d.conf])
    check_eq(rc, 1, "-n with a group-readable password file")
    lines = d.text.splitlines()
    n = 1 + next(i for i, ln in enumerate(lines) if "password_file" in ln)
    check(re.search(r":%d: mqtt.password_file: .*mode 0640 lets group or "
                    r"others use it; chmod 600 it" % n, err),
          "error for a 0640 password file: %r" % err)

    d2 = h.Daemon(ctx, vms=[("vm1", "unix:/nonexistent")], port=broker.port,
                  mqtt={"username": "hv1", "password": "x",
                        "password_file": pw_file(ctx, "hv1")}, name="both")
    rc, out, err = h.run_daemon(["-n", "-c", d2.conf])
    check_eq(rc, 1, "-n with password and password_file")
    check("mqtt.password_file: set together with mqtt.password" in err,
          "error for both: %r" % err)

    # Inline: accepted, warned; it works against the broker.
    sub = su.PwSubscriber(ctx, broker.port, "dashboard",
                          USERS["dashboard"]).start()
    d3 = h.Daemon(ctx, vms=[("vm1", "unix:/nonexistent")], port=broker.port,
                  mqtt={"username": "hv1", "password": USERS["hv1"]},
                  name="inline")
    rc, out, err = h.run_daemon(["-n", "-c", d3.conf])
    check_eq(rc, 0, "-n with an inline password")
    check("prefer mqtt.password_file" in err, "no warning: %r" % err)
    d3.start()
    sub.wait(lambda s: s.last(h.bridge_topic("state")) is not None, 15,
             "bridge online with an inline password")
    # A wrong password in the file: refused in words.
    bad = su.write_secret(os.path.join(ctx.dir, "bad"), "nope\n")
    d4 = h.Daemon(ctx, vms=[("vm1", "unix:/nonexistent")], port=broker.port,
                  mqtt={"username": "hv2", "password_file": bad},
                  bridge={"host": "hv2"}, name="badpw").start()
    # (mosquitto 2.0.11 answers 0x87 "not authorized" to a bad password)
    su.daemon_log_wait(d4, lambda ln: "cannot connect" in ln and
                       ("bad user name or password" in ln or
                        "not authorized (reason 0x87)" in ln), 15,
                       "bad password refused")


if __name__ == "__main__":
    h.main(test_password_file_and_acl, test_password_file_rules)
