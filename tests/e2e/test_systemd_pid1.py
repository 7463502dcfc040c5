#!/usr/bin/python3
"""The systemd unit under a real systemd as PID 1, in a podman container.

test_systemd.py plays the service manager itself and checks the unit with
`systemd-analyze verify`; here Debian 12's systemd 252 boots in a container
and runs the unit that `make install` installed, with everything it asks
for: Type=notify, the DynamicUser, SupplementaryGroups, StateDirectory, the
mount namespace of ProtectSystem= and friends, the system call filter,
LoadCredential=, the watchdog, ExecReload=.

  /usr/bin/python3 tests/e2e/test_systemd_pid1.py          # everything
  /usr/bin/python3 tests/e2e/test_systemd_pid1.py test_service

Runs by default (make test); QMP2MQTT_DOCKER_TEST=0 opts out like every
container test (exit 77, said so).  Podman and the base image are those of
test_docker.py (podman_util.prepare: packages installed on demand, the
debootstrap base image from this machine's apt mirror, kept in podman's
store).  It skips only when podman cannot run containers here, or when not
root (the container needs CAP_SYS_ADMIN and the QMP sockets a group).

The image (localhost/qmp2mqtt-systemd:test; -san with build/san) adds
systemd and the build dependencies to the base image (apt inside the build,
through the same mirror; a cached layer), copies the sources `make install`
needs and runs `make install SAN=0|1` and `groupadd --system qmp2mqtt`, the
README's steps.  Under build/san the daemon in the container is the ASan +
UBSan build, with ASAN_OPTIONS=detect_leaks=0 in a drop-in: LeakSanitizer
needs ptrace(2), which the unit's system call filter refuses.

How it runs (found on this machine: cgroup v1 hybrid, runc, cgroupfs):

  podman run -d --network host --systemd=always --cap-add SYS_ADMIN \\
      -v SIMDIR:/run/qmp2mqtt IMAGE \\
      /bin/sh -c 'mount --make-rshared / && exec /lib/systemd/systemd'

--systemd=always gives systemd its tmpfs mounts and the container
environment; CAP_SYS_ADMIN lets it set up the unit's mount namespace
(without it: status=226/NAMESPACE); the shared root is what systemd makes
of / itself when it is PID 1 on a machine (and leaves to the container
manager in a container): without it the credentials of LoadCredential= are
mounted where the service cannot see them (an empty directory, the key file
"Permission denied").  No cgroup option is needed: the default cgroup
namespace and mounts work.

test_service: the broker is a private mosquitto on a free loopback port of
the host (--network host), the VMs are the simulator's, their sockets in a
directory bind-mounted on /run/qmp2mqtt, group qmp2mqtt, mode 0660.  The
configuration goes to /etc/qmp2mqtt/qmp2mqtt.conf (0640, group qmp2mqtt);
the takeover key is made by the installed qmp2mqtt-ctl genkey in
/etc/qmp2mqtt/takeover.key (0600 root) and handed over as the README says:
a drop-in with LoadCredential=takeover.key:/etc/qmp2mqtt/takeover.key and
takeover.key_file = "/run/credentials/qmp2mqtt.service/takeover.key".  A
second drop-in shortens WatchdogSec= to 3 s so that a few periods pass
quickly.  Then: `systemctl start` returns (Type=notify: only after
READY=1) with the unit active (running), StatusText "running"; the main
process is not root (the dynamic user qmp2mqttd, in group qmp2mqtt, no
capabilities, no_new_privs, seccomp); bridge/state and the VM online on the
broker; a forced takeover signed with the key (qmp2mqtt-ctl in the
container, with a configuration naming the key file itself) is ok and
authenticated: the daemon read the credential; `systemctl reload` adds a VM
(online, "applied" in the journal, same main PID); over four watchdog
periods WATCHDOG=1 keeps arriving (WatchdogTimestamp moves) and nothing
restarts; `systemctl stop`: bridge/state offline, the VMs offline,
ExecMainStatus 0, Result success; the journal has the daemon's lines with
their priorities (`-p warning` shows the FORCED line, not the info ones).

test_watchdog_fires: the same unit, the main process stopped (SIGSTOP):
systemd's watchdog kills it and Restart= brings a new one online
(NRestarts 1), which then stops with status 0.

Every command has a timeout; containers are removed on any exit (and
those of earlier runs killed before their clean-up, by their label).
"""
# TIMEOUT = 600

