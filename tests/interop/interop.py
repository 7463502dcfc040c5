#!/usr/bin/python3
"""make interop: the bridge against several MQTT brokers (tests/interop/README.md).

    interop.py [--build DIR] [--out FILE] [--aedes-dir DIR] [--only NAME ...]

Starts, one after the other, private brokers on free loopback ports with
private state directories (mosquitto, ejabberd's mod_mqtt, RabbitMQ's
rabbitmq_mqtt, aedes on Node), and runs the bridge (BUILD/qmp2mqtt) against
each, with the simulator (BUILD/qmpsim) standing in for QEMU.  Per broker
and MQTT version it checks:

  connect     the bridge's log says "mqtt: connected to"; with a version the
              broker does not speak, the log names the cause in words
  events      a simulated COLO_EXIT arrives on .../event/colo_exit
  retained #  a late subscriber to qmp2mqtt/# gets the retained state
  retained =  a late subscriber to the exact state topic gets it
  LWT         kill -9 of the bridge: bridge/state offline arrives
  hmac / acl  a takeover with auth hmac / acl: result ok, one
              x-colo-lost-heartbeat counted by the simulated VM
  dots        bridge.host = "hv1.example.com": the topics seen by a
              subscriber, and whether a takeover is answered

and prints a markdown table (also written to --out).  Exit status 1 only
when a check that is expected to work (EXPECT below: what the README
claims) does not; an expected limitation is a "no" cell, not a failure.

Reuses tests/e2e/harness.py (processes, Subscriber, Sim, Daemon) and the
request signing of tests/e2e/test_takeover.py.  Every wait has a deadline;
every process started here is stopped here (also on SIGTERM / errors).
"""

import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))


def _early_build_arg():
    # harness reads QMP2MQTT_BUILD at import time
    for i, a in enumerate(sys.argv):
        if a == "--build" and i + 1 < len(sys.argv):
            os.environ["QMP2MQTT_BUILD"] = os.path.abspath(sys.argv[i + 1])
        elif a.startswith("--build="):
            os.environ["QMP2MQTT_BUILD"] = os.path.abspath(a.split("=", 1)[1])


_early_build_arg()

import harness as h          # noqa: E402
import test_takeover as tk   # noqa: E402

log = h.log
HB = "x-colo-lost-heartbeat"
RABBIT_BIN = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBIT_PLUGINS = "/usr/lib/rabbitmq/bin/rabbitmq-plugins"

# Which checks the README claims to work, per (broker, version).  Anything
# not listed as "no" here is expected "ok".  A "no" that turns out "ok" is
# reported, not failed.
EXPECT_NO = {
    ("rabbitmq", 3): {"retained_wild", "dots"},
}
# Rows where the bridge must refuse (the broker does not speak MQTT 5):
# only "connect" is checked: the log must name the cause in words.
WRONG_VERSION = {("rabbitmq", 5), ("aedes", 5)}

COLUMNS = [("connect", "connect"), ("events", "events"),
           ("retained_wild", "retained on `qmp2mqtt/#`"),
           ("retained_exact", "retained on exact topic"),
           ("lwt", "LWT"), ("hmac", "takeover hmac"),
           ("acl", "takeover acl"), ("dots", "host with dots")]


class CheckFailed(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise CheckFailed(msg)


# ---------------------------------------------------------------- processes

class Group:
    """A process started in its own session (Erlang VMs spawn helpers):
    stopped with SIGTERM to the whole group, SIGKILL after a grace."""

    def __init__(self, name, argv, logpath, env=None, cwd=None, user=None,
                 stdin_pipe=False):
        self.name = name
        self.logpath = logpath
        self.logf = open(logpath, "ab")
        kw = {}
        if user is not None:
            pw = pwd.getpwnam(user)
            kw.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        self.p = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=self.logf, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            start_new_session=True, **kw)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self, grace=5.0):
        if self.p.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # helpers of the group may outlive the leader: always sweep it
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        try:
            self.logf.close()
        except OSError:
            pass

    close = stop


