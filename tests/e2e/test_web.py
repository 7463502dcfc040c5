#!/usr/bin/python3
"""The live fleet page (web/, web/README.md) in a real browser.

mosquitto serves the page itself: a websockets listener with http_dir =
web/dist (built by `make web`: the page's files and mqtt.js from npm)
beside a normal listener for the bridge.  Debian's chromium, driven by
tests/web/drive.mjs (playwright-core from npm, no browser download), opens
http://127.0.0.1:WSPORT/ and the page connects back to that listener.

Checked: the page loads from mosquitto's listener and shows the running
bridge's VMs (mode, QMP availability, pair partner, bridge online and its
stats); it follows a simulated COLO_EXIT and a mode change within a
second or two (the bridge polls query-colo-status every second); the "not
protected" filter; a takeover click (confirmation naming the VM and its
mode, cancel does nothing, confirm) reaches the simulator as one
x-colo-lost-heartbeat and the page shows the result ok; ?takeover=0 hides
the buttons; kill -9 of the bridge (keepalive 2: the Last Will fires in
about 3 s) shows every VM unavailable although their retained
availability still says online; the broker killed: a banner, and back when
it is restarted.  A real QEMU COLO pair failed over by the test's own QMP
monitor (x-colo-lost-heartbeat on the primary): the page shows mode none.
1000 simulated VMs: the page renders them (virtualized list), the search
finds vm777, the filter finds the one VM out of COLO.

Screenshots go to each test's directory and build/web-screenshots/
(build/web-screenshot.png: the fleet after a takeover).  Skipped (77) only
when chromium is not installed or cannot start here.
"""
# TIMEOUT = 180

import json
import os
import shutil
import subprocess
import tempfile
import time

import harness as h
from harness import check, check_eq, fail

WEB = os.path.join(h.ROOT, "web")
DIST = os.path.join(WEB, "dist")
TESTS_WEB = os.path.join(h.ROOT, "tests", "web")
DRIVE = os.path.join(TESTS_WEB, "drive.mjs")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = os.path.join(h.ROOT, "build", "web-screenshots")
HB = "x-colo-lost-heartbeat"


# ---------------------------------------------------------------- building

_built = []


def build_once():
    """make web (npm ci of mqtt.js, page into web/dist) and npm ci of
    playwright-core in tests/web; once per run."""
    if _built:
        return
    if not os.access(CHROMIUM, os.X_OK):
        raise h.Skip("%s not installed (make test installs Debian's chromium "
                     "through scripts/deps.sh)" % CHROMIUM)
    for tool in ("node", "npm", "make"):
        check(h.which(tool), "%s not installed (scripts/deps.sh installs "
              "nodejs and npm)" % tool)
    t0 = time.monotonic()
    r = subprocess.run(["make", "-C", h.ROOT, "--no-print-directory", "web"],
                       capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    check(r.returncode == 0, "make web failed:\n%s%s" % (r.stdout[-3000:],
                                                         r.stderr[-3000:]))
    for f in ("index.html", "fleet.js", "fleet.css", "mqtt.min.js"):
        check(os.path.isfile(os.path.join(DIST, f)), "web/dist/%s missing "
              "after make web" % f)
    stamp = os.path.join(TESTS_WEB, "node_modules", ".package-lock.json")
    lock = os.path.join(TESTS_WEB, "package-lock.json")
    if not os.path.exists(stamp) or \
            os.path.getmtime(stamp) < os.path.getmtime(lock):
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund",
                            "--loglevel=error"], cwd=TESTS_WEB,
                           capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
        check(r.returncode == 0, "npm ci in tests/web failed:\n%s%s" %
              (r.stdout[-3000:], r.stderr[-3000:]))
    h.log("web page built, playwright-core ready (%.1fs)" %
          (time.monotonic() - t0))
    _built.append(True)


# ---------------------------------------------------------------- browser

