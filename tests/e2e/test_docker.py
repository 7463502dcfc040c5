#!/usr/bin/python3
"""The container images of docker/ built and run with podman, and the
compose stack (docker/compose.yaml) run for real.

Runs by default (make test); QMP2MQTT_DOCKER_TEST=0 opts out (exit 77,
said so).  What it needs is installed on demand (as root, Debian's apt,
--no-install-recommends): podman runc catatonit netavark aardvark-dns
iptables uidmap debootstrap podman-compose docker-compose.  It skips
(exit 77, with the reason) only when podman cannot run containers here:
`podman info` fails, or `podman run` of the base image fails, or podman is
missing and installing it needs root; a failed installation, debootstrap,
build or check is a failure.

  /usr/bin/python3 tests/e2e/test_docker.py            # everything
  /usr/bin/python3 tests/e2e/test_docker.py test_compose_stack

Steps: the base image (QMP2MQTT_DOCKER_BASE, default
localhost/debian:bookworm) is made if missing with `debootstrap --variant
=minbase bookworm` from the mirror of this machine's own apt configuration
(read from /etc/apt/sources.list.d/debian.sources at run time, and that
file copied into the image so apt inside builds uses the same mirror), then
`podman import`; it stays in podman's store for the next run (rebuilt only
when absent).  `podman build --build-arg BASE=...` makes the bridge image
(QMP2MQTT_DOCKER_IMAGE, default localhost/qmp2mqtt:test), checked with
`podman run` (its exit codes are reliable; the docker client's against
podman are not): `--version`; `-n` on the image's own configuration, on
docker/qmp2mqtt.conf, docker/operator.conf and a bad one; a non-root user,
no compiler, no missing library; the bridge in a container against a
private mosquitto and the simulator's VMs (COLO_EXIT, qmp2mqtt-ctl status,
podman stop: exit 0 and offline).  Then the compose stack: the mosquitto
and colo-demo images are built (localhost/qmp2mqtt-mosquitto:test,
localhost/qmp2mqtt-colo-demo:test), `docker-compose up -d --no-build`
against `podman system service` (a private socket, a project of its own,
the broker published on a free loopback port): no anonymous access, the
ACL keeps the bridge's user off other hosts' topics, the bridge online
with the demo pair in COLO (pri primary, sec secondary), every container's
PID 1 non-root and the sockets group-shared; a takeover of the primary
with qmp2mqtt-ctl in a container on the stack's network as the operator
(docker/operator.conf, takeover.auth "acl"): result ok, both COLO_EXIT
events published (and QEMU's own in the pair's log), pri mode none;
`docker-compose stop`: every container exits 0, the bridge publishes
offline; `docker-compose down -v` always (also on failure), then anything
of the project still there removed.  Every command has a timeout.

Podman settings these machines need (a containers.conf named by
CONTAINERS_CONF) are written to a temp file unless CONTAINERS_CONF is set.
"""
# TIMEOUT = 600

import atexit
import json
import os
import re
import shutil
import socket
import time
import types

import harness as h  # noqa: E402
from harness import check, check_eq  # noqa: E402

from podman_util import (BASE_IMAGE, ENV, ROOT, build,  # noqa: E402
                         image_exists, podman, prepare, report_times, run,
                         skip_if_opted_out, tail, timed)

IMAGE = os.environ.get("QMP2MQTT_DOCKER_IMAGE", "localhost/qmp2mqtt:test")
MOSQUITTO_IMAGE = "localhost/qmp2mqtt-mosquitto:test"
COLO_DEMO_IMAGE = "localhost/qmp2mqtt-colo-demo:test"
CONF_IN_IMAGE = "/etc/qmp2mqtt/qmp2mqtt.conf"
IMAGE_UID = 10001           # the Dockerfile's default QMP2MQTT_UID/GID
COLO_UID = 10002            # docker/colo-demo/Dockerfile's COLO_UID
SOCK_DIR_IN_IMAGE = "/run/qmp2mqtt"
COMPOSE_FILE = os.path.join(ROOT, "docker", "compose.yaml")
# The broker users of the stack (docker/mosquitto/qmp2mqtt.acl); their
# random passwords are in the stack's volume "secrets".
BRIDGE_USER, OPERATOR_USER = "hv1", "operator"
OPERATOR_UID = 10003        # compose.yaml's ctl service
SECRETS_IN_IMAGE = "/run/qmp2mqtt-secrets"
skip_if_opted_out()


