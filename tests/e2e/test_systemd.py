#!/usr/bin/python3
"""systemd integration, logging targets, installation and manual pages.

systemd is not PID 1 here, so the test acts as the service manager itself:
it binds a unix datagram socket, names it in NOTIFY_SOCKET (a path, or an
abstract '@' name) and reads what the daemon sends (READY=1, STATUS=,
WATCHDOG=1 at least every half WATCHDOG_USEC, RELOADING=1 with
MONOTONIC_USEC then READY=1 on SIGHUP, STOPPING=1 on SIGTERM).
config/qmp2mqtt.service is checked with systemd-analyze verify (and
security --offline) after "make install DESTDIR=tmp", which must put every
file where qmp2mqtt(8) and the Makefile say.  Logging: journald's stream
(JOURNAL_STREAM) and syslog (-s, or standard error on /dev/null) through a
/dev/log socket the test binds when the machine has none.  The manual pages
must be clean under "mandoc -T lint -W warning" and name every option and
every setting of README.md's configuration reference.
"""
# TIMEOUT = 180

import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import time

import harness as h
from harness import check, check_eq

MAN = os.path.join(h.ROOT, "man")
PAGES = ("qmp2mqtt.8", "qmp2mqtt.conf.5", "qmp2mqtt-ctl.1")
UNIT = os.path.join(h.ROOT, "config", "qmp2mqtt.service")


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class Manager:
    """The service manager's end of the notification protocol."""

    def __init__(self, ctx, abstract=False, name="notify"):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            self.name = "@q2m-e2e-%s-%d" % (name, os.getpid())
            self.s.bind("\0" + self.name[1:])
        else:
            self.name = os.path.join(ctx.dir, name + ".sock")
            self.s.bind(self.name)
        # The kernel's arrival time of each datagram (SO_TIMESTAMPNS): how
        # late this test reads a message does not change the gaps seen.
        self.s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.msgs = []          # (arrival time, text)

    def recv(self, timeout):
        """The next datagram as (arrival time in s, text), or None."""
        r, _, _ = select.select([self.s], [], [], timeout)
        if not r:
            return None
        data, anc, _, _ = self.s.recvmsg(65536, 64)
        t = time.time()
        for level, kind, val in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", val[:16])
                t = sec + nsec / 1e9
        m = (t, data.decode())
        self.msgs.append(m)
        return m

    def wait(self, pred, timeout, what):
        end = time.monotonic() + timeout * h.SLOW
        while True:
            left = end - time.monotonic()
            m = self.recv(max(left, 0)) if left > 0 else None
            if m is None:
                h.fail("no %s notification within %.1fs; got %r" %
                       (what, timeout, [x[1] for x in self.msgs]))
            if pred(m[1]):
                h.log("notify: %r" % m[1])
                return m

    def close(self):
        self.s.close()

    def logs(self):
        return []


def fields(text):
    return dict(line.split("=", 1) for line in text.split("\n") if "=" in line)


def start_daemon(ctx, env_extra, args=(), vms=None, port=1, name=None):
    """A Daemon started with extra environment."""
    d = h.Daemon(ctx, vms=vms or [("vm1", "unix:" + os.path.join(
        ctx.dir, "none.qmp"))], port=port, name=name)
    env = dict(os.environ)
    for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
              "JOURNAL_STREAM"):
        env.pop(k, None)
    env.update(env_extra)
    argv = [h.DAEMON_BIN, "-c", d.conf, "-v"] + list(args)
    d.proc = h.Proc(d.name, argv, d.logpath, env=env, cwd=d.dir)
    h.log("%s started (pid %d) with %r" % (d.name, d.proc.pid, env_extra))
    return d


# ------------------------------------------------------------ sd_notify