import atexit
import json
import os
import re
import time

import harness as h  # noqa: E402
from harness import check, check_eq  # noqa: E402

import podman_util as pu  # noqa: E402

pu.skip_if_opted_out()

SAN = h.SANITIZED
IMAGE = "localhost/qmp2mqtt-systemd%s:test" % ("-san" if SAN else "")
LABEL = "qmp2mqtt-e2e=systemd-pid1"
PID_LABEL = "qmp2mqtt-e2e-pid"
UNIT = "qmp2mqtt"
UNIT_FILE = "/usr/local/lib/systemd/system/qmp2mqtt.service"
CONF = "/etc/qmp2mqtt/qmp2mqtt.conf"
KEY = "/etc/qmp2mqtt/takeover.key"
CRED_KEY = "/run/credentials/qmp2mqtt.service/takeover.key"
DROPIN_DIR = "/etc/systemd/system/qmp2mqtt.service.d"
SOCK_DIR = "/run/qmp2mqtt"
WATCHDOG_S = 3
BRIDGE_ID = "bridge-pid1"

CONTAINERFILE = """\
ARG BASE=debian:bookworm
FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
# systemd as the container's PID 1, and what `make install` builds with.
RUN apt-get update \\
 && apt-get install -y --no-install-recommends systemd \\
        gcc libc6-dev make pkg-config \\
        libpaho-mqtt-dev libjson-c-dev libconfig-dev libssl-dev \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
LABEL %s
ARG SAN=0
WORKDIR /src
COPY Makefile README.md ./
COPY src/ src/
COPY config/ config/
COPY man/ man/
COPY tests/sim/ tests/sim/
# README, "Running it under systemd": make install, the socket group.
RUN make -j"$(nproc)" install SAN=${SAN} \\
 && groupadd --system qmp2mqtt
""" % LABEL


def remove_stale():
    """Containers of earlier runs killed before their clean-up."""
    rc, out, _ = pu.podman("ps", "-a", "--filter", "label=" + LABEL,
                           "--format", '{{.Names}} {{index .Labels "%s"}}'
                           % PID_LABEL, timeout=30)
    for line in out.splitlines():
        f = line.split()
        if len(f) == 2 and not os.path.exists("/proc/" + f[1]):
            print("left over of an earlier run: container %s" % f[0])
            pu.podman("rm", "-f", "-t", "0", f[0], timeout=60)


