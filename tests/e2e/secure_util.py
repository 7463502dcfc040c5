"""Helpers for the secured / clustered broker tests (test_tls.py,
test_auth.py, test_cluster.py, test_edge.py, test_shared_sub.py).

Not a test itself (run_tests.py runs test_*.py only).  Nothing here edits
harness.py: subclasses and small functions on top of it.

  make_pki        a test CA, server and client certificates (openssl)
  TLSSubscriber   harness.Subscriber over TLS with a client certificate
  Ejabberd        a private ejabberd node (own name, ports, dirs) on loopback
  daemon_log_wait the first daemon stderr line satisfying a predicate
"""

import os
import re
import shutil
import ssl
import subprocess
import time

import harness as h
from harness import check


def require(prog, why):
    if shutil.which(prog) is None:
        raise h.Skip("%s not installed (%s); make test installs it via "
                     "scripts/deps.sh" % (prog, why))


def run(argv, cwd=None, timeout=30, input=None):
    p = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=timeout,
                       input=input)
    if p.returncode != 0:
        h.fail("%s failed (exit %d): %s" % (" ".join(argv), p.returncode,
                                            p.stderr.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


def _key(path):
    run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-out", path])
    os.chmod(path, 0o600)


def make_ca(d, name="ca", cn="qmp2mqtt test CA"):
    """A self-signed CA in d: (crt, key)."""
    key = os.path.join(d, name + ".key")
    crt = os.path.join(d, name + ".crt")
    _key(key)
    run(["openssl", "req", "-x509", "-new", "-key", key, "-out", crt,
         "-days", "2", "-subj", "/CN=" + cn,
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    return crt, key


def make_cert(d, name, ca, cn, sans=(), client=False):
    """A certificate for cn signed by ca=(crt, key); sans like
    ("DNS:localhost", "IP:127.0.0.1").  Returns (crt, key)."""
    key = os.path.join(d, name + ".key")
    csr = os.path.join(d, name + ".csr")
    crt = os.path.join(d, name + ".crt")
    ext = os.path.join(d, name + ".ext")
    _key(key)
    run(["openssl", "req", "-new", "-key", key, "-out", csr,
         "-subj", "/CN=" + cn])
    lines = ["basicConstraints=CA:FALSE",
             "extendedKeyUsage=%s" % ("clientAuth" if client
                                      else "serverAuth")]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    with open(ext, "w") as f:
        f.write("\n".join(lines) + "\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
         "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext])
    return crt, key


def make_pki(ctx, server_sans=("DNS:localhost", "IP:127.0.0.1"),
             clients=(h.HOST,), server_cn="localhost"):
    """A CA, a server certificate (CN localhost, the given SANs), one
    client certificate per CN in clients, and an unrelated second CA.
    (OpenSSL falls back to the CN when no DNS name is among the SANs: a
    certificate "for 127.0.0.1 only" needs another CN.)
    Returns a dict of paths: ca, ca_key, srv, srv_key, other_ca,
    client[CN] = (crt, key), dir."""
    require("openssl", "test certificates")
    d = ctx.subdir("pki")
    ca = make_ca(d)
    other = make_ca(d, "otherca", "some other CA")
    srv = make_cert(d, "server", ca, server_cn, server_sans)
    out = {"dir": d, "ca": ca[0], "ca_key": ca[1], "srv": srv[0],
           "srv_key": srv[1], "other_ca": other[0], "client": {}}
    for cn in clients:
        out["client"][cn] = make_cert(d, "client-" + cn, ca, cn, client=True)
    return out


def hashed_dir(ctx, certs, name="capath"):
    """A CApath directory: the certificates with `openssl rehash` links."""
    d = ctx.subdir(name)
    for c in certs:
        shutil.copy(c, d)
    run(["openssl", "rehash", d])
    check(any(re.match(r"^[0-9a-f]{8}\.0$", n) for n in os.listdir(d)),
          "openssl rehash made no hash link in %s" % d)
    return d


def tls_listener(port, pki, extra=()):
    """mosquitto.conf lines for a TLS listener with client certificates
    (README "Safe fleet set-up")."""
    return "\n".join(["listener %d 127.0.0.1" % port,
                      "cafile %s" % pki["ca"],
                      "certfile %s" % pki["srv"],
                      "keyfile %s" % pki["srv_key"],
                      "require_certificate true",
                      "use_identity_as_username true"] + list(extra))


class TLSSubscriber(h.Subscriber):
    """harness.Subscriber over TLS with a client certificate (its CN is
    the broker's user name under use_identity_as_username)."""

    def __init__(self, ctx, port, cafile, cert, host="127.0.0.1", **kw):
        super().__init__(ctx, port, **kw)
        self.c.tls_set(ca_certs=cafile, certfile=cert[0], keyfile=cert[1],
                       cert_reqs=ssl.CERT_REQUIRED)
        self.host = host

    def start(self, timeout=10.0):
        if not self.started:
            # harness connects to 127.0.0.1, which is in the server's SANs
            pass
        return super().start(timeout)


class PwSubscriber(h.Subscriber):
    """harness.Subscriber with a user name and password."""

    def __init__(self, ctx, port, user, password, **kw):
        super().__init__(ctx, port, **kw)
        self.c.username_pw_set(user, password)


def daemon_log_wait(daemon, pred, timeout=10.0, what="log line"):
    """The first line of the daemon's stderr with pred(line) (a bounded
    poll: nothing notifies a write to a file)."""
    for _ in h.deadline_loop(timeout * h.SLOW, 0.05):
        for line in daemon.log_text().splitlines():
            if pred(line):
                return line
    h.fail("daemon %s: no %s within %.1fs; stderr tail:\n%s" %
           (daemon.name, what, timeout * h.SLOW,
            "".join(h.tail_file(daemon.logpath, 30))))


def write_secret(path, text, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


# ---------------------------------------------------------------- ejabberd

EJ_YML = """\
hosts: ["localhost"]
loglevel: info
auth_method: [anonymous]
anonymous_protocol: login_anon
listen:
  - port: %(port)d
    ip: "127.0.0.1"
    module: mod_mqtt
modules:
  mod_mqtt: {}
"""

EJ_CTL = """\
ERLANG_NODE=%(node)s
INET_DIST_INTERFACE=127.0.0.1
ERL_EPMD_ADDRESS=127.0.0.1
"""


class Ejabberd:
    """A private ejabberd node (mod_mqtt on 127.0.0.1:port, anonymous
    login: user names name@localhost, any password) in a directory of its
    own readable to the ejabberd user (the test's temp dir is root-only).
    start() returns once the MQTT port accepts."""

    def __init__(self, ctx, name, port=None):
        require("ejabberdctl", "clustered broker")
        import pwd
        import tempfile
        self.ctx = ctx
        self.port = port or h.free_port()
        self.node = "%s@localhost" % name
        self.dir = tempfile.mkdtemp(prefix="q2m-ej-%s-" % name)
        uid = pwd.getpwnam("ejabberd")
        for sub in ("spool", "log"):
            os.makedirs(os.path.join(self.dir, sub))
        with open(os.path.join(self.dir, "ejabberd.yml"), "w") as f:
            f.write(EJ_YML % {"port": self.port})
        with open(os.path.join(self.dir, "inetrc"), "w") as f:
            f.write("{lookup,[file,native]}.\n")
        with open(os.path.join(self.dir, "ejabberdctl.cfg"), "w") as f:
            f.write(EJ_CTL % {"node": self.node})
        for root, dirs, files in os.walk(self.dir):
            for n in dirs + files + [""]:
                os.chown(os.path.join(root, n), uid.pw_uid, uid.pw_gid)
        self.logpath = os.path.join(self.dir, "log", "ejabberd.log")
        self.proc = None
        ctx.register(self)

    def ctl_argv(self, *args):
        return ["ejabberdctl", "--config-dir", self.dir, "--spool",
                os.path.join(self.dir, "spool"), "--logs",
                os.path.join(self.dir, "log")] + list(args)

    def ctl(self, *args, timeout=60):
        p = subprocess.run(self.ctl_argv(*args), capture_output=True,
                           timeout=timeout * h.SLOW, cwd=self.dir)
        return p.returncode, (p.stdout + p.stderr).decode(errors="replace")

    def start(self, timeout=60):
        self.proc = h.Proc("ejabberd-" + self.node,
                           self.ctl_argv("foreground"),
                           os.path.join(self.dir, "foreground.log"),
                           cwd=self.dir)
        self.wait_port(timeout)
        return self

    def wait_port(self, timeout=60):
        for _ in h.deadline_loop(timeout * h.SLOW, 0.1):
            if not self.proc.alive():
                h.fail("ejabberd %s exited:\n%s" % (self.node, "".join(
                    h.tail_file(self.proc.logpath) +
                    h.tail_file(self.logpath))))
            if h.port_accepts(self.port):
                h.log("ejabberd %s up on %d" % (self.node, self.port))
                return
        h.fail("ejabberd %s: port %d not accepting within %ds" %
               (self.node, self.port, timeout))

    def stop(self):
        """`ejabberdctl stop`, then the foreground process must end."""
        self.ctl("stop", timeout=30)
        if self.proc is not None and self.proc.wait(30) is None:
            self.proc.kill()

    def close(self):
        if self.proc is not None and self.proc.alive():
            try:
                self.ctl("stop", timeout=20)
            except Exception:
                pass
            if self.proc.wait(20) is None:
                self.proc.kill()
        # The BEAM runs as the ejabberd user under su: end what is left of
        # this node only, by pid (its own directory is on its command line).
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if (self.dir + "/spool").encode() in cmd:
                try:
                    os.kill(int(pid), 9)
                except OSError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self):
        return [("ejabberd " + self.node, self.logpath)]
