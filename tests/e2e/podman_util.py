"""Podman helpers shared by the container tests (test_docker.py,
test_systemd_pid1.py).  Not a test itself (run_tests.py runs test_*.py
only).

  prepare()       podman's packages (installed on demand, as root, Debian's
                  apt, --no-install-recommends), `podman info`, the base
                  image (debootstrap from this machine's apt mirror, then
                  `podman import`; kept in podman's store), one `podman run`;
                  exits 77 only if podman cannot run containers here
  run, podman     a bounded command: (rc, stdout, stderr)
  build           `podman build --network host` of a Containerfile, its
                  output in the test's directory
  ENV             the environment of every podman command: CONTAINERS_CONF
                  names the settings these machines need (written to a temp
                  file unless CONTAINERS_CONF is set)

QMP2MQTT_DOCKER_TEST=0 opts out of every container test (exit 77, said so);
QMP2MQTT_DOCKER_BASE names the base image (default
localhost/debian:bookworm).
"""

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import harness as h
from harness import check, check_eq

ROOT = h.ROOT
BASE_IMAGE = os.environ.get("QMP2MQTT_DOCKER_BASE",
                            "localhost/debian:bookworm")
PACKAGES = ("podman runc catatonit netavark aardvark-dns iptables uidmap "
            "debootstrap podman-compose docker-compose").split()

T_START = time.monotonic()
TIMES = []                  # (what, seconds) of the slow steps


def timed(what, t0):
    dt = time.monotonic() - t0
    TIMES.append((what, dt))
    h.log("%s: %.1f s" % (what, dt))


def skip_all(why):
    print("SKIP: %s" % why, flush=True)
    sys.exit(h.SKIP_EXIT)


def skip_if_opted_out():
    if os.environ.get("QMP2MQTT_DOCKER_TEST", "1") == "0":
        skip_all("QMP2MQTT_DOCKER_TEST=0: container tests opted out")


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


