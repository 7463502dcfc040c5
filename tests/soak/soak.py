#!/usr/bin/python3
"""qmp2mqtt soak test (make soak; not part of make test).

500 simulated VMs send COLO_EXIT events at a steady total rate (default
200 events/s, as back-to-back `burst all 1 RATE` chunks of 2.5 s) for
SOAK_MINUTES (default 60) through one bridge to a mosquitto with
persistence.  Meanwhile:
  - the broker is stopped (SIGTERM) and restarted every SOAK_RESTART_S
    seconds (default 300; runs shorter than two intervals restart once,
    half-way, so that a short run still exercises it);
  - every minute SOAK_CLOSES VMs (default 5, rotating) get their QMP
    connection closed by the simulator (between two chunks: nothing of a
    chunk is lost by the simulator);
  - every minute the bridge's VmRSS and open descriptors are sampled and a
    table row is printed.
A subscriber with a persistent session (MQTT 5, QoS 1, fixed client id)
records every event's k (time_us - 1700000000000000) per VM.  At the end
(after the stream stops and the bridge's queue drains) it prints the table,
min/max RSS and fds, and whether any event was lost: for every VM the
received k must be exactly 1..N where N is the simulator's own count.

Environment: SOAK_MINUTES (float accepted), SOAK_RATE (events/s, total),
SOAK_VMS (500), SOAK_RESTART_S (300), SOAK_CLOSES (5), QMP2MQTT_BUILD
(the build directory), SOAK_KEEP=1 (keep the temp dir).  Exit status 0
when nothing was lost, nothing dropped, the daemon stayed up and exited 0
on SIGTERM; 1 otherwise.
"""

import os
import shutil
import signal
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import harness as h  # noqa: E402


def env_num(name, default, conv=float):
    v = os.environ.get(name, "")
    if v.strip() == "":
        return default
    try:
        x = conv(v)
    except ValueError:
        sys.exit("soak: %s=%r is not a number" % (name, v))
    if x <= 0:
        sys.exit("soak: %s must be > 0" % name)
    return x


MINUTES = env_num("SOAK_MINUTES", 60.0)
RATE = env_num("SOAK_RATE", 200, int)
NVMS = env_num("SOAK_VMS", 500, int)
RESTART_S = env_num("SOAK_RESTART_S", 300.0)
CLOSES = env_num("SOAK_CLOSES", 5, int)
DURATION = MINUTES * 60.0
if DURATION < 2 * RESTART_S:
    RESTART_S = DURATION / 2.0
SAMPLE_S = 60.0
CHUNK = 1                      # events per VM per burst chunk


def log(*a):
    h.log(*a)


class QuietMosquitto(h.Mosquitto):
    """The harness' broker without per-message logging (an hour at 200
    events/s would be millions of lines)."""

    def __init__(self, ctx, **kw):
        h.Mosquitto.__init__(self, ctx, **kw)
        with open(self.conf) as f:
            text = f.read()
        text = text.replace("log_type all\n", "log_type error\n"
                            "log_type warning\nlog_type notice\n"
                            "log_type information\n")
        with open(self.conf, "w") as f:
            f.write(text)