def notify_scenario(ctx, abstract):
    mq = ctx.mosquitto()
    mgr = Manager(ctx, abstract)
    ctx.register(mgr)
    d = start_daemon(ctx, {"NOTIFY_SOCKET": mgr.name}, port=mq.port)
    m = mgr.wait(lambda t: "READY=1" in t.split("\n"), 10, "READY=1")
    check_eq(fields(m[1]).get("STATUS"), "running", "STATUS with READY=1")
    # READY=1 comes after the bridge started: its start line is logged.
    check(re.search(r"info: bridge \S+ started:", d.log_text()),
          "READY=1 before the bridge logged its start")
    check(not [x for x in mgr.msgs if "WATCHDOG=1" in x[1]],
          "WATCHDOG=1 sent without WATCHDOG_USEC")
    d.expect_exit = True
    d.proc.signal(signal.SIGTERM)
    m = mgr.wait(lambda t: "STOPPING=1" in t.split("\n"), 10, "STOPPING=1")
    check_eq(fields(m[1]).get("STATUS"), "stopping", "STATUS with STOPPING=1")
    rc, slow = d.proc.stop(15 * h.SLOW)
    check(not slow and rc == 0, "exit %r after SIGTERM" % rc)


def test_notify_path(ctx):
    notify_scenario(ctx, abstract=False)


def test_notify_abstract(ctx):
    notify_scenario(ctx, abstract=True)


def test_watchdog(ctx):
    """WATCHDOG_USEC=600000: pings every 200 ms, never more than 300 ms
    (half the period) apart, from the start until the stop."""
    mgr = Manager(ctx)
    ctx.register(mgr)
    period = 0.6
    d = start_daemon(ctx, {"NOTIFY_SOCKET": mgr.name,
                           "WATCHDOG_USEC": str(int(period * 1e6))})
    mgr.wait(lambda t: t.startswith("READY=1"), 10, "READY=1")
    first = mgr.wait(lambda t: t == "WATCHDOG=1", 5, "WATCHDOG=1")
    last, n, gaps = first[0], 1, []
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        m = mgr.recv(end - time.monotonic())
        if m is None:
            break
        check_eq(m[1], "WATCHDOG=1", "notification while running")
        gaps.append(m[0] - last)
        last, n = m[0], n + 1
    h.log("%d pings in 3 s, largest gap %.0f ms (kernel arrival times)" %
          (n, max(gaps) * 1000))
    # The daemon pings every third of the period; systemd acts only when
    # a whole period passes without one.  The gaps are arrival times in
    # the kernel, so this test's own scheduling does not count; a gap of
    # a period would get the daemon killed: that is the failure.
    check(max(gaps) < period, "watchdog gap %.0f ms: systemd would have "
          "killed the daemon (period %.0f ms)" % (max(gaps) * 1000,
                                                  period * 1000))
    check(n >= 12, "only %d pings in 3 s at a 200 ms interval" % n)
    d.check_alive()

    # WATCHDOG_PID of another process: no watchdog at all.
    mgr2 = Manager(ctx, name="notify2")
    ctx.register(mgr2)
    d2 = start_daemon(ctx, {"NOTIFY_SOCKET": mgr2.name,
                            "WATCHDOG_USEC": "300000", "WATCHDOG_PID": "1"})
    mgr2.wait(lambda t: t.startswith("READY=1"), 10, "READY=1")
    while mgr2.recv(1.0) is not None:       # 1 s: over 3 ping intervals
        pass
    check(not [x for x in mgr2.msgs if x[1] == "WATCHDOG=1"],
          "watchdog pings although WATCHDOG_PID names another process")
    d2.check_alive()