def podman_run(*args, timeout=60, opts=()):
    """podman run --rm --network host [opts] IMAGE args."""
    return podman("run", "--rm", "--network", "host", *opts, IMAGE, *args,
                  timeout=timeout, what="podman run %s %s" %
                  (" ".join(opts), " ".join(args)))


def require_image(name=IMAGE):
    check(image_exists(name), "image %s missing (its build failed?)" % name)


def build_image(ctx, tag, dockerfile, what):
    """podman build of docker/DOCKERFILE from the repository root."""
    build(ctx, tag, os.path.join(ROOT, "docker", dockerfile), what,
          args=("--build-arg", "BASE=" + BASE_IMAGE))


# ---------------------------------------------------------------- tests

def test_base_image(ctx):
    rc, out, err = podman("run", "--rm", "--network", "host", BASE_IMAGE,
                          "cat", "/etc/debian_version", timeout=60)
    check_eq(rc, 0, "podman run %s (%s)" % (BASE_IMAGE, err.strip()))
    check(out.strip().startswith("12"), "base image is not Debian 12: %r"
          % out)


def test_build(ctx):
    check(image_exists(BASE_IMAGE), "no base image %s" % BASE_IMAGE)
    build_image(ctx, IMAGE, "Dockerfile", "qmp2mqtt")


def test_version(ctx):
    require_image()
    rc, out, err = podman_run("--version")
    check_eq(rc, 0, "qmp2mqtt --version exit status (%s)" % err.strip())
    check(re.match(r"^qmp2mqtt \d+\.\d+\.\d+\s*$", out),
          "--version printed %r" % out)
    rc, out, err = podman_run("-V")
    check_eq(rc, 0, "qmp2mqtt -V exit status")
    rc, out, err = podman_run("--help", opts=("--entrypoint",
                                              "qmp2mqtt-ctl"))
    check_eq(rc, 0, "qmp2mqtt-ctl --help exit status (%s)" % err.strip())
    check("usage: qmp2mqtt-ctl" in out, "qmp2mqtt-ctl --help: %r" % out)


def test_config_check(ctx):
    require_image()
    # The image's own (example) configuration.
    rc, out, err = podman_run("-n")
    check_eq(rc, 0, "qmp2mqtt -n on the image's configuration (%s)" %
             (out + err).strip())
    check("configuration OK" in out + err, "-n printed %r" % (out + err))
    # The compose stack's bridge and operator configurations, with
    # password files as the stack's "secrets" service makes them.
    sec = os.path.join(ctx.dir, "secrets")
    for who, uid in (("bridge", IMAGE_UID), ("operator", OPERATOR_UID)):
        os.makedirs(os.path.join(sec, who))
        f = os.path.join(sec, who, "mqtt.password")
        with open(f, "w") as fh:
            fh.write("secret\n")
        os.chmod(f, 0o600)
        os.chown(f, uid, IMAGE_UID)
    for name, uid in (("qmp2mqtt.conf", IMAGE_UID),
                      ("operator.conf", OPERATOR_UID)):
        sample = os.path.join(ROOT, "docker", name)
        rc, out, err = podman_run("-n", opts=(
            "--user", "%d:%d" % (uid, IMAGE_UID),
            "-v", "%s:%s:ro" % (sample, CONF_IN_IMAGE),
            "-v", "%s:%s:ro" % (sec, SECRETS_IN_IMAGE)))
        check_eq(rc, 0, "qmp2mqtt -n on docker/%s (%s)" %
                 (name, (out + err).strip()))
        check("warning" not in out + err, "docker/%s: %s" %
              (name, (out + err).strip()))
    # A bad one: exit 1, FILE:LINE: key: problem, nothing started.
    bad = os.path.join(ctx.dir, "bad.conf")
    with open(bad, "w") as f:
        f.write('mqtt = { uri = "tcp://127.0.0.1:1"; };\n'
                'vms = (\n'
                '  { name = "bridge"; qmp = "unix:/run/qmp2mqtt/x.qmp"; }\n'
                ');\n')
    os.chmod(bad, 0o644)
    rc, out, err = podman_run("-n", opts=(
        "-v", "%s:%s:ro" % (bad, CONF_IN_IMAGE)))
    check_eq(rc, 1, "qmp2mqtt -n on a bad configuration (%s)" %
             (out + err).strip())
    check(re.search(r"%s:3: vms(\[0\])?\.name: " % re.escape(CONF_IN_IMAGE),
                    err), "error message shape: %r" % err)
    # No configuration at all: exit 1 too.
    rc, out, err = podman_run("-c", "/nonexistent.conf", "-n")
    check_eq(rc, 1, "qmp2mqtt -n with a missing configuration file")