class Browser:
    """tests/web/drive.mjs: one JSON request per line, answers by id."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.dir = ctx.subdir("browser")
        self.n = 0
        self.shots = []
        self.proc = h.Proc("drive", ["node", DRIVE],
                           os.path.join(self.dir, "drive.stderr"),
                           stdin=subprocess.PIPE, stdout_pipe=True,
                           cwd=TESTS_WEB)
        self.out = h.LineLog(self.proc.p.stdout,
                             os.path.join(self.dir, "drive.stdout"))
        ctx.register(self)
        hit = self.out.wait_line(r"^\{\"ready\"", 90 * h.SLOW,
                                 what="browser start")
        first = json.loads(self.out.lines[hit.i])
        if not first.get("ready"):
            raise h.Skip("chromium cannot run here: %s" %
                         first.get("launch_error"))
        h.log("chromium %s running (drive pid %d)" % (first.get("version"),
                                                      self.proc.pid))

    def req(self, op, timeout=10.0, **kw):
        self.n += 1
        rid = self.n
        kw.update(op=op, id=rid, timeout=int(timeout * h.SLOW * 1000))
        mark = self.out.mark()
        try:
            self.proc.p.stdin.write((json.dumps(kw) + "\n").encode())
            self.proc.p.stdin.flush()
        except OSError as e:
            fail("browser driver stdin: %s" % e)
        hit = self.out.wait_line(r'^\{"id":%d,' % rid, timeout * h.SLOW + 20,
                                 since=mark, what="browser answer")
        ans = json.loads(self.out.lines[hit.i])
        if not ans.get("ok"):
            raise BrowserError(op, ans.get("error"))
        return ans.get("value")

    def goto(self, url, page="main"):
        return self.req("goto", 30, url=url, page=page)

    def wait(self, js, timeout=10.0, what=None, page="main"):
        """Waits until the JS expression is truthy; returns its value.  On
        timeout: a screenshot and the page's text in the failure."""
        try:
            return self.req("wait", timeout, js=js, page=page)
        except BrowserError as e:
            shot = self.screenshot("failed-%d" % self.n, page=page)
            try:
                text = self.eval("document.body.innerText", page=page)
            except BrowserError:
                text = "?"
            fail("page: timeout (%.0fs) waiting for %s (%s); screenshot %s;"
                 " page text:\n%s" % (timeout * h.SLOW, what or js, e, shot,
                                      (text or "")[:3000]))

    def eval(self, js, page="main"):
        return self.req("eval", 10, js=js, page=page)

    def click(self, selector, page="main"):
        return self.req("click", 10, selector=selector, page=page)

    def fill(self, selector, text, page="main"):
        return self.req("fill", 10, selector=selector, text=text, page=page)

    def screenshot(self, name, page="main"):
        path = os.path.join(self.ctx.dir, "%s-%s.png" % (self.ctx.name,
                                                         name))
        self.req("screenshot", 20, path=path, page=page)
        self.shots.append(path)
        os.makedirs(SHOTS, exist_ok=True)
        shutil.copy(path, SHOTS)
        h.log("screenshot %s" % path)
        return path

    def check_no_page_errors(self):
        """No uncaught exception in any page (drive.mjs logs them)."""
        errs = [ln for ln in self.proc.log_text().splitlines()
                if "PAGE ERROR" in ln]
        check(not errs, "errors in the page:\n" + "\n".join(errs[:20]))

    def close(self):
        if self.proc.alive():
            try:
                self.proc.p.stdin.close()
            except OSError:
                pass
            if self.proc.wait(10) is None:
                self.proc.kill()
        self.proc.kill()

    def logs(self):
        return [("browser", self.proc.logpath)]


class BrowserError(Exception):
    def __init__(self, op, msg):
        Exception.__init__(self, "%s: %s" % (op, (msg or "")[:1500]))


# ---------------------------------------------------------------- setup

def web_broker(ctx):
    """mosquitto with a normal listener (the bridge) and a websockets one
    serving web/dist (mosquitto 2.0.11 refuses a websockets listener
    alone)."""
    ws = h.free_port()
    m = h.Mosquitto(ctx, extra="listener %d 127.0.0.1\nprotocol websockets\n"
                    "http_dir %s" % (ws, DIST))
    m.ws = ws
    m.url = "http://127.0.0.1:%d/" % ws
    return m.start()