def wait_port(port, proc, timeout, what):
    for _ in h.deadline_loop(timeout * h.SLOW, 0.1):
        if h.port_accepts(port):
            return
        if not proc.alive():
            break
    raise CheckFailed("%s did not accept on port %d within %.0fs%s; log tail:"
                      "\n%s" % (what, port, timeout,
                                "" if proc.alive() else " (it exited)",
                                "".join(h.tail_file(proc.logpath, 30))))


# ---------------------------------------------------------------- brokers

class Broker:
    key = None
    title = None
    user_prefix = None     # ejabberd: usernames of the form name@localhost

    def creds(self, name):
        if self.user_prefix is None:
            return {}
        return {"username": "%s@%s" % (name, self.user_prefix),
                "password": "x"}


class MosquittoBroker(Broker):
    key = "mosquitto"

    def __init__(self, ctx):
        self.ctx = ctx
        out = subprocess.run(["mosquitto", "-h"], capture_output=True,
                             text=True, timeout=10).stdout
        self.version = out.split("version", 1)[1].split()[0] \
            if "version" in out else "?"
        self.title = "mosquitto " + self.version

    def start(self):
        self.m = h.Mosquitto(self.ctx).start()
        self.port = self.m.port
        return self

    def close(self):
        self.m.close()


def dpkg_version(pkg):
    try:
        return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                              capture_output=True, text=True,
                              timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