class SystemdContainer:
    """IMAGE with systemd as PID 1; removed (its journal kept) on close."""

    _n = 0

    def __init__(self, ctx, sockdir):
        SystemdContainer._n += 1
        self.ctx = ctx
        self.name = "q2m-pid1-%d-%d" % (os.getpid(), SystemdContainer._n)
        self.sockdir = sockdir
        self.journal_path = os.path.join(ctx.dir, "journal.log")
        self.started = False
        ctx.register(self)

    def start(self):
        rc, out, err = pu.podman(
            "run", "-d", "--name", self.name, "--label", LABEL,
            "--label", "%s=%d" % (PID_LABEL, os.getpid()),
            "--network", "host", "--systemd=always", "--cap-add",
            "SYS_ADMIN", "-v", "%s:%s" % (self.sockdir, SOCK_DIR), IMAGE,
            "/bin/sh", "-c",
            "mount --make-rshared / && exec /lib/systemd/systemd",
            timeout=60, what="podman run -d (systemd)")
        self.started = rc == 0
        check_eq(rc, 0, "podman run -d (%s)" % err.strip())
        t0 = time.monotonic()
        state = None
        for _ in h.deadline_loop(60 * h.SLOW, 0.2):
            rc, out, err = self.sh("systemctl is-system-running",
                                   timeout=30)
            state = out.strip() or err.strip()
            if state in ("running", "degraded"):
                break
        else:
            h.fail("systemd in the container: %r, not running or degraded "
                   "within %.0f s" % (state, 60 * h.SLOW))
        h.log("systemd up in %s: %s (%.1f s)" % (self.name, state,
                                                 time.monotonic() - t0))
        if state == "degraded":
            h.log("failed units: %s" % self.must(
                "systemctl --failed --no-legend --no-pager", "failed units"))
        return self

    def sh(self, script, timeout=60, what=None):
        """sh -c SCRIPT in the container, as root: (rc, out, err)."""
        return pu.podman("exec", self.name, "/bin/sh", "-c", script,
                         timeout=timeout, what=what or "exec %s" %
                         script[:60])

    def must(self, script, what, timeout=60):
        rc, out, err = self.sh(script, timeout=timeout, what=what)
        check_eq(rc, 0, "%s: %s (stderr %r)" % (what, script, err.strip()))
        return out

    def put(self, path, text, mode, group="root"):
        """Writes TEXT to PATH in the container (mode, root:group)."""
        host = os.path.join(self.ctx.dir, "put-" + os.path.basename(path))
        with open(host, "w") as f:
            f.write(text)
        rc, _, err = pu.podman("cp", host, "%s:%s.new" % (self.name, path),
                               timeout=30)
        check_eq(rc, 0, "podman cp to %s (%s)" % (path, err.strip()))
        self.must("chown root:%s %s.new && chmod %s %s.new && "
                  "mv -f %s.new %s" % (group, path, mode, path, path, path),
                  "install %s" % path)

    def show(self, *props):
        out = self.must("systemctl show -p %s %s" % (",".join(props), UNIT),
                        "systemctl show")
        d = dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)
        for p in props:
            check(p in d, "systemctl show: no %s in %r" % (p, out))
        return d

    def journal(self, *args):
        return self.must("journalctl --no-pager -o cat -u %s %s" %
                         (UNIT, " ".join(args)), "journalctl")

    def wait_journal(self, pattern, timeout=15, args=""):
        """The unit's journal once a line matches PATTERN (journald takes
        the daemon's stream asynchronously)."""
        rx = re.compile(pattern, re.M)
        text = ""
        for _ in h.deadline_loop(timeout * h.SLOW, 0.2):
            text = self.journal(args)
            if rx.search(text):
                return text
        h.fail("no journal line matching %r within %.0f s; last lines:\n%s"
               % (pattern, timeout * h.SLOW, pu.tail(text, 20)))

    def save_logs(self):
        if self.started:
            rc, out, err = self.sh("journalctl -b --no-pager", timeout=30)
            with open(self.journal_path, "w") as f:
                f.write(out + err)

    def close(self):
        if self.started:
            try:
                self.save_logs()
            finally:
                self.started = False
                pu.podman("rm", "-f", "-t", "5", self.name, timeout=60)

    def logs(self):
        if self.started:
            try:
                self.save_logs()
            except h.TestFailure:
                pass
        return [("journal of container " + self.name, self.journal_path)]


def require_image():
    check(pu.image_exists(IMAGE), "image %s missing (its build failed?)"
          % IMAGE)


def config_text(port, vms, key_file):
    return h.render_config(
        vms, bridge={"host": h.HOST, "id": BRIDGE_ID,
                     "state_dir": "/var/lib/qmp2mqtt",
                     "backoff_min_ms": 50, "backoff_max_ms": 500},
        mqtt={"uri": "tcp://127.0.0.1:%d" % port,
              "client_id": "qmp2mqtt-pid1-e2e", "keepalive": 5,
              "version": 5, "qos": 1, "base_topic": h.BASE},
        extra='takeover = { enabled = true; key_file = "%s"; };' % key_file)


