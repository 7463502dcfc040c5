"""End-to-end test harness for qmp2mqtt.

Processes under test, all bounded in time and all cleaned up:

  Mosquitto   a private broker on a free loopback port (own conf, own dir)
  Daemon      BUILD/qmp2mqtt with a generated (or raw) configuration
  Subscriber  a paho client recording every message it receives
  QMPClient   a test's own QMP monitor connection (real QEMU or simulator)
  QemuPair    a real QEMU COLO primary/secondary pair (-machine none, TCG)
  Sim         BUILD/qmpsim driven over its stdin/stdout

A test script defines functions taking a Ctx and ends with
``harness.main(test_a, test_b, ...)``.  Each function gets its own temp
directory and its own processes; they are stopped when it returns (or
fails).  The temp directory is removed when every test passed and kept (its
path printed) otherwise.  Exit status: 0 pass, 1 fail, 77 all skipped.

Synchronisation is by condition variables and bounded waits on observable
facts (a message, a log line, a socket accepting); no bare sleeps.

Only the main thread starts processes.  Uses the stdlib and python3-paho-mqtt
(Debian's /usr/bin/python3).
"""

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(os.environ.get("QMP2MQTT_BUILD")
                        or os.path.join(ROOT, "build", "std"))
DAEMON_BIN = os.path.join(BUILD, "qmp2mqtt")
SIM_BIN = os.path.join(BUILD, "qmpsim")
SANITIZED = os.path.basename(BUILD.rstrip("/")) == "san"
# Slower under ASan/UBSan: scale the generous default timeouts.
SLOW = 3.0 if SANITIZED else 1.0

QEMU_BIN = os.environ.get("QEMU", "qemu-system-x86_64")
# A QEMU pair's start (exec until both monitors answer, then the migration
# into COLO), one budget for the whole of it: ~0.05 s on an idle machine,
# seconds under CPU contention (measured on this 2-core machine: up to
# 4.6 s with 4 busy loops, 6.8 s with 10).  Bounded below the e2e file
# timeout (x SLOW) so that a stuck start fails with its own message and
# the QEMU threads' stacks (qemu_stacks), not as a killed file.
#
# The harness' monitors use wait=on: QEMU then accepts that connection
# before it sets the monitor up, instead of racing for it.  With wait=off
# a client that connects while QEMU starts can land in QEMU's own window
# between the monitor I/O thread taking the socket over and the main loop
# still watching it; under load one of them stops serving the connection:
# the greeting comes, qmp_capabilities is never answered (seen twice in
# `make test SAN=1`).  Upstream QEMU fixed it in January 2026 (commit
# e714f1a3, "monitor/qmp: cleanup SocketChardev listener sources early to
# avoid fd handling race"); Debian 12's QEMU 7.2 has the window.
QEMU_START_S = 30.0
MOSQUITTO_BIN = os.environ.get("MOSQUITTO", "mosquitto")

SIM_EPOCH_US = 1700000000000000   # simulator: event k has time_us EPOCH + k
BASE = "qmp2mqtt"                 # base topic used by the tests
HOST = "hv1"                      # bridge.host used by the tests

SKIP_EXIT = 77


class Skip(Exception):
    """Raised to skip the current test (missing tool, not a failure)."""


class TestFailure(AssertionError):
    pass


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def check_eq(got, want, what):
    if got != want:
        raise TestFailure("%s: expected %r, got %r" % (what, want, got))


def log(*a):
    print("[%8.3f]" % (time.monotonic() - _T0), *a, flush=True)


_T0 = time.monotonic()


def deadline_loop(timeout, interval):
    """Yields until timeout; for polling things that have no notification
    (a QMP query, a process state).  The caller breaks out on success."""
    end = time.monotonic() + timeout
    while True:
        yield
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(interval, left))


def which(prog):
    return shutil.which(prog)


def require_paho():
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        raise Skip("python3-paho-mqtt not available for %s (use "
                   "/usr/bin/python3)" % sys.executable)


def require_daemon():
    if not os.access(DAEMON_BIN, os.X_OK):
        fail("daemon binary not built: %s" % DAEMON_BIN)


def require_sim():
    if not os.access(SIM_BIN, os.X_OK):
        fail("simulator binary not built: %s" % SIM_BIN)


def require_mosquitto():
    if not which(MOSQUITTO_BIN):
        raise Skip("mosquitto not installed")


def require_qemu():
    if not which(QEMU_BIN):
        raise Skip("%s not installed" % QEMU_BIN)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail_file(path, n=40):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readlines()[-n:]
    except OSError:
        return []


# ---------------------------------------------------------------- processes

_live = []            # every Proc started and not yet reaped
_live_lock = threading.Lock()