def test_image_contents(ctx):
    require_image()
    rc, out, err = podman_run("-c", "id -u; id -g", opts=("--entrypoint",
                                                          "sh"))
    check_eq(rc, 0, "id in the container (%s)" % err.strip())
    check_eq(out.split(), [str(IMAGE_UID), str(IMAGE_UID)],
             "uid and gid of the image's user")
    rc, out, err = podman_run(
        "-c", "for t in gcc cc make pkg-config; do command -v $t; done; "
        "ldd /usr/local/bin/qmp2mqtt /usr/local/bin/qmp2mqtt-ctl",
        opts=("--entrypoint", "sh"))
    check_eq(rc, 0, "ldd in the container (%s)" % err.strip())
    tools = [ln for ln in out.splitlines() if ln.startswith("/usr/bin")]
    check(not tools, "build tools in the runtime image: %r" % tools)
    check("not found" not in out, "missing libraries:\n%s" % out)
    for lib in ("libpaho-mqtt3as", "libjson-c", "libconfig", "libcrypto"):
        check(lib in out, "%s not linked: %s" % (lib, out))


class Container:
    """A detached `podman run`; removed (logs kept) on close."""

    def __init__(self, ctx, opts, args):
        self.ctx = ctx
        self.name = "q2m-e2e-%d-%d" % (os.getpid(), int(time.time()))
        self.opts = list(opts)
        self.args = list(args)
        self.logpath = os.path.join(ctx.dir, "container.log")
        self.started = False
        ctx.register(self)

    def start(self):
        rc, out, err = podman("run", "-d", "--name", self.name,
                              "--network", "host", *self.opts, IMAGE,
                              *self.args, timeout=60, what="podman run -d")
        check_eq(rc, 0, "podman run -d (%s)" % err.strip())
        self.started = True
        return self

    def running(self):
        rc, out, _ = podman("inspect", "--format", "{{.State.Running}}",
                            self.name, timeout=30)
        return rc == 0 and out.strip() == "true"

    def stop(self, grace=15):
        """podman stop (SIGTERM, SIGKILL after grace); returns the exit
        code."""
        rc, out, err = podman("stop", "-t", str(grace), self.name,
                              timeout=grace + 30)
        check_eq(rc, 0, "podman stop (%s)" % err.strip())
        rc, out, err = podman("inspect", "--format", "{{.State.ExitCode}}",
                              self.name, timeout=30)
        check_eq(rc, 0, "podman inspect (%s)" % err.strip())
        return int(out.strip())

    def save_logs(self):
        if self.started:
            rc, out, err = podman("logs", self.name, timeout=30)
            with open(self.logpath, "w") as f:
                f.write(out + err)

    def log_text(self):
        self.save_logs()
        with open(self.logpath) as f:
            return f.read()

    def close(self):
        if self.started:
            try:
                self.save_logs()
            finally:
                podman("rm", "-f", self.name, timeout=60)
                self.started = False

    def logs(self):
        return [("container " + self.name, self.logpath)]