def bring_up(ctx, nvms):
    """Broker, simulator, container, configuration, key, drop-ins: the
    unit ready to start, a subscriber listening."""
    require_image()
    h.require_paho()
    broker = ctx.mosquitto()
    sim = ctx.sim(nvms)
    sub = ctx.subscriber(broker.port)
    c = SystemdContainer(ctx, sim.sockdir).start()
    # The unit is the one make install put there, from this repository.
    unit = c.must("cat " + UNIT_FILE, "the installed unit")
    with open(os.path.join(h.ROOT, "config", "qmp2mqtt.service")) as f:
        check_eq(unit, f.read(), "the installed unit vs "
                 "config/qmp2mqtt.service (PREFIX /usr/local)")
    gid = int(c.must("getent group qmp2mqtt", "group qmp2mqtt")
              .split(":")[2])
    # What QEMU would be told for the bridge: sockets of group qmp2mqtt,
    # group-writable (connect(2) needs write permission).
    for i in range(1, nvms + 1):
        os.chown(sim.sock(i), 0, gid)
        os.chmod(sim.sock(i), 0o660)
    vms = [(sim.vm(1), "unix:%s/%s.qmp" % (SOCK_DIR, sim.vm(1)))]
    c.put(CONF, config_text(broker.port, vms, CRED_KEY), "0640", "qmp2mqtt")
    c.must("qmp2mqtt-ctl genkey " + KEY, "qmp2mqtt-ctl genkey")
    c.must("mkdir -p " + DROPIN_DIR, "drop-in directory")
    # README: the key as a credential (what `systemctl edit` would write).
    c.put(DROPIN_DIR + "/credential.conf",
          "[Service]\nLoadCredential=takeover.key:%s\n" % KEY, "0644")
    # The test's own: a short watchdog period; under build/san no leak
    # detection (LeakSanitizer needs ptrace, which SystemCallFilter= refuses).
    c.put(DROPIN_DIR + "/e2e.conf",
          "[Service]\nWatchdogSec=%d\n" % WATCHDOG_S +
          ("Environment=ASAN_OPTIONS=detect_leaks=0\n" if SAN else ""),
          "0644")
    c.must("systemctl daemon-reload", "systemctl daemon-reload")
    return broker, sim, sub, c, vms


def start_unit(c):
    """README: `systemctl enable --now qmp2mqtt`.  Enabled, the unit stays
    loaded once stopped (multi-user.target wants it), so that `systemctl
    show` still has its last main process' exit status then; a unit
    nothing references is unloaded at once and shows zeros."""
    t0 = time.monotonic()
    rc, out, err = c.sh("systemctl enable --now " + UNIT,
                        timeout=120 * h.SLOW, what="systemctl enable --now")
    if rc != 0:
        h.fail("systemctl enable --now: exit %d (%s)\n%s" % (
            rc, err.strip(), pu.tail(c.journal(), 30)))
    h.log("systemctl enable --now returned after %.1f s" %
          (time.monotonic() - t0))
    p = c.show("ActiveState", "SubState", "NRestarts", "MainPID",
               "StatusText", "Type", "FragmentPath", "User", "WatchdogUSec",
               "UnitFileState")
    check_eq(p["UnitFileState"], "enabled", "UnitFileState")
    check_eq((p["ActiveState"], p["SubState"], p["NRestarts"]),
             ("active", "running", "0"), "unit state after start")
    # Type=notify: start returns once READY=1 came, with STATUS=running.
    check_eq((p["Type"], p["StatusText"]), ("notify", "running"),
             "Type and the daemon's STATUS=")
    check_eq(p["FragmentPath"], UNIT_FILE, "the unit's file")
    check_eq(p["User"], "qmp2mqttd", "the unit's User=")
    check_eq(p["WatchdogUSec"], "%ds" % WATCHDOG_S, "WatchdogSec (drop-in)")
    pid = int(p["MainPID"])
    check(pid > 1, "MainPID %d" % pid)
    return pid


