#!/usr/bin/python3
"""qmp2mqtt benchmark (make bench): see tests/bench/README.md.

One run, one table.  Phases, each against its own private mosquitto on a
free loopback port, each bounded in time and count:

  tput     100 VMs x 1 000 COLO_EXIT (qmpsim burst, as fast as read) through
           the bridge at QoS 1 to one C subscriber; the same count through
           a bare Paho MQTTAsync publisher (pahopub) as the reference row
  latency  2 000 ev/s over 100 VMs for 10 s (qmpsim --stamp-now, burst
           with RATE): QEMU timestamp -> subscriber receive time; the same
           rate through pahopub as a reference
  scale    1 000, 5 000, 10 000 QMP sockets: bridge start -> all handshakes
           done, -> all availability online at a subscriber; RSS, fds, CPU
  takeover signed request -> x-colo-lost-heartbeat at the simulator ->
           colo_exit at the subscriber, 50 VMs once each

Prints the table (and writes it to --out).  Asserts nothing: the exit
status is 0 when every phase ran, 1 when one could not run at all.
Stdlib only, plus the e2e harness (process handling and config rendering).
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SIM_EPOCH_US = 1700000000000000
HOST = "hv1"
BASE = "qmp2mqtt"
BRIDGE_ID = "bench-bridge"
CLK_TCK = os.sysconf("SC_CLK_TCK")

h = None            # the e2e harness, imported once --build is known
BUILD = None
TOOLS = None


def log(*a):
    print("[%7.2f]" % (time.monotonic() - T0), *a, flush=True)


T0 = time.monotonic()


class BenchError(Exception):
    pass


class Deadline(BenchError):
    pass


# ------------------------------------------------------------ /proc

def cpu_ticks(pid):
    """utime + stime of a process (all threads), in clock ticks."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])   # fields 14 and 15 of stat


def cpu_us(pid):
    t = cpu_ticks(pid)
    return None if t is None else t * 1000000 // CLK_TCK


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    return out


def rss_kib(pid, key="VmRSS"):
    v = proc_status(pid).get(key, "0 kB")
    return int(v.split()[0])


def nfds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def wait_cpu_quiet(pid, quiet_s=0.3, limit_s=8.0):
    """Waits until pid used no CPU tick for quiet_s (bounded)."""
    end = time.monotonic() + limit_s
    last, since = cpu_ticks(pid), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        t = cpu_ticks(pid)
        if t != last:
            last, since = t, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return True
    return False


# ------------------------------------------------------------ stats

# Kernel work per message: how often a process is switched out (mostly a
# thread going to sleep, to be woken again), read from /proc for the bridge
# and the peers (voluntary + involuntary context switches of every thread)
# and from getrusage() by the publishers themselves: free, so it is always
# measured.  With --perf also how many system calls it makes, counted by
# `perf stat` on the raw_syscalls tracepoint: a probe on every system call,
# which inflates the CPU rows of that run by a few µs per message.
SYSC_EVENTS = "raw_syscalls:sys_enter"
PERF_STAT = False       # --perf


def proc_csw(pid):
    """Context switches of all of pid's threads so far, or None."""
    n = 0
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for t in tids:
        try:
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches",
                                        "nonvoluntary_ctxt_switches")):
                        n += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return n


def sysc_usable():
    global _SYSC_OK
    if _SYSC_OK is None and not PERF_STAT:
        _SYSC_OK = False
    if _SYSC_OK is None:
        try:
            r = subprocess.run(["perf", "stat", "-x,", "-e", SYSC_EVENTS,
                                "--", "true"], capture_output=True,
                               timeout=20)
            _SYSC_OK = r.returncode == 0 and b"not supported" not in \
                r.stderr and b"<not counted>" not in r.stderr
        except (OSError, subprocess.TimeoutExpired):
            _SYSC_OK = False
    return _SYSC_OK


_SYSC_OK = None


def sysc_wrap(argv, out):
    """argv run under perf stat (counts written to out), or argv itself."""
    if not sysc_usable():
        return argv
    return ["perf", "stat", "-x,", "-e", SYSC_EVENTS, "-o", out, "--"] + argv


def sysc_read(out):
    """{"syscalls": n} from a perf stat -x, file, or {}."""
    res = {}
    try:
        with open(out) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) < 3 or not parts[0].isdigit():
                    continue
                if parts[2].startswith("raw_syscalls:sys_enter"):
                    res["syscalls"] = int(parts[0])
    except OSError:
        pass
    return res


class SyscCount:
    """Context switches of a running process (all its threads) from
    start() to stop(), and with --perf its system calls (perf stat)."""

    def __init__(self, d, name, pid):
        self.out = os.path.join(d, name + ".perfstat")
        self.pid = pid
        self.p = None
        if sysc_usable():
            self.p = h.Proc("perf-stat", ["perf", "stat", "-x,", "-e",
                                          SYSC_EVENTS, "-o", self.out, "-p",
                                          str(pid)],
                            os.path.join(d, name + ".perfstat.err"))
            time.sleep(0.3)     # perf attaches to every thread
        self.csw0 = proc_csw(pid)

    def stop(self):
        res = {}
        c = proc_csw(self.pid)
        if c is not None and self.csw0 is not None:
            res["csw"] = c - self.csw0
        if self.p is not None:
            self.p.signal(signal.SIGINT)
            if self.p.wait(15) is None:
                self.p.kill()
            self.p.kill()
            res.update(sysc_read(self.out))
        return res


def fmt_sysc(c):
    """ "csw [syscalls]" per message, or raises KeyError (a "–" cell)."""
    if "syscalls" in c:
        return "%.2f [%.2f]" % (c["csw"], c["syscalls"])
    return "%.2f" % c["csw"]


def per(counts, n):
    """counts ({"syscalls", "csw"}) divided by n messages."""
    return {k: v / max(1, n) for k, v in counts.items()}


def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1,
                   int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def fmt_int(n):
    return "{:,}".format(int(round(n))).replace(",", " ")


def fmt_ms(us):
    return "%.2f" % (us / 1000.0)


# ------------------------------------------------------------ processes

