#!/usr/bin/python3
"""Command line and configuration checking (docs/CONTRACT.md: Config, CLI).

-V/--version and -h exit 0; -n on a good configuration prints
"configuration OK" and exits 0; a bad configuration exits 1 with
"FILE:LINE: key: problem".  Neither starts anything: the configured QMP
socket and MQTT port are listened on by the test and must see no connection.
No broker needed.
"""
# TIMEOUT = 60

import os
import re
import select
import socket

import harness as h
from harness import check, check_eq

# The line the error must point at is marked with "# HERE" (libconfig
# comment).
GOOD = """\
bridge = {
  host = "hv1";
};
mqtt = {
  uri = "tcp://127.0.0.1:%(port)d";
};
vms = (
  { name = "vm1"; qmp = "unix:%(sock)s"; }
);
"""


class Listeners:
    """A unix socket at the VM's QMP path and a TCP port for the broker:
    the daemon must connect to neither when it only checks a config."""

    def __init__(self, ctx):
        self.sock = os.path.join(ctx.dir, "vm1.qmp")
        self.u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.u.bind(self.sock)
        self.u.listen(16)
        self.t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.t.bind(("127.0.0.1", 0))
        self.t.listen(16)
        self.port = self.t.getsockname()[1]

    def check_untouched(self, what):
        r, _, _ = select.select([self.u, self.t], [], [], 0)
        check(self.u not in r, "%s connected to the QMP socket" % what)
        check(self.t not in r, "%s connected to the MQTT port" % what)

    def close(self):
        self.u.close()
        self.t.close()


