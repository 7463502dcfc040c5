#!/usr/bin/python3
"""The bridge's MQTT connection: failures named in words, Server Keep Alive.

(a) test_auth_words: mosquitto with `allow_anonymous false` and a password
    file.  MQTT 5 and 3.1.1, a wrong password and no user name at all: the
    bridge keeps retrying, and its log (info level) names the cause
    ("bad user name or password" / "not authorized", with the hint to check
    mqtt.username / password), once per cause, not once per attempt.  Then
    the right password: it connects and publishes.
(b) test_closed_during_connect: a listener that reads the CONNECT and
    closes the socket (what RabbitMQ < 3.13 does to MQTT 5): the log says
    the broker closed the connection during CONNECT and to set
    mqtt.version = 3.
(c) test_refused_tcp: nothing listens: the log names the TCP failure.
(d) test_server_keepalive: mosquitto `max_keepalive 10`, the bridge's
    keepalive 30: the log says "broker requires keepalive 10 s"; over 20 s
    (more than the 15 s after which mosquitto cuts a client silent for
    1.5 x 10 s) the bridge is never cut: mqtt_connects stays 1.
"""
# TIMEOUT = 120

import os
import socket
import subprocess
import threading
import time

import harness as h
from harness import check, check_eq

USER = "bridge"
PASSWORD = "s3cret"


def password_broker(ctx):
    """mosquitto with allow_anonymous false and one user (USER)."""
    pwfile = os.path.join(ctx.dir, "passwd")
    with open(pwfile, "w") as f:
        f.write("")
    subprocess.run(["mosquitto_passwd", "-b", pwfile, USER, PASSWORD],
                   check=True, capture_output=True)
    os.chmod(pwfile, 0o600)
    b = h.Mosquitto(ctx, extra="password_file %s" % pwfile)
    # The harness writes allow_anonymous true: turn it off.
    with open(b.conf) as f:
        text = f.read().replace("allow_anonymous true",
                                "allow_anonymous false")
    with open(b.conf, "w") as f:
        f.write(text)
    return b.start()


def wait_log(daemon, pattern, timeout, what):
    """A line matching pattern in the daemon's log (polled: nothing
    notifies; bounded)."""
    import re
    rx = re.compile(pattern)
    for _ in h.deadline_loop(timeout * h.SLOW, 0.05):
        daemon.check_alive()
        for ln in daemon.log_text().splitlines():
            if rx.search(ln):
                return ln
    h.fail("%s: no log line matching %r within %.0fs; log tail:\n%s" %
           (what, pattern, timeout * h.SLOW,
            "\n".join(daemon.log_text().splitlines()[-20:])))


def test_auth_words(ctx):
    broker = password_broker(ctx)
    sim = ctx.sim(1)
    cases = [
        (5, {"username": USER, "password": "wrong"},
         # mosquitto 2.0.11 answers a wrong password with 0x87.
         r"(bad user name or password \(reason 0x86\)|not authorized "
         r"\(reason 0x87\)): check mqtt.username"),
        (5, {}, r"not authorized \(reason 0x87\): check mqtt.username"),
        (3, {"username": USER, "password": "wrong"},
         r"(bad user name or password|not authorized) \(return code [45]\)"
         r": check mqtt.username"),
        (3, {}, r"not authorized \(return code 5\): check mqtt.username"),
    ]
    for version, creds, rx in cases:
        m = {"version": version}
        m.update(creds)
        d = h.Daemon(ctx, vms=sim.vms(), port=broker.port, mqtt=m).start()
        ln = wait_log(d, r"cannot connect to .*" + rx, 10,
                      "v%d %s" % (version, creds or "anonymous"))
        check(" info: " in ln, "logged at info level: %r" % ln)
        # It keeps trying (backoff 50..500 ms): several attempts, but the
        # same cause is reported once.
        for _ in h.deadline_loop(10 * h.SLOW, 0.1):
            # -v: one debug line per scheduled attempt.
            if d.log_text().count("mqtt: reconnecting in") >= 4:
                break
        n = d.log_text().count("cannot connect")
        check_eq(n, 1, "v%d %s: 'cannot connect' lines for one cause "
                 "repeated" % (version, creds or "anonymous"))
        check_eq(d.stop(), 0, "exit code")
    # The right password: it connects.
    sub = h.Subscriber(ctx, broker.port)
    # The subscriber needs credentials too.
    sub.c.username_pw_set(USER, PASSWORD)
    sub.start()
    d = h.Daemon(ctx, vms=sim.vms(), port=broker.port,
                 mqtt={"username": USER, "password": PASSWORD}).start()
    h.wait_online(sub, [sim.vm(1)], 15)


class Closer:
    """A TCP listener that reads what a client sends, then closes."""

    def __init__(self):
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(16)
        self.port = self.s.getsockname()[1]
        self.accepted = 0
        self.stop = False
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        self.s.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.s.accept()
            except OSError:
                continue
            self.accepted += 1
            c.settimeout(2)
            try:
                c.recv(4096)
            except OSError:
                pass
            c.close()

    def close(self):
        self.stop = True
        self.th.join(5)
        self.s.close()


def test_closed_during_connect(ctx):
    srv = Closer()
    try:
        sim = ctx.sim(1)
        d = h.Daemon(ctx, vms=sim.vms(), port=srv.port).start()
        wait_log(d, r"cannot connect to .*the broker closed the connection "
                 r"during CONNECT; if it does not speak MQTT 5, set "
                 r"mqtt.version = 3", 10, "closed during CONNECT")
    finally:
        srv.close()


def test_refused_tcp(ctx):
    port = h.free_port()
    sim = ctx.sim(1)
    d = h.Daemon(ctx, vms=sim.vms(), port=port).start()
    ln = wait_log(d, r"cannot connect to tcp://127.0.0.1:%d: " % port, 10,
                  "TCP refused")
    check("closed the connection during CONNECT" not in ln and
          "connection refused or unreachable" in ln,
          "a refused TCP connection is not a close during CONNECT: %r" % ln)


def test_server_keepalive(ctx):
    broker = ctx.mosquitto(extra="max_keepalive 10")
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(1)
    d = h.Daemon(ctx, vms=sim.vms(), port=broker.port,
                 mqtt={"keepalive": 30}).start()
    h.wait_online(sub, [sim.vm(1)], 15)
    wait_log(d, r"broker requires keepalive 10 s", 5, "Server Keep Alive")
    t0 = time.monotonic()
    time.sleep(20)      # scenario: 20 s of silence, more than 1.5 x 10 s
    st = h.stats_request(sub, d, lambda s: True).json()
    check(time.monotonic() - t0 >= 20, "scenario length")
    check_eq(st["totals"]["mqtt_connects"], 1, "mqtt_connects after 20 s "
             "(cut by the broker for exceeding its keepalive?)")
    check("connection lost" not in d.log_text(), "the bridge lost its "
          "connection:\n%s" % d.log_text()[-2000:])


if __name__ == "__main__":
    h.main(test_auth_words, test_closed_during_connect, test_refused_tcp,
           test_server_keepalive)