class RabbitBroker(Broker):
    """RabbitMQ (Debian rabbitmq-server) with rabbitmq_mqtt: a private node
    (rabbit@localhost, its own epmd on a free port, mnesia, logs, cookie
    and enabled-plugins file in the test's directory)."""
    key = "rabbitmq"

    def __init__(self, ctx):
        self.ctx = ctx
        v = dpkg_version("rabbitmq-server")
        self.version = v.split("-")[0]
        self.title = "RabbitMQ " + self.version
        self.procs = []

    def start(self):
        if not os.access(RABBIT_BIN, os.X_OK):
            raise h.Skip("rabbitmq-server not installed")
        d = self.ctx.subdir("rabbitmq")
        self.port = h.free_port()
        amqp, dist, epmd = h.free_port(), h.free_port(), h.free_port()
        with open(os.path.join(d, "rabbitmq.conf"), "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n"
                    "mqtt.listeners.tcp.default = 127.0.0.1:%d\n"
                    "mqtt.allow_anonymous = true\n"
                    "loopback_users = none\n"
                    "log.file.level = info\n" % (amqp, self.port))
        env = dict(os.environ)
        env.update({
            "RABBITMQ_CONFIG_FILE": os.path.join(d, "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": os.path.join(d, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(d, "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(d,
                                                          "enabled_plugins"),
            "RABBITMQ_PID_FILE": os.path.join(d, "rabbit.pid"),
            "RABBITMQ_NODENAME": "rabbit@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(dist),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(epmd),
            "HOME": d,
        })
        r = subprocess.run([RABBIT_PLUGINS, "--offline", "enable",
                            "rabbitmq_mqtt"], env=env, capture_output=True,
                           text=True, timeout=120 * h.SLOW)
        need(r.returncode == 0, "rabbitmq-plugins enable rabbitmq_mqtt: %s"
             % (r.stdout + r.stderr)[-1000:])
        # Our own epmd, in the foreground: a child of ours, stopped by us
        # (the one erl would start is a daemon nobody reaps).
        self.epmd = Group("epmd", ["epmd", "-port", str(epmd), "-address",
                                   "127.0.0.1"],
                          os.path.join(d, "epmd.log"), env=env)
        self.procs.append(self.epmd)
        wait_port(epmd, self.epmd, 10, "epmd")
        self.proc = Group("rabbitmq", [RABBIT_BIN],
                          os.path.join(d, "rabbitmq-server.log"), env=env,
                          cwd=d)
        self.procs.append(self.proc)
        t0 = time.monotonic()
        wait_port(self.port, self.proc, 90, "RabbitMQ MQTT listener")
        log("RabbitMQ up on port %d after %.1fs" %
            (self.port, time.monotonic() - t0))
        return self

    def close(self):
        for p in reversed(self.procs):
            p.stop(grace=10.0)
        self.procs = []


class EjabberdBroker(Broker):
    """ejabberd (Debian) with mod_mqtt, anonymous login: usernames
    name@localhost, any password.  Runs as the ejabberd user (ejabberdctl
    insists), epmd-less (ERL_DIST_PORT), in a private directory readable
    by that user."""
    key = "ejabberd"
    user_prefix = "localhost"

    def __init__(self, ctx):
        self.ctx = ctx
        self.version = dpkg_version("ejabberd").split("-")[0]
        self.title = "ejabberd " + self.version
        self.proc = None
        self.dir = None

    def start(self):
        if not shutil.which("ejabberdctl"):
            raise h.Skip("ejabberd not installed")
        pw = pwd.getpwnam("ejabberd")
        d = self.dir = tempfile.mkdtemp(prefix="q2m-ejabberd-")
        os.chmod(d, 0o755)
        self.port = h.free_port()
        dist = h.free_port()
        with open(os.path.join(d, "ejabberd.yml"), "w") as f:
            f.write("hosts:\n  - localhost\n"
                    "loglevel: info\n"
                    "auth_method: [anonymous]\n"
                    "anonymous_protocol: login_anon\n"
                    "allow_multiple_connections: true\n"
                    "listen:\n"
                    "  -\n"
                    "    port: %d\n"
                    "    ip: \"127.0.0.1\"\n"
                    "    module: mod_mqtt\n"
                    "modules:\n"
                    "  mod_mqtt: {}\n" % self.port)
        with open(os.path.join(d, "ejabberdctl.cfg"), "w") as f:
            f.write("ERLANG_NODE=q2minterop@localhost\n"
                    "INET_DIST_INTERFACE=127.0.0.1\n"
                    "ERL_EPMD_ADDRESS=127.0.0.1\n"
                    "ERL_DIST_PORT=%d\n" % dist)
        shutil.copy("/etc/ejabberd/inetrc", os.path.join(d, "inetrc"))
        for sub in ("spool", "log"):
            os.makedirs(os.path.join(d, sub))
        for root, dirs, files in os.walk(d):
            for n in dirs + files:
                p = os.path.join(root, n)
                os.chown(p, pw.pw_uid, pw.pw_gid)
                os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
        os.chown(d, pw.pw_uid, pw.pw_gid)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": d,
               "LANG": "C.UTF-8"}
        self.proc = Group("ejabberd", ["ejabberdctl", "--config-dir", d,
                                       "--spool", os.path.join(d, "spool"),
                                       "--logs", os.path.join(d, "log"),
                                       "foreground"],
                          os.path.join(self.ctx.dir, "ejabberd.out"),
                          env=env, cwd=d, user="ejabberd")
        t0 = time.monotonic()
        wait_port(self.port, self.proc, 60, "ejabberd mod_mqtt listener")
        log("ejabberd up on port %d after %.1fs" %
            (self.port, time.monotonic() - t0))
        return self

    def close(self):
        if self.proc is not None:
            self.proc.stop(grace=5.0)
            self.proc = None
        if self.dir:
            src = os.path.join(self.dir, "log", "ejabberd.log")
            if os.path.exists(src):
                shutil.copy(src, os.path.join(self.ctx.dir, "ejabberd.log"))
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class AedesBroker(Broker):
    key = "aedes"

    def __init__(self, ctx, aedes_dir):
        self.ctx = ctx
        self.adir = aedes_dir
        self.proc = None
        try:
            with open(os.path.join(aedes_dir, "node_modules", "aedes",
                                   "package.json")) as f:
                self.version = json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            self.version = "?"
        self.title = "aedes " + self.version

    def start(self):
        if not shutil.which("node"):
            raise h.Skip("node not installed")
        if self.version == "?":
            raise h.Skip("aedes not installed in %s (npm ci)" % self.adir)
        nv = subprocess.run(["node", "--version"], capture_output=True,
                            text=True, timeout=10).stdout.strip()
        try:
            major = int(nv.lstrip("v").split(".")[0])
        except ValueError:
            major = 0
        if major < 20:
            raise h.Skip("aedes 1.2 needs Node.js 20 or later, node is %r"
                         % nv)
        self.port = h.free_port()
        # stdin is a pipe: the server exits when it closes (we died)
        self.proc = Group("aedes", ["node", os.path.join(self.adir,
                                                         "server.mjs"),
                                    str(self.port)],
                          os.path.join(self.ctx.dir, "aedes.log"),
                          stdin_pipe=True)
        wait_port(self.port, self.proc, 30, "aedes")
        log("aedes up on port %d" % self.port)
        return self

    def close(self):
        if self.proc is not None:
            self.proc.stop(grace=3.0)
            self.proc = None


# ---------------------------------------------------------------- clients

class Ops:
    """The operator's client, MQTT 5 or 3.1.1: publishes a request with
    QoS 1 and waits for the PUBACK."""

    _n = 0

    def __init__(self, ctx, port, version, creds):
        import paho.mqtt.client as mqtt
        Ops._n += 1
        self.cond = threading.Condition()
        self.connected = False
        cid = "interop-ops-%d-%d" % (os.getpid(), Ops._n)
        if version == 5:
            self.c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
        else:
            self.c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv311,
                                 clean_session=True)
        if creds:
            self.c.username_pw_set(creds["username"], creds["password"])
        self.c.on_connect = self._on_connect
        self.c.connect_async("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        ctx.register(self)
        end = time.monotonic() + 10 * h.SLOW
        with self.cond:
            while not self.connected:
                left = end - time.monotonic()
                need(left > 0, "operator client: not connected on port %d"
                     % port)
                self.cond.wait(left)

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        with self.cond:
            self.connected = int(getattr(rc, "value", rc)) == 0
            self.cond.notify_all()

    def publish(self, topic, payload):
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(10 * h.SLOW)
        need(info.is_published(), "PUBACK for %s not received" % topic)

    def close(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()

    def logs(self):
        return []


def subscriber(ctx, broker, version, topics=None, name="sub"):
    kw = {"protocol": version}
    if topics is not None:
        kw["topics"] = topics
    s = h.Subscriber(ctx, broker.port, **kw)
    cr = broker.creds("%s%d" % (name, h.Subscriber._n))
    if cr:
        s.c.username_pw_set(cr["username"], cr["password"])
    return s.start()


# ---------------------------------------------------------------- a row

def daemon_log_has(d, text):
    return any(text in ln for ln in d.log_text().splitlines())


def wait_log(d, pred, timeout, what):
    """A line of the daemon's stderr (a bounded poll: nothing notifies a
    write to a file)."""
    for _ in h.deadline_loop(timeout * h.SLOW, 0.05):
        for ln in d.log_text().splitlines():
            if pred(ln):
                return ln
        if not d.alive():
            break
    raise CheckFailed("no %s in the bridge's log within %.0fs%s; tail:\n%s"
                      % (what, timeout, "" if d.alive() else
                         " (the bridge exited)",
                         "".join(h.tail_file(d.logpath, 15))))


def dead_peer_vms(ctx, names_addrs, host):
    """tk.with_dead_peer for any host: every VM's peer is a primary whose
    socket refuses connections (proven gone)."""
    vms = tk.with_dead_peer(ctx, names_addrs)
    for v in vms:
        if v.get("peer"):
            v["peer"] = "%s/%s" % (host, tk.DEAD)
    return vms


def start_bridge(ctx, broker, version, sim, names, host, takeover,
                 name, keyfile=None):
    mqtt = {"version": version}
    mqtt.update(broker.creds(name))
    tko = {"enabled": True, "auth": takeover}
    if takeover == "hmac":
        tko["key_file"] = keyfile
    vms = dead_peer_vms(ctx, [(n, sim.addr(n)) for n in names], host)
    return tk.takeover_daemon(ctx, vms, broker.port, tko,
                              bridge={"host": host}, name=name, mqtt=mqtt)


def wait_connected(d, timeout=30):
    return wait_log(d, lambda ln: "mqtt: connected to" in ln, timeout,
                    "\"mqtt: connected to\"")


def wait_cmd_subscribed(d, host, timeout=20):
    filt = "%s/%s/+/cmd/takeover" % (h.BASE, host)
    return wait_log(d, lambda ln: "mqtt: subscribed to " + filt in ln,
                    timeout, "\"mqtt: subscribed to %s\"" % filt)


def takeover(ctx, broker, version, sub, sim, d, vm, key, host=h.HOST,
             timeout=10.0):
    """A request for vm (signed when key is given); returns the result
    JSON.  Checks ok and exactly one heartbeat."""
    ops = Ops(ctx, broker.port, version, broker.creds("ops%d" % Ops._n))
    o = tk.request(key, vm, expect="secondary", host=host,
                   sig=True if key is not None else None)
    rtopic = tk.result_topic(vm, host)
    mark = sub.mark(rtopic)
    before = sim.count(vm)["heartbeats"]
    ops.publish(tk.cmd_topic(vm, host), tk.enc(o))
    try:
        m = sub.wait_for(lambda m: m.json().get("id") == o["id"], timeout,
                         topic=rtopic, since=mark)
    except h.TestFailure:
        raise CheckFailed("no result on %s within %.0fs (topics seen: %s)"
                          % (rtopic, timeout,
                             sub.topics_matching("result")))
    r = m.json()
    need((r.get("status"), r.get("reason")) == ("ok", "ok"),
         "result %s" % m.payload.decode())
    n = sim.count(vm)["heartbeats"] - before
    need(n == 1, "%s received %d %s (want 1)" % (vm, n, HB))
    return r


class Row:
    def __init__(self, broker, version):
        self.broker = broker
        self.version = version
        self.cells = {}      # key -> (status, text)
        self.notes = []
        self.failures = []

    @property
    def label(self):
        return "%s / %s" % (self.broker.title,
                            "MQTT 5" if self.version == 5 else "3.1.1")

    def expected(self, key):
        if (self.broker.key, self.version) in WRONG_VERSION:
            return "no" if key == "connect" else "-"
        return "no" if key in EXPECT_NO.get((self.broker.key, self.version),
                                            ()) else "ok"

    def record(self, key, status, text=""):
        self.cells[key] = (status, text)
        exp = self.expected(key)
        log("%s: %s: %s%s (expected %s)" % (self.label, key, status,
                                             (" - " + text) if text else "",
                                             exp))
        if status != "ok" and exp == "ok":
            self.failures.append("%s: %s: %s" % (self.label, key, text))
        elif status == "ok" and exp == "no":
            self.notes.append("%s: %s works, though expected not to" %
                              (self.label, key))

    def run_check(self, key, fn, *a, **kw):
        """fn returns (status, text) or raises CheckFailed/TestFailure."""
        try:
            st, text = fn(*a, **kw)
        except Exception as e:   # one check's failure ends only that check
            st, text = "no", str(e).splitlines()[0][:300] if str(e) else \
                type(e).__name__
        self.record(key, st, text)
        return st


def run_row(ctx, broker, version, only_connect=False):
    row = Row(broker, version)
    log("==== %s" % row.label)
    if only_connect:
        # A version the broker does not speak: the bridge must not connect
        # and must name the cause (README "Connect failures are named").
        d = h.Daemon(ctx, vms=[("vm1", "unix:" + os.path.join(
            ctx.dir, "absent.qmp"))], port=broker.port,
            name="wrongver%d" % version,
            mqtt=dict({"version": version}, **broker.creds("wrongver")))
        d.start()

        def connect_named():
            ln = wait_log(d, lambda ln: "mqtt: cannot connect to" in ln or
                          "mqtt: connected to" in ln, 20,
                          "a connect outcome")
            need("cannot connect" in ln, "it connected: %s" % ln)
            cause = ln[ln.index("cannot connect to"):].split(": ", 1)[-1]
            return "no", cause
        row.run_check("connect", connect_named)
        # "no" is expected here; a cause not in words is a failure
        text = row.cells["connect"][1]
        if "mqtt.version = 3" not in text:
            row.failures.append("%s: connect: the bridge's log does not "
                                "tell to set mqtt.version = 3: %s" %
                                (row.label, text))
        d.stop()
        return row

    names = ["vm1", "vm2", "vm3", "vm4"]
    sim = ctx.sim(4, args=("--mode", "secondary"))
    sub = subscriber(ctx, broker, version)
    keyfile, key = tk.write_key(ctx)

    # connect, events, retained: the bridge with HMAC takeover
    d = start_bridge(ctx, broker, version, sim, names, h.HOST, "hmac",
                     "hmac%d" % version, keyfile)
    if row.run_check("connect", lambda: ("ok", wait_connected(d)
                                         and "")) != "ok":
        d.stop()
        return row
    sim.wait_ready(4, 20)
    try:
        h.wait_online(sub, names, 20)
    except h.TestFailure as e:
        row.notes.append("%s: availability: %s" % (row.label, e))

    def events():
        topic = h.event_topic("vm1")
        mark = sub.mark(topic)
        sim.cmd("exit vm1 secondary error")
        m = sub.wait_for(lambda m: True, 10, topic=topic, since=mark)
        h.check_event(m, "vm1", d, mode="secondary", reason="error")
        return "ok", ""
    row.run_check("events", events)

    def retained(topics, key):
        st_topic = h.state_topic("vm2")
        sub.wait_for(lambda m: True, 10, topic=st_topic)  # published
        late = subscriber(ctx, broker, version, topics=topics, name="late")
        try:
            m = late.wait_for(lambda m: True, 4, topic=st_topic)
        except h.TestFailure:
            late.stop()
            return "no", "nothing on %s within 4 s" % st_topic
        late.stop()
        need(m.retain, "state arrived without the retain flag: %r" % m)
        h.check_state(m, "vm2")
        return "ok", ""
    row.run_check("retained_exact", retained, [h.state_topic("vm2")],
                  "retained_exact")
    row.run_check("retained_wild", retained, [h.BASE + "/#"],
                  "retained_wild")

    def hmac_takeover():
        wait_cmd_subscribed(d, h.HOST)
        takeover(ctx, broker, version, sub, sim, d, "vm2", key)
        return "ok", ""
    row.run_check("hmac", hmac_takeover)
    rc = d.stop()
    if rc != 0:
        row.notes.append("%s: bridge exit status %s on SIGTERM" %
                         (row.label, rc))

    # ACL takeover, then kill -9: the Last Will
    d2 = start_bridge(ctx, broker, version, sim, names, h.HOST, "acl",
                      "acl%d" % version)

    def acl_takeover():
        wait_connected(d2)
        wait_cmd_subscribed(d2, h.HOST)
        takeover(ctx, broker, version, sub, sim, d2, "vm3", None)
        return "ok", ""
    row.run_check("acl", acl_takeover)

    def lwt():
        topic = h.bridge_topic("state")
        sub.wait_for(lambda m: m.json().get("state") == "online" and
                     m.json().get("bridge") == d2.bridge_id, 10,
                     topic=topic)
        mark = sub.mark(topic)
        d2.kill9()
        m = sub.wait_for(lambda m: m.json().get("state") == "offline", 15,
                         topic=topic, since=mark)
        need(m.json().get("bridge") == d2.bridge_id,
             "offline of another bridge: %r" % m)
        return "ok", ""
    row.run_check("lwt", lwt)
    if d2.alive():
        d2.kill9()

    # bridge.host with dots
    dhost = "hv1.example.com"

    def dots():
        d3 = start_bridge(ctx, broker, version, sim, ["vm4"], dhost, "hmac",
                          "dots%d" % version, keyfile)
        try:
            wait_connected(d3)
            want = h.event_topic("vm4", dhost)
            mark = sub.mark()
            sim.cmd("exit vm4 secondary error")
            m = sub.wait_for(lambda m: "/event/colo_exit" in m.topic and
                             "vm4" in m.topic, 10, since=mark)
            problems = []
            if m.topic != want:
                problems.append("events arrive on %s" % m.topic)
            try:
                wait_cmd_subscribed(d3, dhost, 10)
                takeover(ctx, broker, version, sub, sim, d3, "vm4", key,
                         host=dhost, timeout=6)
            except CheckFailed as e:
                ign = daemon_log_has(d3, "ignored")
                problems.append("takeover: %s%s" % (
                    str(e).split(" (")[0],
                    "; the bridge logs the request as ignored" if ign
                    else ""))
            if problems:
                return "no", "; ".join(problems)
            return "ok", ""
        finally:
            d3.stop()
    row.run_check("dots", dots)
    sub.stop()
    return row


# ---------------------------------------------------------------- main

SERVICES = {"rabbitmq-server": "rabbitmq", "ejabberd": "ejabberd"}


def service_beams(user):
    """PIDs of Erlang VMs run by a Debian service's user, outside this
    process' session (ours run in sessions of their own, started later).
    Read from /proc: asking the init script ("service X status") would run
    the service's CLI, which leaves an epmd daemon behind."""
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return []
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            st = os.stat("/proc/" + pid)
            with open("/proc/%s/comm" % pid) as f:
                comm = f.read().strip()
        except OSError:
            continue
        if st.st_uid == uid and comm.startswith("beam"):
            out.append(int(pid))
    return out


def quiet_debian_services(disable=()):
    """The Debian packages may start their own broker on install (where
    policy-rc.d allows it): stop a running one (it takes CPU, and
    RabbitMQ's takes port 1883), and with disable, keep the named ones
    from starting at boot.  Our own brokers use free ports and private
    state, so a service left running would not disturb them otherwise."""
    for svc, user in SERVICES.items():
        if not os.path.exists("/etc/init.d/" + svc):
            continue
        pids = service_beams(user)
        if pids:
            log("the Debian %s service runs (pids %s): service %s stop" %
                (svc, pids, svc))
            try:
                subprocess.run(["service", svc, "stop"], capture_output=True,
                               timeout=60)
            except (OSError, subprocess.TimeoutExpired) as e:
                log("service %s stop: %s" % (svc, e))
        if svc in disable:
            cmds = [["update-rc.d", svc, "disable"]]
            if os.path.isdir("/run/systemd/system"):
                cmds.append(["systemctl", "disable", svc])
            for c in cmds:
                try:
                    subprocess.run(c, capture_output=True, timeout=60)
                    log("%s" % " ".join(c))
                except (OSError, subprocess.TimeoutExpired) as e:
                    log("%s: %s" % (" ".join(c), e))


def render(rows, total_s):
    hdr = "| broker | MQTT | " + " | ".join(t for _, t in COLUMNS) + " |"
    out = [hdr, "|" + "---|" * (len(COLUMNS) + 2)]
    notes = []
    for r in rows:
        cells = []
        for k, _ in COLUMNS:
            if k not in r.cells:
                cells.append("–")
                continue
            st, text = r.cells[k]
            if text:
                notes.append("%s, %s: %s" % (r.label, dict(COLUMNS)[k],
                                             text))
                cells.append("%s [%d]" % (st, len(notes)))
            else:
                cells.append(st)
        out.append("| %s | %s | %s |" % (
            r.broker.title, "5" if r.version == 5 else "3.1.1",
            " | ".join(cells)))
    out.append("")
    for i, n in enumerate(notes, 1):
        out.append("%d. %s" % (i, n))
    extra = [n for r in rows for n in r.notes]
    if extra:
        out.append("")
        out += ["- " + n for n in extra]
    out.append("")
    out.append("Measured by `make interop` in %.0f s." % total_s)
    return "\n".join(out) + "\n"


PLAN = [("mosquitto", (5, 3)), ("ejabberd", (5, 3)), ("rabbitmq", (3, 5)),
        ("aedes", (3, 5))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "std"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build",
                                                  "interop.md"))
    ap.add_argument("--aedes-dir", default=os.path.join(ROOT, "build",
                                                        "interop", "aedes"))
    ap.add_argument("--only", nargs="*", default=None,
                    help="brokers: mosquitto ejabberd rabbitmq aedes")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp dir (logs) even when all pass")
    ap.add_argument("--quiet-services", nargs="*", default=None,
                    metavar="SERVICE", help="only stop the Debian services "
                    "if they run, disable the named ones, and exit")
    args = ap.parse_args()
    if args.quiet_services is not None:
        quiet_debian_services(args.quiet_services)
        return
    h.require_paho()
    h.require_daemon()
    h.require_sim()
    # everything stops by itself: a hard bound on the whole run
    signal.signal(signal.SIGALRM, lambda s, f: (_ for _ in ()).throw(
        SystemExit("interop: over 15 minutes, giving up")))
    signal.alarm(900)
    t0 = time.monotonic()
    quiet_debian_services()
    root = tempfile.mkdtemp(prefix="q2m-interop-")
    print("temp dir: %s; build: %s" % (root, h.BUILD), flush=True)
    rows, failures, skipped = [], [], []
    for bkey, versions in PLAN:
        if args.only and bkey not in args.only:
            continue
        ctx = h.Ctx(bkey, root)
        broker = None
        try:
            broker = {"mosquitto": lambda: MosquittoBroker(ctx),
                      "rabbitmq": lambda: RabbitBroker(ctx),
                      "ejabberd": lambda: EjabberdBroker(ctx),
                      "aedes": lambda: AedesBroker(ctx, args.aedes_dir)
                      }[bkey]()
            ctx.register(broker)
            broker.start()
            for v in versions:
                row = run_row(ctx, broker, v,
                              only_connect=(bkey, v) in WRONG_VERSION)
                rows.append(row)
                failures += row.failures
        except h.Skip as e:
            skipped.append("%s: %s" % (bkey, e))
            log("SKIP %s: %s" % (bkey, e))
        except BaseException as e:
            import traceback
            traceback.print_exc(file=sys.stdout)
            failures.append("%s: %s" % (bkey, e))
            try:
                ctx.dump_logs(20)
            except Exception:
                pass
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                ctx.close()
                break
        finally:
            ctx.close()
    signal.alarm(0)
    total = time.monotonic() - t0
    table = render(rows, total)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(table)
    print()
    print(table)
    print("written to %s; %.0f s" % (args.out, total))
    for s in skipped:
        print("SKIPPED (counts as a failure): %s" % s)
    failures += ["skipped: " + s for s in skipped]
    if failures:
        print("FAILED checks (the README claims them):")
        for f in failures:
            print("  " + f)
        print("temp dir kept: %s" % root)
        sys.exit(1)
    if args.keep:
        print("temp dir kept: %s" % root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    print("interop: all claimed checks pass")


if __name__ == "__main__":
    main()