class Proc:
    """A child process whose output goes to a file, with bounded stop/kill."""

    def __init__(self, name, argv, logpath, stdin=None, stdout_pipe=False,
                 stderr_pipe=False, env=None, cwd=None):
        self.name = name
        self.argv = argv
        self.logpath = logpath
        self.logf = open(logpath, "ab")
        self.p = subprocess.Popen(
            argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self.logf,
            stderr=subprocess.PIPE if stderr_pipe else self.logf,
            env=env, cwd=cwd)
        self.pid = self.p.pid
        with _live_lock:
            _live.append(self)

    def alive(self):
        return self.p.poll() is None

    @property
    def returncode(self):
        return self.p.poll()

    def signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=10.0, sig=None):
        """Signal (SIGTERM), wait; SIGKILL after timeout.  Returns
        (rc, timed_out)."""
        if sig is None:
            sig = signal.SIGTERM
        if self.p.poll() is None:
            self.p.send_signal(sig)
            rc = self.wait(timeout)
            if rc is None:
                self.kill()
                return self.p.returncode, True
        self._reaped()
        return self.p.returncode, False

    def kill(self):
        if self.p.poll() is None:
            try:
                self.p.kill()
            except ProcessLookupError:
                pass
        self.p.wait()
        self._reaped()
        return self.p.returncode

    def _reaped(self):
        with _live_lock:
            if self in _live:
                _live.remove(self)
        try:
            self.logf.close()
        except (OSError, ValueError):
            pass

    def log_text(self):
        try:
            with open(self.logpath, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def _kill_all_live():
    with _live_lock:
        procs = list(_live)
    for p in procs:
        try:
            p.kill()
        except Exception:
            pass


atexit.register(_kill_all_live)


def _on_term(sig, frame):
    # The runner sends SIGTERM on timeout: unwind so finally/atexit run.
    raise SystemExit("terminated by signal %d (timeout?)" % sig)


signal.signal(signal.SIGTERM, _on_term)


class Hit:
    """A matching line: the re match (its methods are forwarded), the time
    the line was read (.t) and its index (.i; .i + 1 to wait past it)."""

    def __init__(self, m, t, i):
        self.m, self.t, self.i = m, t, i

    def __getattr__(self, name):
        return getattr(self.m, name)


class LineLog:
    """Lines of a process' pipe, copied to a file and kept for waiting."""

    def __init__(self, stream, path, on_line=None):
        self.lines = []
        self.times = []         # time.monotonic() each line was read
        self.cond = threading.Condition()
        self.eof = False
        self.path = path
        self.on_line = on_line
        self.f = open(path, "a", encoding="utf-8", errors="replace")
        self.t = threading.Thread(target=self._run, args=(stream,),
                                  daemon=True)
        self.t.start()

    def _run(self, stream):
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                try:
                    self.f.write(line + "\n")
                    self.f.flush()
                except ValueError:
                    pass
                handled = self.on_line(line) if self.on_line else False
                if not handled:
                    with self.cond:
                        self.lines.append(line)
                        self.times.append(time.monotonic())
                        self.cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.lines)

    def wait_line(self, pattern, timeout, since=0, what=None):
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self.cond:
            i = since
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return Hit(m, self.times[i], i)
                    i += 1
                if self.eof:
                    fail("%s: stream ended while waiting for /%s/" %
                         (self.path, pattern))
                left = end - time.monotonic()
                if left <= 0:
                    fail("timeout (%.1fs) waiting for %s /%s/ in %s" %
                         (timeout, what or "line", pattern, self.path))
                self.cond.wait(left)

    def count(self, pattern, since=0):
        rx = re.compile(pattern)
        with self.cond:
            return sum(1 for ln in self.lines[since:] if rx.search(ln))


# ---------------------------------------------------------------- mosquitto

class Mosquitto:
    """A private mosquitto on 127.0.0.1:port; restartable on the same port."""

    def __init__(self, ctx, port=None, persistence=False, extra=""):
        require_mosquitto()
        self.ctx = ctx
        self.port = port or free_port()
        self.dir = ctx.subdir("mosquitto-%d" % self.port)
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        self.logpath = os.path.join(self.dir, "mosquitto.log")
        self.persistence = persistence
        lines = ["listener %d 127.0.0.1" % self.port,
                 "allow_anonymous true",
                 "log_dest stderr",
                 "log_type all",
                 "log_timestamp true",
                 "set_tcp_nodelay true",
                 "max_queued_messages 1000000",
                 "max_inflight_messages 0"]
        if os.geteuid() == 0:
            lines.append("user root")   # else it drops to 'mosquitto'
        if persistence:
            pdir = os.path.join(self.dir, "db")
            os.makedirs(pdir, exist_ok=True)
            lines += ["persistence true", "persistence_location %s/" % pdir,
                      "autosave_interval 0"]
        if extra:
            lines.append(extra)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None
        self.out = None
        self.starts = 0
        ctx.register(self)

    def start(self, timeout=10.0):
        check(self.proc is None or not self.proc.alive(),
              "mosquitto already running")
        self.starts += 1
        # mosquitto logs to stderr: read it through a pipe, so that tests
        # can wait for log lines (e.g. a SUBSCRIBE) instead of sleeping.
        self.proc = Proc("mosquitto", [MOSQUITTO_BIN, "-c", self.conf],
                         self.logpath + ".stdout", stderr_pipe=True)
        p = self.proc.p
        self.out = LineLog(p.stderr, self.logpath)
        # Wait until the port accepts (a bounded poll: nothing notifies).
        for _ in deadline_loop(timeout * SLOW, 0.02):
            if not self.proc.alive():
                fail("mosquitto exited with %s:\n%s" %
                     (p.returncode, "".join(tail_file(self.logpath))))
            if port_accepts(self.port):
                log("mosquitto up on port %d (pid %d)" % (self.port, p.pid))
                return self
        fail("mosquitto did not accept on port %d within %.1fs" %
             (self.port, timeout))

    def stop(self, timeout=10.0):
        """SIGTERM (persistence saves its database); returns exit code."""
        if self.proc is None:
            return None
        rc, slow = self.proc.stop(timeout)
        check(not slow, "mosquitto did not stop on SIGTERM within %.1fs"
              % timeout)
        log("mosquitto stopped (rc %s)" % rc)
        return rc

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            log("mosquitto killed")

    def restart(self, timeout=10.0):
        self.stop()
        return self.start(timeout)

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def wait_log(self, pattern, timeout=10.0, since=0):
        return self.out.wait_line(pattern, timeout * SLOW, since,
                                  what="mosquitto log")

    def mark(self):
        return self.out.mark() if self.out else 0

    def close(self):
        if self.proc is not None:
            self.proc.kill()

    def logs(self):
        return [("mosquitto", self.logpath)]


# ---------------------------------------------------------------- daemon

def _cfg_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "( " + ", ".join(_cfg_value(x) for x in v) + " )"
    if isinstance(v, dict):
        return "{ " + " ".join("%s = %s;" % (k, _cfg_value(x))
                               for k, x in v.items()) + " }"
    return json.dumps(str(v))   # a libconfig string literal


def render_config(vms, bridge=None, mqtt=None, extra=""):
    """libconfig text: one setting per line, each VM on a line of its own.

    vms: list of (name, qmp) or dicts."""
    out = ["bridge = {"]
    for k, v in (bridge or {}).items():
        out.append("  %s = %s;" % (k, _cfg_value(v)))
    out.append("};")
    out.append("mqtt = {")
    for k, v in (mqtt or {}).items():
        out.append("  %s = %s;" % (k, _cfg_value(v)))
    out.append("};")
    out.append("vms = (")
    items = []
    for vm in vms:
        if not isinstance(vm, dict):
            vm = {"name": vm[0], "qmp": vm[1]}
        items.append("  " + _cfg_value(vm))
    out.append(",\n".join(items))
    out.append(");")
    if extra:
        out.append(extra)
    return "\n".join(out) + "\n"