def test_bridge_in_container(ctx):
    require_image()
    if os.geteuid() != 0:
        raise h.Skip("needs root (chown of the QMP sockets to the "
                     "container's uid)")
    h.require_sim()
    broker = ctx.mosquitto()
    sim = ctx.sim(2)
    # What docker/README.md tells users: the container's user must be able
    # to connect to the sockets (write permission): here it owns them.
    os.chmod(sim.sockdir, 0o755)
    for i in (1, 2):
        os.chown(sim.sock(i), IMAGE_UID, IMAGE_UID)
    sub = ctx.subscriber(broker.port)
    vms = [("vm%d" % i, "unix:%s/vm%d.qmp" % (SOCK_DIR_IN_IMAGE, i))
           for i in (1, 2)]
    conf = os.path.join(ctx.dir, "qmp2mqtt.conf")
    with open(conf, "w") as f:
        f.write(h.render_config(
            vms, bridge={"host": h.HOST, "id": "bridge-docker",
                         "backoff_min_ms": 50, "backoff_max_ms": 500},
            mqtt={"uri": "tcp://127.0.0.1:%d" % broker.port,
                  "client_id": "qmp2mqtt-docker-e2e", "keepalive": 5,
                  "version": 5, "qos": 1, "base_topic": h.BASE}))
    os.chmod(conf, 0o644)
    c = Container(ctx, opts=("-v", "%s:%s:ro" % (conf, CONF_IN_IMAGE),
                             "-v", "%s:%s" % (sim.sockdir,
                                              SOCK_DIR_IN_IMAGE)),
                  args=("-v",)).start()
    try:
        sub.wait_json(h.bridge_topic("state"),
                      lambda s: s.get("state") == "online", 30,
                      "bridge/state online from the container")
        h.wait_online(sub, ["vm1", "vm2"], 30)
    except h.TestFailure:
        h.fail("bridge in the container not online; its log:\n%s" %
               tail(c.log_text(), 30))
    sim.cmd("exit vm1 secondary request")
    m = sub.wait_for(lambda m: True, 15, "COLO_EXIT of vm1",
                     topic=h.event_topic("vm1"))
    e = m.json()
    check_eq((e.get("vm"), e.get("mode"), e.get("reason"), e.get("seq")),
             ("vm1", "secondary", "request", 1), "event from the container")
    check_eq(h.sim_k(e), 1, "event time_us (simulator's k)")
    # The state naming that exit follows it after the debounce (vm.c
    # REFRESH_DELAY_MS, 250 ms): published before it is read back.
    sub.wait_json(h.state_topic("vm1"), lambda s: (
        s.get("last_exit") or {}).get("seq") == 1, 15,
        "vm1 state with the exit")
    # The control client in the container reads the retained state.
    rc, out, err = podman_run(
        "-c", CONF_IN_IMAGE, "status", h.HOST, "vm1", "--wait", "10",
        opts=("--entrypoint", "qmp2mqtt-ctl",
              "-v", "%s:%s:ro" % (conf, CONF_IN_IMAGE)))
    check_eq(rc, 0, "qmp2mqtt-ctl status in the container (%s)" %
             err.strip())
    st = h.check_state(h.Msg(h.state_topic("vm1"), out.strip().encode(),
                             True, 1, 0), "vm1")
    check_eq(st["last_exit"]["seq"], 1, "state last_exit seq")
    # podman stop: SIGTERM, exit 0, offline published.
    n0 = sub.mark(h.bridge_topic("state"))
    rc = c.stop()
    check_eq(rc, 0, "exit code of the container after podman stop")
    sub.wait_json(h.bridge_topic("state"),
                  lambda s: s.get("state") == "offline", 10,
                  "bridge/state offline", since=n0)
    check_eq(sub.last(h.avail_topic("vm1")).payload, b"offline",
             "vm1 availability after stop")
    text = c.log_text()
    check("Sanitizer" not in text, "sanitizer report in the container")




# ---------------------------------------------------------------- compose

def test_build_stack_images(ctx):
    check(image_exists(BASE_IMAGE), "no base image %s" % BASE_IMAGE)
    build_image(ctx, MOSQUITTO_IMAGE, "mosquitto/Dockerfile", "mosquitto")
    build_image(ctx, COLO_DEMO_IMAGE, "colo-demo/Dockerfile", "colo-demo")
    # Rebuilds leave the old build stages as untagged images (about 350 MB
    # each): those of the last day stay (they are the layer cache).
    rc, out, err = podman("image", "prune", "-f", "--filter", "until=24h",
                          timeout=120)
    check_eq(rc, 0, "podman image prune (%s)" % err.strip())