def proc_status(c, pid):
    out = c.must("cat /proc/%d/status" % pid, "status of the main process")
    return dict(ln.split(":", 1) for ln in out.splitlines() if ":" in ln)


def check_identity(c, pid):
    st = proc_status(c, pid)
    uids = st["Uid"].split()
    gid = c.must("getent group qmp2mqtt", "group").split(":")[2]
    h.log("main process %d: Uid %s Gid %s Groups %s" % (
        pid, st["Uid"].strip(), st["Gid"].strip(), st["Groups"].strip()))
    check(len(set(uids)) == 1 and uids[0] != "0",
          "the daemon runs as root: Uid %s" % st["Uid"].strip())
    uid = int(uids[0])
    # systemd's range for dynamic users: 61184..65519.
    check(61184 <= uid <= 65519, "uid %d is not a dynamic user's" % uid)
    check(gid in st["Groups"].split(), "group qmp2mqtt (%s) not among the "
          "daemon's groups %r" % (gid, st["Groups"].strip()))
    check_eq(int(st["CapEff"].strip(), 16), 0, "effective capabilities")
    check_eq(st["NoNewPrivs"].strip(), "1", "no_new_privs")
    check_eq(st["Seccomp"].strip(), "2", "seccomp mode (filter)")
    # StateDirectory= belongs to it.
    owner = c.must("stat -L -c %u /var/lib/qmp2mqtt", "state directory")
    check_eq(int(owner), uid, "owner of /var/lib/qmp2mqtt")
    return uid


def stop_unit(c, pid):
    """systemctl stop; the last main process (PID, or the one after it if
    PID is None) exited 0."""
    inv = c.show("InvocationID")["InvocationID"]
    rc, out, err = c.sh("systemctl stop " + UNIT, timeout=60 * h.SLOW,
                        what="systemctl stop")
    check_eq(rc, 0, "systemctl stop (%s)" % err.strip())
    p = c.show("ActiveState", "Result", "ExecMainCode", "ExecMainStatus",
               "ExecMainPID", "InvocationID")
    check_eq(p["InvocationID"], inv, "InvocationID after stop (the unit "
             "was unloaded: its exit status is gone)")
    if pid is not None:
        check_eq(int(p["ExecMainPID"]), pid, "ExecMainPID")
    check_eq((p["ActiveState"], p["Result"], p["ExecMainCode"],
              p["ExecMainStatus"]), ("inactive", "success", "1", "0"),
             "unit after stop (ExecMainCode 1: exited)")
    c.wait_journal(r"^qmp2mqtt\.service: Deactivated successfully\.$")


def sanitizer_free(c):
    text = c.journal()
    check(not re.search(r"Sanitizer|runtime error:", text),
          "sanitizer report in the journal:\n%s" % pu.tail(text, 30))


# ---------------------------------------------------------------- tests

def test_build_image(ctx):
    if os.geteuid() != 0:
        raise h.Skip("needs root: rootful podman (CAP_SYS_ADMIN for the "
                     "unit's mount namespace)")
    check(pu.image_exists(pu.BASE_IMAGE), "no base image %s" %
          pu.BASE_IMAGE)
    remove_stale()
    cf = os.path.join(ctx.dir, "Containerfile")
    with open(cf, "w") as f:
        f.write(CONTAINERFILE)
    pu.build(ctx, IMAGE, cf, "systemd", args=(
        "--build-arg", "BASE=" + pu.BASE_IMAGE,
        "--build-arg", "SAN=%d" % (1 if SAN else 0)))
    # Earlier builds of this image, untagged now (their apt layer stays:
    # it has no label).
    rc, out, err = pu.podman("image", "prune", "-f", "--filter",
                             "label=" + LABEL, timeout=120)
    check_eq(rc, 0, "podman image prune (%s)" % err.strip())


