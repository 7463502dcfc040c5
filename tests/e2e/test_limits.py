#!/usr/bin/python3
"""File descriptor limits: the daemon raises its soft limit to the hard one
and refuses, with a clear error and exit status 1, a configuration with
more VMs than the hard limit can hold (instead of failing later, one
connection at a time)."""
# TIMEOUT = 60

import os
import resource
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


if __name__ == "__main__":
    h.main(test_too_many_vms_for_the_fd_limit, test_soft_limit_raised_to_hard)
