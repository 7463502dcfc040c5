#!/usr/bin/python3
"""Live demo of qmp2mqtt (what `make run` runs).

Starts, all private to one temp directory and nothing configured on the
machine: a mosquitto on a free loopback port (with a websockets listener
serving the live fleet page of web/dist when `make web` built it), two real QEMU COLO pairs
(TCG, -machine none, no disk, no guest; each VM with a second QMP socket
for the bridge), a bridge configuration (host "demo", VMs pair1-pri,
pair1-sec, pair2-pri, pair2-sec, remote takeover enabled with an HMAC key
file of mode 0600) and build/std/qmp2mqtt.  Every MQTT message under the
base topic is printed live (receive time, topic, compact payload).

Each VM names the other half of its pair as its peer, so the bridge
applies the pair rules (README "Pair rules").  Scenario, once all four
VMs are online and both pairs in COLO:
  (a) remote takeover of pair1-sec while its primary runs: refused
      (peer_alive: it would leave both halves running); then of pair1-pri:
      ok, and pair1-sec, which got an error exit, waits;
  (b) kill -9 of pair2's primary QEMU; pair2-sec reports COLO_EXIT (reason
      error) and the bridge sees pair2-pri's socket refuse connections
      (liveness "gone"); then remote takeover of pair2-sec with --expect
      secondary: ok.
Then a summary, a clean stop (SIGTERM to the bridge: its VMs and
bridge/state go offline) and exit 0.  --forever keeps everything running
after the scenario until Ctrl-C.  Every wait is bounded: on a failure the
demo says what failed, shows the end of the logs, cleans up and exits 1.

Uses tests/e2e/harness.py (process handling, broker, QEMU pairs, MQTT
subscriber) and Debian's python3-paho-mqtt (/usr/bin/python3).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "demo"
BASE = "qmp2mqtt"
CLIENT_ID = "qmp2mqtt-demo"
VMS = ("pair1-pri", "pair1-sec", "pair2-pri", "pair2-sec")
MODE = {"pri": "primary", "sec": "secondary"}
CTL_WAIT_S = 20


def parse_args():
    ap = argparse.ArgumentParser(
        prog="demo.py",
        description="qmp2mqtt live demo: a private mosquitto, two real QEMU "
        "COLO pairs and the bridge; prints every MQTT message, fails both "
        "pairs over (a remote takeover, then kill -9 of a primary followed "
        "by a remote takeover of its secondary), prints a summary and "
        "stops.",
        epilog="Exit status: 0 when the scenario completed, 1 when "
        "something failed (what failed is printed), 130 when interrupted "
        "before the end of the scenario.  Run by `make run` "
        "(DEMO_ARGS=--forever keeps it running).")
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "std"),
                    metavar="DIR",
                    help="build directory holding qmp2mqtt and qmp2mqtt-ctl "
                    "(default: build/std)")
    ap.add_argument("--forever", action="store_true",
                    help="after the scenario keep everything running (and "
                    "printing) until Ctrl-C")
    ap.add_argument("--color", choices=("auto", "always", "never"),
                    default="auto",
                    help="colour the output (auto: when stdout is a "
                    "terminal and NO_COLOR is not set)")
    ap.add_argument("--pace", type=float, default=1.0, metavar="SECONDS",
                    help="pause between the steps of the scenario so that "
                    "they can be followed on screen (default 1; 0: none)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp directory (configs, logs)")
    return ap.parse_args()


ARGS = parse_args()
BUILD = os.path.abspath(ARGS.build)
# harness.py reads the build directory when it is imported.
os.environ["QMP2MQTT_BUILD"] = BUILD
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness as h  # noqa: E402

CTL_BIN = os.path.join(BUILD, "qmp2mqtt-ctl")
SLOW = h.SLOW


class _SessionSubprocess:
    """subprocess as harness.py sees it, except that every child starts in
    a session of its own: a Ctrl-C in the terminal (SIGINT to the whole
    foreground process group) then reaches only this script, which stops
    the bridge first (so that its offline state is published while the
    broker is still up) and then everything else, instead of every process
    dying at once."""

    def __getattr__(self, name):
        return getattr(subprocess, name)

    @staticmethod
    def Popen(*a, **kw):
        kw.setdefault("start_new_session", True)
        return subprocess.Popen(*a, **kw)


h.subprocess = _SessionSubprocess()


def _on_hangup(sig, frame):
    # The terminal went away: unwind, so that the clean-up runs (the
    # children, in sessions of their own, get no SIGHUP).
    raise SystemExit("hangup")


signal.signal(signal.SIGHUP, _on_hangup)
# Ctrl-C stops the demo even when started with SIGINT ignored (a
# background job of a non-interactive shell).
signal.signal(signal.SIGINT, signal.default_int_handler)


# ---------------------------------------------------------------- output

if ARGS.color == "always":
    COLOR = True
elif ARGS.color == "never":
    COLOR = False
else:
    COLOR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def sgr(code, text):
    return "\033[%sm%s\033[0m" % (code, text) if COLOR else text


def dim(t):
    return sgr("2", t)


def bold(t):
    return sgr("1", t)


OUT = threading.Lock()      # one line at a time from paho's thread and ours
T_START = time.monotonic()


def out(*lines):
    with OUT:
        for ln in lines:
            sys.stdout.write(ln + "\n")
        sys.stdout.flush()


def pause():
    if ARGS.pace > 0:
        time.sleep(min(ARGS.pace, 10.0))


def say(text):
    """A step of the scenario."""
    out("", bold("==> " + text))


def note(text):
    out(dim("    " + text))


def good(text):
    out(sgr("32", "    ok: ") + text)


def harness_log(*a):
    # harness.py reports process starts and stops through log(): show them
    # as quiet notes rather than with its own timestamps.
    note("· " + " ".join(str(x) for x in a))


h.log = harness_log


def rel(path):
    """path as a user would type it from the current directory."""
    r = os.path.relpath(path)
    return path if r.startswith("..") else r


KIND_COLOR = {"event": "1;33", "state": "36", "result": "1;35",
              "cmd": "35", "bridge": "34"}


def format_msg(topic, payload, retain, wall):
    stamp = time.strftime("%H:%M:%S", time.localtime(wall)) + \
        ".%03d" % int((wall % 1) * 1000)
    parts = topic.split("/")
    # <base>/<host>/<vm>/<kind>[/...]
    if len(parts) >= 4 and parts[0] == BASE:
        vm, kind = parts[2], parts[3]
        head = dim("%s/%s/" % (parts[0], parts[1]))
        if vm == "bridge":
            kind = "bridge"
        col = KIND_COLOR.get(kind, "0")
        if kind == "availability":
            col = "32" if payload == b"online" else "31"
        t = head + bold(vm) + sgr(col, "/" + "/".join(parts[3:]))
    else:
        col = "0"
        t = topic
    try:
        o = json.loads(payload)
        body = json.dumps(o, separators=(",", ":"), ensure_ascii=False)
        if isinstance(o, dict) and o.get("event") == "colo_exit":
            body = sgr("1;33", body)
        elif isinstance(o, dict) and "status" in o and "id" in o:
            body = sgr("1;32" if o.get("status") == "ok" else "1;31", body)
    except ValueError:
        body = payload.decode("utf-8", "replace")
        if topic.endswith("/availability"):
            body = sgr(col, body)
    return "%s %s %s  %s" % (dim(stamp), "R" if retain else " ", t, body)


class LiveSubscriber(h.Subscriber):
    """harness.Subscriber (records everything, retain-as-published) that
    also prints each message as it arrives."""

    def _on_message(self, client, userdata, m):
        wall = time.time()
        h.Subscriber._on_message(self, client, userdata, m)
        out(format_msg(m.topic, bytes(m.payload), m.retain, wall))


# ---------------------------------------------------------------- the demo

class Failed(Exception):
    pass


def topic(vm, kind):
    return "%s/%s/%s/%s" % (BASE, HOST, vm, kind)


class Demo:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="qmp2mqtt-demo-")
        self.ctx = h.Ctx("demo", self.root)
        self.broker = None
        self.pairs = {}
        self.daemon = None
        self.sub = None
        self.ctl_runs = []      # (vm, exit status, result JSON or None)
        self.killed = set()

    # -- set-up ----------------------------------------------------------

    def prepare(self):
        """Creates (without starting) broker, pairs and the bridge config,
        so the commands can be printed first."""
        for tool, what in ((h.MOSQUITTO_BIN, "mosquitto"),
                           (h.QEMU_BIN, "qemu-system-x86")):
            if not h.which(tool):
                raise Failed("%s is not installed (`make run` installs it, "
                             "or: apt-get install %s)" % (tool, what))
        for b in (h.DAEMON_BIN, CTL_BIN):
            if not os.access(b, os.X_OK):
                raise Failed("%s is not built (run `make` first, or pass "
                             "--build DIR)" % b)
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError:
            raise Failed("python3-paho-mqtt is not available to %s (run the "
                         "demo with Debian's /usr/bin/python3; `make run` "
                         "installs the package)" % sys.executable)
        # The fleet page (web/, built by `make web`) from mosquitto itself:
        # a websockets listener with http_dir beside the plain one.
        self.web_port = None
        webdir = os.path.join(ROOT, "web", "dist")
        extra = ""
        if os.path.exists(os.path.join(webdir, "index.html")):
            self.web_port = h.free_port()
            extra = ("listener %d 127.0.0.1\nprotocol websockets\n"
                     "http_dir %s\n" % (self.web_port, webdir))
        self.broker = h.Mosquitto(self.ctx, extra=extra)
        for p in ("pair1", "pair2"):
            self.pairs[p] = h.QemuPair(self.ctx, name=p)
        self.keyfile = os.path.join(self.ctx.dir, "takeover.key")
        fd = os.open(self.keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                     0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(self.keyfile, 0o600)
        vms = []
        for p, pair in self.pairs.items():
            for side, other in (("pri", "sec"), ("sec", "pri")):
                vms.append({"name": "%s-%s" % (p, side),
                            "qmp": "unix:" + getattr(pair,
                                                     side + "_bridge"),
                            "peer": "%s/%s-%s" % (HOST, p, other)})
        d = h.Daemon(self.ctx, vms=vms, port=self.broker.port, name="bridge",
                     bridge={"host": HOST, "id": CLIENT_ID,
                             "backoff_min_ms": 100, "backoff_max_ms": 2000,
                             "status_interval_s": 5,
                             "stats_interval_s": 30},
                     mqtt={"client_id": CLIENT_ID, "keepalive": 10,
                           "base_topic": BASE})
        d.client_id = CLIENT_ID
        d.text = ("# qmp2mqtt configuration written by scripts/demo.py\n" +
                  d.text +
                  "takeover = %s;\n" % h._cfg_value(
                      {"enabled": True, "auth": "hmac",
                       "key_file": self.keyfile, "window_s": 30,
                       "min_interval_s": 10, "timeout_s": 10}))
        with open(d.conf, "w") as f:
            f.write(d.text)
        self.daemon = d
        self.conf = d.conf

    def ctl_argv(self, *args):
        return [CTL_BIN, "-c", self.conf] + list(args)

    def banner(self):
        ctl = rel(CTL_BIN)
        out(bold("qmp2mqtt live demo") + dim("  (build %s, temp dir %s)" %
                                              (rel(BUILD), self.root)),
            "",
            "Watch the bridge's messages yourself, from another terminal:",
            "    mosquitto_sub -h 127.0.0.1 -p %d -t '%s/#' -v"
            % (self.broker.port, BASE),
            ("The live fleet page, served by the broker (open it in a "
             "browser on this machine):" if self.web_port else
             "The fleet page was not built (make web): no page served."),
            ("    http://127.0.0.1:%d/" % self.web_port if self.web_port
             else ""),
            "Ask the bridge for a remote takeover, or read a VM's state:",
            "    %s -c %s takeover %s pair1-sec --wait %d"
            % (ctl, self.conf, HOST, CTL_WAIT_S),
            "    %s -c %s status %s pair1-pri" % (ctl, self.conf, HOST),
            dim("(they work while the demo runs; add DEMO_ARGS=--forever to "
                "`make run`, or --forever here, to keep it running)"),
            dim("bridge config %s, bridge log %s" %
                (self.conf, self.daemon.logpath)),
            dim("Messages below: receive time, R if retained, topic, "
                "payload."))

    def start(self):
        say("starting mosquitto, two QEMU COLO pairs and the bridge")
        self.broker.start()
        self.sub = LiveSubscriber(self.ctx, self.broker.port,
                                  topics=(BASE + "/#",))
        self.sub.start()
        for p, pair in self.pairs.items():
            pair.start()
        self.daemon.start()

    # -- bounded waits -----------------------------------------------------

    def wait(self, pred, timeout, what):
        """Waits (bounded) until pred(list of messages) is truthy; fails at
        once if the bridge died."""
        end = time.monotonic() + timeout * SLOW
        sub = self.sub
        with sub.cond:
            while True:
                r = pred(sub.msgs)
                if r:
                    return r
                if self.daemon.proc is not None and \
                        not self.daemon.alive():
                    raise Failed("the bridge exited (status %s) while "
                                 "waiting for %s" %
                                 (self.daemon.proc.returncode, what))
                left = end - time.monotonic()
                if left <= 0:
                    raise Failed("no %s within %.0f s" %
                                 (what, timeout * SLOW))
                sub.cond.wait(min(left, 0.5))

    def last_json(self, msgs, t):
        for m in reversed(msgs):
            if m.topic == t:
                try:
                    return json.loads(m.payload)
                except ValueError:
                    return None
        return None

    def wait_state(self, vm, pred, timeout, what):
        t = topic(vm, "state")
        return self.wait(lambda msgs: (lambda s: s if isinstance(s, dict)
                                       and pred(s) else None)(
                                           self.last_json(msgs, t)),
                         timeout, what)

    def wait_event(self, vm, timeout, what, reason=None):
        t = topic(vm, "event/colo_exit")

        def pred(msgs):
            for m in msgs:
                if m.topic == t:
                    e = json.loads(m.payload)
                    if reason is None or e.get("reason") in reason:
                        return e
            return None
        return self.wait(pred, timeout, what)

    def wait_ready(self):
        say("waiting until all four VMs are online and both pairs in COLO")
        for vm in VMS:
            t = topic(vm, "availability")
            self.wait(lambda msgs, t=t: any(
                m.topic == t and m.payload == b"online" for m in msgs),
                30, "availability online of %s" % vm)
        for vm in VMS:
            mode = MODE[vm.split("-")[1]]
            self.wait_state(vm, lambda s, mode=mode: s.get("mode") == mode
                            and s.get("qmp") == "connected", 30,
                            "state of %s with mode %s" % (vm, mode))
        # Takeover requests only reach the bridge once its command
        # subscription is acknowledged (mosquitto logs it).
        try:
            self.broker.wait_log(r"Sending SUBACK to %s\b" % CLIENT_ID, 15)
        except h.TestFailure as e:
            raise Failed("the bridge's command subscription: %s" % e)
        good("4 VMs online; pair1 and pair2 in COLO (primary/secondary)")

    # -- steps -------------------------------------------------------------

    def run_ctl(self, vm, *extra, refused=None):
        """qmp2mqtt-ctl takeover; refused: the reason the bridge must
        refuse it with (exit status 1), or None for a success."""
        argv = self.ctl_argv("takeover", HOST, vm, "--wait",
                             str(CTL_WAIT_S), *extra)
        shown = [rel(CTL_BIN)] + argv[1:]
        out("    $ " + " ".join(shown))
        limit = (CTL_WAIT_S + 15) * SLOW
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        end = time.monotonic() + limit
        why = None
        try:
            while True:
                try:
                    stdout, stderr = p.communicate(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if not self.daemon.alive():
                    why = "the bridge exited (status %s) while qmp2mqtt-ctl " \
                          "waited" % self.daemon.proc.returncode
                elif time.monotonic() > end:
                    why = "qmp2mqtt-ctl did not exit within %.0f s" % limit
                if why:
                    p.kill()
                    stdout, stderr = p.communicate()
                    break
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        text = stdout.decode("utf-8", "replace").rstrip("\n")
        err = stderr.decode("utf-8", "replace").rstrip("\n")
        lines = ["    | " + ln for ln in text.splitlines()]
        lines += ["    ! " + ln for ln in err.splitlines()]
        if why:
            out(*lines)
            self.ctl_runs.append((vm, None, None))
            raise Failed(why + " (killed it)")
        st = "exit status %d" % p.returncode
        lines.append("    " + (sgr("32", st) if p.returncode == 0
                               else sgr("31", st)))
        out(*lines)
        try:
            res = json.loads(text)
        except ValueError:
            res = None
        self.ctl_runs.append((vm, p.returncode, res))
        if refused is not None:
            if p.returncode != 1 or not isinstance(res, dict) or \
                    res.get("reason") != refused:
                raise Failed("qmp2mqtt-ctl takeover %s %s: expected a "
                             "refusal (%s), got exit %d" %
                             (HOST, vm, refused, p.returncode))
        elif p.returncode != 0:
            raise Failed("qmp2mqtt-ctl takeover %s %s exited %d" %
                         (HOST, vm, p.returncode))
        return res

    def step_a(self):
        say("(a) remote takeover of pair1-sec while pair1-pri runs")
        note("qmp2mqtt-ctl signs the request with the key file, publishes it "
             "on %s, waits for the result" % topic("pair1-sec",
                                                   "cmd/takeover"))
        note("a heartbeat to a secondary whose primary lives leaves both "
             "running: the bridge refuses")
        self.run_ctl("pair1-sec", refused="peer_alive")
        good("refused (peer_alive); QEMU was not touched")
        pause()
        say("(a) remote takeover of pair1-pri")
        self.run_ctl("pair1-pri")
        e = self.wait_event("pair1-pri", 15, "COLO_EXIT of pair1-pri")
        good("pair1-pri: COLO_EXIT mode %s reason %s" %
             (e.get("mode"), e.get("reason")))
        e = self.wait_event("pair1-sec", 15,
                            "COLO_EXIT of pair1-sec (its peer left COLO)")
        good("pair1-sec: COLO_EXIT mode %s reason %s (its peer took over; "
             "it waits, and will be refused peer_took_over)" %
             (e.get("mode"), e.get("reason")))
        self.wait_state("pair1-pri", lambda s: s.get("mode") == "none", 15,
                        "state of pair1-pri with mode none")
        good("pair1-pri runs alone now (state mode none)")

    def step_b(self):
        say("(b) kill -9 of pair2's primary QEMU")
        pair = self.pairs["pair2"]
        note("kill -9 %d (pair2-pri)" % pair.pri_pid)
        pair.kill("pri")
        self.killed.add("pair2-pri")
        e = self.wait_event("pair2-sec", 15,
                            "COLO_EXIT of pair2-sec with reason error",
                            reason=("error",))
        good("pair2-sec: COLO_EXIT mode %s reason %s; it waits for a "
             "decision (still mode secondary)" % (e.get("mode"),
                                                  e.get("reason")))
        t = topic("pair2-pri", "availability")
        self.wait(lambda msgs: any(m.topic == t and m.payload == b"offline"
                                   for m in msgs), 15,
                  "availability offline of pair2-pri")
        self.wait_state("pair2-sec", lambda s: (s.get("peer") or {})
                        .get("liveness") == "gone", 15,
                        "pair2-sec's peer with liveness gone")
        good("pair2-pri offline; its socket refuses connections: the "
             "bridge publishes liveness \"gone\", proof that it is dead")
        pause()
        say("(b) remote takeover of pair2-sec, only if it is still "
            "secondary")
        self.run_ctl("pair2-sec", "--expect", "secondary")
        self.wait_state("pair2-sec", lambda s: s.get("mode") == "none", 15,
                        "state of pair2-sec with mode none")
        good("pair2-sec runs alone now (state mode none)")

    def summary(self):
        msgs = self.sub.all()
        say("summary")
        events = [json.loads(m.payload) for m in msgs
                  if m.topic.endswith("/event/colo_exit")]
        out("    %d messages received, %d COLO_EXIT events:" %
            (len(msgs), len(events)))
        for e in events:
            out("      %-10s mode %-9s reason %-8s seq %s  at %s" %
                (e.get("vm"), e.get("mode"), e.get("reason"), e.get("seq"),
                 e.get("time")))
        out("    takeovers through qmp2mqtt-ctl:")
        for vm, rc, res in self.ctl_runs:
            if isinstance(res, dict):
                colo = res.get("colo") or {}
                out("      %-10s %s (%s), colo mode %s last_mode %s; "
                    "ctl exit %s" % (vm, res.get("status"),
                                     res.get("reason"), colo.get("mode"),
                                     colo.get("last_mode"), rc))
            else:
                out("      %-10s no result; ctl exit %s" % (vm, rc))
        out("    last retained state per VM:")
        for vm in VMS:
            s = self.last_json(msgs, topic(vm, "state")) or {}
            extra = ""
            if vm in self.killed:
                extra = "  (QEMU killed)"
            elif s.get("mode") in ("primary", "secondary") and \
                    (s.get("peer") or {}).get("mode") == "none":
                extra = "  (its peer took over: it waits, never told to)"
            elif s.get("mode") in ("primary", "secondary") and \
                    (s.get("last_exit") or {}).get("reason") == "error":
                extra = "  (peer gone: waits for a takeover)"
            out("      %-10s mode %-9s last_mode %-9s qmp %s%s" %
                (vm, s.get("mode"), s.get("last_mode"), s.get("qmp"),
                 extra))

    def forever(self):
        say("running until Ctrl-C (the commands printed at the start work "
            "now)")
        note("pair1-sec still waits in COLO, but its peer took over: try  "
             " %s -c %s takeover %s pair1-sec   (refused: peer_took_over)" %
             (rel(CTL_BIN), self.conf, HOST))
        while True:
            if not self.daemon.alive():
                raise Failed("the bridge exited (status %s)" %
                             self.daemon.proc.returncode)
            time.sleep(0.5)

    def stop_bridge(self):
        say("stopping the bridge (SIGTERM): it publishes its VMs and "
            "bridge/state offline")
        t = "%s/%s/bridge/state" % (BASE, HOST)
        n0 = self.sub.mark()
        rc, slow = self.daemon.proc.stop(15 * SLOW)
        self.daemon.expect_exit = True
        if slow:
            raise Failed("the bridge did not exit within %.0f s of SIGTERM "
                         "(killed)" % (15 * SLOW))
        self.wait(lambda msgs: any(
            m.topic == t and b'"offline"' in m.payload for m in msgs[n0:]),
            5, "bridge/state offline")
        if rc != 0:
            raise Failed("the bridge exited with status %s on SIGTERM" % rc)
        good("bridge exited with status 0")

    # -- failure and cleanup -------------------------------------------------

    def show_logs(self):
        items = []
        if self.daemon is not None and self.daemon.proc is not None:
            items.append(("bridge", self.daemon.logpath, 30))
        for p, pair in self.pairs.items():
            for label, path in pair.logs():
                items.append(("%s %s" % (p, label), path, 8))
        if self.broker is not None and self.broker.proc is not None:
            items.append(("mosquitto", self.broker.logpath, 10))
        for label, path, n in items:
            lines = h.tail_file(path, n)
            if lines:
                out(dim("----- %s: last %d lines of %s" %
                        (label, len(lines), path)))
                out(*[ln.rstrip("\n") for ln in lines])

    def close(self, keep):
        try:
            self.ctx.close()
        except Exception as e:
            out("cleanup: %s" % e)
        h._kill_all_live()
        if keep:
            out(dim("temp dir kept: %s" % self.root))
        else:
            import shutil
            shutil.rmtree(self.root, ignore_errors=True)


def main():
    demo = Demo()
    status = 1
    stage = "set-up"
    try:
        demo.prepare()
        demo.banner()
        stage = "start"
        demo.start()
        stage = "scenario"
        demo.wait_ready()
        pause()
        demo.step_a()
        pause()
        demo.step_b()
        pause()
        demo.summary()
        if ARGS.forever:
            stage = "forever"
            try:
                demo.forever()
            except (KeyboardInterrupt, SystemExit):
                out("")
                note("interrupted: stopping")
        stage = "stop"
        demo.stop_bridge()
        status = 0
    except (Failed, h.TestFailure, h.Skip) as e:
        out("", sgr("1;31", "demo FAILED (%s): %s" % (stage, e)))
        demo.show_logs()
    except (KeyboardInterrupt, SystemExit) as e:
        out("", sgr("1;31", "demo interrupted (%s)%s" %
                    (stage, ": %s" % e if str(e) else "")))
        status = 130
    except Exception as e:
        import traceback
        traceback.print_exc()
        out("", sgr("1;31", "demo FAILED (%s): %s: %s" %
                    (stage, type(e).__name__, e)))
        demo.show_logs()
    finally:
        # Ctrl-C again during the clean-up must not leave QEMUs behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        demo.close(keep=ARGS.keep or status == 1)
    if status == 0:
        out("", sgr("1;32", "demo finished OK") +
            dim(" (%.1f s)" % (time.monotonic() - T_START)))
    return status


if __name__ == "__main__":
    sys.exit(main())