def web_daemon(ctx, vms, port, takeover=True, stats_s=2):
    """A bridge whose Last Will fires fast (keepalive 2), polling
    query-colo-status every second, stats every stats_s seconds, takeover
    with auth "acl" (the page cannot sign)."""
    d = h.Daemon(ctx, vms=vms, port=port,
                 bridge={"status_interval_s": 1, "stats_interval_s": stats_s},
                 mqtt={"keepalive": 2})
    if takeover:
        d.text += 'takeover = { enabled = true; auth = "acl"; };\n'
        with open(d.conf, "w") as f:
            f.write(d.text)
    return d.start()


def wait_cmd_subscribed(broker, daemon, timeout=10.0):
    """The broker acknowledged the bridge's takeover subscription."""
    import re
    cid = re.escape(daemon.client_id)
    broker.wait_log(r"Received SUBSCRIBE from %s\b" % cid, timeout)
    broker.wait_log(r"cmd/takeover", timeout)
    broker.wait_log(r"Sending SUBACK to %s\b" % cid, timeout)


def sel(vm, host=h.HOST):
    return '.row.vm[data-host="%s"][data-vm="%s"]' % (host, vm)


def js_str(s):
    return json.dumps(s)


def vm_ready(vm, mode=None, avail=None, text=None, tk=None, host=h.HOST):
    """A JS expression: the VM's row with these properties, or false.
    Its value is the row's text."""
    conds = []
    if mode is not None:
        conds.append("r.dataset.mode === %s" % js_str(mode))
    if avail is not None:
        conds.append("r.dataset.avail === %s" % js_str(avail))
    if tk is not None:
        conds.append("r.dataset.tk === %s" % js_str(tk))
    if text is not None:
        conds.append("r.innerText.includes(%s)" % js_str(text))
    return ("(() => { const r = document.querySelector(%s); "
            "if (!r) return false; return (%s) && r.innerText; })()" %
            (js_str(sel(vm, host)), " && ".join(conds) or "true"))


def summary(b):
    return b.eval("({vms: +document.getElementById('n-vms').textContent, "
                  "prot: +document.getElementById('n-protected').textContent,"
                  " unprot: +document.getElementById('n-unprotected')"
                  ".textContent, unavail: +document.getElementById("
                  "'n-unavailable').textContent, rows: document"
                  ".querySelectorAll('.row.vm').length})")


def open_page(ctx, broker, query=""):
    build_once()
    b = Browser(ctx)
    b.goto(broker.url + query)
    b.wait("document.body.dataset.conn === 'online'", 15,
           "the page connected to the broker")
    # The page really came from mosquitto's listener, with its CSS applied
    # (mosquitto's http_dir sends no Content-Type).
    check_eq(b.eval("location.port"), str(broker.ws), "page port")
    check_eq(b.eval("getComputedStyle(document.querySelector('.layout'))"
                    ".display"), "flex", "fleet.css applied")
    check_eq(b.eval("typeof mqtt"), "object", "mqtt.js loaded")
    return b


# ---------------------------------------------------------------- tests