class PodmanService:
    """`podman system service` on a private socket, for docker-compose.
    It also exits by itself after 120 s without a request."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.sock = os.path.join(ctx.dir, "podman.sock")
        self.logpath = os.path.join(ctx.dir, "podman-service.log")
        self.proc = None
        ctx.register(self)

    def ping(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(self.sock)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.") and b" 200 " in \
                data.split(b"\r\n", 1)[0]
        except OSError:
            return False
        finally:
            s.close()

    def start(self):
        self.proc = h.Proc("podman-service",
                           ["podman", "system", "service", "--time=120",
                            "unix://" + self.sock], self.logpath, env=ENV)
        for _ in h.deadline_loop(30, 0.1):
            if self.ping():
                h.log("podman system service up (pid %d)" % self.proc.pid)
                return self
            check(self.proc.alive(), "podman system service exited: %s" %
                  tail(self.proc.log_text(), 10))
        h.fail("podman system service: no answer on %s within 30 s" %
               self.sock)

    def close(self):
        if self.proc is not None:
            self.proc.stop(10)
            self.proc = None

    def logs(self):
        return [("podman system service", self.logpath)]


class Stack:
    """docker/compose.yaml under a project of its own (docker-compose
    against the podman service); close() always takes it down."""

    SERVICES = ("secrets", "mosquitto", "colo-demo", "qmp2mqtt")

    def __init__(self, ctx, service, port):
        self.ctx = ctx
        self.dc = shutil.which("docker-compose")
        self.project = "q2m-e2e-%d" % os.getpid()
        self.port = port
        env = dict(ENV)
        for k in ("QMP2MQTT_USER", "COMPOSE_FILE", "COMPOSE_PROFILES"):
            env.pop(k, None)        # the shipped defaults, nothing else
        env.update(DOCKER_HOST="unix://" + service.sock,
                   COMPOSE_PROJECT_NAME=self.project,
                   QMP2MQTT_IMAGE=IMAGE, MOSQUITTO_IMAGE=MOSQUITTO_IMAGE,
                   COLO_DEMO_IMAGE=COLO_DEMO_IMAGE, MQTT_PORT=str(port),
                   BASE=BASE_IMAGE)
        self.env = env
        self.upped = False
        self.saved = {}
        ctx.register(self)

    def compose(self, *args, timeout=120):
        return run([self.dc, "-f", COMPOSE_FILE, "-p", self.project] +
                   list(args), timeout, "docker-compose " + " ".join(args),
                   env=self.env)

    def container(self, service):
        return "%s_%s_1" % (self.project, service)

    @property
    def network(self):
        return "%s_default" % self.project

    def up(self):
        self.upped = True
        rc, out, err = self.compose("up", "-d", "--no-build", timeout=180)
        check_eq(rc, 0, "docker-compose up -d (%s)" % tail(out + err, 20))

    def log_text(self, service):
        rc, out, err = podman("logs", self.container(service), timeout=30)
        return out + err if rc == 0 else self.saved.get(service, "")

    def save_logs(self):
        for svc in self.SERVICES:
            rc, out, err = podman("logs", self.container(svc), timeout=30)
            if rc == 0:
                self.saved[svc] = out + err
                with open(os.path.join(self.ctx.dir, svc + ".log"),
                          "w") as f:
                    f.write(out + err)

    def secret(self, path):
        """A file of the stack's volume "secrets" (read on the host)."""
        rc, out, err = podman("volume", "inspect", "--format",
                              "{{.Mountpoint}}", self.project + "_secrets",
                              timeout=30)
        check_eq(rc, 0, "podman volume inspect (%s)" % err.strip())
        with open(os.path.join(out.strip(), path)) as f:
            return f.readline().rstrip("\n")

    def exec_(self, service, script, user=None):
        opts = ["--user", user] if user else []
        return podman("exec", *opts, self.container(service), "sh", "-c",
                      script, timeout=30, what="podman exec %s" % service)

    def close(self):
        if not self.upped:
            return
        self.upped = False
        try:
            self.save_logs()
        except h.TestFailure:
            pass
        try:
            self.compose("down", "-v", "-t", "10", timeout=90)
        except h.TestFailure as e:
            print("docker-compose down: %s" % e)
        # Whatever docker-compose left (or could not reach) goes too.
        remove_project(self.project)

    @staticmethod
    def remove_stale():
        """Projects of earlier runs killed before their clean-up (SIGKILL):
        q2m-e2e-PID with PID gone."""
        try:
            rc, out, _ = podman(
                "ps", "-a", "--filter", "label=com.docker.compose.project",
                "--format", '{{index .Labels "com.docker.compose.project"}}',
                timeout=30)
        except h.TestFailure:
            return
        for proj in sorted(set(out.split())):
            m = re.match(r"^q2m-e2e-(\d+)$", proj)
            if m and not os.path.exists("/proc/" + m.group(1)):
                remove_project(proj)

    def logs(self):
        if self.upped:
            try:
                self.save_logs()
            except h.TestFailure:
                pass
        return [("container " + svc,
                 os.path.join(self.ctx.dir, svc + ".log"))
                for svc in self.SERVICES]


