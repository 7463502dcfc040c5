#!/usr/bin/python3
"""File descriptor limits: the daemon raises its soft limit to the hard one
and refuses, with a clear error and exit status 1, a configuration with
more VMs than the hard limit can hold (instead of failing later, one
connection at a time).  Discovered VMs beyond the limit are left out
(logged, bridge/state degraded with the problem "vm_limit") rather than
taking the descriptors the spool and the broker need, and taken in when
room comes back; a reload listing more VMs than fit is refused."""
# TIMEOUT = 60

import os
import resource
import signal
import subprocess

import harness as h
from harness import check, check_eq


def write_conf(ctx, nvms):
    d = ctx.subdir("limits")
    path = os.path.join(d, "q.conf")
    vms = ",\n".join('{ name = "vm%d"; qmp = "unix:%s/vm%d.qmp"; }' %
                     (i, d, i) for i in range(nvms))
    with open(path, "w") as f:
        f.write('bridge = { host = "hv1"; };\n'
                'mqtt = { uri = "tcp://127.0.0.1:1"; };\n'
                'vms = (\n%s\n);\n' % vms)
    return path


def run_with_nofile(conf, soft, hard):
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    p = subprocess.run([h.DAEMON_BIN, "-c", conf], preexec_fn=limit,
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=20 * h.SLOW)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def test_too_many_vms_for_the_fd_limit(ctx):
    h.require_daemon()
    conf = write_conf(ctx, 300)
    rc, err = run_with_nofile(conf, 100, 200)
    check_eq(rc, 1, "exit status with 300 VMs and a hard limit of 200")
    check("300 VMs need" in err and "limit is 200" in err,
          "error does not explain the limit: %r" % err[-500:])


def test_soft_limit_raised_to_hard(ctx):
    # 150 VMs need more than the soft limit of 100 but fit the hard limit
    # of 400: the daemon must raise its soft limit and start.  -n does not
    # check limits, so the real daemon is started and stopped.
    h.require_daemon()
    conf = write_conf(ctx, 150)

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 400))
    p = subprocess.Popen([h.DAEMON_BIN, "-c", conf], preexec_fn=limit,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        deadline = h.time.monotonic() + 20 * h.SLOW
        lim = None
        while h.time.monotonic() < deadline and p.poll() is None:
            try:
                with open("/proc/%d/limits" % p.pid) as f:
                    for line in f:
                        if line.startswith("Max open files"):
                            lim = int(line.split()[3])
            except OSError:
                pass
            if lim == 400:
                break
            h.time.sleep(0.05)     # polling /proc; nothing else tells
        check(p.poll() is None, "daemon exited: %r" %
              p.stderr.read().decode()[-500:] if p.poll() is not None
              else "")
        check_eq(lim, 400, "soft NOFILE limit of the running daemon")
    finally:
        p.terminate()
        try:
            p.wait(10 * h.SLOW)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    check_eq(p.returncode, 0, "exit status after SIGTERM")


RESERVED = 64       # src/main.c FDS_RESERVED


def test_discovered_vms_over_the_fd_limit(ctx):
    h.require_daemon()
    room = 6
    broker = ctx.mosquitto()
    sim = h.Sim(ctx, 9, name="sim")
    sim.start()
    sub = ctx.subscriber(broker.port)
    glob = 'discover = ( { glob = "%s/*.qmp"; host = "%s"; } );' % (
        sim.sockdir, h.HOST)

    def conf(vms):
        return h.render_config(
            vms, {"host": h.HOST, "id": "bridge-lim", "backoff_min_ms": 50,
                  "backoff_max_ms": 500},
            {"uri": "tcp://127.0.0.1:%d" % broker.port,
             "client_id": "qmp2mqtt-e2e-%d-lim" % os.getpid(),
             "version": 5, "keepalive": 5, "base_topic": h.BASE},
            extra=glob)
    d = h.Daemon(ctx, raw=conf([]), port=broker.port, name="lim")
    d.client_id = "qmp2mqtt-e2e-%d-lim" % os.getpid()
    d.bridge_id = "bridge-lim"
    n = RESERVED + room
    d.wrap = ["prlimit", "--nofile=%d:%d" % (n, n), "--"]
    d.start()
    st = sub.wait_json(h.bridge_topic("state"), lambda s: s.get("vms") ==
                       room and "vm_limit" in s.get("problems", ()), 20,
                       "bridge/state: %d VMs, problem vm_limit" % room).json()
    check(st["degraded"] is True, "degraded with VMs left out: %r" % st)
    sim.wait_ready(room, 20)
    for _ in h.deadline_loop(10 * h.SLOW, 0.05):
        if "3 discovered VM(s) left out" in d.log_text():
            break
    else:
        h.fail("no 'left out' log line; log tail: %s" % d.log_text()[-1500:])
    managed = [sim.vm(i) for i in range(1, 10)
               if sim.count(sim.vm(i))["connects"] > 0]
    check_eq(len(managed), room, "simulated VMs the daemon connected to")

    # A reload that lists more VMs than fit is refused, the rest runs on.
    listed = [("l%d" % i, "unix:%s/none%d.qmp" % (sim.sockdir, i))
              for i in range(room + 1)]
    mark = len(d.log_text().splitlines())
    with open(d.conf, "w") as f:
        f.write(conf(listed))
    d.signal(signal.SIGHUP)
    st = sub.wait_json(h.bridge_topic("state"), lambda s: "file descriptor"
                       in (s.get("config_error") or ""), 10,
                       "config_error about the limit").json()
    check_eq(st["vms"], room, "VMs after the refused reload")
    check(any("reload: " in ln and "leaves room for %d" % room in ln
              for ln in d.log_text().splitlines()[mark:]),
          "no log line for the refused reload")

    # Room comes back: three managed sockets go; all that is left fits.
    for vm in managed[:3]:
        sim.cmd("unlisten %s" % vm)
    st = sub.wait_json(h.bridge_topic("state"), lambda s: s.get("vms") == 6
                       and s.get("problems") == [], 20,
                       "bridge/state: 6 VMs, no problem").json()
    check(st["degraded"] is False, "still degraded: %r" % st)
    for vm in [sim.vm(i) for i in range(1, 10)]:
        if vm not in managed[:3]:
            sub.wait_payload(h.avail_topic(vm), "online", 20)
    check("every discovered VM fits" in d.log_text(),
          "no log line when the discovered VMs fit again")


if __name__ == "__main__":
    h.main(test_too_many_vms_for_the_fd_limit, test_soft_limit_raised_to_hard,
           test_discovered_vms_over_the_fd_limit)