def test_live_page(ctx):
    """Simulated VMs: display, live changes, takeover, dead bridge, lost
    broker."""
    build_once()
    broker = web_broker(ctx)
    sim = ctx.sim(4)
    # vm1 primary <-> vm2 secondary (a pair), vm3 primary alone, vm4 out
    # of COLO.
    sim.cmd("state vm2 secondary none none")
    sim.cmd("state vm4 none secondary request")
    vms = sim.vms()
    cfg = [{"name": "vm1", "qmp": vms[0][1], "peer": "hv1/vm2"},
           {"name": "vm2", "qmp": vms[1][1], "peer": "hv1/vm1"},
           {"name": "vm3", "qmp": vms[2][1]},
           {"name": "vm4", "qmp": vms[3][1]}]
    d = web_daemon(ctx, cfg, broker.port)
    sim.wait_ready(4, 20)

    b = open_page(ctx, broker)
    for vm, mode in (("vm1", "primary"), ("vm2", "secondary"),
                     ("vm3", "primary"), ("vm4", "none")):
        txt = b.wait(vm_ready(vm, mode=mode, avail="available"), 15,
                     "%s shown in mode %s, available" % (vm, mode))
        h.log("row %s: %r" % (vm, txt))
    b.wait(vm_ready("vm1", text="hv1/vm2") + " && " +
           vm_ready("vm1", text="secondary"), 10,
           "vm1's pair partner hv1/vm2, secondary")
    b.wait(vm_ready("vm2", text="hv1/vm1"), 10, "vm2's partner hv1/vm1")
    b.wait("(() => { const r = document.querySelector('.row.host"
           "[data-host=\"hv1\"]'); return r && r.dataset.bridge === "
           "'online' && r.innerText.includes('published') && "
           "r.innerText; })()", 15, "host hv1: bridge online with stats")
    s = summary(b)
    check_eq((s["vms"], s["prot"], s["unprot"], s["unavail"]), (4, 3, 1, 0),
             "summary (VMs, protected, not protected, unavailable)")
    b.screenshot("loaded")

    # A COLO_EXIT, then the mode change the bridge reads back.
    t0 = time.monotonic()
    sim.cmd("exit vm3 primary error")
    b.wait(vm_ready("vm3", text="primary · error"), 5,
           "vm3's last exit primary/error")
    b.wait("document.getElementById('log').innerText.includes("
           "'COLO exit: mode primary, reason error')", 5,
           "the exit in the event log")
    h.log("exit shown after %.2fs" % (time.monotonic() - t0))
    t0 = time.monotonic()
    sim.cmd("state vm3 none primary error")
    b.wait(vm_ready("vm3", mode="none", avail="available",
                    text="was primary"), 5, "vm3 in mode none")
    h.log("mode change shown after %.2fs (bridge poll: 1 s)" %
          (time.monotonic() - t0))
    b.wait("document.getElementById('n-unprotected').textContent === '2'",
           5, "2 VMs not protected")
    b.req("eval", js="(() => { const f = document.getElementById('filter');"
          " f.value = 'unprotected'; f.dispatchEvent(new Event('change'));"
          " return true; })()")
    got = b.wait("(() => { const v = [...document.querySelectorAll("
                 "'.row.vm')].map(r => r.dataset.vm).sort(); return "
                 "v.join() === 'vm3,vm4' && v; })()", 5,
                 "filter 'not protected' shows vm3 and vm4")
    h.log("not protected: %s" % got)
    b.req("eval", js="(() => { const f = document.getElementById('filter');"
          " f.value = 'all'; f.dispatchEvent(new Event('change'));"
          " return true; })()")
    check_eq(b.wait("document.querySelectorAll('.row.vm').length"),
             4, "rows after the filter is reset")
    check_eq(b.eval("document.querySelectorAll(%s).length" %
                    js_str(sel("vm4") + " button.tk")), 0,
             "takeover button of vm4 (mode none)")

    # Takeover: vm1 is the primary of a pair whose secondary is alive in
    # COLO, so the pair rules allow it.
    wait_cmd_subscribed(broker, d)
    b.click(sel("vm1") + " button.tk")
    b.wait("document.getElementById('confirm').open", 5, "confirmation")
    text = b.eval("document.getElementById('confirm').innerText")
    h.log("confirmation: %r" % text)
    check("vm1" in text and "primary" in text,
          "confirmation names the VM and its mode: %r" % text)
    b.screenshot("confirm")
    b.click("#confirm button[value=cancel]")
    b.wait("!document.getElementById('confirm').open", 5, "dialog closed")
    check_eq(sim.count("vm1")["heartbeats"], 0, "heartbeats after cancel")

    b.click(sel("vm1") + " button.tk")
    b.wait("document.getElementById('confirm').open", 5, "confirmation")
    t0 = time.monotonic()
    b.click("#cf-ok")
    txt = b.wait(vm_ready("vm1", tk="ok", text="takeover ok"), 20,
                 "vm1's takeover result ok on the page")
    h.log("takeover result shown after %.2fs: %r" %
          (time.monotonic() - t0, txt))
    check_eq(sim.count("vm1")["heartbeats"], 1, "heartbeats of vm1")
    check_eq(sim.count("vm2")["heartbeats"], 0, "heartbeats of vm2")
    sim.wait_async(r"^recv vm1 %s$" % HB, 5)
    b.wait(vm_ready("vm1", mode="none"), 5, "vm1 in mode none")
    b.wait("document.getElementById('log').innerText.includes("
           "'takeover ok')", 5, "the result in the event log")
    shot = b.screenshot("takeover")
    shutil.copy(shot, os.path.join(h.ROOT, "build", "web-screenshot.png"))

    # ?takeover=0: no buttons (vm2 is still a secondary).
    b.goto(broker.url + "?takeover=0", page="ro")
    b.wait(vm_ready("vm2", mode="secondary"), 10, "vm2 on the read-only "
           "page", page="ro")
    check_eq(b.eval("document.querySelectorAll('button.tk').length",
                    page="ro"), 0, "takeover buttons with ?takeover=0")
    check(b.eval("document.querySelectorAll('button.tk').length") >= 1,
          "takeover buttons on the normal page")
    b.req("close", page="ro")

    # The bridge dies: its VMs keep their retained availability "online";
    # the Last Will on bridge/state makes them unavailable.
    t0 = time.monotonic()
    d.kill9()
    b.wait("(() => [...document.querySelectorAll('.row.vm')].every("
           "r => r.dataset.avail === 'unavailable') && document."
           "querySelector('.row.host[data-host=\"hv1\"]').dataset.bridge "
           "=== 'offline')()", 15, "every VM unavailable, bridge offline")
    h.log("dead bridge shown after %.2fs (keepalive 2 s)" %
          (time.monotonic() - t0))
    check_eq(b.eval("document.querySelectorAll('button.tk').length"), 0,
             "takeover buttons while the bridge is offline")
    s = summary(b)
    check_eq((s["unavail"], s["prot"]), (4, 0), "summary (unavailable, "
             "protected) with the bridge dead")
    b.screenshot("bridge-dead")

    # The broker goes away: a banner; it comes back: reconnected.
    broker.kill()
    b.wait("document.body.dataset.conn === 'offline' && !document."
           "getElementById('banner').hidden && document.getElementById("
           "'banner').innerText", 15, "the lost-broker banner")
    b.screenshot("broker-lost")
    broker.start()
    b.wait("document.body.dataset.conn === 'online' && document."
           "getElementById('banner').innerText.includes('Reconnected')",
           20, "reconnected")
    b.check_no_page_errors()


