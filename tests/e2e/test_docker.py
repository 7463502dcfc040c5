#!/usr/bin/python3
"""The container image of docker/ built and run with podman.

Opt-in: skipped (exit 77) unless QMP2MQTT_DOCKER_TEST=1 and podman is
installed (Debian packages: podman runc catatonit netavark aardvark-dns
iptables uidmap debootstrap, with --no-install-recommends).

  QMP2MQTT_DOCKER_TEST=1 /usr/bin/python3 tests/e2e/test_docker.py

Steps: the base image (QMP2MQTT_DOCKER_BASE, default
localhost/debian:bookworm) is made if missing with `debootstrap --variant
=minbase bookworm` from the mirror of this machine's own apt configuration
(read from /etc/apt/sources.list.d/debian.sources at run time, and that
file copied into the image so apt inside builds uses the same mirror), then
`podman import`; `podman build -f docker/Dockerfile --build-arg BASE=...`
tags QMP2MQTT_DOCKER_IMAGE (default localhost/qmp2mqtt:test).  Checked with
`podman run` (its exit codes are reliable; the docker client's against
podman are not): `--version`; `-n` on the image's own configuration, on
docker/qmp2mqtt.conf and on a bad one (exit 1, FILE:LINE: key: ...); the
image runs as a non-root user, has no compiler and no missing library;
the bridge in the container (host network, the QMP socket directory
mounted on /run/qmp2mqtt, sockets owned by the container's uid) connects
to a private mosquitto and the simulator's VMs, publishes a COLO_EXIT,
`qmp2mqtt-ctl status` works in the container, and `podman stop` (SIGTERM)
gives exit 0 with the offline state published; `docker-compose config -q`
accepts docker/compose.yaml (when docker-compose is installed).

Podman settings these machines need (a containers.conf named by
CONTAINERS_CONF) are written to a temp file unless CONTAINERS_CONF is set.
Each podman command has a timeout.
"""
# TIMEOUT = 900

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

if os.environ.get("QMP2MQTT_DOCKER_TEST") != "1":
    print("SKIP: set QMP2MQTT_DOCKER_TEST=1 to build and run the container "
          "image with podman")
    sys.exit(77)
if shutil.which("podman") is None:
    print("SKIP: podman is not installed (see docker/README.md)")
    sys.exit(77)

import harness as h  # noqa: E402
from harness import check, check_eq  # noqa: E402

ROOT = h.ROOT
BASE_IMAGE = os.environ.get("QMP2MQTT_DOCKER_BASE",
                            "localhost/debian:bookworm")
IMAGE = os.environ.get("QMP2MQTT_DOCKER_IMAGE", "localhost/qmp2mqtt:test")
CONF_IN_IMAGE = "/etc/qmp2mqtt/qmp2mqtt.conf"
IMAGE_UID = 10001           # the Dockerfile's default QMP2MQTT_UID/GID
SOCK_DIR_IN_IMAGE = "/run/qmp2mqtt"

# ---------------------------------------------------------------- podman

_tmp = tempfile.mkdtemp(prefix="q2m-podman-")
ENV = dict(os.environ)
if not ENV.get("CONTAINERS_CONF"):
    # What these machines need (containers.md): the nofile hard limit
    # cannot be raised, crun and systemd cgroups do not work here.
    conf = os.path.join(_tmp, "containers.conf")
    with open(conf, "w") as f:
        f.write('[containers]\n'
                'default_ulimits = ["nofile=20000:20000", '
                '"nproc=32768:32768"]\n'
                '[engine]\n'
                'runtime = "runc"\n'
                'cgroup_manager = "cgroupfs"\n'
                'events_logger = "file"\n'
                '[network]\n'
                'network_backend = "netavark"\n')
    ENV["CONTAINERS_CONF"] = conf


def _cleanup_tmp():
    shutil.rmtree(_tmp, ignore_errors=True)


atexit.register(_cleanup_tmp)


def run(argv, timeout, what=None, stdin=None, log_to=None):
    """Runs a command to completion (bounded): (rc, stdout, stderr)."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, stdin=stdin or subprocess.DEVNULL,
                           capture_output=True, timeout=timeout, env=ENV)
    except subprocess.TimeoutExpired as e:
        if log_to:
            with open(log_to, "wb") as f:
                f.write((e.stdout or b"") + (e.stderr or b""))
        h.fail("%s did not finish within %.0f s (killed)%s" %
               (what or " ".join(argv), timeout,
                "; output in %s" % log_to if log_to else ""))
    dt = time.monotonic() - t0
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    if log_to:
        with open(log_to, "w") as f:
            f.write(out + err)
    h.log("%s: exit %d (%.1f s)" % (what or " ".join(argv[:3]),
                                   p.returncode, dt))
    return p.returncode, out, err


def podman(*args, timeout=60, what=None, log_to=None):
    return run(["podman"] + list(args), timeout, what or "podman " +
               " ".join(args[:2]), log_to=log_to)


def podman_run(*args, timeout=60, opts=()):
    """podman run --rm --network host [opts] IMAGE args."""
    return podman("run", "--rm", "--network", "host", *opts, IMAGE, *args,
                  timeout=timeout, what="podman run %s %s" %
                  (" ".join(opts), " ".join(args)))


def image_exists(name):
    rc, _, _ = podman("image", "exists", name, timeout=30)
    return rc == 0


def require_image():
    check(image_exists(IMAGE), "image %s missing (test_build failed?)"
          % IMAGE)


def tail(text, n=30):
    return "\n".join(text.splitlines()[-n:])


# ---------------------------------------------------------------- base image

def apt_mirror():
    """(mirror URI of bookworm main, deb822 sources file or None) from this
    machine's apt configuration."""
    path = "/etc/apt/sources.list.d/debian.sources"
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        text = ""
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields = {}
        for line in stanza.splitlines():
            m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            if m:
                fields[m.group(1).lower()] = m.group(2).split()
        if "bookworm" in fields.get("suites", []) and fields.get("uris"):
            return fields["uris"][0], path
    try:
        with open("/etc/apt/sources.list") as f:
            for line in f:
                m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s",
                             line)
                if m:
                    return m.group(1), None
    except OSError:
        pass
    return None, None