def test_notify_reload(ctx):
    mgr = Manager(ctx)
    ctx.register(mgr)
    d = start_daemon(ctx, {"NOTIFY_SOCKET": mgr.name})
    mgr.wait(lambda t: t.startswith("READY=1"), 10, "READY=1")
    t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
    d.proc.signal(signal.SIGHUP)
    m = mgr.wait(lambda t: "RELOADING=1" in t.split("\n"), 10, "RELOADING=1")
    t1 = time.clock_gettime(time.CLOCK_MONOTONIC)
    mono = int(fields(m[1]).get("MONOTONIC_USEC", "0"))
    check(t0 * 1e6 - 1000 <= mono <= t1 * 1e6 + 1000,
          "MONOTONIC_USEC %d not within the reload (%d..%d)" %
          (mono, t0 * 1e6, t1 * 1e6))
    mgr.wait(lambda t: "READY=1" in t.split("\n"), 10, "READY=1 after reload")
    d.check_alive()
    # An invalid file: refused, the running configuration kept, READY=1.
    with open(d.conf, "a") as f:
        f.write("this is not libconfig\n")
    d.proc.signal(signal.SIGHUP)
    mgr.wait(lambda t: "RELOADING=1" in t.split("\n"), 10,
             "RELOADING=1 (invalid file)")
    mgr.wait(lambda t: "READY=1" in t.split("\n"), 10,
             "READY=1 after a refused reload")
    d.check_alive()


# ------------------------------------------------------------ logging

def test_journal_stream(ctx):
    """stderr is journald's stream: no timestamp, <PRI> prefixes; a
    JOURNAL_STREAM naming another file changes nothing."""
    for match in (True, False):
        name = "journal" if match else "notjournal"
        d = h.Daemon(ctx, vms=[("vm.1", "unix:" + os.path.join(
            ctx.dir, "none.qmp"))], port=1, name=name)
        # The log file exists before the daemon starts: name its inode.
        open(d.logpath, "ab").close()
        st = os.stat(d.logpath if match else d.conf)
        env = dict(os.environ,
                   JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
        d.proc = h.Proc(d.name, [h.DAEMON_BIN, "-c", d.conf, "-v"],
                        d.logpath, env=env, cwd=d.dir)
        end = time.monotonic() + 10 * h.SLOW
        while "started" not in d.log_text() and time.monotonic() < end:
            time.sleep(0.05)
        d.check_alive()
        lines = [ln for ln in d.log_text().splitlines() if ln]
        h.log("%s: %r" % (name, lines[:3]))
        if match:
            check(all(re.match(r"<[0-7]>(fatal|warning|info|debug): ", ln)
                      for ln in lines), "journal lines: %r" % lines)
            check(any(ln.startswith("<4>warning: ") for ln in lines),
                  "no <4>warning line: %r" % lines)
            check(any(ln.startswith("<6>info: ") for ln in lines),
                  "no <6>info line: %r" % lines)
            check(any(ln.startswith("<7>debug: ") for ln in lines),
                  "no <7>debug line: %r" % lines)
        else:
            check(all(re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z qmp2mqtt "
                               r"(warning|info|debug): ", ln)
                      for ln in lines), "plain stderr lines: %r" % lines)
        rc = d.stop()
        check_eq(rc, 0, "exit code")


class DevLog:
    """A unix datagram socket at /dev/log, bound by the test when the
    machine has none (no syslog daemon in this container); removed after."""

    PATH = "/dev/log"

    def __init__(self):
        if os.path.lexists(self.PATH):
            raise h.Skip("%s exists (a syslog daemon runs): the test does "
                         "not take it over" % self.PATH)
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.s.bind(self.PATH)
        except OSError as e:
            self.s.close()
            raise h.Skip("cannot bind %s: %s" % (self.PATH, e))
        self.msgs = []

    def collect(self, pid, pred, timeout, what):
        """Messages from pid until one satisfies pred."""
        tag = "qmp2mqtt[%d]: " % pid
        end = time.monotonic() + timeout * h.SLOW
        while True:
            for m in self.msgs:
                if tag in m and pred(m):
                    return m
            left = end - time.monotonic()
            if left <= 0:
                h.fail("no syslog message %s from pid %d; got %r" %
                       (what, pid, self.msgs[-10:]))
            r, _, _ = select.select([self.s], [], [], left)
            if r:
                self.msgs.append(self.s.recv(65536).decode("utf-8",
                                                           "replace"))

    def close(self):
        self.s.close()
        try:
            os.unlink(self.PATH)
        except OSError:
            pass

    def logs(self):
        return []