def run(argv, timeout, what=None, stdin=None, log_to=None, env=None):
    """Runs a command to completion (bounded): (rc, stdout, stderr)."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, stdin=stdin or subprocess.DEVNULL,
                           capture_output=True, timeout=timeout,
                           env=env or ENV)
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


def image_exists(name):
    rc, _, _ = podman("image", "exists", name, timeout=30)
    return rc == 0


def tail(text, n=30):
    return "\n".join(text.splitlines()[-n:])


def build(ctx, tag, containerfile, what, context=ROOT, args=()):
    """podman build --network host [ARGS] -t TAG -f CONTAINERFILE CONTEXT
    (ARGS: --build-arg ...); its output in ctx.dir/build-WHAT.log, its last
    lines in the failure."""
    t0 = time.monotonic()
    logf = os.path.join(ctx.dir, "build-%s.log" % what)
    rc, out, err = podman("build", "--network", "host", *args, "-t", tag,
                          "-f", containerfile, context, timeout=900,
                          what="podman build " + what, log_to=logf)
    check_eq(rc, 0, "podman build %s exit status; last lines:\n%s\n"
             % (what, tail(out + err, 40)))
    timed("build " + what, t0)
    check(image_exists(tag), "image %s missing after its build" % tag)
    rc, out, _ = podman("image", "inspect", "--format",
                        "{{.Size}} {{.Config.User}} {{.Config.Entrypoint}}",
                        tag, timeout=30)
    h.log("image %s: %s" % (tag, out.strip()))


# ---------------------------------------------------------------- set-up

def dpkg_missing(pkgs):
    missing = []
    for p in pkgs:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}",
                            p], capture_output=True)
        if not r.stdout.decode().startswith("ii"):
            missing.append(p)
    return missing


def install_packages():
    """Installs whatever of PACKAGES is missing (Debian, apt)."""
    if shutil.which("dpkg-query") is None:
        if shutil.which("podman") is None:
            skip_all("podman is not installed and this is not a Debian "
                     "system to install it on")
        return
    missing = dpkg_missing(PACKAGES)
    if not missing:
        return
    sudo = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None or subprocess.run(
                ["sudo", "-n", "true"], capture_output=True).returncode:
            if shutil.which("podman") is None:
                skip_all("podman is not installed, and installing it (%s) "
                         "needs root" % " ".join(missing))
            h.log("not installed, and no root to install them: %s" %
                  " ".join(missing))
            return
        sudo = ["sudo", "-n"]
    t0 = time.monotonic()
    h.log("installing: %s" % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = ["-o", "DPkg::Lock::Timeout=120"]
    for argv in (sudo + ["apt-get"] + lock + ["update", "-qq"],
                 sudo + ["apt-get"] + lock + ["install", "-y", "-qq",
                                              "--no-install-recommends"]
                 + missing):
        try:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=400, env=env)
        except subprocess.TimeoutExpired:
            print("FAIL: %s did not finish within 400 s" % " ".join(argv))
            sys.exit(1)
        if p.returncode != 0:
            print("FAIL: %s: exit %d\n%s" % (
                " ".join(argv), p.returncode,
                tail((p.stdout + p.stderr).decode("utf-8", "replace"), 20)))
            sys.exit(1)
    still = dpkg_missing(missing)
    if still:
        print("FAIL: still not installed after apt-get: %s" %
              " ".join(still))
        sys.exit(1)
    timed("install %d packages" % len(missing), t0)


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


def make_base_image():
    if os.geteuid() != 0:
        h.fail("base image %s missing and debootstrap needs root" %
               BASE_IMAGE)
    check(shutil.which("debootstrap") is not None,
          "base image %s missing and debootstrap is not installed" %
          BASE_IMAGE)
    mirror, sources = apt_mirror()
    check(mirror is not None, "no bookworm mirror in this machine's apt "
          "configuration")
    rootfs = os.path.join(_tmp, "rootfs")
    try:
        t0 = time.monotonic()
        rc, out, err = run(["debootstrap", "--variant=minbase", "bookworm",
                            rootfs, mirror], 600, "debootstrap",
                           log_to=os.path.join(_tmp, "debootstrap.log"))
        check_eq(rc, 0, "debootstrap exit status (%s)" % tail(out + err, 15))
        timed("debootstrap", t0)
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
        timed("podman import", t0)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def prepare():
    """Packages, podman's health, the base image, one container run.
    Exits 77 (with the reason) only if podman cannot run containers here,
    1 if something that should work does not."""
    install_packages()
    if shutil.which("podman") is None:
        print("FAIL: podman not found after the installation")
        sys.exit(1)
    try:
        rc, out, err = podman("info", "--format", "{{.Host.OCIRuntime.Name}}"
                              " {{.Store.GraphDriverName}}", timeout=60)
        if rc != 0:
            skip_all("podman cannot work here: `podman info` exit %d: %s"
                     % (rc, tail(err, 5)))
        h.log("podman: runtime and storage driver: %s" % out.strip())
        if not image_exists(BASE_IMAGE):
            if BASE_IMAGE.startswith("localhost/"):
                make_base_image()
            else:
                rc, out, err = podman("pull", BASE_IMAGE, timeout=600)
                check_eq(rc, 0, "podman pull %s (%s)" % (BASE_IMAGE,
                                                         tail(err)))
            check(image_exists(BASE_IMAGE), "base image %s after import" %
                  BASE_IMAGE)
        else:
            h.log("base image %s present (podman's store)" % BASE_IMAGE)
        rc, out, err = podman("run", "--rm", "--network", "host",
                              BASE_IMAGE, "true", timeout=120,
                              what="podman run (can podman run "
                              "containers here?)")
        if rc != 0:
            skip_all("podman cannot run containers here: `podman run "
                     "--rm %s true` exit %d: %s" % (BASE_IMAGE, rc,
                                                     tail(err, 8)))
    except h.TestFailure as e:
        print("FAIL: set-up: %s" % e)
        sys.exit(1)


def report_times():
    h.log("timings: %s; total %.1f s" % (
        ", ".join("%s %.1f s" % t for t in TIMES),
        time.monotonic() - T_START))