def make_base_image(ctx):
    if os.geteuid() != 0:
        raise h.Skip("base image %s missing and debootstrap needs root"
                     % BASE_IMAGE)
    if shutil.which("debootstrap") is None:
        raise h.Skip("base image %s missing and debootstrap is not "
                     "installed" % BASE_IMAGE)
    mirror, sources = apt_mirror()
    check(mirror is not None, "no bookworm mirror in this machine's apt "
          "configuration")
    rootfs = os.path.join(ctx.dir, "rootfs")
    try:
        rc, out, err = run(["debootstrap", "--variant=minbase", "bookworm",
                            rootfs, mirror], 900, "debootstrap",
                           log_to=os.path.join(ctx.dir, "debootstrap.log"))
        check_eq(rc, 0, "debootstrap exit status (%s)" % tail(out + err, 15))
        if sources:
            shutil.copy(sources, os.path.join(rootfs, "etc/apt/"
                                              "sources.list.d/"))
            try:
                os.unlink(os.path.join(rootfs, "etc/apt/sources.list"))
            except FileNotFoundError:
                pass
        for d in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for name in os.listdir(os.path.join(rootfs, d)):
                p = os.path.join(rootfs, d, name)
                if os.path.isfile(p):
                    os.unlink(p)
        t0 = time.monotonic()
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."],
                               stdout=subprocess.PIPE)
        try:
            rc, out, err = run(["podman", "import", "-", BASE_IMAGE], 300,
                               "podman import", stdin=tar.stdout)
        finally:
            tar.stdout.close()
            if tar.poll() is None:
                tar.kill()
            tar.wait()
        check_eq(rc, 0, "podman import exit status (%s)" % tail(err))
        h.log("base image %s imported (%.1f s)" %
              (BASE_IMAGE, time.monotonic() - t0))
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


# ---------------------------------------------------------------- tests

def test_base_image(ctx):
    if image_exists(BASE_IMAGE):
        h.log("base image %s present" % BASE_IMAGE)
        return
    if not BASE_IMAGE.startswith("localhost/"):
        rc, out, err = podman("pull", BASE_IMAGE, timeout=600)
        check_eq(rc, 0, "podman pull %s (%s)" % (BASE_IMAGE, tail(err)))
        return
    make_base_image(ctx)
    check(image_exists(BASE_IMAGE), "base image %s after import" %
          BASE_IMAGE)


def test_build(ctx):
    check(image_exists(BASE_IMAGE), "no base image %s" % BASE_IMAGE)
    logf = os.path.join(ctx.dir, "build.log")
    rc, out, err = podman("build", "--network", "host",
                          "--build-arg", "BASE=" + BASE_IMAGE,
                          "-t", IMAGE, "-f", os.path.join(ROOT, "docker",
                                                          "Dockerfile"),
                          ROOT, timeout=900, what="podman build",
                          log_to=logf)
    check_eq(rc, 0, "podman build exit status; last lines:\n%s\n"
             % tail(out + err, 40))
    require_image()
    rc, out, _ = podman("image", "inspect", "--format",
                        "{{.Size}} {{.Config.User}} {{.Config.Entrypoint}}",
                        IMAGE, timeout=30)
    h.log("image %s: %s" % (IMAGE, out.strip()))


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
    # The compose sample.
    sample = os.path.join(ROOT, "docker", "qmp2mqtt.conf")
    rc, out, err = podman_run("-n", opts=(
        "-v", "%s:%s:ro" % (sample, CONF_IN_IMAGE)))
    check_eq(rc, 0, "qmp2mqtt -n on docker/qmp2mqtt.conf (%s)" %
             (out + err).strip())
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


def test_compose_config(ctx):
    dc = shutil.which("docker-compose")
    if dc is None:
        raise h.Skip("docker-compose not installed")
    rc, out, err = run([dc, "-f", os.path.join(ROOT, "docker",
                                               "compose.yaml"),
                        "config", "-q"], 60, "docker-compose config -q")
    check_eq(rc, 0, "docker-compose config -q (%s)" % err.strip())


if __name__ == "__main__":
    h.main(test_base_image, test_build, test_version, test_config_check,
           test_image_contents, test_bridge_in_container,
           test_compose_config)