class EventCounter:
    """A paho client with a persistent session on the event topics and the
    stats topic; keeps per VM the set of k received and the duplicates
    (compact: no message objects are kept)."""

    def __init__(self, ctx, port):
        import paho.mqtt.client as mqtt
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes
        self.mqtt = mqtt
        self.cond = threading.Condition()
        self.ks = {}
        self.received = 0
        self.dups = 0
        self.bad = []            # undecodable payloads (first few)
        self.stats = []          # bridge/stats payloads (JSON)
        self.connects = 0
        self.session_lost = 0
        self.subscribed = False
        self.connected = False
        self.c = mqtt.Client(client_id="soak-sub-%d" % os.getpid(),
                             protocol=mqtt.MQTTv5)
        self.c.reconnect_delay_set(min_delay=0.1, max_delay=1)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 * 24
        self.c.connect_async("127.0.0.1", port, keepalive=20,
                             clean_start=False, properties=props)
        self.c.loop_start()
        ctx.register(self)

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        ok = int(getattr(rc, "value", rc)) == 0
        with self.cond:
            self.connected = ok
            if ok:
                self.connects += 1
                if self.connects > 1 and not flags.get("session present"):
                    self.session_lost += 1
            self.cond.notify_all()
        if ok:
            from paho.mqtt.subscribeoptions import SubscribeOptions
            o = SubscribeOptions(qos=1)
            client.subscribe([("%s/%s/+/event/colo_exit" % (h.BASE, h.HOST),
                               o),
                              (h.bridge_topic("stats"), o)])

    def _on_disconnect(self, client, userdata, rc, properties=None):
        with self.cond:
            self.connected = False
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        with self.cond:
            self.subscribed = True
            self.cond.notify_all()

    def _on_message(self, client, userdata, m):
        import json
        try:
            e = json.loads(m.payload)
        except ValueError:
            with self.cond:
                if len(self.bad) < 5:
                    self.bad.append((m.topic, bytes(m.payload[:200])))
            return
        with self.cond:
            if m.topic.endswith("/bridge/stats"):
                self.stats.append(e)
            else:
                vm = e.get("vm")
                k = e.get("time_us", 0) - h.SIM_EPOCH_US
                s = self.ks.setdefault(vm, set())
                self.received += 1
                if k in s:
                    self.dups += 1
                else:
                    s.add(k)
            self.cond.notify_all()

    def wait(self, pred, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def distinct(self):
        with self.cond:
            return sum(len(s) for s in self.ks.values())

    def close(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()

    def logs(self):
        return []


class Driver:
    """Back-to-back `burst all CHUNK RATE` chunks until stopped."""

    def __init__(self, sim):
        self.sim = sim
        self.stop = threading.Event()
        self.chunks = 0
        self.not_ready = 0
        self.errors = []
        self.th = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        per_chunk = NVMS * CHUNK / float(RATE)
        try:
            while not self.stop.is_set():
                ans = self.sim.cmd("burst all %d %d" % (CHUNK, RATE),
                                   timeout=per_chunk * 4 + 30,
                                   check_ok=False)
                self.chunks += 1
                if ans.startswith("err"):
                    self.not_ready += 1
        except BaseException as e:     # reported by the main thread
            self.errors.append(e)


def proc_sample(pid):
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def main():
    h.require_paho()
    h.require_mosquitto()
    h.require_daemon()
    h.require_sim()
    root = tempfile.mkdtemp(prefix="q2m-soak-")
    print("soak: %g minutes, %d VMs, %d events/s in total, broker restart "
          "every %.0f s, %d QMP closes every minute; build %s; temp dir %s"
          % (MINUTES, NVMS, RATE, RESTART_S, CLOSES, h.BUILD, root),
          flush=True)
    ctx = h.Ctx("soak", root)
    rows = []
    problems = []
    ok = False
    try:
        ok = run(ctx, rows, problems)
    except BaseException as e:
        import traceback
        traceback.print_exc(file=sys.stdout)
        problems.append("exception: %r" % (e,))
        try:
            ctx.dump_logs(20)
        except BaseException:
            pass
    finally:
        ctx.close()
        h._kill_all_live()
    print_table(rows)
    if problems:
        print("PROBLEMS:")
        for p in problems:
            print("  - " + p)
    print("RESULT: %s" % ("PASS" if ok and not problems else "FAIL"),
          flush=True)
    if ok and not problems and not os.environ.get("SOAK_KEEP"):
        shutil.rmtree(root, ignore_errors=True)
    else:
        print("temp dir kept: %s" % root)
    return 0 if ok and not problems else 1


def print_table(rows):
    if not rows:
        return
    print()
    print("%6s %8s %10s %5s %11s %11s %6s %8s %7s" %
          ("minute", "elapsed", "VmRSS_KiB", "fds", "received", "distinct",
           "dups", "restarts", "closes"))
    for r in rows:
        print("%6s %8.0f %10d %5d %11d %11d %6d %8d %7d" % r)
    rss = [r[2] for r in rows]
    fds = [r[3] for r in rows]
    print("VmRSS KiB: min %d, max %d (first %d, last %d); fds: min %d, max "
          "%d (first %d, last %d)" % (min(rss), max(rss), rss[0], rss[-1],
                                      min(fds), max(fds), fds[0], fds[-1]))
    sys.stdout.flush()


def run(ctx, rows, problems):
    broker = QuietMosquitto(ctx, persistence=True).start()
    sub = EventCounter(ctx, broker.port)
    if not sub.wait(lambda: sub.subscribed, 20):
        problems.append("subscriber not subscribed")
        return False
    sim = h.Sim(ctx, NVMS).start()
    daemon = h.Daemon(ctx, vms=sim.vms(), port=broker.port, verbose=False)
    daemon.start()
    sim.wait_ready(NVMS, timeout=60)
    pid = daemon.pid
    log("all %d VMs negotiated" % NVMS)

    drv = Driver(sim)
    t0 = time.monotonic()
    end = t0 + DURATION
    next_sample = t0
    next_close = t0 + SAMPLE_S
    next_restart = t0 + RESTART_S
    restarts = closes = 0
    close_i = 0
    minute = 0
    drv.th.start()

    def sample(label):
        rss, fds = proc_sample(pid)
        with sub.cond:
            rec, dis, dups = (sub.received, sum(len(s) for s in
                                                sub.ks.values()), sub.dups)
        row = (label, time.monotonic() - t0, rss, fds, rec, dis, dups,
               restarts, closes)
        rows.append(row)
        print("%6s %8.0f %10d %5d %11d %11d %6d %8d %7d" % row, flush=True)

    print("%6s %8s %10s %5s %11s %11s %6s %8s %7s" %
          ("minute", "elapsed", "VmRSS_KiB", "fds", "received", "distinct",
           "dups", "restarts", "closes"), flush=True)
    while True:
        now = time.monotonic()
        if not daemon.alive():
            problems.append("the daemon died (exit %s) at %.0f s" %
                            (daemon.proc.returncode, now - t0))
            break
        if drv.errors:
            problems.append("event driver: %r" % drv.errors[0])
            break
        if now >= next_sample:
            sample(str(minute))
            minute += 1
            next_sample += SAMPLE_S
        if now >= end:
            break
        if now >= next_restart:
            log("broker restart %d (SIGTERM)" % (restarts + 1))
            broker.stop()
            time.sleep(1.0)            # scenario: the broker stays down 1 s
            broker.start()
            restarts += 1
            next_restart += RESTART_S
        if now >= next_close:
            vms = []
            for _ in range(CLOSES):
                vms.append(sim.vm(close_i % NVMS + 1))
                close_i += 1
            for vm in vms:              # between two chunks (sim lock)
                sim.cmd("close %s" % vm)
            closes += len(vms)
            next_close += SAMPLE_S
        # The scenario's clock: wake up at the next scheduled action.
        nxt = min(next_sample, next_close, next_restart, end)
        time.sleep(max(0.0, min(1.0, nxt - time.monotonic())))

    drv.stop.set()
    drv.th.join(60)
    if drv.th.is_alive():
        problems.append("event driver did not stop")
        return False
    log("stream stopped after %.0f s: %d chunks (%d with VMs not ready)" %
        (time.monotonic() - t0, drv.chunks, drv.not_ready))
    if not daemon.alive():
        return False

    # The truth: the simulator's own per-VM counts (every VM reconnected).
    sim.wait_ready(NVMS, timeout=60)
    truth = {}
    for i in range(1, NVMS + 1):
        truth[sim.vm(i)] = sim.count(sim.vm(i))["events"]
    total = sum(truth.values())

    def complete():
        for vm, n in truth.items():
            if len(sub.ks.get(vm, ())) < n:
                return False
        return True
    drained = sub.wait(complete, 120)
    if not drained:
        log("not every event arrived within 120 s of the end")
    # Bridge's own account.
    n0 = len(sub.stats)
    daemon.signal(signal.SIGUSR1)
    sub.wait(lambda: len(sub.stats) > n0, 20)
    st = sub.stats[-1] if sub.stats else {}
    sample("end")
    with sub.cond:
        lost = {}
        extra = {}
        for vm, n in truth.items():
            got = sub.ks.get(vm, set())
            miss = set(range(1, n + 1)) - got
            if miss:
                lost[vm] = sorted(miss)
            beyond = got - set(range(1, n + 1))
            if beyond:
                extra[vm] = sorted(beyond)
        dups, received = sub.dups, sub.received
        session_lost = sub.session_lost
    nlost = sum(len(v) for v in lost.values())
    t = st.get("totals", {})
    print()
    print("events: sent %d (simulator), received %d messages, %d distinct, "
          "%d duplicates, LOST %d" % (total, received,
                                      total - nlost, dups, nlost))
    print("bridge totals: %s" % {k: t.get(k) for k in (
        "events_in", "events_out", "published", "resent", "dropped",
        "buffered", "inflight", "reconnects", "timeouts", "mqtt_connects",
        "vms_ready")})
    print("broker restarts %d, QMP closes %d, subscriber connects %d" %
          (restarts, closes, sub.connects))
    if nlost:
        problems.append("%d events lost; first VMs: %s" % (
            nlost, {vm: v[:10] for vm, v in list(lost.items())[:10]}))
    if extra:
        problems.append("events received that the simulator never sent: %s"
                        % dict(list(extra.items())[:5]))
    if sub.bad:
        problems.append("undecodable payloads: %r" % sub.bad)
    if session_lost:
        problems.append("the broker lost the subscriber's session %d times "
                        "(broker problem, events may be lost for that)" %
                        session_lost)
    if t.get("dropped"):
        problems.append("bridge dropped %d messages" % t["dropped"])
    if t and t.get("events_out") != total:
        problems.append("bridge events_out %s != simulator's %d" %
                        (t.get("events_out"), total))
    rc = daemon.stop(timeout=30)
    if rc != 0:
        problems.append("daemon exit status %s on SIGTERM" % rc)
    return True


if __name__ == "__main__":
    sys.exit(main())