def remove_project(project):
    """Removes every container, volume and network of a compose project."""
    label = "label=com.docker.compose.project=%s" % project
    for kind, ls, rm in (
            ("container", ["ps", "-a"], ["rm", "-f", "-t", "5"]),
            ("volume", ["volume", "ls"], ["volume", "rm", "-f"]),
            ("network", ["network", "ls"], ["network", "rm", "-f"])):
        try:
            rc, out, _ = podman(*ls, "-q", "--filter", label, timeout=30)
            names = out.split()
            if kind == "network" and not names:
                net = "%s_default" % project
                rc2, _, _ = podman("network", "exists", net, timeout=30)
                names = [net] if rc2 == 0 else []
            if names:
                print("left over of project %s: %s %s" %
                      (project, kind, " ".join(names)))
                podman(*rm, *names, timeout=60)
        except h.TestFailure as e:
            print("cleanup of %ss: %s" % (kind, e))


class AuthSubscriber(h.Subscriber):
    """The harness' recording subscriber, with broker credentials."""

    def __init__(self, ctx, port, user, password, **kw):
        super().__init__(ctx, port, **kw)
        self.c.username_pw_set(user, password)


def mqtt_connack(port, user=None, password=None, timeout=10.0):
    """CONNACK return code of an MQTT 3.1.1 connection (0: accepted)."""
    import paho.mqtt.client as mqtt
    got = []
    c = mqtt.Client(client_id="e2e-probe-%d" % os.getpid(),
                    protocol=mqtt.MQTTv311)
    if user is not None:
        c.username_pw_set(user, password)
    c.on_connect = lambda cl, u, fl, rc: got.append(rc)
    c.connect("127.0.0.1", port, keepalive=10)
    end = time.monotonic() + timeout
    while not got and time.monotonic() < end:
        c.loop(0.1)
    c.disconnect()
    check(got, "no CONNACK within %.0f s" % timeout)
    return got[0]


def mqtt_publish_seq(port, user, password, msgs, timeout=10.0):
    """Publishes [(topic, payload)] in order, QoS 1, as USER."""
    import paho.mqtt.client as mqtt
    c = mqtt.Client(client_id="e2e-pub-%d" % os.getpid(),
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password)
    c.connect("127.0.0.1", port, keepalive=10)
    c.loop_start()
    try:
        for topic, payload in msgs:
            info = c.publish(topic, payload, qos=1)
            info.wait_for_publish(timeout)
            check(info.is_published(), "publish on %s not acknowledged"
                  % topic)
    finally:
        c.disconnect()
        c.loop_stop()


def pid1_uid(stack, service):
    rc, out, err = stack.exec_(service, "grep '^Uid:' /proc/1/status")
    check_eq(rc, 0, "uid of PID 1 in %s (%s)" % (service, err.strip()))
    return int(out.split()[1])


