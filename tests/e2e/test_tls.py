#!/usr/bin/python3
"""TLS to the broker (README "Safe fleet set-up"; docs/notes-secure.md).

A test CA, a server certificate (CN localhost; SANs as each test needs) and
a client certificate with CN = the bridge's host name, all made here with
openssl; mosquitto with a TLS listener (require_certificate true,
use_identity_as_username true) beside its plain one, on which the test's
observer subscribes.

Checked: mqtts:// with cafile and with capath (an `openssl rehash`
directory) connects and publishes (an event from the simulator arrives);
a wrong CA fails with "certificate verify failed" in words at info level and
publishes nothing; a URI whose host the certificate does not name fails
(host name check) and publishes nothing, in both directions (certificate for
"localhost" only, URI 127.0.0.1; certificate for 127.0.0.1 only, URI
localhost); with mqtt.tls.verify = false the same connects, and -n warns.
"""
# TIMEOUT = 120

import os
import time

import harness as h
from harness import check
import secure_util as su

HOSTS_TOPIC = "%s/%s/#" % (h.BASE, h.HOST)


def tls_broker(ctx, pki):
    port = h.free_port()
    b = h.Mosquitto(ctx, extra=su.tls_listener(port, pki)).start()
    b.tls_port = port
    for _ in h.deadline_loop(10 * h.SLOW, 0.02):
        if h.port_accepts(port):
            break
    return b


def tls_daemon(ctx, broker, pki, vms, host="localhost", name=None, **tls):
    cert = pki["client"][h.HOST]
    t = {"certfile": cert[0], "keyfile": cert[1]}
    if "capath" not in tls:
        t["cafile"] = pki["ca"]
    t.update(tls)
    return h.Daemon(ctx, vms=vms, port=broker.port, name=name,
                    mqtt={"uri": "mqtts://%s:%d" % (host, broker.tls_port),
                          "tls": t}).start()


def connected_and_publishing(ctx, broker, sim, sub, d, vm="vm1"):
    h.wait_online(sub, [vm], 20)
    sim.wait_ready(1, 20)
    mark = sub.mark(h.event_topic(vm))
    sim.cmd("exit %s primary error" % vm)
    m = sub.wait_for(lambda m: True, 10, topic=h.event_topic(vm), since=mark,
                     what="event over TLS")
    h.check_event(m, vm, d)
    # The broker saw the client certificate: its CN is the user name.
    broker.wait_log(r"New client connected .* u'%s'" % h.HOST, 5)


def refused(ctx, sim, sub, d, words, what):
    line = su.daemon_log_wait(d, lambda ln: "mqtt: cannot connect" in ln
                              and words in ln, 15, what)
    h.log("%s: %s" % (what, line))
    check(" info: " in line, "connect failure not at info level: %s" % line)
    # Keep it failing for a while with an event waiting: nothing arrives.
    sim.wait_ready(1, 20)
    sim.cmd("exit vm1 primary error")
    time.sleep(1.5)
    d.check_alive()
    got = [m for m in sub.all() if m.topic.startswith(h.BASE + "/" + h.HOST)]
    check(not got, "%s: the bridge published: %r" % (what, got[:3]))
    check(not any("mqtt: connected" in ln
                  for ln in d.log_text().splitlines()),
          "%s: the daemon says it connected" % what)


def test_cafile(ctx):
    pki = su.make_pki(ctx)
    broker = tls_broker(ctx, pki)
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(1)
    d = tls_daemon(ctx, broker, pki, sim.vms())
    connected_and_publishing(ctx, broker, sim, sub, d)
    su.daemon_log_wait(d, lambda ln: "mqtt: connected to mqtts://localhost:%d"
                       % broker.tls_port in ln, 5, "connected line")


def test_capath(ctx):
    pki = su.make_pki(ctx)
    capath = su.hashed_dir(ctx, [pki["other_ca"], pki["ca"]])
    broker = tls_broker(ctx, pki)
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(1)
    d = tls_daemon(ctx, broker, pki, sim.vms(), capath=capath)
    connected_and_publishing(ctx, broker, sim, sub, d)


def test_wrong_ca(ctx):
    pki = su.make_pki(ctx)
    broker = tls_broker(ctx, pki)
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(1)
    d = tls_daemon(ctx, broker, pki, sim.vms(), cafile=pki["other_ca"])
    refused(ctx, sim, sub, d, "TLS handshake failed: certificate verify "
            "failed", "wrong CA")
    # A capath without the broker's CA: the same.
    capath = su.hashed_dir(ctx, [pki["other_ca"]], "capath-other")
    d2 = tls_daemon(ctx, broker, pki, [("vmx", "unix:/nonexistent")],
                    capath=capath, name="capath-other")
    su.daemon_log_wait(d2, lambda ln: "certificate verify failed" in ln, 15,
                       "capath without the CA refused")


HOSTNAME_WORDS = "its certificate does not name the host of mqtt.uri"


def test_wrong_host_name(ctx):
    # The certificate names only "localhost"; the URI says 127.0.0.1.
    pki = su.make_pki(ctx, server_sans=("DNS:localhost",))
    broker = tls_broker(ctx, pki)
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(1)
    d = tls_daemon(ctx, broker, pki, sim.vms(), host="127.0.0.1")
    refused(ctx, sim, sub, d, HOSTNAME_WORDS, "IP not in the certificate")
    d.stop()

    # verify = false: it connects (and -n warns about it).
    d2 = tls_daemon(ctx, broker, pki, sim.vms(), host="127.0.0.1",
                    verify=False, name="noverify")
    connected_and_publishing(ctx, broker, sim, sub, d2)
    rc, out, err = h.run_daemon(["-n", "-c", d2.conf])
    h.check_eq(rc, 0, "-n exit status with verify = false")
    check("warning: mqtt.tls.verify = false" in err,
          "-n does not warn about verify = false: %r" % err)
    check("mqtt.tls.verify = false" in d2.log_text(),
          "the daemon does not warn about verify = false at start")


def test_wrong_host_name_reverse(ctx):
    # The certificate names only 127.0.0.1; the URI says localhost.
    pki = su.make_pki(ctx, server_sans=("IP:127.0.0.1",),
                      server_cn="broker.test")
    broker = tls_broker(ctx, pki)
    sub = ctx.subscriber(broker.port)
    sim = ctx.sim(1)
    d = tls_daemon(ctx, broker, pki, sim.vms(), host="localhost")
    refused(ctx, sim, sub, d, HOSTNAME_WORDS, "name not in the certificate")
    d.stop()
    d2 = tls_daemon(ctx, broker, pki, sim.vms(), host="127.0.0.1",
                    name="by-ip")
    connected_and_publishing(ctx, broker, sim, sub, d2)


if __name__ == "__main__":
    h.main(test_cafile, test_capath, test_wrong_ca, test_wrong_host_name,
           test_wrong_host_name_reverse)