def syslog_scenario(ctx, dl, args, devnull):
    d = h.Daemon(ctx, vms=[("vm.1", "unix:" + os.path.join(
        ctx.dir, "none.qmp"))], port=1)
    argv = [h.DAEMON_BIN, "-c", d.conf, "-v"] + args
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    if devnull:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env, cwd=d.dir)
        pid = p.pid
    else:
        d.proc = h.Proc(d.name, argv, d.logpath, env=env, cwd=d.dir)
        pid = d.proc.pid
    try:
        # facility daemon (3): <24 + severity>
        w = dl.collect(pid, lambda m: m.startswith("<28>") and
                       "warning: warning: " in m, 10, "at LOG_WARNING")
        i = dl.collect(pid, lambda m: m.startswith("<30>") and
                       "info: bridge " in m, 10, "at LOG_INFO")
        dl.collect(pid, lambda m: m.startswith("<31>debug: ") or
                   (m.startswith("<31>") and "debug: " in m), 10,
                   "at LOG_DEBUG")
        h.log("syslog: %r / %r" % (w, i))
    finally:
        if devnull:
            p.send_signal(signal.SIGTERM)
            rc = p.wait(15 * h.SLOW)
        else:
            rc = d.stop()
    check_eq(rc, 0, "exit code")
    dl.collect(pid, lambda m: "info: stopped" in m, 5, "'stopped'")
    if not devnull:
        text = d.log_text()
        check(not re.search(r"(info|warning|debug): ", text),
              "with -s, log lines still on stderr: %r" % text[:500])


def test_syslog(ctx):
    dl = DevLog()
    ctx.register(dl)
    syslog_scenario(ctx, dl, ["-s"], devnull=False)
    syslog_scenario(ctx, dl, [], devnull=True)


# ------------------------------------------------------------ install, unit

def make_install(ctx):
    dest = ctx.subdir("destdir")
    args = ["make", "-C", h.ROOT, "--no-print-directory", "install",
            "DESTDIR=" + dest]
    if h.SANITIZED:
        args.append("SAN=1")
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, "make install failed: %s%s" %
          (p.stdout[-2000:], p.stderr[-2000:]))
    return dest


def test_install(ctx):
    dest = make_install(ctx)
    want = {
        "usr/local/bin/qmp2mqtt": 0o755,
        "usr/local/bin/qmp2mqtt-ctl": 0o755,
        "usr/local/share/man/man8/qmp2mqtt.8": 0o644,
        "usr/local/share/man/man5/qmp2mqtt.conf.5": 0o644,
        "usr/local/share/man/man1/qmp2mqtt-ctl.1": 0o644,
        "usr/local/lib/systemd/system/qmp2mqtt.service": 0o644,
        "usr/local/share/doc/qmp2mqtt/qmp2mqtt.conf": 0o644,
        "usr/local/share/doc/qmp2mqtt/README.md": 0o644,
        "etc/qmp2mqtt/qmp2mqtt.conf": 0o640,
    }
    got = set()
    for root, _, files in os.walk(dest):
        for f in files:
            got.add(os.path.relpath(os.path.join(root, f), dest))
    check_eq(sorted(got), sorted(want), "installed files")
    for rel, mode in want.items():
        st = os.stat(os.path.join(dest, rel))
        check_eq(oct(st.st_mode & 0o777), oct(mode), "mode of " + rel)
    unit = open(os.path.join(dest, "usr/local/lib/systemd/system/"
                             "qmp2mqtt.service")).read()
    check("ExecStart=/usr/local/bin/qmp2mqtt -c /etc/qmp2mqtt/qmp2mqtt.conf"
          in unit, "installed unit's ExecStart")
    # A second install keeps an existing /etc configuration.
    conf = os.path.join(dest, "etc/qmp2mqtt/qmp2mqtt.conf")
    with open(conf, "a") as f:
        f.write("# local edit\n")
    make_install(ctx)
    check("# local edit" in open(conf).read(),
          "make install overwrote an existing /etc/qmp2mqtt/qmp2mqtt.conf")
    # Another PREFIX lands in the unit too.
    p = subprocess.run(["make", "-C", h.ROOT, "--no-print-directory",
                        "install", "DESTDIR=" + ctx.subdir("opt"),
                        "PREFIX=/opt/q2m"] + (["SAN=1"] if h.SANITIZED
                                              else []),
                       capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, "make install PREFIX=/opt/q2m: %s" % p.stderr)
    unit = open(os.path.join(ctx.dir, "opt/opt/q2m/lib/systemd/system/"
                             "qmp2mqtt.service")).read()
    check("ExecStart=/opt/q2m/bin/qmp2mqtt " in unit,
          "ExecStart not pointed at PREFIX: %r" % unit)