def write(ctx, name, text):
    path = os.path.join(ctx.dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def marked_line(text):
    for i, line in enumerate(text.splitlines(), 1):
        if "# HERE" in line:
            return i
    return None


def vm_line(name, qmp, extra=""):
    return '  { name = %s; qmp = "%s";%s }' % (name, qmp, extra)


def expect_ok(ctx, lst, path):
    rc, out, err = h.run_daemon(["-n", "-c", path])
    both = out + err
    check(rc == 0, "-n on %s: exit %d, expected 0; output: %r" %
          (path, rc, both))
    check("configuration OK" in both,
          "-n on %s: no 'configuration OK' in output %r" % (path, both))
    lst.check_untouched("-n on a good config")


def expect_bad(ctx, lst, label, text, key, line=None, any_line=False):
    """text must be refused with exit 1 and 'FILE:LINE: ...key...'."""
    path = write(ctx, "bad-%s.conf" % re.sub(r"\W+", "_", label), text)
    if line is None and not any_line:
        line = marked_line(text)
        assert line, "test bug: no # HERE in %s" % label
    for args in (["-n", "-c", path], ["-c", path]):
        rc, out, err = h.run_daemon(args, timeout=10)
        both = out + err
        check(rc == 1, "%s (%s): exit %d, expected 1; output: %r" %
              (label, " ".join(args), rc, both))
        check("configuration OK" not in both,
              "%s: says configuration OK: %r" % (label, both))
        if any_line:
            rx = re.escape(path) + r"(?::(\d+))?: (\S*)"
        else:
            rx = re.escape(path) + r":(\d+): (\S*)"
        m = re.search(rx, err)
        check(m is not None, "%s: stderr does not name %s:LINE: %r" %
              (label, path, err))
        if line is not None:
            check_eq(int(m.group(1)), line, "%s: line in %r" % (label,
                                                                 err.strip()))
        # The key is the message's first field ("vms[1].qmp: ..."); a
        # "~key" may appear anywhere in the message (unknown settings).
        if key.startswith("~"):
            named = key[1:] in err[m.start(2):]
        else:
            named = key in m.group(2)
        check(named, "%s: message does not name the key %r: %r" %
              (label, key.lstrip("~"), err.strip()))
        lst.check_untouched(label)
    h.log("refused as expected: %s: %s" % (label, err.strip()))


def test_version_help(ctx):
    for args in (["-V"], ["--version"]):
        rc, out, err = h.run_daemon(args)
        check_eq(rc, 0, "exit code of qmp2mqtt %s" % args[0])
        check(re.search(r"\d+\.\d+", out + err),
              "%s prints no version number: %r" % (args[0], out + err))
    rc, out, err = h.run_daemon(["-h"])
    check_eq(rc, 0, "exit code of qmp2mqtt -h")
    check("-c" in out + err, "-h output does not mention -c: %r" %
          (out + err))


def test_shipped_config(ctx):
    path = os.path.join(h.ROOT, "config", "qmp2mqtt.conf")
    if not os.path.exists(path):
        raise h.Skip("config/qmp2mqtt.conf not present")
    rc, out, err = h.run_daemon(["-n", "-c", path])
    check(rc == 0 and "configuration OK" in out + err,
          "-n on the shipped config: exit %d, output %r" % (rc, out + err))


def test_good_configs(ctx):
    lst = Listeners(ctx)
    try:
        p = {"port": lst.port, "sock": lst.sock}
        expect_ok(ctx, lst, write(ctx, "good.conf", GOOD % p))
        # Same VM name on another host is fine; a tcp address too.
        text = (GOOD % p).replace(
            '  { name = "vm1"; qmp = "unix:%s"; }' % lst.sock,
            '  { name = "vm1"; qmp = "unix:%s"; },\n'
            '  { name = "vm1"; host = "hv2"; qmp = "tcp:127.0.0.1:4444"; },\n'
            '  { name = "a-b_c.9"; qmp = "tcp:localhost:4445"; }' % lst.sock)
        expect_ok(ctx, lst, write(ctx, "good2.conf", text))
        # The full set of documented keys.
        full = """\
bridge = {
  host = "hv1"; id = "qmp2mqtt-hv1"; max_message = 1048576;
  backoff_min_ms = 100; backoff_max_ms = 30000;
  greeting_timeout_ms = 5000; command_timeout_ms = 10000;
  stats_interval_s = 10;
};
mqtt = {
  uri = ( "tcp://127.0.0.1:%(port)d", "tcp://127.0.0.1:%(port)d" );
  client_id = "qmp2mqtt-hv1"; username = "u"; password = "p";
  keepalive = 30; qos = 1; version = 3; base_topic = "qmp2mqtt";
  buffer_max = 100000; inflight_max = 256; tcp_nodelay = true;
};
vms = ( { name = "vm1"; qmp = "unix:%(sock)s"; } );
""" % p
        expect_ok(ctx, lst, write(ctx, "full.conf", full))
    finally:
        lst.close()


def test_bad_configs(ctx):
    lst = Listeners(ctx)
    try:
        port, sock = lst.port, lst.sock

        def conf(vms=None, bridge="", mqtt="", tail=""):
            if vms is None:
                vms = [vm_line('"vm1"', "unix:" + sock)]
            return ("bridge = {\n  host = \"hv1\";\n%s};\n"
                    "mqtt = {\n  uri = \"tcp://127.0.0.1:%d\";\n%s};\n"
                    "vms = (\n%s\n);\n%s" %
                    (bridge, port, mqtt, ",\n".join(vms), tail))

        good_vm = vm_line('"vm1"', "unix:" + sock)
        cases = [
            ("syntax error", conf(bridge="  max_message = ;  # HERE\n"),
             "syntax"),
            ("syntax error 2", conf(tail="vms2 = ( { name = \"x\" } ) }"
                                    "  # HERE\n"), "syntax"),
            ("vm without qmp", conf(vms=[good_vm,
                                         '  { name = "vm2"; }  # HERE']),
             "qmp"),
            ("vm without name", conf(vms=[
                '  { qmp = "unix:/tmp/x.qmp"; }  # HERE']), "name"),
            ("bad qmp foo:bar", conf(vms=[vm_line('"vm1"', "foo:bar") +
                                          "  # HERE"]), "qmp"),
            ("bad qmp tcp:host", conf(vms=[vm_line('"vm1"', "tcp:host") +
                                           "  # HERE"]), "qmp"),
            ("bad qmp tcp:host:", conf(vms=[vm_line('"vm1"', "tcp:host:") +
                                            "  # HERE"]), "qmp"),
            ("bad qmp tcp port 0", conf(vms=[
                vm_line('"vm1"', "tcp:127.0.0.1:0") + "  # HERE"]), "qmp"),
            ("bad qmp tcp port 65536", conf(vms=[
                vm_line('"vm1"', "tcp:127.0.0.1:65536") + "  # HERE"]),
             "qmp"),
            ("bad qmp unix: empty", conf(vms=[vm_line('"vm1"', "unix:") +
                                              "  # HERE"]), "qmp"),
            ("duplicate vm name", conf(vms=[
                good_vm, vm_line('"vm1"', "unix:/tmp/other.qmp") +
                "  # HERE"]), "name"),
            ("duplicate vm name, explicit same host", conf(vms=[
                good_vm, vm_line('"vm1"', "unix:/tmp/other.qmp",
                                 ' host = "hv1";') + "  # HERE"]), "name"),
            ("vm named bridge", conf(vms=[
                vm_line('"bridge"', "unix:" + sock) + "  # HERE"]), "name"),
            ("vm name with /", conf(vms=[
                vm_line('"a/b"', "unix:" + sock) + "  # HERE"]), "name"),
            ("vm name with +", conf(vms=[
                vm_line('"a+"', "unix:" + sock) + "  # HERE"]), "name"),
            ("vm name with #", conf(vms=[
                vm_line('"a#"', "unix:" + sock) + "  # HERE"]), "name"),
            ("vm name empty", conf(vms=[
                vm_line('""', "unix:" + sock) + "  # HERE"]), "name"),
            ("vm name 65 chars", conf(vms=[
                vm_line('"%s"' % ("v" * 65), "unix:" + sock) + "  # HERE"]),
             "name"),
            ("vm host with /", conf(vms=[
                vm_line('"vm1"', "unix:" + sock, ' host = "h/2";') +
                "  # HERE"]), "host"),
            ("bridge host with +", conf().replace(
                'host = "hv1";', 'host = "h+1";  # HERE'), "host"),
            ("qos 3", conf(mqtt="  qos = 3;  # HERE\n"), "qos"),
            ("qos -1", conf(mqtt="  qos = -1;  # HERE\n"), "qos"),
            # 3 (3.1.1) and 5 are the versions; 4 (3.1.1's protocol level)
            # may be accepted as an alias, so it is not tested either way.
            ("mqtt version 6", conf(mqtt="  version = 6;  # HERE\n"),
             "version"),
            ("mqtt version 2", conf(mqtt="  version = 2;  # HERE\n"),
             "version"),
            ("mqtt version string", conf(mqtt='  version = "5";  # HERE\n'),
             "version"),
            ("negative max_message", conf(
                bridge="  max_message = -1;  # HERE\n"), "max_message"),
            ("max_message not an integer", conf(
                bridge='  max_message = "big";  # HERE\n'), "max_message"),
            ("unknown bridge key", conf(
                bridge="  bakoff_min_ms = 5;  # HERE\n"), "~bakoff_min_ms"),
            ("empty vms list", conf(vms=[]).replace(
                "vms = (", "vms = (  # HERE"), "vms"),
        ]
        for label, text, key in cases:
            expect_bad(ctx, lst, label, text, key)

        # A missing setting has no line of its own: FILE[:LINE]: vms.
        text = ("bridge = { host = \"hv1\"; };\n"
                "mqtt = { uri = \"tcp://127.0.0.1:%d\"; };\n" % port)
        expect_bad(ctx, lst, "missing vms", text, "vms", any_line=True)

        # An unreadable file: exit 1, the path named.
        missing = os.path.join(ctx.dir, "does-not-exist.conf")
        rc, out, err = h.run_daemon(["-n", "-c", missing])
        check_eq(rc, 1, "exit code for a missing config file")
        check(missing in err, "missing file not named: %r" % err)
        lst.check_untouched("missing config file")
    finally:
        lst.close()


if __name__ == "__main__":
    h.main(test_version_help, test_shipped_config, test_good_configs,
           test_bad_configs)