def test_qemu_failover(ctx):
    """A real QEMU COLO pair: failover by the test's own QMP monitor."""
    build_once()
    h.require_qemu()
    pair = ctx.qemu_pair()
    broker = web_broker(ctx)
    web_daemon(ctx, [{"name": "pri", "qmp": "unix:" + pair.pri_bridge,
                      "peer": "hv1/sec"},
                     {"name": "sec", "qmp": "unix:" + pair.sec_bridge,
                      "peer": "hv1/pri"}], broker.port, takeover=False)
    b = open_page(ctx, broker)
    b.wait(vm_ready("pri", mode="primary", avail="available",
                    text="hv1/sec"), 20, "pri primary, partner hv1/sec")
    b.wait(vm_ready("sec", mode="secondary", avail="available",
                    text="hv1/pri"), 20, "sec secondary, partner hv1/pri")
    b.wait(vm_ready("pri", text="QEMU 7.2"), 5, "QEMU version")
    b.screenshot("colo")
    t0 = time.monotonic()
    pair.pri_mon.cmd(HB)
    txt = b.wait(vm_ready("pri", mode="none", text="was primary"), 15,
                 "pri in mode none after its failover")
    h.log("failover shown after %.2fs: %r" % (time.monotonic() - t0, txt))
    b.wait(vm_ready("pri", text="primary · "), 10, "pri's last exit")
    b.wait("document.getElementById('log').innerText.includes('hv1/pri')"
           " && document.getElementById('log').innerText.includes("
           "'COLO exit')", 5, "pri's exit in the event log")
    b.screenshot("failover")
    b.check_no_page_errors()


class ShmSim(h.Sim):
    """The simulator with its sockets on a tmpfs (tests/sim/README.md)."""

    def __init__(self, ctx, vms, **kw):
        h.Sim.__init__(self, ctx, vms, **kw)
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.shm = tempfile.mkdtemp(prefix="q2m-web-", dir=shm)
        self.sockdir = self.shm
        self.argv[self.argv.index("--dir") + 1] = self.shm

    def close(self):
        try:
            h.Sim.close(self)
        finally:
            shutil.rmtree(self.shm, ignore_errors=True)