def test_unit(ctx):
    sa = shutil.which("systemd-analyze")
    if sa is None:
        raise h.Skip("systemd-analyze not installed (Debian: systemd)")
    text = open(UNIT).read()
    for directive in ("Type=notify",
                      "ExecReload=/bin/sh -c 'kill -HUP $MAINPID'\n",
                      "WatchdogSec=", "DynamicUser=yes", "User=qmp2mqttd\n",
                      "SupplementaryGroups=", "StateDirectory=qmp2mqtt",
                      "ProtectSystem=strict", "ProtectHome=yes",
                      "PrivateTmp=yes", "NoNewPrivileges=yes",
                      "CapabilityBoundingSet=\n",
                      "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                      "SystemCallFilter=@system-service",
                      "MemoryDenyWriteExecute=yes", "LockPersonality=yes",
                      "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
                      "ProtectKernelLogs=yes", "ProtectControlGroups=yes",
                      "RestrictNamespaces=yes", "RestrictRealtime=yes",
                      "LimitNOFILE=20000", "Restart=always", "RestartSec=2"):
        check(directive in text, "unit lacks %r" % directive)
    dest = make_install(ctx)
    inst = os.path.join(dest, "usr/local/lib/systemd/system/qmp2mqtt.service")
    # verify needs ExecStart's binary and man pages of Documentation=:
    # point the unit at the DESTDIR copies.
    unit = os.path.join(ctx.dir, "qmp2mqtt.service")
    with open(unit, "w") as f:
        f.write(open(inst).read().replace(
            "/usr/local/bin/", os.path.join(dest, "usr/local/bin/")))
    env = dict(os.environ,
               MANPATH=os.path.join(dest, "usr/local/share/man"))
    p = subprocess.run([sa, "verify", unit], capture_output=True, text=True,
                       env=env, timeout=60, cwd=ctx.dir)
    out = (p.stdout + p.stderr).strip()
    h.log("systemd-analyze verify: rc %d, %r" % (p.returncode, out))
    if p.returncode != 0 and re.search(r"Failed to (connect|initialize|"
                                       r"set up)|not booted", out):
        raise h.Skip("systemd-analyze cannot run here: %s" % out)
    check(p.returncode == 0 and out == "",
          "systemd-analyze verify: rc %d: %s" % (p.returncode, out))
    p = subprocess.run([sa, "security", "--offline=true", unit],
                       capture_output=True, text=True, timeout=60,
                       cwd=ctx.dir)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)",
                  p.stdout)
    check(m is not None, "systemd-analyze security: %s" % (p.stdout[-500:] +
                                                           p.stderr))
    h.log("systemd-analyze security: %s %s" % (m.group(1), m.group(2)))
    check(float(m.group(1)) <= 2.0, "exposure level %s > 2.0" % m.group(1))


# ------------------------------------------------------------ manual pages

