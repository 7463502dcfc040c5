#!/usr/bin/python3
"""TCP_NODELAY on the broker socket.

Paho exposes no socket and does not disable Nagle's algorithm; the daemon
sets TCP_NODELAY on its broker connection after each connect.  The test
finds the daemon's socket to the broker (its /proc fd whose inode is the
loopback connection to the broker's port), duplicates it into the test
with pidfd_getfd(2) and reads the option back: 1 by default, 0 with
mqtt.tcp_nodelay = false (so the test would fail without the feature).
It also checks the option is set again after a broker restart.
"""
# TIMEOUT = 120

import ctypes
import os
import socket

import harness as h
from harness import check_eq

SYS_pidfd_open = 434
SYS_pidfd_getfd = 438
libc = ctypes.CDLL(None, use_errno=True)


def broker_socket_inodes(pid, port):
    """Inodes of pid's TCP connections whose remote port is port."""
    inodes = set()
    for path in ("/proc/%d/net/tcp" % pid, "/proc/%d/net/tcp6" % pid):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    rport = int(parts[2].split(":")[1], 16)
                    if rport == port and parts[3] == "01":  # ESTABLISHED
                        inodes.add(parts[9])
        except FileNotFoundError:
            pass
    return inodes


def nodelay_of_broker_socket(pid, port):
    """TCP_NODELAY of the daemon's established socket to port."""
    inodes = broker_socket_inodes(pid, port)
    fds = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            fds.append(int(fd))
    check_eq(len(fds), 1, "daemon sockets connected to the broker port")
    pidfd = libc.syscall(SYS_pidfd_open, pid, 0)
    if pidfd < 0:
        raise h.Skip("pidfd_open: %s" % os.strerror(ctypes.get_errno()))
    try:
        fd = libc.syscall(SYS_pidfd_getfd, pidfd, fds[0], 0)
        if fd < 0:
            raise h.Skip("pidfd_getfd: %s" %
                         os.strerror(ctypes.get_errno()))
        s = socket.socket(fileno=fd)
        try:
            return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            s.close()
    finally:
        os.close(pidfd)


def run(ctx, nodelay):
    broker = ctx.mosquitto()
    sim = ctx.sim(1)
    sub = ctx.subscriber(broker.port)
    mqtt = {} if nodelay is None else {"tcp_nodelay": nodelay}
    d = ctx.daemon(sim.vms(), broker.port, mqtt=mqtt)
    h.wait_online(sub, [sim.vm(1)], 20)
    return broker, sub, d


def test_nodelay_default_on(ctx):
    broker, sub, d = run(ctx, None)
    check_eq(nodelay_of_broker_socket(d.pid, broker.port) != 0, True,
             "TCP_NODELAY on the broker socket")
    # After a broker restart the new socket gets it too.
    mark = sub.mark(h.bridge_topic("state"))
    broker.restart()
    sub.wait_connected(20)
    sub.wait_json(h.bridge_topic("state"),
                  lambda j: j.get("state") == "online", 30, since=mark)
    check_eq(nodelay_of_broker_socket(d.pid, broker.port) != 0, True,
             "TCP_NODELAY on the broker socket after a broker restart")


def test_nodelay_off(ctx):
    broker, sub, d = run(ctx, False)
    check_eq(nodelay_of_broker_socket(d.pid, broker.port), 0,
             "TCP_NODELAY with mqtt.tcp_nodelay = false")


if __name__ == "__main__":
    h.main(test_nodelay_default_on, test_nodelay_off)