def test_compose_stack(ctx):
    for img in (IMAGE, MOSQUITTO_IMAGE, COLO_DEMO_IMAGE):
        require_image(img)
    check(shutil.which("docker-compose") is not None,
          "docker-compose not installed")
    h.require_paho()
    t0 = time.monotonic()
    Stack.remove_stale()
    port = h.free_port()
    service = PodmanService(ctx).start()
    stack = Stack(ctx, service, port)
    stack.up()
    base = h.BASE
    # The random passwords "secrets" made, and their files.
    bridge_pw = stack.secret("bridge/mqtt.password")
    operator_pw = stack.secret("operator/mqtt.password")
    check(len(bridge_pw) >= 32 and len(operator_pw) >= 32 and
          bridge_pw != operator_pw, "generated passwords")
    rc, out, err = stack.exec_("mosquitto",
                               "stat -c '%n %a %u' /secrets/*/*", user="0")
    check_eq(rc, 0, "stat of the secrets (%s)" % err.strip())
    rc2, muid, _ = stack.exec_("mosquitto", "id -u")
    check_eq(sorted(out.splitlines()), sorted([
        "/secrets/bridge/mqtt.password 600 %d" % IMAGE_UID,
        "/secrets/operator/mqtt.password 600 %d" % OPERATOR_UID,
        "/secrets/broker/passwd 600 %s" % muid.strip()]),
        "the secrets' modes and owners")

    # The broker: no anonymous access, no wrong password.
    for _ in h.deadline_loop(30, 0.2):
        if h.port_accepts(port):
            break
    else:
        h.fail("nothing accepts on the broker's published port %d" % port)
    rc = None
    for _ in h.deadline_loop(20, 0.3):
        try:
            rc = mqtt_connack(port)
            break
        except (OSError, h.TestFailure):
            continue    # the broker is still starting behind the port
    check(rc not in (None, 0), "anonymous connection accepted (CONNACK %r)"
          % rc)
    check(mqtt_connack(port, OPERATOR_USER, "wrong") != 0,
          "operator with a wrong password accepted")
    sub = AuthSubscriber(ctx, port, OPERATOR_USER, operator_pw,
                         topics=(base + "/#",)).start(30)

    # The bridge online, the demo pair in COLO.
    try:
        sub.wait_json(h.bridge_topic("state"),
                      lambda s: s.get("state") == "online", 60,
                      "bridge/state online")
        for vm, mode in (("pri", "primary"), ("sec", "secondary")):
            sub.wait_json(h.state_topic(vm), lambda s, mode=mode:
                          s.get("mode") == mode and
                          s.get("qmp") == "connected", 60,
                          "state of %s: mode %s" % (vm, mode))
    except h.TestFailure as e:
        h.fail("%s\nqmp2mqtt:\n%s\ncolo-demo:\n%s" % (
            e, tail(stack.log_text("qmp2mqtt"), 20),
            tail(stack.log_text("colo-demo"), 20)))
    timed("stack up, pair in COLO, bridge online", t0)

    # The ACL: the bridge's user writes its own host's topics only (the
    # denied publish goes first on the same connection: had it passed,
    # it would arrive before the allowed one).
    own = "%s/%s/e2e-acl/probe" % (base, BRIDGE_USER)
    other = "%s/hv-other/e2e-acl/probe" % base
    mqtt_publish_seq(port, BRIDGE_USER, bridge_pw,
                     [(other, b"must not pass"), (own, b"ok")])
    sub.wait_for(lambda m: True, 10, "the bridge user's own-host probe",
                 topic=own)
    check_eq(sub.count(other), 0, "messages the ACL should have refused "
             "(bridge user on another host's topic)")

    # Nobody runs as root; the sockets are the group's.
    check_eq(pid1_uid(stack, "qmp2mqtt"), IMAGE_UID, "uid of the bridge")
    check_eq(pid1_uid(stack, "colo-demo"), COLO_UID, "uid of colo-pair")
    check(pid1_uid(stack, "mosquitto") != 0, "mosquitto runs as root")
    rc, out, err = stack.exec_("colo-demo",
                               "stat -c '%n %a %u %g %F' "
                               "/run/qmp2mqtt/pri.qmp /run/qmp2mqtt/sec.qmp;"
                               " for p in /proc/[0-9]*; do"
                               " case $(readlink $p/exe) in *qemu-system*)"
                               " grep '^Uid:' $p/status;; esac; done")
    check_eq(rc, 0, "sockets and QEMU processes (%s)" % err.strip())
    lines = out.splitlines()
    for side in ("pri", "sec"):
        check("/run/qmp2mqtt/%s.qmp 770 %d %d socket" %
              (side, COLO_UID, IMAGE_UID) in lines,
              "socket %s: %r" % (side, out))
    quids = [ln.split()[1] for ln in lines if ln.startswith("Uid:")]
    check_eq(quids, [str(COLO_UID)] * 2, "uids of the two QEMUs")

    # The takeover of the primary, by the operator, through the broker.
    n_res = sub.mark("%s/%s/pri/result/takeover" % (base, h.HOST))
    t1 = time.monotonic()
    rc, out, err = podman(
        "run", "--rm", "--network", stack.network,
        "--user", "%d:%d" % (OPERATOR_UID, IMAGE_UID),
        "-v", "%s:%s:ro" % (os.path.join(ROOT, "docker", "operator.conf"),
                            CONF_IN_IMAGE),
        "-v", "%s_secrets:%s:ro" % (stack.project, SECRETS_IN_IMAGE),
        "--entrypoint", "qmp2mqtt-ctl", IMAGE, "-c", CONF_IN_IMAGE,
        "takeover", h.HOST, "pri", "--expect", "primary", "--wait", "20",
        timeout=60, what="qmp2mqtt-ctl takeover hv1 pri (operator)")
    h.log("qmp2mqtt-ctl takeover: stdout %s stderr %s" %
          (out.strip(), err.strip()))
    check_eq(rc, 0, "qmp2mqtt-ctl takeover exit status (stderr %r)" % err)
    try:
        r = json.loads(out)
    except ValueError:
        h.fail("qmp2mqtt-ctl takeover printed %r" % out)
    check_eq((r.get("status"), r.get("reason"), r.get("sent"),
              r.get("authenticated")), ("ok", "ok", True, True),
             "takeover result")
    check_eq(((r.get("colo") or {}).get("mode"),
              (r.get("colo") or {}).get("last_mode")),
             ("none", "primary"), "takeover result colo")
    m = sub.wait_for(lambda m: m.json().get("id") == r.get("id"), 10,
                     "published takeover result",
                     topic="%s/%s/pri/result/takeover" % (base, h.HOST),
                     since=n_res)
    check(not m.retain, "takeover result retained")
    bridge = types.SimpleNamespace(base=base, bridge_id="qmp2mqtt-hv1")
    for vm, mode, reason in (("pri", "primary", ("request", "error")),
                             ("sec", "secondary", "error")):
        em = sub.wait_for(lambda m: True, 15, "COLO_EXIT of %s" % vm,
                          topic=h.event_topic(vm))
        h.check_event(em, vm, bridge, seq=1, mode=mode, reason=reason)
        h.log("published: %s" % em.payload.decode())
    sub.wait_json(h.state_topic("pri"), lambda s: s.get("mode") == "none"
                  and s.get("last_mode") == "primary", 15,
                  "state of pri: mode none, last_mode primary")
    # QEMU's own events, as colo-pair logged them from its monitors.
    for _ in h.deadline_loop(10, 0.5):
        text = stack.log_text("colo-demo")
        qev = re.findall(r'colo-pair: (primary|secondary): .*"COLO_EXIT"',
                         text)
        if sorted(qev) == ["primary", "secondary"]:
            break
    else:
        h.fail("QEMU's COLO_EXIT events in the pair's log: %r\n%s" %
               (qev, tail(text, 20)))
    timed("takeover and both COLO_EXIT", t1)

    # Stop: every container exits 0, the bridge says offline.
    t2 = time.monotonic()
    n_state = sub.mark(h.bridge_topic("state"))
    rc, out, err = stack.compose("stop", "-t", "10", timeout=90)
    check_eq(rc, 0, "docker-compose stop (%s)" % tail(out + err, 10))
    sub.wait_json(h.bridge_topic("state"),
                  lambda s: s.get("state") == "offline", 10,
                  "bridge/state offline after stop", since=n_state)
    for svc in Stack.SERVICES:
        rc, out, err = podman("inspect", "--format",
                              "{{.State.Running}} {{.State.ExitCode}}",
                              stack.container(svc), timeout=30)
        check_eq(rc, 0, "podman inspect %s (%s)" % (svc, err.strip()))
        check_eq(out.split(), ["false", "0"],
                 "%s after docker-compose stop: running, exit code" % svc)
    text = stack.log_text("qmp2mqtt")
    check("Sanitizer" not in text, "sanitizer report in the bridge's log")
    timed("stack stop", t2)
    sub.stop()
    t3 = time.monotonic()
    stack.close()
    service.close()
    timed("stack down", t3)
    rc, out, _ = podman("ps", "-a", "-q", "--filter",
                        "label=com.docker.compose.project=%s" %
                        stack.project, timeout=30)
    check_eq(out.split(), [], "containers of the project after down")


def test_compose_config(ctx):
    dc = shutil.which("docker-compose")
    check(dc is not None, "docker-compose not installed")
    rc, out, err = run([dc, "-f", COMPOSE_FILE, "config", "-q"], 60,
                       "docker-compose config -q")
    check_eq(rc, 0, "docker-compose config -q (%s)" % err.strip())


if __name__ == "__main__":
    prepare()
    atexit.register(report_times)
    h.main(test_base_image, test_build, test_version, test_config_check,
           test_image_contents, test_bridge_in_container,
           test_compose_config, test_build_stack_images, test_compose_stack)