def test_thousand_vms(ctx):
    """1000 VMs: renders, search finds vm777, scrolls, filters."""
    build_once()
    broker = web_broker(ctx)
    sim = ShmSim(ctx, 1000).start()
    # Stats at the default period: one bridge's stats for 1000 VMs are
    # 130 KB, which mosquitto's websockets listener takes 1 to 3 s to send.
    web_daemon(ctx, sim.vms(), broker.port, takeover=False, stats_s=10)
    sim.wait_ready(1000, 60)
    b = open_page(ctx, broker)
    t0 = time.monotonic()
    b.wait("document.getElementById('n-protected').textContent === '1000'",
           60, "1000 VMs protected")
    s = summary(b)
    h.log("1000 VMs shown after %.2fs; rows in the DOM: %d" %
          (time.monotonic() - t0, s["rows"]))
    check(0 < s["rows"] < 100, "the list is virtualized (%d VM rows in "
          "the DOM)" % s["rows"])
    b.screenshot("thousand")

    t0 = time.monotonic()
    b.fill("#search", "vm777")
    txt = b.wait(vm_ready("vm777", mode="primary", avail="available"), 10,
                 "vm777 found by the search")
    h.log("search found vm777 in %.2fs: %r" % (time.monotonic() - t0, txt))
    check_eq(summary(b)["rows"], 1, "rows matching vm777")
    b.screenshot("search")

    b.fill("#search", "")
    b.req("eval", js="(() => { const l = document.getElementById('list');"
          " l.scrollTop = l.scrollHeight; l.dispatchEvent(new Event("
          "'scroll')); return true; })()")
    b.wait(vm_ready("vm1000"), 10, "vm1000 after scrolling to the end")
    h.log("scrolled to vm1000")

    sub = ctx.subscriber(broker.port, topics=(h.state_topic("vm500"),))
    t0 = time.monotonic()
    sim.cmd("state vm500 none primary request")
    m = sub.wait_json(h.state_topic("vm500"), lambda st: st["mode"] == "none",
                      15, "vm500's state with mode none")
    b.wait("document.getElementById('n-unprotected').textContent === '1'",
           10, "one VM not protected")
    h.log("vm500 out of COLO: published after %.2fs (bridge poll), shown "
          "%.2fs later" % (m.t - t0, time.monotonic() - m.t))
    b.req("eval", js="(() => { const f = document.getElementById('filter');"
          " f.value = 'unprotected'; f.dispatchEvent(new Event('change'));"
          " return true; })()")
    b.wait(vm_ready("vm500", mode="none") + " && document.querySelectorAll("
           "'.row.vm').length === 1", 10, "the filter shows vm500 only")
    b.check_no_page_errors()


def test_heartbeat_unconfirmed(ctx):
    """A heartbeat sent to vm1 whose outcome was never read (the
    simulator takes the command and never answers): vm1's row says so (its
    peer's takeovers are refused until a status read shows mode none)."""
    build_once()
    broker = web_broker(ctx)
    sim = ctx.sim(2)
    sim.cmd("state vm2 secondary none none")
    vms = sim.vms()
    cfg = [{"name": "vm1", "qmp": vms[0][1], "peer": "hv1/vm2"},
           {"name": "vm2", "qmp": vms[1][1], "peer": "hv1/vm1"}]
    d = h.Daemon(ctx, vms=cfg, port=broker.port,
                 bridge={"command_timeout_ms": 1000})
    d.text += 'takeover = { enabled = true; auth = "acl"; };\n'
    with open(d.conf, "w") as f:
        f.write(d.text)
    d.start()
    sim.wait_ready(2, 20)
    b = open_page(ctx, broker)
    b.wait(vm_ready("vm1", mode="primary", avail="available"), 15,
           "vm1 shown")
    wait_cmd_subscribed(broker, d)
    sim.cmd("stall vm1 %s on" % HB)
    b.click(sel("vm1") + " button.tk")
    b.wait("document.getElementById('confirm').open", 5, "confirmation")
    b.click("#cf-ok")
    txt = b.wait(vm_ready("vm1", text="heartbeat sent, outcome unknown"),
                 20, "vm1's row: heartbeat unconfirmed")
    h.log("row vm1: %r" % txt)
    b.check_no_page_errors()


if __name__ == "__main__":
    h.main(test_live_page, test_qemu_failover, test_thousand_vms,
           test_heartbeat_unconfirmed)