class Daemon:
    """BUILD/qmp2mqtt -c CONF -v, stderr collected to a file.

    vms: list of (name, qmp-address) or dicts; bridge/mqtt: settings that
    override the test defaults (mqtt.version 5, small backoff); raw: the
    whole config text instead."""

    _n = 0

    def __init__(self, ctx, vms=(), port=None, bridge=None, mqtt=None,
                 raw=None, name=None, verbose=True):
        require_daemon()
        Daemon._n += 1
        self.ctx = ctx
        self.name = name or "qmp2mqtt%d" % Daemon._n
        self.dir = ctx.subdir(self.name)
        self.conf = os.path.join(self.dir, "qmp2mqtt.conf")
        self.logpath = os.path.join(self.dir, "stderr.log")
        self.port = port
        self.client_id = "qmp2mqtt-e2e-%d-%s" % (os.getpid(), self.name)
        b = {"host": HOST, "id": "bridge-" + self.name,
             "backoff_min_ms": 50, "backoff_max_ms": 500}
        b.update(bridge or {})
        m = {"uri": "tcp://127.0.0.1:%d" % (port or 1),
             "client_id": self.client_id, "version": 5, "qos": 1,
             "keepalive": 5, "base_topic": BASE}
        m.update(mqtt or {})
        self.bridge_id = b.get("id")
        self.host = b.get("host")
        self.base = m.get("base_topic", BASE)
        self.text = raw if raw is not None else render_config(vms, b, m)
        with open(self.conf, "w") as f:
            f.write(self.text)
        self.verbose = verbose
        self.wrap = []          # argv run before the daemon's (prlimit ...)
        self.proc = None
        self.expect_exit = False
        ctx.register(self)

    def topic(self, vm, *rest):
        return "/".join((self.base, self.host, vm) + rest)

    def start(self):
        argv = self.wrap + [DAEMON_BIN, "-c", self.conf] + (
            ["-v"] if self.verbose else [])
        self.proc = Proc(self.name, argv, self.logpath, cwd=self.dir)
        log("%s started (pid %d)" % (self.name, self.proc.pid))
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def check_alive(self):
        if not self.alive():
            fail("daemon %s died (exit %s); stderr tail:\n%s" %
                 (self.name, self.proc.returncode,
                  "".join(tail_file(self.logpath, 60))))

    def signal(self, sig):
        self.check_alive()
        self.proc.signal(sig)

    def stop(self, timeout=15.0):
        """SIGTERM; returns the exit code (fails if it does not exit)."""
        self.expect_exit = True
        rc, slow = self.proc.stop(timeout * SLOW)
        log("%s stopped: exit %s" % (self.name, rc))
        check(not slow, "daemon did not exit within %.1fs of SIGTERM "
              "(killed)" % (timeout * SLOW))
        return rc

    def kill9(self):
        self.expect_exit = True
        rc = self.proc.kill()
        log("%s killed -9" % self.name)
        return rc

    def sanitizer_reports(self):
        text = self.proc.log_text() if self.proc else ""
        return [ln for ln in text.splitlines()
                if "Sanitizer" in ln or "runtime error:" in ln
                or "ERROR: LeakSanitizer" in ln]

    def log_text(self):
        return self.proc.log_text() if self.proc else ""

    def finish(self):
        """End of test: it must still be alive (unless stopped on purpose),
        exit 0 on SIGTERM and report nothing under the sanitizers."""
        if self.proc is None:
            return
        if not self.expect_exit:
            self.check_alive()
            rc = self.stop()
            check_eq(rc, 0, "daemon exit code on SIGTERM")
        reps = self.sanitizer_reports()
        check(not reps, "sanitizer reports in daemon stderr:\n" +
              "\n".join(reps[:20]))

    def close(self):
        if self.proc is not None:
            self.proc.kill()

    def logs(self):
        return [(self.name, self.logpath)]


class TracingDaemon(Daemon):
    """Daemon run with -vv: every QMP frame it reads is logged before it is
    handled (COLO_EXIT info lines are rate-limited, this trace is not), so
    colo_exits_read() tells which simulator events it had read by a given
    moment."""

    def start(self):
        self.proc = Proc(self.name, [DAEMON_BIN, "-c", self.conf, "-vv"],
                         self.logpath, cwd=self.dir)
        log("%s started with -vv (pid %d)" % (self.name, self.proc.pid))
        return self


_TRACE_RE = re.compile(r" (\S+): <- \{\"timestamp\": \{\"seconds\": (\d+), "
                       r"\"microseconds\": (\d+)\}, \"event\": \"COLO_EXIT\"")