def test_man(ctx):
    mandoc = shutil.which("mandoc")
    if mandoc is None:
        raise h.Skip("mandoc not installed (Debian: mandoc)")
    for page in PAGES:
        p = subprocess.run([mandoc, "-T", "lint", "-W", "warning",
                            os.path.join(MAN, page)],
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 0 and not (p.stdout + p.stderr).strip(),
              "mandoc -T lint %s: %s%s" % (page, p.stdout, p.stderr))
    p = subprocess.run(["make", "-C", h.ROOT, "--no-print-directory",
                        "man-lint"], capture_output=True, text=True,
                       timeout=60)
    check_eq(p.returncode, 0, "make man-lint exit code")

    def text(page):
        p = subprocess.run([mandoc, "-T", "utf8", "-O", "width=200",
                            os.path.join(MAN, page)],
                           capture_output=True, text=True, timeout=30)
        return re.sub(r".\x08", "", p.stdout)

    # Every setting of README.md's configuration reference is in
    # qmp2mqtt.conf(5), under its group.
    readme = open(os.path.join(h.ROOT, "README.md")).read()
    ref = readme.split("## Configuration reference", 1)[1].split("\n## ")[0]
    conf5 = text("qmp2mqtt.conf.5")
    groups = dict(re.findall(r"\n {3}(\w+)\n(.*?)(?=\n {3}\w+\n|\n[A-Z]{4,}\n)",
                             conf5, re.S))
    check(set(groups) >= {"bridge", "mqtt", "takeover", "vms"},
          "qmp2mqtt.conf(5) subsections: %r" % sorted(groups))
    names = []          # (group, key)
    for cell in re.findall(r"^\| (`[^|]+`) \|", ref, re.M):
        grp = None
        for part in re.findall(r"`([^`]+)`", cell):
            m = re.match(r"(\w+)(?:\[\])?\.(.+)", part)
            if m:
                grp, keys = m.group(1), m.group(2)
            else:
                keys = part
            keys = keys.split(".")[-1]          # mqtt.tls.verify: verify
            for k in re.sub(r"[{}]", "", keys).split(","):
                names.append((grp, k.strip()))
    check(len(names) >= 35, "parsed only %d settings from README: %r" %
          (len(names), names))
    h.log("%d settings in README's reference" % len(names))
    missing = []
    for g, k in names:
        if g is None:           # a top-level list, e.g. discover[]
            if k.rstrip("[]") not in groups:
                missing.append(k)
        elif not re.search(r"\b%s\b" % re.escape(k), groups.get(g, "")):
            missing.append("%s.%s" % (g, k))
    check(not missing, "settings missing from qmp2mqtt.conf(5): %r" %
          missing)
    for k in ("peer", "reply_prefix", "max_input_total", "status_interval_s",
              "capath", "verify"):
        check(re.search(r"\b%s\b" % k, conf5), "conf(5) lacks %s" % k)

    # Every option of qmp2mqtt -h is in qmp2mqtt(8); signals and files.
    rc, out, err = h.run_daemon(["-h"])
    man8 = text("qmp2mqtt.8")
    opts = set(re.findall(r"^\s+(-\w)\b", out, re.M))
    check(opts >= {"-c", "-n", "-s", "-v", "-V", "-h"}, "usage: %r" % out)
    for o in sorted(opts):
        check(re.search(r"^\s+%s\b" % re.escape(o), man8, re.M),
              "qmp2mqtt(8) does not describe %s" % o)
    for word in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "NOTIFY_SOCKET",
                 "WATCHDOG_USEC", "JOURNAL_STREAM", "EXIT STATUS",
                 "EXAMPLES", "SEE ALSO", "FILES",
                 "/etc/qmp2mqtt/qmp2mqtt.conf"):
        check(word in man8, "qmp2mqtt(8) lacks %s" % word)
    ctl = text("qmp2mqtt-ctl.1")
    for word in ("takeover", "status", "genkey", "--expect", "--force",
                 "--wait", "--id", "-c", "-v", "EXIT STATUS", "EXAMPLES",
                 "SEE ALSO"):
        check(word in ctl, "qmp2mqtt-ctl(1) lacks %s" % word)


if __name__ == "__main__":
    h.main(test_notify_path, test_notify_abstract, test_watchdog,
           test_notify_reload, test_journal_stream, test_syslog,
           test_install, test_unit, test_man)