def test_service(ctx):
    if os.geteuid() != 0:
        raise h.Skip("needs root (rootful podman, chown of the sockets)")
    broker, sim, sub, c, vms = bring_up(ctx, 2)
    pid = start_unit(c)
    uid = check_identity(c, pid)
    sub.wait_json(h.bridge_topic("state"),
                  lambda s: s.get("state") == "online" and
                  s.get("bridge") == BRIDGE_ID, 30, "bridge/state online")
    h.wait_online(sub, ["vm1"], 30)
    c.wait_journal(r"^info: bridge %s started: " % BRIDGE_ID)
    c.wait_journal(r"^info: systemd watchdog: %d000 ms, pinging every "
                   r"1000 ms" % WATCHDOG_S)

    # The credential: a takeover signed with the key is accepted and its
    # result signed.  qmp2mqtt-ctl reads the key file itself (root's), not
    # the credential (the dynamic user's, and only while the unit runs).
    port = broker.port
    c.put("/etc/qmp2mqtt/ctl.conf", config_text(port, vms, KEY), "0600")
    rc, out, err = c.sh("qmp2mqtt-ctl -c /etc/qmp2mqtt/ctl.conf takeover "
                        "%s vm1 --force --wait %d" % (h.HOST, 15 * h.SLOW),
                        timeout=30 * h.SLOW + 30, what="qmp2mqtt-ctl takeover")
    check_eq(rc, 0, "qmp2mqtt-ctl takeover (stdout %r, stderr %r)" %
             (out, err))
    r = json.loads(out)
    check_eq((r.get("status"), r.get("reason"), r.get("authenticated"),
              r.get("sent")), ("ok", "ok", True, True), "takeover result")
    c.wait_journal(r"^warning: takeover %s/vm1 id=\S+: FORCED" % h.HOST,
                   args="-p warning")

    # systemctl reload: SIGHUP through ExecReload=; vm2 added.
    vms2 = vms + [(sim.vm(2), "unix:%s/%s.qmp" % (SOCK_DIR, sim.vm(2)))]
    c.put(CONF, config_text(port, vms2, CRED_KEY), "0640", "qmp2mqtt")
    rc, out, err = c.sh("systemctl reload " + UNIT, timeout=60 * h.SLOW,
                        what="systemctl reload")
    check_eq(rc, 0, "systemctl reload (%s)\n%s" % (err.strip(),
                                                   pu.tail(c.journal(), 20)))
    h.wait_online(sub, ["vm1", "vm2"], 30)
    c.wait_journal(r"^info: reload: %s applied: 2 VM\(s\)" % re.escape(CONF))
    p = c.show("ActiveState", "SubState", "NRestarts", "MainPID",
               "StatusText")
    check_eq((p["ActiveState"], p["SubState"], p["NRestarts"],
              int(p["MainPID"]), p["StatusText"]),
             ("active", "running", "0", pid, "running"),
             "unit after the reload")

    # The watchdog: over four periods nothing restarts (a missed period
    # would: SIGABRT, then Restart=), and WATCHDOG=1 keeps coming (systemd's
    # WatchdogTimestamp is the last one; sampled, so a slow machine sees
    # fewer of the ~12 than it gets).
    seen = set()
    samples = 0
    window = 4 * WATCHDOG_S
    t0 = time.monotonic()
    for _ in h.deadline_loop(window, 0.5):
        p = c.show("NRestarts", "MainPID", "ActiveState",
                   "WatchdogTimestampMonotonic")
        check_eq((p["NRestarts"], int(p["MainPID"]), p["ActiveState"]),
                 ("0", pid, "active"), "unit %.1f s into the watchdog "
                 "window" % (time.monotonic() - t0))
        seen.add(int(p["WatchdogTimestampMonotonic"]))
        samples += 1
    h.log("watchdog: %d distinct pings in %d samples over %d s" %
          (len(seen), samples, window))
    check(len(seen) >= min(3, samples), "WATCHDOG=1: systemd's "
          "WatchdogTimestamp took %d values in %d samples over %d s" %
          (len(seen), samples, window))
    check("Watchdog timeout" not in c.must(
        "journalctl --no-pager -o cat -b", "journal"), "a watchdog timeout")

    # systemctl stop: offline published, exit status 0.
    n_state = sub.mark(h.bridge_topic("state"))
    stop_unit(c, pid)
    check_eq(c.show("NRestarts")["NRestarts"], "0", "NRestarts after stop")
    sub.wait_json(h.bridge_topic("state"),
                  lambda s: s.get("state") == "offline", 15,
                  "bridge/state offline after systemctl stop",
                  since=n_state)
    for vm in ("vm1", "vm2"):
        check_eq(sub.last(h.avail_topic(vm)).payload, b"offline",
                 "availability of %s after stop" % vm)

    # journald: the daemon's lines, with their priorities.
    text = c.wait_journal(r"^info: stopped$")
    check(not re.search(r"^<\d>", text, re.M),
          "priority prefixes left in the journal's text")
    warn = c.journal("-p", "warning")
    check("FORCED" in warn and "started:" not in warn,
          "journalctl -p warning: %r" % pu.tail(warn, 10))
    out = c.must("journalctl --no-pager -o json _SYSTEMD_UNIT=%s.service "
                 "_PID=%d" % (UNIT, pid), "journal fields")
    uids = {json.loads(ln).get("_UID") for ln in out.splitlines() if ln}
    check_eq(uids, {str(uid)}, "_UID of the daemon's journal entries")
    sanitizer_free(c)