class ColoExitTrace:
    """The COLO_EXIT events a TracingDaemon had read from QMP by the time
    update() is called: {vm: set of simulator k} in .read.  Reads only what
    the log gained since the previous update (cheap enough to call while a
    broker is down)."""

    def __init__(self, daemon, names):
        self.path = daemon.logpath
        self.read = {n: set() for n in names}
        self.offset = 0
        self.rest = b""

    def update(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return self.read
        self.offset += len(data)
        data = self.rest + data
        cut = data.rfind(b"\n") + 1        # a partial last line: next time
        self.rest = data[cut:]
        text = data[:cut].decode("utf-8", "replace")
        for m in _TRACE_RE.finditer(text):
            if m.group(1) in self.read:
                self.read[m.group(1)].add(int(m.group(2)) * 1000000 +
                                          int(m.group(3)) - SIM_EPOCH_US)
        return self.read


def colo_exits_read(daemon, names):
    """{vm: set of simulator k} of the COLO_EXIT events a TracingDaemon had
    read from QMP when its log was read (now)."""
    return ColoExitTrace(daemon, names).update()


def run_daemon(args, timeout=15.0, cwd=None):
    """Runs the daemon to completion: (rc, stdout, stderr)."""
    require_daemon()
    try:
        p = subprocess.run([DAEMON_BIN] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout * SLOW, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        fail("qmp2mqtt %s did not exit within %.0fs (killed); stderr: %r" %
             (" ".join(args), timeout * SLOW, (e.stderr or b"")[-2000:]))
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


# ---------------------------------------------------------------- subscriber

class Msg:
    __slots__ = ("topic", "payload", "retain", "t", "qos", "dup", "_json")

    def __init__(self, topic, payload, retain, qos, dup):
        self.topic = topic
        self.payload = payload
        self.retain = bool(retain)
        self.qos = qos
        self.dup = dup
        self.t = time.monotonic()
        self._json = None

    @property
    def text(self):
        return self.payload.decode("utf-8", "replace")

    def json(self):
        if self._json is None:
            try:
                self._json = json.loads(self.payload)
            except ValueError as e:
                fail("payload on %s is not JSON (%s): %r" %
                     (self.topic, e, self.payload[:200]))
        return self._json

    def __repr__(self):
        return "Msg(%s, %r%s)" % (self.topic, self.payload[:300],
                                  ", retained" if self.retain else "")


class Subscriber:
    """A paho MQTT client subscribed to BASE/# that records everything.

    protocol 5 (default) subscribes with retain-as-published, so .retain
    tells whether the publisher retained the message.  session=True gives a
    persistent session (clean_start False, session expiry 1 h; clean_session
    False for 3.1.1) under a fixed client id; start() then re-uses it."""

    _n = 0

    def __init__(self, ctx, port, topics=(BASE + "/#",), qos=1, protocol=5,
                 client_id=None, session=False):
        require_paho()
        import paho.mqtt.client as mqtt
        Subscriber._n += 1
        self.ctx = ctx
        self.port = port
        self.topics = list(topics)
        self.qos = qos
        self.v5 = protocol == 5
        self.session = session
        self.client_id = client_id or "e2e-sub-%d-%d" % (os.getpid(),
                                                         Subscriber._n)
        self.msgs = []
        self.by_topic = {}
        self.n_events = 0       # messages on .../event/... topics
        self.cond = threading.Condition()
        self.connected = False
        self.connects = 0
        self.session_present = None
        self.subacks = {}
        self.mqtt = mqtt
        kw = {}
        if self.v5:
            kw["protocol"] = mqtt.MQTTv5
        else:
            kw["protocol"] = mqtt.MQTTv311
            kw["clean_session"] = not session
        self.c = mqtt.Client(client_id=self.client_id, **kw)
        self.c.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        self.started = False
        ctx.register(self)

    # paho callbacks (its network thread)
    def _on_connect(self, client, userdata, flags, rc, properties=None):
        with self.cond:
            ok = int(getattr(rc, "value", rc)) == 0
            self.connected = ok
            if ok:
                self.connects += 1
                self.session_present = bool(flags.get("session present"))
            self.cond.notify_all()
        if ok and not (self.session and self.session_present):
            self._subscribe()

    def _on_disconnect(self, client, userdata, rc, properties=None):
        with self.cond:
            self.connected = False
            self.cond.notify_all()

    def _subscribe(self):
        if self.v5:
            from paho.mqtt.subscribeoptions import SubscribeOptions
            opts = SubscribeOptions(qos=self.qos, retainAsPublished=True)
            rc, mid = self.c.subscribe([(t, opts) for t in self.topics])
        else:
            rc, mid = self.c.subscribe([(t, self.qos) for t in self.topics])
        with self.cond:
            self.subacks.setdefault(mid, None)

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        with self.cond:
            self.subacks[mid] = granted
            self.cond.notify_all()

    def _on_message(self, client, userdata, m):
        msg = Msg(m.topic, bytes(m.payload), m.retain, m.qos, m.dup)
        with self.cond:
            self.msgs.append(msg)
            self.by_topic.setdefault(msg.topic, []).append(msg)
            if "/event/" in msg.topic:
                self.n_events += 1
            self.cond.notify_all()

    # API
    def start(self, timeout=10.0):
        """Connects and returns once the broker acknowledged the
        subscription (or the persistent session was resumed)."""
        kw = {}
        if self.v5:
            from paho.mqtt.properties import Properties
            from paho.mqtt.packettypes import PacketTypes
            kw["clean_start"] = not self.session
            if self.session:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 3600
                kw["properties"] = props
        if not self.started:
            self.c.connect_async("127.0.0.1", self.port, keepalive=10, **kw)
            self.c.loop_start()
            self.started = True
        end = time.monotonic() + timeout * SLOW
        with self.cond:
            while True:
                if self.connected:
                    if self.session and self.session_present:
                        break
                    if self.subacks and all(v is not None
                                            for v in self.subacks.values()):
                        break
                left = end - time.monotonic()
                if left <= 0:
                    fail("subscriber %s: not connected+subscribed on port %d "
                         "within %.1fs" % (self.client_id, self.port,
                                           timeout))
                self.cond.wait(left)
            for g in self.subacks.values():
                codes = g if isinstance(g, (list, tuple)) else [g]
                for c in codes:
                    v = c if isinstance(c, int) else getattr(c, "value", 0)
                    check(v < 0x80, "subscription refused: %r" % (g,))
        return self

    def wait_connected(self, timeout=10.0):
        self.wait(lambda s: s.connected, timeout, "subscriber reconnected")

    def stop(self):
        if self.started:
            try:
                self.c.disconnect()
            except Exception:
                pass
            self.c.loop_stop()
            self.started = False
            with self.cond:
                self.connected = False
                self.subacks = {}

    close = stop

    def logs(self):
        return []

    def wait(self, pred, timeout=10.0, what=None):
        """Waits until pred(self) is truthy (evaluated under the lock, on
        every received message); returns its value."""
        end = time.monotonic() + timeout * SLOW
        with self.cond:
            while True:
                r = pred(self)
                if r:
                    return r
                left = end - time.monotonic()
                if left <= 0:
                    fail("timeout (%.1fs) waiting for %s" %
                         (timeout * SLOW, what or getattr(pred, "__name__",
                                                          "condition")))
                self.cond.wait(left)

    def mark(self, topic=None):
        """A position for wait_for(since=...): messages after now."""
        with self.cond:
            return len(self.by_topic.get(topic, [])) if topic else \
                len(self.msgs)

    def wait_for(self, pred, timeout=10.0, what=None, topic=None, since=0):
        """Waits for a message m with pred(m) (on topic, if given; from
        index since of that topic's list, see mark()); returns the first
        one.  Scans only new messages on each wake-up."""
        state = {"i": since}

        def scan(s):
            lst = s.by_topic.get(topic, []) if topic else s.msgs
            while state["i"] < len(lst):
                m = lst[state["i"]]
                state["i"] += 1
                if pred(m):
                    return m
            return None
        return self.wait(scan, timeout, what or ("message on %s" %
                                                  (topic or "any topic")))

    def wait_payload(self, topic, payload, timeout=10.0, since=0):
        if isinstance(payload, str):
            payload = payload.encode()
        return self.wait_for(lambda m: m.payload == payload, timeout,
                             "%r on %s" % (payload, topic), topic=topic,
                             since=since)

    def wait_json(self, topic, pred, timeout=10.0, what=None, since=0):
        return self.wait_for(lambda m: pred(m.json()), timeout,
                             what or "matching JSON on %s" % topic,
                             topic=topic, since=since)

    def on(self, topic):
        with self.cond:
            return list(self.by_topic.get(topic, []))

    def count(self, topic):
        with self.cond:
            return len(self.by_topic.get(topic, []))

    def last(self, topic):
        with self.cond:
            lst = self.by_topic.get(topic)
            return lst[-1] if lst else None

    def all(self):
        with self.cond:
            return list(self.msgs)

    def topics_matching(self, rx):
        r = re.compile(rx)
        with self.cond:
            return sorted(t for t in self.by_topic if r.search(t))


# ---------------------------------------------------------------- QMP client

class QMPError(Exception):
    def __init__(self, cmd, err):
        Exception.__init__(self, "%s: %s" % (cmd, err))
        self.err = err


def qemu_stacks(proc):
    """What each thread of a QEMU that stopped answering is doing, for the
    failure message: the kernel's view of every thread (/proc: state and
    wait channel), then their stacks from gdb when it is installed.
    Returns "" when proc is None or gone."""
    if proc is None or not proc.alive():
        return ""
    pid = proc.pid
    out = ["\n--- threads of %s (pid %d):" % (proc.name, pid)]
    try:
        tids = sorted(os.listdir("/proc/%d/task" % pid), key=int)
    except OSError:
        return ""
    for tid in tids:
        base = "/proc/%d/task/%s/" % (pid, tid)
        try:
            with open(base + "comm") as f:
                comm = f.read().strip()
            with open(base + "stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(base + "wchan") as f:
                wchan = f.read().strip()
        except OSError:
            continue
        out.append("  %s %-16s state %s wchan %s" % (tid, comm, state, wchan))
    gdb = shutil.which("gdb")
    if gdb is not None:
        try:
            r = subprocess.run([gdb, "-p", str(pid), "-batch", "-nx",
                                "-ex", "thread apply all bt"],
                               stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=30)
            out.append(r.stdout.decode("utf-8", "replace")[-12000:])
        except (OSError, subprocess.TimeoutExpired) as e:
            out.append("  (gdb: %s)" % e)
    return "\n".join(out)


class QMPClient:
    """The test's own QMP monitor: negotiates, runs commands (replies matched
    by id, events kept apart by shape), collects events."""

    def __init__(self, path, timeout=10.0, name=None, proc=None):
        """Connects, waits for the greeting and negotiates, all within
        timeout (x SLOW); proc: the Proc serving the socket, whose exit
        fails the wait at once."""
        self.path = path
        self.name = name or os.path.basename(path)
        self.proc = proc
        self.cond = threading.Condition()
        self.events = []
        self.replies = {}
        self.other = []
        self.greeting = None
        self.closed = False
        self.nextid = 0
        self.wlock = threading.Lock()
        end = time.monotonic() + timeout * SLOW
        s = None
        for _ in deadline_loop(timeout * SLOW, 0.02):
            if proc is not None and not proc.alive():
                fail("%s exited (%s) before its QMP socket %s accepted; "
                     "stderr: %s" % (proc.name, proc.returncode, path,
                                     "".join(tail_file(proc.logpath))))
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                break
            except OSError:
                s.close()
                s = None
        if s is None:
            fail("cannot connect to QMP socket %s within %.1fs" %
                 (path, timeout * SLOW))
        self.s = s
        self.t = threading.Thread(target=self._reader, daemon=True)
        self.t.start()
        with self.cond:
            while self.greeting is None:
                left = end - time.monotonic()
                if left <= 0 or self.closed:
                    fail("no QMP greeting on %s within %.1fs%s%s" %
                         (path, timeout * SLOW,
                          " (closed)" if self.closed else "",
                          qemu_stacks(proc)))
                self.cond.wait(left)
        self.cmd("qmp_capabilities",
                 timeout=max(0.0, end - time.monotonic()) / SLOW)

    def _reader(self):
        dec = json.JSONDecoder()
        buf = ""
        try:
            while True:
                data = self.s.recv(65536)
                if not data:
                    break
                buf += data.decode("utf-8", "replace")
                while True:
                    stripped = buf.lstrip()
                    if not stripped:
                        buf = ""
                        break
                    try:
                        obj, end = dec.raw_decode(stripped)
                    except ValueError:
                        buf = stripped
                        break
                    buf = stripped[end:]
                    self._dispatch(obj)
        except OSError:
            pass
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def _dispatch(self, obj):
        with self.cond:
            if isinstance(obj, dict) and "QMP" in obj:
                self.greeting = obj
            elif isinstance(obj, dict) and "event" in obj:
                obj["_t"] = time.monotonic()
                self.events.append(obj)
            elif isinstance(obj, dict) and "id" in obj and (
                    "return" in obj or "error" in obj):
                self.replies[obj["id"]] = obj
            else:
                self.other.append(obj)
            self.cond.notify_all()

    def version(self):
        q = self.greeting["QMP"]["version"]["qemu"]
        return "%d.%d.%d" % (q["major"], q["minor"], q["micro"])

    def send_raw(self, obj):
        with self.wlock:
            self.s.sendall((json.dumps(obj) + "\r\n").encode())

    def cmd(self, name, args=None, timeout=10.0, check_error=True):
        with self.cond:
            self.nextid += 1
            cid = "t%d" % self.nextid
        msg = {"execute": name, "id": cid}
        if args is not None:
            msg["arguments"] = args
        self.send_raw(msg)
        end = time.monotonic() + timeout * SLOW
        with self.cond:
            while cid not in self.replies:
                if self.closed:
                    fail("QMP %s closed while waiting for %s" %
                         (self.name, name))
                left = end - time.monotonic()
                if left <= 0:
                    fail("QMP %s: no reply to %s within %.1fs%s" %
                         (self.name, name, timeout * SLOW,
                          qemu_stacks(self.proc)))
                self.cond.wait(left)
            r = self.replies.pop(cid)
        if "error" in r:
            if check_error:
                raise QMPError(name, r["error"])
            return r
        return r["return"]

    def wait_event(self, name, timeout=10.0, pred=None):
        end = time.monotonic() + timeout * SLOW
        with self.cond:
            while True:
                for e in self.events:
                    if e.get("event") == name and (pred is None or pred(e)):
                        return e
                left = end - time.monotonic()
                if left <= 0:
                    fail("QMP %s: no %s event within %.1fs (events: %s)" %
                         (self.name, name, timeout,
                          [e.get("event") for e in self.events]))
                self.cond.wait(left)

    def events_named(self, name):
        with self.cond:
            return [e for e in self.events if e.get("event") == name]

    def close(self):
        try:
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.s.close()


def qmp_time_us(ev):
    ts = ev["timestamp"]
    return ts["seconds"] * 1000000 + ts["microseconds"]


def iso_time(time_us):
    """time_us as the contract's "2026-11-25T18:24:19.123456Z"."""
    s, us = divmod(time_us, 1000000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + \
        ".%06dZ" % us


# ---------------------------------------------------------------- QEMU COLO

class QemuPair:
    """A real QEMU 7.2 COLO pair, started as the reference says.

    Each QEMU has two QMP sockets: <side>-test.qmp (this harness' monitor,
    self.pri_mon / self.sec_mon) and <side>-bridge.qmp (for the daemon).
    The processes are QEMU itself (no wrapper): pri_pid / sec_pid."""

    def __init__(self, ctx, name="colo", checkpoint_delay=200):
        require_qemu()
        self.ctx = ctx
        self.dir = ctx.subdir(name)
        self.name = name
        self.delay = checkpoint_delay
        self.pri = self.sec = None
        self.pri_mon = self.sec_mon = None
        self.port = None
        d = self.dir
        self.pri_test = os.path.join(d, "pri-test.qmp")
        self.pri_bridge = os.path.join(d, "pri-bridge.qmp")
        self.sec_test = os.path.join(d, "sec-test.qmp")
        self.sec_bridge = os.path.join(d, "sec-bridge.qmp")
        ctx.register(self)

    def _argv(self, side, extra):
        test = getattr(self, side + "_test")
        bridge = getattr(self, side + "_bridge")
        return ([QEMU_BIN, "-machine", "none,accel=tcg", "-m", "16",
                 "-smp", "1", "-nodefaults", "-no-user-config",
                 "-display", "none",
                 "-name", "primary" if side == "pri" else "secondary",
                 "-qmp", "unix:%s,server=on,wait=on" % test,
                 "-qmp", "unix:%s,server=on,wait=off" % bridge] + extra)

    def start(self, timeout=QEMU_START_S):
        """Starts both QEMUs and migrates them into COLO, all within
        timeout (x SLOW): see QEMU_START_S."""
        t0 = time.monotonic()
        end = t0 + timeout * SLOW

        def left():
            return max(0.0, end - time.monotonic()) / SLOW
        self.port = free_port()
        self.sec = Proc("qemu-sec", self._argv(
            "sec", ["-incoming", "tcp:127.0.0.1:%d" % self.port]),
            os.path.join(self.dir, "sec.stderr"))
        self.pri = Proc("qemu-pri", self._argv("pri", ["-S"]),
                        os.path.join(self.dir, "pri.stderr"))
        log("QEMU pair: primary pid %d, secondary pid %d" %
            (self.pri.pid, self.sec.pid))
        self.sec_mon = QMPClient(self.sec_test, timeout=left(),
                                 name="sec-test", proc=self.sec)
        self.pri_mon = QMPClient(self.pri_test, timeout=left(),
                                 name="pri-test", proc=self.pri)
        log("QEMU pair: both monitors negotiated after %.2fs" %
            (time.monotonic() - t0))
        caps = {"capabilities": [{"capability": "x-colo", "state": True}]}
        self.sec_mon.cmd("migrate-set-capabilities", caps)
        self.pri_mon.cmd("migrate-set-capabilities", caps)
        self.pri_mon.cmd("migrate-set-parameters",
                         {"x-checkpoint-delay": self.delay})
        self.pri_mon.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % self.port})
        status = None
        for _ in deadline_loop(left() * SLOW, 0.02):
            status = self.pri_mon.cmd("query-migrate").get("status")
            if status == "colo":
                break
            if status in ("failed", "cancelled"):
                break
            if not (self.pri.alive() and self.sec.alive()):
                break
        if status != "colo":
            fail("QEMU pair did not reach COLO (query-migrate status %r); "
                 "pri stderr: %s; sec stderr: %s" %
                 (status, "".join(tail_file(self.pri.logpath)),
                  "".join(tail_file(self.sec.logpath))))
        # The secondary may report COLO a moment after the primary does.
        p = s = None
        for _ in deadline_loop(left() * SLOW, 0.02):
            p = self.pri_mon.cmd("query-colo-status")
            s = self.sec_mon.cmd("query-colo-status")
            if p.get("mode") == "primary" and s.get("mode") == "secondary":
                break
        check_eq(p.get("mode"), "primary", "primary query-colo-status mode")
        check_eq(s.get("mode"), "secondary",
                 "secondary query-colo-status mode")
        log("QEMU pair in COLO (port %d) after %.2fs" %
            (self.port, time.monotonic() - t0))
        return self

    @property
    def pri_pid(self):
        return self.pri.pid

    @property
    def sec_pid(self):
        return self.sec.pid

    def version(self):
        return self.pri_mon.version()

    def kill(self, side):
        """SIGKILL one QEMU ("pri" or "sec")."""
        p = self.pri if side == "pri" else self.sec
        p.kill()
        log("QEMU %s (pid %d) killed -9" % (side, p.pid))

    def stop(self):
        for mon in (self.pri_mon, self.sec_mon):
            if mon is not None:
                mon.close()
        for p in (self.pri, self.sec):
            if p is not None:
                p.kill()

    close = stop

    def logs(self):
        out = []
        for side, p in (("qemu-pri", self.pri), ("qemu-sec", self.sec)):
            if p is not None:
                out.append((side, p.logpath))
        return out


# ---------------------------------------------------------------- simulator

class SimError(Exception):
    pass


class Sim:
    """BUILD/qmpsim: commands on stdin, one ok/err answer line each; async
    lines ("client VM connected|ready|closed", "recv VM CMD") kept apart."""

    def __init__(self, ctx, vms, prefix="vm", args=(), name="sim"):
        require_sim()
        self.ctx = ctx
        self.n = vms
        self.prefix = prefix
        self.dir = ctx.subdir(name)
        self.sockdir = os.path.join(self.dir, "s")
        os.makedirs(self.sockdir, exist_ok=True)
        self.logpath = os.path.join(self.dir, "qmpsim.log")
        self.argv = [SIM_BIN, "--dir", self.sockdir, "--vms", str(vms),
                     "--prefix", prefix] + list(args)
        self.answers = []
        self.acond = threading.Condition()
        self.lock = threading.Lock()    # one command at a time
        self.proc = None
        self.out = None
        ctx.register(self)

    def _on_line(self, line):
        if line.startswith("ok") or line.startswith("err"):
            with self.acond:
                self.answers.append(line)
                self.acond.notify_all()
            return True
        return False

    def start(self):
        self.proc = Proc("qmpsim", self.argv, self.logpath + ".stderr",
                         stdin=subprocess.PIPE, stdout_pipe=True)
        self.out = LineLog(self.proc.p.stdout, self.logpath,
                           on_line=self._on_line)
        # It says "listening N DIR" once every socket listens.
        self.out.wait_line(r"^listening ", 30 * SLOW, what="qmpsim start")
        log("qmpsim listening: %d VMs (pid %d)" % (self.n, self.proc.pid))
        return self

    def vm(self, i):
        return "%s%d" % (self.prefix, i)

    def sock(self, i):
        name = i if isinstance(i, str) else self.vm(i)
        return os.path.join(self.sockdir, name + ".qmp")

    def addr(self, i):
        return "unix:" + self.sock(i)

    def vms(self):
        return [(self.vm(i), self.addr(i)) for i in range(1, self.n + 1)]

    def cmd(self, line, timeout=10.0, check_ok=True):
        """Sends one command line; returns its answer line."""
        with self.lock:
            with self.acond:
                self.answers.clear()
            if not self.proc.alive():
                fail("qmpsim died (exit %s) before %r:\n%s" %
                     (self.proc.returncode, line,
                      "".join(tail_file(self.proc.logpath))))
            try:
                self.proc.p.stdin.write((line + "\n").encode())
                self.proc.p.stdin.flush()
            except OSError as e:
                fail("qmpsim stdin: %s" % e)
            end = time.monotonic() + timeout * SLOW
            with self.acond:
                while not self.answers:
                    left = end - time.monotonic()
                    if left <= 0:
                        fail("qmpsim: no answer to %r within %.1fs" %
                             (line, timeout * SLOW))
                    if self.out.eof:
                        fail("qmpsim: stdout closed before answering %r"
                             % line)
                    self.acond.wait(min(left, 0.5))
                ans = self.answers.pop(0)
        if check_ok and not ans.startswith("ok"):
            raise SimError("qmpsim %r -> %r" % (line, ans))
        return ans

    def wait_ready(self, n=None, timeout=30.0):
        n = self.n if n is None else n
        ms = int(timeout * SLOW * 1000)
        return self.cmd("wait-ready %d %d" % (n, ms),
                        timeout=timeout * SLOW + 5)

    def count(self, sel):
        """{'heartbeats': H, 'commands': C, 'events': E, 'connects': N}"""
        ans = self.cmd("count %s" % sel)
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", ans)}

    def mark(self):
        return self.out.mark()

    def wait_async(self, pattern, timeout=10.0, since=0):
        return self.out.wait_line(pattern, timeout * SLOW, since,
                                  what="qmpsim line")

    def quit(self, timeout=10.0):
        if self.proc is None or not self.proc.alive():
            return
        try:
            self.proc.p.stdin.write(b"quit\n")
            self.proc.p.stdin.flush()
        except OSError:
            pass
        rc = self.proc.wait(timeout)
        if rc is None:
            self.proc.kill()

    def close(self):
        if self.proc is not None:
            self.quit(timeout=3.0)
            self.proc.kill()

    def logs(self):
        if self.proc is None:
            return []
        return [("qmpsim", self.logpath), ("qmpsim-stderr",
                                           self.proc.logpath)]


# ---------------------------------------------------------------- helpers

def event_topic(vm, host=HOST, base=BASE):
    return "%s/%s/%s/event/colo_exit" % (base, host, vm)


def state_topic(vm, host=HOST, base=BASE):
    return "%s/%s/%s/state" % (base, host, vm)


def avail_topic(vm, host=HOST, base=BASE):
    return "%s/%s/%s/availability" % (base, host, vm)


def bridge_topic(what, host=HOST, base=BASE):
    return "%s/%s/bridge/%s" % (base, host, what)


def wait_online(sub, names, timeout=30.0):
    """Waits until the last availability of every VM in names is online."""
    topics = [avail_topic(n) for n in names]

    def all_online(s):
        for t in topics:
            lst = s.by_topic.get(t)
            if not lst or lst[-1].payload != b"online":
                return False
        return True
    try:
        sub.wait(all_online, timeout, "availability online of %d VMs" %
                 len(names))
    except TestFailure:
        missing = [n for n, t in zip(names, topics)
                   if not sub.last(t) or sub.last(t).payload != b"online"]
        fail("availability not online for %d of %d VMs within %.0fs: %s" %
             (len(missing), len(names), timeout * SLOW, missing[:20]))


def stats_request(sub, daemon, pred, timeout=15.0):
    """SIGUSR1 the daemon and wait for a retained stats message with
    pred(stats_json) (the last one seen before is ignored)."""
    topic = bridge_topic("stats", daemon.host, daemon.base)
    n0 = sub.count(topic)
    daemon.signal(signal.SIGUSR1)
    state = {"i": n0}

    def scan(s):
        lst = s.by_topic.get(topic, [])
        while state["i"] < len(lst):
            m = lst[state["i"]]
            state["i"] += 1
            if pred(m.json()):
                return m
        return None
    try:
        return sub.wait(scan, timeout, "stats")
    except TestFailure:
        last = sub.last(topic)
        fail("no stats message on %s satisfying the condition within %.0fs;"
             " last: %s" % (topic, timeout * SLOW,
                            last.payload[:2000] if last else None))


def stats_until(sub, daemon, pred, timeout, what):
    """SIGUSR1 until a bridge/stats message satisfies pred (a counter
    change notifies nothing: ask again every 0.2 s, bounded)."""
    topic = bridge_topic("stats", daemon.host, daemon.base)
    end = time.monotonic() + timeout * SLOW
    last = None
    while True:
        mark = sub.mark(topic)
        daemon.signal(signal.SIGUSR1)
        m = sub.wait_for(lambda m: True, 10, topic=topic, since=mark,
                         what="stats after SIGUSR1")
        last = m.json()
        if pred(last):
            return last
        if time.monotonic() > end:
            fail("stats never showed %s within %.0fs; last totals: %s" %
                   (what, timeout * SLOW, last.get("totals")))
        time.sleep(0.2)


# ---------------------------------------------------------------- context

class Ctx:
    """Per-test resources: a temp dir and everything started in it."""

    def __init__(self, name, root):
        self.name = name
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.items = []
        self._n = 0

    def subdir(self, name):
        p = os.path.join(self.dir, name)
        os.makedirs(p, exist_ok=True)
        return p

    def register(self, obj):
        self.items.append(obj)

    # factories
    def mosquitto(self, **kw):
        return Mosquitto(self, **kw).start()

    def daemon(self, vms, port, **kw):
        return Daemon(self, vms=vms, port=port, **kw).start()

    def subscriber(self, port, **kw):
        return Subscriber(self, port, **kw).start()

    def sim(self, vms, **kw):
        return Sim(self, vms, **kw).start()

    def qemu_pair(self, **kw):
        return QemuPair(self, **kw).start()

    def finish(self):
        """Checks at the end of a passing test (daemon exit code, ...)."""
        for obj in self.items:
            if isinstance(obj, Daemon):
                obj.finish()

    def close(self):
        errs = []
        for obj in reversed(self.items):
            try:
                obj.close()
            except Exception as e:   # cleanup must go on
                errs.append("%s: %s" % (type(obj).__name__, e))
        for e in errs:
            print("cleanup error:", e)

    def dump_logs(self, n=40):
        for obj in self.items:
            for label, path in obj.logs():
                lines = tail_file(path, n)
                if lines:
                    print("----- %s (%s), last %d lines -----" %
                          (label, path, len(lines)))
                    sys.stdout.write("".join(lines))
        print("-----")


def main(*tests):
    """Runs the given test functions (all, or those named on the command
    line) and exits 0 (all passed), 1 (any failed) or 77 (all skipped)."""
    defined = [n for n, f in vars(sys.modules["__main__"]).items()
               if n.startswith("test_") and callable(f)]
    missing = sorted(set(defined) - set(t.__name__ for t in tests))
    if missing:
        # A test that is written but not listed would never run.
        print("FAIL: defined but not passed to main(): %s" %
              ", ".join(missing), flush=True)
        sys.exit(1)
    want = sys.argv[1:]
    unknown = [w for w in want if w not in [t.__name__ for t in tests]]
    if unknown:
        print("FAIL: no such test: %s" % ", ".join(unknown), flush=True)
        sys.exit(1)
    sel = [t for t in tests if not want or t.__name__ in want]
    script = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    root = tempfile.mkdtemp(prefix="q2m-%s-" % script.replace("test_", ""))
    print("temp dir: %s; build: %s%s" % (root, BUILD,
                                          " (sanitizers)" if SANITIZED
                                          else ""))
    npass = nfail = nskip = 0
    for t in sel:
        ctx = Ctx(t.__name__, root)
        print("=== %s" % t.__name__, flush=True)
        t0 = time.monotonic()
        status = "FAIL"
        interrupted = False
        try:
            t(ctx)
            ctx.finish()
            status = "pass"
        except Skip as e:
            status = "SKIP"
            print("SKIP: %s: %s" % (t.__name__, e), flush=True)
        except BaseException as e:
            traceback.print_exc(file=sys.stdout)
            sys.stdout.flush()
            interrupted = isinstance(e, (KeyboardInterrupt, SystemExit))
            try:
                ctx.dump_logs()
            except BaseException:
                pass
        finally:
            ctx.close()
        dt = time.monotonic() - t0
        if status == "pass":
            npass += 1
        elif status == "SKIP":
            nskip += 1
        else:
            nfail += 1
        print("--- %s %s (%.1fs)" % (status, t.__name__, dt), flush=True)
        if interrupted:
            break
    _kill_all_live()
    print("%d passed, %d failed, %d skipped" % (npass, nfail, nskip))
    if nfail:
        print("temp dir kept: %s" % root)
        sys.exit(1)
    shutil.rmtree(root, ignore_errors=True)
    if nskip and not npass:
        sys.exit(SKIP_EXIT)
    sys.exit(0)


# ---------------------------------------------------------------- payloads

EVENT_KEYS = ("schema", "event", "host", "vm", "mode", "reason", "time",
              "time_us", "seq", "bridge", "qemu")
STATE_KEYS = ("schema", "host", "vm", "mode", "last_mode", "reason", "qmp",
              "qemu", "colo_status", "updated_us", "last_exit",
              "heartbeat_unconfirmed")


def check_event(msg, vm, daemon, time_us=None, seq=None, mode=None,
                reason=None, qemu=None, host=HOST):
    """Checks a published colo_exit message against docs/CONTRACT.md;
    returns its JSON.  reason may be a tuple of allowed values."""
    check(msg.topic == event_topic(vm, host, daemon.base),
          "event on unexpected topic %s" % msg.topic)
    check(not msg.retain, "colo_exit event published retained: %r" % msg)
    e = msg.json()
    check(isinstance(e, dict), "event is not an object: %r" % e)
    missing = [k for k in EVENT_KEYS if k not in e]
    check(not missing, "event lacks %s: %r" % (missing, e))
    check_eq(e["schema"], 1, "event schema")
    check_eq(e["event"], "colo_exit", "event name")
    check_eq(e["host"], host, "event host")
    check_eq(e["vm"], vm, "event vm")
    check_eq(e["bridge"], daemon.bridge_id, "event bridge id")
    check("malformed" not in e, "well-formed event marked malformed: %r" % e)
    check("time_source" not in e,
          "event with a QEMU timestamp has time_source: %r" % e)
    check(isinstance(e["time_us"], int), "time_us not an integer: %r" % e)
    check_eq(e["time"], iso_time(e["time_us"]), "event time vs time_us")
    if time_us is not None:
        check_eq(e["time_us"], time_us, "event time_us (QEMU timestamp)")
    if seq is not None:
        check_eq(e["seq"], seq, "event seq")
    if mode is not None:
        check_eq(e["mode"], mode, "event mode")
    if reason is not None:
        allowed = reason if isinstance(reason, tuple) else (reason,)
        check(e["reason"] in allowed, "event reason: expected one of %r, "
              "got %r" % (allowed, e["reason"]))
    if qemu is not None:
        check_eq(e["qemu"], qemu, "event qemu version")
    return e


def check_state(msg, vm, host=HOST):
    """Common checks of a state message; returns its JSON."""
    st = msg.json()
    check(isinstance(st, dict), "state is not an object: %r" % st)
    missing = [k for k in STATE_KEYS if k not in st]
    check(not missing, "state lacks %s: %r" % (missing, st))
    check_eq(st["schema"], 1, "state schema")
    check_eq(st["host"], host, "state host")
    check_eq(st["vm"], vm, "state vm")
    check(st["qmp"] in ("connected", "disconnected"), "state qmp: %r" % st)
    check(st["colo_status"] in ("ok", "unsupported", "unknown"),
          "state colo_status: %r" % st)
    check(isinstance(st["updated_us"], int), "state updated_us: %r" % st)
    return st


def sim_k(e):
    """The simulator's event number k of a published event."""
    return e["time_us"] - SIM_EPOCH_US