class Broker:
    """A private mosquitto on 127.0.0.1:free port, quiet log (a Python
    reader of its per-message log would compete for the 2 cores)."""

    def __init__(self, d):
        self.port = h.free_port()
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.conf = os.path.join(d, "mosquitto.conf")
        self.logpath = os.path.join(d, "mosquitto.log")
        lines = ["listener %d 127.0.0.1" % self.port,
                 "allow_anonymous true",
                 "set_tcp_nodelay true",
                 "max_queued_messages 1000000",
                 "max_inflight_messages 0",
                 "persistence false",
                 "log_dest file %s" % self.logpath,
                 "log_type error", "log_type warning", "log_type notice",
                 "log_type subscribe",
                 "log_timestamp true"]
        if os.geteuid() == 0:
            lines.append("user root")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = h.Proc("mosquitto", ["mosquitto", "-c", self.conf],
                           os.path.join(d, "mosquitto.out"))
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if not self.proc.alive():
                raise BenchError("mosquitto exited: %s" %
                                 "".join(h.tail_file(self.logpath)))
            if h.port_accepts(self.port):
                return
            time.sleep(0.02)
        raise BenchError("mosquitto did not accept on port %d" % self.port)

    @property
    def pid(self):
        return self.proc.pid

    def wait_log(self, needle, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                with open(self.logpath, errors="replace") as f:
                    if needle in f.read():
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def close(self):
        self.proc.kill()


class Sim:
    """qmpsim over pipes.  stdout is read in chunks by one thread (cheap
    even for 100 000 "recv" lines); each chunk is stamped with the wall
    clock when read.  Keeps: answers (ok/err lines), the time of each
    "recv VM x-colo-lost-heartbeat" line."""

    def __init__(self, d, n, sockdir, args=()):
        os.makedirs(d, exist_ok=True)
        if os.path.isdir(sockdir):
            shutil.rmtree(sockdir, ignore_errors=True)
        os.makedirs(sockdir)
        self.n = n
        self.sockdir = sockdir
        self.logpath = os.path.join(d, "qmpsim.out")
        argv = [os.path.join(BUILD, "qmpsim"), "--dir", sockdir,
                "--vms", str(n)] + list(args)
        self.proc = h.Proc("qmpsim", argv, os.path.join(d, "qmpsim.err"),
                           stdin=subprocess.PIPE, stdout_pipe=True)
        self.cond = threading.Condition()
        self.answers = []           # (wall time, line)
        self.heartbeats = {}        # vm -> wall time of the recv line
        self.listening = False
        self.eof = False
        self.t = threading.Thread(target=self._reader, daemon=True)
        self.t.start()
        end = time.monotonic() + 60
        with self.cond:
            while not self.listening:
                if self.eof or time.monotonic() > end:
                    raise BenchError("qmpsim did not start: %s" %
                                     "".join(h.tail_file(
                                         os.path.join(d, "qmpsim.err"))))
                self.cond.wait(0.2)

    @property
    def pid(self):
        return self.proc.pid

    def _reader(self):
        fd = self.proc.p.stdout.fileno()
        carry = b""
        with open(self.logpath, "ab") as logf:
            while True:
                try:
                    data = os.read(fd, 1 << 16)
                except OSError:
                    break
                t = time.time()
                if not data:
                    break
                logf.write(data)
                lines = (carry + data).split(b"\n")
                carry = lines.pop()
                ans, hbs, lst = [], [], False
                for ln in lines:
                    ln = ln.rstrip(b"\r")
                    if ln.startswith(b"ok ") or ln.startswith(b"err "):
                        ans.append((t, ln.decode("utf-8", "replace")
                                    .rstrip("\r")))
                    elif ln.startswith(b"recv ") and \
                            ln.endswith(b" x-colo-lost-heartbeat"):
                        hbs.append(ln.split()[1].decode())
                    elif ln.startswith(b"listening "):
                        lst = True
                if ans or hbs or lst:
                    with self.cond:
                        self.answers.extend(ans)
                        for vm in hbs:
                            self.heartbeats.setdefault(vm, t)
                        self.listening = self.listening or lst
                        self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def send(self, line):
        try:
            self.proc.p.stdin.write((line + "\n").encode())
            self.proc.p.stdin.flush()
        except OSError as e:
            raise BenchError("qmpsim stdin: %s" % e)

    def answer(self, timeout):
        """The next answer line: (wall time, line)."""
        end = time.monotonic() + timeout
        with self.cond:
            while not self.answers:
                if self.eof:
                    raise BenchError("qmpsim exited")
                left = end - time.monotonic()
                if left <= 0:
                    raise BenchError("qmpsim: no answer within %.0fs" %
                                     timeout)
                self.cond.wait(min(left, 0.5))
            return self.answers.pop(0)

    def cmd(self, line, timeout=30.0, check=True):
        self.send(line)
        t, ans = self.answer(timeout)
        if check and not ans.startswith("ok"):
            raise BenchError("qmpsim %r -> %r" % (line, ans))
        return t, ans

    def close(self):
        try:
            self.send("quit")
        except BenchError:
            pass
        if self.proc.wait(3) is None:
            self.proc.kill()
        self.proc.kill()
        shutil.rmtree(self.sockdir, ignore_errors=True)


class Sub:
    """BUILD/bench/sub: records every message; stops by itself."""

    def __init__(self, d, name, port, filters, n, count_suffix, total_s,
                 idle_s=5.0, linger_ms=300):
        self.out = os.path.join(d, name + ".tsv")
        argv = [os.path.join(TOOLS, "sub"), "-p", str(port), "-n", str(n),
                "-c", count_suffix, "-T", str(total_s), "-i", str(idle_s),
                "-l", str(linger_ms), "-o", self.out]
        for f in filters:
            argv += ["-t", f]
        self.proc = h.Proc("sub", argv, os.path.join(d, name + ".err"),
                           stdin=subprocess.PIPE, stdout_pipe=True)
        self.total_s = total_s
        line = self.proc.p.stdout.readline().decode().strip()
        if line != "subscribed":
            raise BenchError("subscriber: %r %s" % (
                line, "".join(h.tail_file(self.proc.logpath))))

    @property
    def pid(self):
        return self.proc.pid

    def wait(self):
        """Waits for the end (bounded by its own -T); returns its summary
        line and the records."""
        # Not communicate(): closing its stdin would stop it at once.
        if self.proc.wait(self.total_s + 15) is None:
            self.proc.kill()
            raise BenchError("subscriber did not stop")
        outs = self.proc.p.stdout.read()
        self.proc.kill()        # reaps, closes the log
        summary = outs.decode().strip().splitlines()
        recs = []
        with open(self.out) as f:
            for line in f:
                p = line.rstrip("\n").split("\t")
                recs.append((int(p[0]), int(p[1]), int(p[2]), p[3], p[4],
                             p[5], int(p[6]), int(p[7])))
        return (summary[-1] if summary else ""), recs

    def close(self):
        self.proc.kill()


def start_bridge(ctx, vms, port, extra="", bridge=None):
    b = {"id": BRIDGE_ID}
    b.update(bridge or {})
    d = h.Daemon(ctx, vms=vms, port=port, bridge=b, mqtt=MQTT_OVERRIDES,
                 verbose=False, name="bridge")
    if extra:
        d.text += extra
        with open(d.conf, "w") as f:
            f.write(d.text)
    return d


PEERS = ("py", "node")
MQTT_OVERRIDES = {}     # --inflight: the bridge's mqtt.inflight_max
PEER_NAMES = {"bridge": "qmp2mqtt", "py": "Python peer (paho-mqtt)",
              "node": "Node.js peer (mqtt.js)", "raw": "library-free",
              "ref": "bare Paho"}


class Peer:
    """A peer bridge (tests/bench/peer.py or node/peer.js) over the same
    QMP sockets: the bridge a user would write instead."""

    def __init__(self, ctx, kind, vms, port):
        self.kind = kind
        lst = os.path.join(ctx.dir, "peer-%s.vms" % kind)
        with open(lst, "w") as f:
            f.write("\n".join("%s=%s" % (n, a[len("unix:"):])
                              for n, a in vms) + "\n")
        opts = ["-p", str(port), "-H", HOST, "-b", BASE, "-B", BRIDGE_ID,
                "@" + lst]
        if kind == "py":
            argv = ["/usr/bin/python3", os.path.join(HERE, "peer.py")] + opts
        else:
            argv = ["node", os.path.join(HERE, "node", "peer.js")] + opts
        self.proc = h.Proc("peer-" + kind, argv,
                           os.path.join(ctx.dir, "peer-%s.log" % kind))

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        self.proc.signal(sig)

    def close(self):
        self.proc.kill()


def start_target(ctx, kind, vms, port, extra=""):
    """The bridge (kind "bridge") or a peer, started."""
    if kind == "bridge":
        return start_bridge(ctx, vms, port, extra=extra).start()
    p = Peer(ctx, kind, vms, port)
    ctx.register(p)
    return p


def run_pub(tool, d, name, port, n, rate, window, timeout_s):
    """Runs a publisher (rawpub or pahopub: same command line and output)
    to its end.  Returns (its "done" line's counters, with "sysc": its
    kernel work), its pid."""
    argv = [os.path.join(TOOLS, tool), "-p", str(port), "-n", str(n),
            "-V", "100", "-w", str(window), "-H", HOST, "-B", BRIDGE_ID,
            "-b", BASE, "-T", str(timeout_s)]
    if rate:
        argv += ["-r", str(rate)]
    sc = os.path.join(d, name + ".perfstat")
    p = h.Proc(tool, sysc_wrap(argv, sc), os.path.join(d, name + ".err"),
               stdout_pipe=True)
    try:
        outs, _ = p.p.communicate(timeout=timeout_s + 20)
    except subprocess.TimeoutExpired:
        p.kill()
        raise BenchError("%s did not stop" % tool)
    p.kill()
    line = outs.decode().strip().splitlines()
    line = line[-1] if line else ""
    kv = dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
    res = {k: int(v) for k, v in kv.items()}
    res["sysc"] = sysc_read(sc)
    if "csw" in res:
        res["sysc"]["csw"] = res["csw"]
    return res, p.pid


def run_rawpub(d, name, port, n, rate=None, window=1000, timeout_s=120):
    """The library-free publisher (rawpub)."""
    return run_pub("rawpub", d, name, port, n, rate, window, timeout_s)


def bridge_stats(port, daemon, timeout=10.0):
    """SIGUSR1, then the bridge/stats message published after it."""
    import paho.mqtt.client as mqtt
    topic = "%s/%s/bridge/stats" % (BASE, HOST)
    got = []
    cond = threading.Condition()
    c = mqtt.Client(client_id="bench-stats-%d" % os.getpid())

    def on_msg(cl, ud, m):
        with cond:
            got.append(m)
            cond.notify_all()
    c.on_message = on_msg
    c.connect("127.0.0.1", port, 10)
    c.subscribe(topic, 1)
    c.loop_start()
    try:
        # The retained one comes first (if any): let it arrive.
        end = time.monotonic() + 1.0
        with cond:
            while not got and time.monotonic() < end:
                cond.wait(0.05)
            n0 = len(got)
        daemon.signal(signal.SIGUSR1)
        end = time.monotonic() + timeout
        with cond:
            while len(got) <= n0 and time.monotonic() < end:
                cond.wait(0.05)
            if len(got) <= n0:
                return None
            return json.loads(got[-1].payload)
    finally:
        c.loop_stop()
        c.disconnect()


def sim_count(sim):
    """qmpsim's `count all`: {'heartbeats', 'commands', 'events', ...}"""
    try:
        _, ans = sim.cmd("count all", timeout=10)
    except BenchError:
        return {}
    return {k: int(v) for k, v in
            (x.split("=", 1) for x in ans.split()[2:] if "=" in x)}


def kv(line):
    """{'k': 'v'} of the k=v words of a summary line."""
    return dict(x.split("=", 1) for x in line.split() if "=" in x)


def segs_out(pid, port):
    """TCP segments a process sent to the broker's port (ss -tinp), or
    None."""
    try:
        out = subprocess.run(["ss", "-tinpH", "dst", "127.0.0.1:%d" % port],
                             capture_output=True, timeout=10
                             ).stdout.decode().splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return None
    for i, ln in enumerate(out):
        if "pid=%d," % pid in ln:
            for x in " ".join(out[i:i + 2]).split():
                if x.startswith("segs_out:"):
                    return int(x[9:])
    return None


def cpu_steal():
    """(steal, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[7] if len(v) > 7 else 0), sum(v[:8])


def run_pahopub(d, name, port, n, rate=None, window=200, timeout_s=120):
    """The bare Paho publisher (pahopub)."""
    return run_pub("pahopub", d, name, port, n, rate, window, timeout_s)


# ------------------------------------------------------------ analysis

def analyse_events(recs, vms, per_vm, sim_k=True):
    """recs of event/colo_exit: counts, loss and duplicates by (vm, seq)
    and by time_us, out-of-order, receive-time span."""
    ev = [r for r in recs if r[4] == "event/colo_exit"]
    seen, seen_t = set(), set()
    dups = dups_t = ooo = 0
    last = {}
    for r in ev:
        key = (r[3], r[1])
        if key in seen:
            dups += 1
        seen.add(key)
        kt = (r[3], r[2])
        if kt in seen_t:
            dups_t += 1
        seen_t.add(kt)
        if r[1] <= last.get(r[3], 0):
            ooo += 1
        last[r[3]] = max(r[1], last.get(r[3], 0))
    expected = set(("vm%d" % i, s) for i in range(1, vms + 1)
                   for s in range(1, per_vm + 1))
    lost = len(expected - seen)
    lost_t = None
    if sim_k:
        expected_t = set(("vm%d" % i, SIM_EPOCH_US + s)
                         for i in range(1, vms + 1)
                         for s in range(1, per_vm + 1))
        lost_t = len(expected_t - seen_t)
    ts = sorted(r[0] for r in ev)
    lens = [r[7] for r in ev]
    return {"n": len(ev), "unique": len(seen), "lost": lost,
            "lost_t": lost_t, "dups": dups, "dups_t": dups_t, "ooo": ooo,
            "t_first": ts[0] if ts else None,
            "t_last": ts[-1] if ts else None,
            "bytes": (sum(lens) / len(lens)) if lens else 0,
            "lat": sorted(r[0] - r[2] for r in ev)}


# ------------------------------------------------------------ phases

class Bench:
    def __init__(self, args):
        self.a = args
        self.run = args.run_dir
        self.shm = "/dev/shm/q2m-bench-%d" % os.getpid()
        self.res = {}
        self.notes = []
        self.errors = []
        self.n_ctx = 0
        self.expired = False

    def ctx(self, name):
        self.n_ctx += 1
        return h.Ctx("%02d-%s" % (self.n_ctx, name), self.run)

    # ---- (1) + (5): throughput
    def tput_ref(self, i, raw=False):
        ctx = self.ctx("tput-%s%d" % ("raw" if raw else "ref", i))
        try:
            br = Broker(ctx.subdir("broker"))
            ctx.register(br)
            n = self.a.vms * self.a.events
            sub = Sub(ctx.dir, "sub", br.port,
                      ["%s/%s/+/event/colo_exit" % (BASE, HOST)], n,
                      "/event/colo_exit", total_s=90)
            ctx.register(sub)
            b0 = cpu_us(br.pid)
            t0 = time.time()
            if raw:
                res, pid = run_rawpub(ctx.dir, "rawpub", br.port, n,
                                      window=self.a.raw_window)
            else:
                res, pid = run_pahopub(ctx.dir, "pahopub", br.port, n,
                                       window=self.a.window)
            b1 = cpu_us(br.pid)
            summary, recs = sub.wait()
            a = analyse_events(recs, self.a.vms, self.a.events, sim_k=False)
            a["rate"] = (a["n"] - 1) / ((a["t_last"] - a["t_first"]) / 1e6)
            a["rate_e2e"] = a["n"] / (a["t_last"] / 1e6 - t0)
            a["cpu_per_msg"] = res.get("cpu_us", 0) / max(1, res.get("sent", 1))
            a["sysc"] = per(res.get("sysc", {}), res.get("sent", 1))
            a["broker_cpu_per_msg"] = (b1 - b0) / max(1, n)
            a["pub"] = res
            a["summary"] = summary
            a["sub_cpu_per_msg"] = int(kv(summary).get("cpu_us", 0)) / n
            a["util"] = (res.get("cpu_us", 0) + (b1 - b0) +
                         int(kv(summary).get("cpu_us", 0))) / (
                (a["t_last"] / 1e6 - t0) * 1e6 * os.cpu_count()) * 100
            log("%s run %d: %s msg/s at the subscriber, %.1f us CPU/"
                "msg in the publisher, lost %d dup %d (%s)" % (
                    "rawpub" if raw else "pahopub", i, fmt_int(a["rate"]), a["cpu_per_msg"], a["lost"],
                    a["dups"], summary))
            return a
        finally:
            ctx.close()

    def tput_bridge(self, i, perf=False, kind="bridge"):
        ctx = self.ctx("tput-%s%d" % (kind, i))
        perfp = None
        try:
            br = Broker(ctx.subdir("broker"))
            ctx.register(br)
            sim = Sim(ctx.subdir("sim"), self.a.vms,
                      os.path.join(self.shm, "tput%d" % i))
            ctx.register(sim)
            n = self.a.vms * self.a.events
            sub = Sub(ctx.dir, "sub", br.port,
                      ["%s/%s/+/event/colo_exit" % (BASE, HOST)], n,
                      "/event/colo_exit", total_s=90 if kind == "bridge"
                      else 150, idle_s=10)
            ctx.register(sub)
            vms = [("vm%d" % k, "unix:%s/vm%d.qmp" % (sim.sockdir, k))
                   for k in range(1, self.a.vms + 1)]
            d = start_target(ctx, kind, vms, br.port)
            sim.cmd("wait-ready %d 20000" % self.a.vms, timeout=30)
            wait_cpu_quiet(d.pid)
            if perf:
                perfp = self.perf_start(ctx.dir, d.pid)
            sc = SyscCount(ctx.dir, kind, d.pid)
            c0, s0, b0 = cpu_us(d.pid), cpu_us(sim.pid), cpu_us(br.pid)
            t0 = time.time()
            tb, _ = sim.cmd("burst all %d" % self.a.events, timeout=90)
            summary, recs = sub.wait()
            sysc = sc.stop()
            c1, s1, b1 = cpu_us(d.pid), cpu_us(sim.pid), cpu_us(br.pid)
            segs = segs_out(d.pid, br.port)
            if perfp is not None:
                self.perf_stop(perfp, ctx.dir, "tput")
                perfp = None
            a = analyse_events(recs, self.a.vms, self.a.events)
            if a["n"] < 2:
                raise BenchError("bridge delivered %d events (%s)" %
                                 (a["n"], summary))
            a["rate"] = (a["n"] - 1) / ((a["t_last"] - a["t_first"]) / 1e6)
            a["rate_e2e"] = a["n"] / (a["t_last"] / 1e6 - t0)
            a["sim_done_s"] = tb - t0
            a["segs_per_msg"] = (segs / n) if segs else None
            a["cpu_per_msg"] = (c1 - c0) / n
            a["sysc"] = per(sysc, n)
            a["sim_cpu_per_msg"] = (s1 - s0) / n
            a["broker_cpu_per_msg"] = (b1 - b0) / n
            a["hwm_kib"] = rss_kib(d.pid, "VmHWM")
            a["sub_cpu_per_msg"] = int(kv(summary).get("cpu_us", 0)) / n
            a["util"] = ((c1 - c0) + (s1 - s0) + (b1 - b0) +
                         int(kv(summary).get("cpu_us", 0))) / (
                (a["t_last"] / 1e6 - t0) * 1e6 * os.cpu_count()) * 100
            a["sim_count"] = sim_count(sim)
            st = bridge_stats(br.port, d) if kind == "bridge" else None
            a["stats"] = st and st.get("totals")
            a["summary"] = summary
            log(kind + " run %d: %s msg/s at the subscriber, %.1f us CPU/msg"
                " in the bridge, %s TCP segments/msg to the broker, lost %d "
                "dup %d ooo %d (%s); totals %s" % (
                    i, fmt_int(a["rate"]), a["cpu_per_msg"],
                    "%.2f" % a["segs_per_msg"] if a["segs_per_msg"] else "?",
                    a["lost"],
                    a["dups"], a["ooo"], summary, a["stats"]))
            return a
        finally:
            if perfp is not None:
                perfp.kill()
            ctx.close()

    def perf_start(self, d, pid, settle=True):
        if not shutil.which("perf"):
            self.notes.append("perf not installed: no profile")
            return None
        cg = ["-g"] if self.a.perf_callgraph == "fp" else \
            ["--call-graph", self.a.perf_callgraph]
        freq = "1999" if self.a.perf_callgraph == "fp" else "499"
        p = h.Proc("perf", ["perf", "record", "-F", freq] + cg +
                   ["-o", os.path.join(d, "perf.data"), "-p", str(pid)],
                   os.path.join(d, "perf.err"))
        if settle:
            time.sleep(0.3)     # perf attaches to every thread
        return p

    def perf_stop(self, p, d, label):
        p.signal(signal.SIGINT)
        if p.wait(15) is None:
            p.kill()
        p.kill()
        data = os.path.join(d, "perf.data")
        outs = {}
        for what, extra in (("symbol", ["--no-children", "--sort",
                                        "symbol,dso"]),
                            ("dso", ["--no-children", "--sort", "dso"]),
                            ("thread", ["--no-children", "--sort",
                                        "pid"]),
                            ("thread-dso", ["--no-children", "--sort",
                                            "pid,dso"]),
                            ("callers", ["--children", "--sort",
                                         "symbol", "--dsos",
                                         "qmp2mqtt"])):
            try:
                r = subprocess.run(["perf", "report", "--stdio", "-g", "none",
                                    "--percent-limit", "0.7", "-i", data]
                                   + extra, capture_output=True, timeout=90)
                txt = r.stdout.decode("utf-8", "replace")
            except (OSError, subprocess.TimeoutExpired) as e:
                txt = "perf report failed: %s" % e
            with open(os.path.join(self.run, "perf-%s-%s.txt" %
                                   (label, what)), "w") as f:
                f.write(txt)
            outs[what] = [ln for ln in txt.splitlines()
                          if ln.strip() and not ln.startswith("#")]
        self.res.setdefault("perf", {})[label] = outs

    # ---- (2): latency
    def latency(self, kind):
        """kind: bridge, py, node (through qmpsim), ref (pahopub), raw
        (rawpub), paced at the same rate."""
        ctx = self.ctx("latency-" + kind)
        rate, secs = self.a.rate, self.a.seconds
        per_vm = rate * secs // self.a.vms
        n = per_vm * self.a.vms
        pub = kind in ("ref", "raw")
        try:
            br = Broker(ctx.subdir("broker"))
            ctx.register(br)
            sub = Sub(ctx.dir, "sub", br.port,
                      ["%s/%s/+/event/colo_exit" % (BASE, HOST)], n,
                      "/event/colo_exit", total_s=secs + 40)
            ctx.register(sub)
            if kind == "ref":
                res, _ = run_pahopub(ctx.dir, "pahopub", br.port, n,
                                     rate=rate, window=self.a.window)
            elif kind == "raw":
                res, _ = run_rawpub(ctx.dir, "rawpub", br.port, n,
                                    rate=rate, window=self.a.raw_window)
            else:
                sim = Sim(ctx.subdir("sim"), self.a.vms,
                          os.path.join(self.shm, "lat"), ["--stamp-now"])
                ctx.register(sim)
                vms = [("vm%d" % k, "unix:%s/vm%d.qmp" % (sim.sockdir, k))
                       for k in range(1, self.a.vms + 1)]
                d = start_target(ctx, kind, vms, br.port)
                sim.cmd("wait-ready %d 20000" % self.a.vms, timeout=30)
                wait_cpu_quiet(d.pid)
                sc = SyscCount(ctx.dir, kind, d.pid)
                c0 = cpu_us(d.pid)
                sim.cmd("burst all %d %d" % (per_vm, rate),
                        timeout=secs + 30)
            summary, recs = sub.wait()
            sysc = res.get("sysc", {}) if pub else sc.stop()
            a = analyse_events(recs, self.a.vms, per_vm, sim_k=False)
            if pub:
                a["cpu_per_ev"] = res.get("cpu_us", 0) / max(1, a["n"])
                a["cpu_pct"] = res.get("cpu_us", 0) / (secs * 1e6) * 100
            else:
                a["cpu_pct"] = (cpu_us(d.pid) - c0) / (secs * 1e6) * 100
                a["cpu_per_ev"] = (cpu_us(d.pid) - c0) / max(1, a["n"])
                a["sim_count"] = sim_count(sim)
                st = bridge_stats(br.port, d) if kind == "bridge" else None
                a["stats"] = st and st.get("totals")
            a["expected"] = n
            a["sysc"] = per(sysc, a["n"])
            a["summary"] = summary
            lat = a["lat"]
            log("latency %s: n=%d p50 %s p99 %s max %s ms, lost %d, %.0f us"
                " CPU/event (%s)" % (
                    kind, a["n"], fmt_ms(pct(lat, 50)), fmt_ms(pct(lat, 99)),
                    fmt_ms(lat[-1] if lat else 0), a["lost"],
                    a["cpu_per_ev"], summary))
            return a
        finally:
            ctx.close()

    # ---- (3): scale
    def scale(self, n, kind="bridge"):
        ctx = self.ctx("scale%d-%s" % (n, kind))
        perfp = None
        bridge = kind == "bridge"
        try:
            br = Broker(ctx.subdir("broker"))
            ctx.register(br)
            sim = Sim(ctx.subdir("sim"), n,
                      os.path.join(self.shm, "scale%d" % n),
                      ["--close-listener"])
            ctx.register(sim)
            sub = None
            if bridge:      # the peers publish no availability
                sub = Sub(ctx.dir, "sub", br.port,
                          ["%s/%s/+/availability" % (BASE, HOST)], n,
                          "/availability=online", total_s=60, idle_s=20,
                          linger_ms=100)
                ctx.register(sub)
            vms = [("vm%d" % k, "unix:%s/vm%d.qmp" % (sim.sockdir, k))
                   for k in range(1, n + 1)]
            sim.send("wait-ready %d 30000" % n)
            t0 = time.time()
            d = start_target(ctx, kind, vms, br.port)
            if self.a.perf and bridge and n == max(self.a.scale):
                perfp = self.perf_start(ctx.dir, d.pid, settle=False)
            t_ready, ans = sim.answer(40)
            if not ans.startswith("ok"):
                raise BenchError("%d VMs: %s" % (n, ans))
            c_ready = cpu_us(d.pid)
            summary, recs = sub.wait() if sub else ("", [])
            c_online = cpu_us(d.pid)
            if perfp is not None:
                self.perf_stop(perfp, ctx.dir, "scale%d" % n)
                perfp = None
            online = [r[0] for r in recs if r[5] == "online"]
            r = {"n": n, "kind": kind, "ready_s": t_ready - t0,
                 "online_s": (max(online) / 1e6 - t0) if online else None,
                 "online": len(set(x[3] for x in recs if x[5] == "online")),
                 "cpu_ready_us": c_ready, "cpu_start_us": c_online,
                 "summary": summary}
            wait_cpu_quiet(d.pid, 0.5, 3)
            st = proc_status(d.pid)
            r["rss_kib"] = rss_kib(d.pid)
            r["fds"] = nfds(d.pid)
            r["threads"] = int(st.get("Threads", "0"))
            # One COLO_EXIT per VM (the history each VM keeps), then RSS.
            sub2 = Sub(ctx.dir, "sub-exit", br.port,
                       ["%s/%s/+/event/colo_exit" % (BASE, HOST)], n,
                       "/event/colo_exit", total_s=60, idle_s=10,
                       linger_ms=100)
            ctx.register(sub2)
            ce0 = cpu_us(d.pid)
            sim.cmd("burst all 1", timeout=30)
            s2, recs2 = sub2.wait()
            r["exits"] = len(set(x[3] for x in recs2
                                 if x[4] == "event/colo_exit"))
            wait_cpu_quiet(d.pid, 0.5, 5)
            r["exit_cpu_us"] = cpu_us(d.pid) - ce0
            r["rss_exit_kib"] = rss_kib(d.pid)
            try:        # where the memory is, for the notes
                with open("/proc/%d/smaps" % d.pid) as f, \
                        open(os.path.join(ctx.dir, "smaps-exit.txt"),
                             "w") as g:
                    g.write(f.read())
            except OSError:
                pass
            r["hwm_kib"] = rss_kib(d.pid, "VmHWM")
            r["idle_cpu_us"] = None
            r["vms_ready"] = None
            if bridge:
                # idle: one full status_interval_s (10 s): every VM is
                # polled once and bridge/stats published once in it.
                c0 = cpu_us(d.pid)
                time.sleep(self.a.idle)
                r["idle_cpu_us"] = cpu_us(d.pid) - c0
            # Before asking for the stats: building and sending them (1.4 MB
            # at 10 000 VMs) is not idle.
            r["rss_idle_kib"] = rss_kib(d.pid)
            if bridge:
                sts = bridge_stats(br.port, d)
                r["vms_ready"] = sts and sts.get("totals", {}).get(
                    "vms_ready")
            r["sim_fds"] = nfds(sim.pid)
            log("scale %d %s: handshakes %.3f s, online %.3f s, RSS %d KiB,"
                " with one exit per VM %d KiB (%d exits), fds %d, start CPU "
                "%.2f s, vms_ready %s" % (
                    n, kind, r["ready_s"], r["online_s"] or -1,
                    r["rss_kib"], r["rss_exit_kib"], r["exits"], r["fds"],
                    r["cpu_start_us"] / 1e6, r["vms_ready"]))
            return r
        finally:
            if perfp is not None:
                perfp.kill()
            ctx.close()

    # ---- (4): takeover
    def takeover(self, kind="bridge"):
        ctx = self.ctx("takeover-" + kind)
        n = self.a.takeovers
        try:
            br = Broker(ctx.subdir("broker"))
            ctx.register(br)
            sim = Sim(ctx.subdir("sim"), n, os.path.join(self.shm, "tk"),
                      ["--stamp-now", "--mode", "primary"])
            ctx.register(sim)
            keyf = os.path.join(ctx.dir, "takeover.key")
            fd = os.open(keyf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(24).hex() + "\n")
            os.chmod(keyf, 0o600)
            vms = [("vm%d" % k, "unix:%s/vm%d.qmp" % (sim.sockdir, k))
                   for k in range(1, n + 1)]
            extra = ("takeover = { enabled = true; key_file = %s; "
                     "min_interval_s = 0; };\n" % json.dumps(keyf))
            d = start_target(ctx, kind, vms, br.port, extra=extra)
            sim.cmd("wait-ready %d 20000" % n, timeout=30)
            if not br.wait_log("cmd/takeover", 10):
                raise BenchError("the bridge did not subscribe to "
                                 "cmd/takeover")
            wait_cpu_quiet(d.pid)
            out = os.path.join(ctx.dir, "tkpub.tsv")
            p = h.Proc("tkpub", [os.path.join(TOOLS, "tkpub"), "-p",
                                 str(br.port), "-k", keyf, "-H", HOST, "-b",
                                 BASE, "-t", "3000", "-o", out]
                       + ["vm%d" % k for k in range(1, n + 1)],
                       os.path.join(ctx.dir, "tkpub.err"), stdout_pipe=True)
            try:
                outs, _ = p.p.communicate(timeout=n * 6 + 20)
            except subprocess.TimeoutExpired:
                p.kill()
                raise BenchError("tkpub did not stop")
            p.kill()
            summary = outs.decode().strip().splitlines()[-1:]
            time.sleep(0.2)     # the last recv line
            with sim.cond:
                hb = dict(sim.heartbeats)
            rows = []
            with open(out) as f:
                for line in f:
                    vm, rid, tp, te, tus, tr, status, reason = \
                        line.rstrip("\n").split("\t")
                    rows.append({"vm": vm, "t_pub": int(tp),
                                 "t_event": int(te), "time_us": int(tus),
                                 "t_result": int(tr), "status": status,
                                 "reason": reason,
                                 "t_hb": hb.get(vm)})
            ok = [x for x in rows if x["t_event"] and x["status"] == "ok"]
            res = {"n": len(rows), "ok": len(ok), "summary": summary,
                   "reasons": sorted(set(x["reason"] for x in rows
                                         if x["status"] != "ok"))}
            res["rt"] = sorted(x["t_event"] - x["t_pub"] for x in ok)
            res["to_result"] = sorted(x["t_result"] - x["t_pub"] for x in ok)
            res["to_qemu"] = sorted(x["time_us"] - x["t_pub"] for x in ok)
            res["qemu_to_sub"] = sorted(x["t_event"] - x["time_us"]
                                        for x in ok)
            res["to_hb_line"] = sorted(int(x["t_hb"] * 1e6) - x["t_pub"]
                                       for x in ok if x["t_hb"])
            log("takeover " + kind + ": %d/%d ok; round trip p50 %s p99 %s ms; "
                "request->QEMU p50 %s ms; ->result p50 %s ms %s" % (
                    res["ok"], res["n"], fmt_ms(pct(res["rt"], 50)),
                    fmt_ms(pct(res["rt"], 99)),
                    fmt_ms(pct(res["to_qemu"], 50)),
                    fmt_ms(pct(res["to_result"], 50)), res["reasons"]))
            return res
        finally:
            ctx.close()

    # ---- all
    def phase(self, name, fn, *args, **kw):
        if self.expired:
            return None
        try:
            return fn(*args, **kw)
        except Deadline as e:
            self.expired = True
            self.errors.append("%s: %s (remaining phases skipped)" %
                               (name, e))
            return None
        except Exception as e:
            traceback.print_exc(file=sys.stdout)
            self.errors.append("%s: %s" % (name, e))
            return None

    def main(self):
        a = self.a
        os.makedirs(self.shm, exist_ok=True)
        self.steal0 = cpu_steal()
        try:
            peers = [k for k in PEERS if k in a.peers]
            if "tput" in a.phases:
                raws, refs, brs = [], [], []
                for i in range(1, a.repeat + 1):
                    r = "raw" in a.anchors and self.phase(
                        "tput-raw", self.tput_ref, i, raw=True)
                    if r:
                        raws.append(r)
                    r = "ref" in a.anchors and self.phase(
                        "tput-ref", self.tput_ref, i)
                    if r:
                        refs.append(r)
                    r = self.phase("tput-bridge", self.tput_bridge, i,
                                   perf=False)
                    if r:
                        brs.append(r)
                for k in peers:
                    r = self.phase("tput-" + k, self.tput_bridge, 1,
                                   kind=k)
                    self.res["tput_" + k] = [r] if r else []
                if a.perf:
                    self.phase("perf", self.tput_bridge, 0, perf=True)
                self.res["raw"], self.res["ref"], self.res["bridge"] = \
                    raws, refs, brs
            if "latency" in a.phases:
                for k in ["bridge"] + a.anchors + peers:
                    self.res["lat_" + k] = self.phase("latency-" + k,
                                                      self.latency, k)
            if "scale" in a.phases:
                self.res["scale"] = [x for x in (
                    self.phase("scale", self.scale, n) for n in a.scale)
                    if x]
                for k in peers:
                    self.res["scale_" + k] = [x for x in (
                        self.phase("scale-" + k, self.scale, n, k)
                        for n in a.scale) if x]
            if "takeover" in a.phases:
                self.res["tk"] = self.phase("takeover", self.takeover)
                for k in peers:
                    self.res["tk_" + k] = self.phase("takeover-" + k,
                                                     self.takeover, k)
        finally:
            signal.alarm(0)
            shutil.rmtree(self.shm, ignore_errors=True)
        s1 = cpu_steal()
        self.steal_pct = 100.0 * (s1[0] - self.steal0[0]) / max(
            1, s1[1] - self.steal0[1])
        return self.report()

    # ------------------------------------------------------------ report
    def report(self):
        a, R = self.a, self.res
        rows = []

        best = lambda lst: max(lst, key=lambda x: x["rate"]) if lst else None
        T = {"bridge": best(R.get("bridge")), "raw": best(R.get("raw")),
             "ref": best(R.get("ref")), "py": best(R.get("tput_py")),
             "node": best(R.get("tput_node"))}
        cols = ("bridge", "raw", "ref", "py", "node")

        def cells(f, src):
            out = []
            for k in cols:
                x = src.get(k)
                try:
                    out.append(f(x) if x else "–")
                except (KeyError, TypeError, ZeroDivisionError):
                    out.append("–")
            return out

        def row(num, what, vals, ratio="", target=""):
            rows.append([num, what] + vals + [ratio, target])

        def ratio(src, key, other, inv=False):
            x, y = src.get("bridge"), src.get(other)
            if not x or not y or not y.get(key):
                return None
            return (y[key] / x[key]) if inv else (x[key] / y[key])

        def fr(v):
            return "–" if v is None else "%.2f" % v

        if "tput" in a.phases:
            rr, rp = ratio(T, "rate", "raw"), ratio(T, "rate", "ref")
            fast = max([T[k]["rate"] for k in ("py", "node") if T.get(k)]
                       or [0])
            rf = (T["bridge"]["rate"] / fast) if fast and T["bridge"] \
                else None
            row("1", "burst throughput: %d VMs × %s COLO_EXIT, QoS 1, msg/s "
                "at the subscriber (best of %d; peers: 1 run)" % (
                    a.vms, fmt_int(a.events), a.repeat),
                cells(lambda x: "**%s**" % fmt_int(x["rate"]), T),
                "/raw **%s**; /Paho %s; /fastest peer **%s**" % (
                    fr(rr), fr(rp), fr(rf)),
                "≥ 0.8 × raw, ≥ 1.2 × fastest peer")
            row("1", "  lost / duplicated / out of order per VM",
                cells(lambda x: "%d / %d / %d" % (x["lost"], x["dups"],
                                                  x["ooo"]), T),
                "", "0 / – / 0")
            rn = ratio(T, "cpu_per_msg", "node")
            row("1", "  CPU per message (utime+stime, all threads; for the "
                "publishers, their own)",
                cells(lambda x: "%.1f µs" % x["cpu_per_msg"], T),
                "/Node.js peer **%s**; /Paho %s" % (
                    fr(rn), fr(ratio(T, "cpu_per_msg", "ref"))),
                "≤ 0.6 × Node.js peer")
            row("1", "  kernel work per message: context switches [system "
                "calls, with --perf] (all threads)",
                cells(lambda x: fmt_sysc(x["sysc"]), T),
                "", "")
            row("1", "  end to end: burst start → last event at the "
                "subscriber", cells(lambda x: "%.2f s" % (
                    a.vms * a.events / x["rate_e2e"]), T), "", "")
        L = {k: R.get("lat_" + k) for k in cols}
        if any(L.values()):
            row("2", "latency at %s ev/s over %d VMs for %d s, QEMU "
                "timestamp → subscriber, p50 / p99 / max ms" % (
                    fmt_int(a.rate), a.vms, a.seconds),
                cells(lambda x: "%s / **%s** / %s" % (
                    fmt_ms(pct(x["lat"], 50)), fmt_ms(pct(x["lat"], 99)),
                    fmt_ms(x["lat"][-1])), L), "", "p99 ≤ 1 ms")
            row("2", "  received / lost; CPU per event",
                cells(lambda x: "%s / %d; %.0f µs" % (
                    fmt_int(x["n"]), x["lost"], x["cpu_per_ev"]), L),
                "/Node.js peer %s" % fr(ratio(L, "cpu_per_ev", "node")),
                "0 lost; ≤ 60 µs")
            row("2", "  kernel work per event: context switches [system "
                "calls, with --perf] (all threads)",
                cells(lambda x: fmt_sysc(x["sysc"]), L),
                "", "")
        for i, n in enumerate(a.scale):
            S = {}
            for k in cols:
                lst = R.get("scale" if k == "bridge" else "scale_" + k) or []
                S[k] = next((x for x in lst if x["n"] == n), None)
            if not any(S.values()):
                continue
            row("3", "%s VMs: start → all QMP handshakes done (qmpsim) "
                "[all `online` at the subscriber]" % fmt_int(n),
                cells(lambda x: "**%.2f s**%s" % (
                    x["ready_s"], (" [%.2f s]" % x["online_s"])
                    if x.get("online_s") else ""), S), "",
                "≤ 1 s at 10 000")
            row("3", "  RSS after start-up → with one COLO_EXIT per VM "
                "(exits delivered); fds; threads",
                cells(lambda x: "%.1f → **%.1f MiB** (%s); %s; %d" % (
                    x["rss_kib"] / 1024, x["rss_exit_kib"] / 1024,
                    fmt_int(x["exits"]), fmt_int(x["fds"]), x["threads"]),
                    S),
                "/Node.js peer %s" % fr(ratio(S, "rss_exit_kib", "node")),
                "≤ 25 MiB at 10 000")
            row("3", "  CPU per VM: start-up (until ready/online); one exit;"
                " idle (bridge: %d s window)" % a.idle,
                cells(lambda x: "%.0f µs; %.0f µs%s" % (
                    x["cpu_start_us"] / n, x["exit_cpu_us"] / n,
                    ("; %.1f µs/s" % (x["idle_cpu_us"] / a.idle / n))
                    if x.get("idle_cpu_us") is not None else ""), S),
                "", "")
        K = {"bridge": R.get("tk"), "py": R.get("tk_py"),
             "node": R.get("tk_node")}
        if any(K.values()):
            row("4", "takeover: request → colo_exit at the requester, "
                "%d VMs once each, p50 / p99 ms (ok)" % a.takeovers,
                cells(lambda x: "**%s** / %s (%d/%d)" % (
                    fmt_ms(pct(x["rt"], 50)), fmt_ms(pct(x["rt"], 99)),
                    x["ok"], x["n"]), K), "", "p50 ≤ 1 ms")
            row("4", "  request → QEMU + QEMU → requester; → result; p50 ms",
                cells(lambda x: "%s + %s; %s" % (
                    fmt_ms(pct(x["to_qemu"], 50)),
                    fmt_ms(pct(x["qemu_to_sub"], 50)),
                    fmt_ms(pct(x["to_result"], 50))), K), "", "")

        lines = []
        git = ""
        try:
            git = subprocess.run(["git", "-C", ROOT, "describe", "--always",
                                  "--dirty"], capture_output=True,
                                 timeout=5).stdout.decode().strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
        lines.append("## qmp2mqtt benchmark — %s UTC, %s, %d CPUs, %s, "
                     "commit %s" % (
                         datetime.datetime.utcnow().strftime(
                             "%Y-%m-%d %H:%M"), platform.node(),
                         os.cpu_count(), os.path.basename(BUILD), git))
        lines.append("")
        lines.append("| # | measure | qmp2mqtt | library-free (rawpub, "
                     "window %d) | bare Paho (pahopub, window %d) | Python "
                     "peer (paho-mqtt) | Node.js peer (mqtt.js) | ratios "
                     "| target |" % (a.raw_window, a.window))
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            lines.append("| %s |" % " | ".join(r))
        lines.append("")
        lines += self.details()
        text = "\n".join(lines) + "\n"
        print()
        print(text, flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            f.write(text)
        log("written to %s (logs in %s)" % (a.out, self.run))
        return 1 if self.errors else 0

    def details(self):
        a, R = self.a, self.res
        out = ["Details:", ""]
        for i, (lbl, r) in enumerate(
                [("rawpub", x) for x in R.get("raw") or []] +
                [("pahopub", x) for x in R.get("ref") or []], 1):
            out.append("- " + lbl + " run %d: %s msg/s (%s end to end), "
                       "CPU µs/msg: publisher %.1f, mosquitto %.1f, subscriber "
                       "%.1f; all of them used %.0f %% of the %d CPUs; %s"
                       % (i, fmt_int(r["rate"]), fmt_int(r["rate_e2e"]),
                          r["cpu_per_msg"], r["broker_cpu_per_msg"],
                          r["sub_cpu_per_msg"], r["util"], os.cpu_count(),
                          r["summary"]))
        for i, (lbl, r) in enumerate(
                [("bridge", x) for x in R.get("bridge") or []] +
                [("Python peer", x) for x in R.get("tput_py") or []] +
                [("Node.js peer", x) for x in R.get("tput_node") or []], 1):
            st = r.get("stats") or {}
            out.append("- " + lbl + " run %d: %s msg/s (%s end to end; qmpsim "
                       "had written the whole burst after %.2f s), CPU "
                       "µs/msg: bridge %.1f, qmpsim %.1f, mosquitto %.1f, "
                       "subscriber %.1f; all of them used %.0f %% of the %d "
                       "CPUs; bridge peak RSS %.1f MiB; stats published=%s dropped=%s "
                       "events_out=%s; QMP commands received by qmpsim "
                       "%s; %s" % (
                           i, fmt_int(r["rate"]), fmt_int(r["rate_e2e"]),
                           r["sim_done_s"], r["cpu_per_msg"],
                           r["sim_cpu_per_msg"], r["broker_cpu_per_msg"],
                           r["sub_cpu_per_msg"], r["util"], os.cpu_count(),
                           r["hwm_kib"] / 1024, st.get("published"),
                           st.get("dropped"), st.get("events_out"),
                           r.get("sim_count", {}).get("commands"),
                           r["summary"]))
        lat = R.get("lat_bridge")
        if lat:
            st = lat.get("stats") or {}
            sc = lat.get("sim_count") or {}
            n = max(1, lat["n"])
            out.append("- latency run: bridge %.0f µs CPU per event; per "
                       "event %.2f MQTT publishes (stats published=%s) and "
                       "%.2f QMP commands (qmpsim commands=%s); %s" % (
                           lat.get("cpu_per_ev", 0),
                           (st.get("published") or 0) / n,
                           st.get("published"),
                           (sc.get("commands") or 0) / n,
                           sc.get("commands"), lat["summary"]))
        for s in R.get("scale") or []:
            out.append("- scale %d: stats vms_ready=%s, online VMs seen %d, "
                       "RSS after %d s idle %.1f MiB, qmpsim fds %d, CPU "
                       "until handshakes %.2f s, until all online %.2f s, "
                       "idle %.1f ms/s" % (
                           s["n"], s["vms_ready"], s["online"], a.idle,
                           s["rss_idle_kib"] / 1024, s["sim_fds"],
                           s["cpu_ready_us"] / 1e6, s["cpu_start_us"] / 1e6,
                           s["idle_cpu_us"] / 1e3 / a.idle))
        tk = R.get("tk")
        if tk and tk["rt"]:
            out.append("- takeover: round trip min %s max %s ms; request → "
                       "result p50 %s p99 %s ms; %s" % (
                           fmt_ms(tk["rt"][0]), fmt_ms(tk["rt"][-1]),
                           fmt_ms(pct(tk["to_result"], 50)),
                           fmt_ms(pct(tk["to_result"], 99)),
                           " ".join(tk["summary"])))
        out.append("- CPU steal (hypervisor) over the whole run: %.1f %%; "
                   "everything (bridge, qmpsim, mosquitto, clients) shares "
                   "these %d CPUs" % (getattr(self, "steal_pct", 0),
                                      os.cpu_count()))
        for e in self.errors:
            out.append("- ERROR %s" % e)
        for n in self.notes:
            out.append("- note: %s" % n)
        for label, perf in sorted((R.get("perf") or {}).items(),
                                  reverse=True):
            out.append("")
            out.append("perf, bridge process, %s (full reports in "
                       "%s/perf-%s-*.txt):" % (
                           "throughput burst" if label == "tput" else
                           "start-up with %s VMs" % label[5:],
                           self.run, label))
            out.append("")
            out.append("```")
            for what, n in (("thread", 6), ("thread-dso", 12),
                            ("symbol", 25)):
                out += perf.get(what, [])[:n]
                out.append("")
            out.append("```")
        return out


def main():
    global h, BUILD, TOOLS
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/std")
    ap.add_argument("--out", default="build/bench-results.md")
    ap.add_argument("--run-dir", default="build/bench-run")
    ap.add_argument("--phases", default="tput,latency,scale,takeover")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--vms", type=int, default=100)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--raw-window", type=int, default=1000)
    ap.add_argument("--peers", default="py,node",
                    help="peer bridges to run: py,node (empty: none)")
    ap.add_argument("--anchors", default="raw,ref",
                    help="reference publishers to run: raw,ref (empty: "
                    "none; for quick A/B runs of the bridge alone)")
    ap.add_argument("--inflight", type=int, default=0,
                    help="the bridge's mqtt.inflight_max (0: its default)")
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--scale", default="1000,10000")
    ap.add_argument("--idle", type=int, default=10)
    ap.add_argument("--takeovers", type=int, default=50)
    ap.add_argument("--perf", action="store_true",
                    help="one more bridge throughput run, and the "
                    "largest scale start-up, under perf record")
    ap.add_argument("--perf-callgraph", default="fp",
                    help="fp (cheap), or e.g. dwarf,8192 for inclusive "
                    "times of the daemon's functions")
    ap.add_argument("--deadline", type=int, default=600,
                    help="the whole run is stopped after this many seconds")
    a = ap.parse_args()
    if a.perf:
        global PERF_STAT
        PERF_STAT = True
    a.phases = a.phases.split(",")
    a.anchors = [x for x in a.anchors.split(",") if x in ("raw", "ref")]
    if a.inflight > 0:
        MQTT_OVERRIDES["inflight_max"] = a.inflight
    a.scale = [int(x) for x in a.scale.split(",") if x]
    BUILD = os.path.abspath(a.build)
    TOOLS = os.path.join(BUILD, "bench")
    a.run_dir = os.path.abspath(a.run_dir)
    os.environ["QMP2MQTT_BUILD"] = BUILD
    sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
    import harness
    h = harness
    shutil.rmtree(a.run_dir, ignore_errors=True)
    os.makedirs(a.run_dir)

    def on_alarm(sig, frame):
        raise Deadline("deadline of %d s passed" % a.deadline)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(a.deadline)
    b = Bench(a)
    try:
        rc = b.main()
    finally:
        h._kill_all_live()
    log("done")
    sys.exit(rc)


if __name__ == "__main__":
    main()