def test_watchdog_fires(ctx):
    if os.geteuid() != 0:
        raise h.Skip("needs root (rootful podman, chown of the sockets)")
    broker, sim, sub, c, vms = bring_up(ctx, 1)
    pid = start_unit(c)
    sub.wait_json(h.bridge_topic("state"),
                  lambda s: s.get("state") == "online", 30,
                  "bridge/state online")
    first = sub.last(h.bridge_topic("state")).json().get("instance")
    n_state = sub.mark(h.bridge_topic("state"))
    t0 = time.monotonic()
    c.must("kill -STOP %d" % pid, "SIGSTOP to the daemon")
    # WatchdogSec= without a ping: SIGABRT, then RestartSec=2 and a new
    # start (READY=1 again).
    p = None
    for _ in h.deadline_loop(WATCHDOG_S + 30 * h.SLOW, 0.3):
        p = c.show("NRestarts", "MainPID", "ActiveState", "SubState")
        if p["NRestarts"] == "1" and p["ActiveState"] == "active" and \
                p["SubState"] == "running":
            break
    else:
        h.fail("no restart after the watchdog period: %r\n%s" % (
            p, pu.tail(c.journal(), 20)))
    h.log("restarted by the watchdog after %.1f s" %
          (time.monotonic() - t0))
    check(int(p["MainPID"]) != pid, "same main process after the restart")
    c.wait_journal(r"Watchdog timeout \(limit %ds\)" % WATCHDOG_S)
    sub.wait_json(h.bridge_topic("state"),
                  lambda s: s.get("state") == "online" and
                  s.get("instance") != first, 30,
                  "bridge/state online from the new process",
                  since=n_state)
    stop_unit(c, int(p["MainPID"]))
    # The stopped daemon got SIGABRT: nothing of a sanitizer either way
    # (ASan does not handle SIGABRT by default).
    sanitizer_free(c)


if __name__ == "__main__":
    if os.geteuid() == 0:
        pu.prepare()
    atexit.register(pu.report_times)
    h.main(test_build_image, test_service, test_watchdog_fires)
