#!/usr/bin/python3
"""Home Assistant MQTT discovery (homeassistant = { enabled = true; }).

Home Assistant itself is not installable here, so the test plays its part:
every discovery config the bridge publishes is checked against a schema
written from HA's documented MQTT platform options, and every template in
them is rendered with Jinja2 (HA's template engine, a sandboxed
environment with value_json, to_json and now() as HA provides them) on
payloads the bridge really published.

  test_configs        every config arrives retained and fits the schema;
                      one device per VM, via the bridge's device; the model
                      follows the QEMU version; buttons only where takeover
                      is on with auth acl
  test_values         templates on real state and colo_exit payloads: mode,
                      COLO protected ON/OFF, event type, last exit reason,
                      QMP connectivity
  test_availability   kill -9 of the bridge (keepalive 2): the Last Will on
                      bridge/state makes the VMs' entities unavailable
  test_ha_online      "online" on homeassistant/status: configs re-sent
  test_cleanup        restart without one VM (and one VM without takeover):
                      its configs cleared, the others kept, another host's
                      and foreign configs untouched
  test_cleanup_mqtt3  the same under MQTT 3.1.1 (no No Local), and a
                      resend on "online"
  test_button_press   the takeover button's command_template rendered and
                      published: one x-colo-lost-heartbeat, result ok
  test_hmac_no_button auth hmac: no button at all
  test_reload         SIGHUP: a VM removed has its configs cleared at once
                      (removed_vm_state keep: only HA's entities go), one
                      added is announced, the others untouched; the prefix
                      changed: old configs cleared, new ones announced;
                      turned off: configs left; on again: announced
  test_discover       socket discovery: a socket appearing in the watched
                      directory is announced, one going away is cleared
"""
# TIMEOUT = 240

import datetime
import json
import os
import re
import socket

import harness as h
from harness import check, check_eq
from test_takeover import (HB, result_topic, takeover_daemon,
                           with_dead_peer, DEAD)

PREFIX = "homeassistant"
NODE = "qmp2mqtt_" + h.HOST


def require_jinja():
    try:
        import jinja2.sandbox  # noqa: F401
    except ImportError:
        raise h.Skip("python3-jinja2 not installed")


# ------------------------------------------------------------------ schema
#
# From HA's documentation of MQTT discovery and of each platform's
# configuration variables (full names; the abbreviations are not used):
#   https://www.home-assistant.io/integrations/mqtt/  (discovery, device,
#     origin, availability)
#   https://www.home-assistant.io/integrations/sensor.mqtt/
#   https://www.home-assistant.io/integrations/binary_sensor.mqtt/
#   https://www.home-assistant.io/integrations/event.mqtt/
#   https://www.home-assistant.io/integrations/button.mqtt/

STR, LIST, BOOL, INT, DICT = str, list, bool, int, dict
TEMPLATE = "template"        # a string that must render with Jinja2

COMMON = {
    "availability": LIST, "availability_mode": STR,
    "availability_template": TEMPLATE, "availability_topic": STR,
    "device": DICT, "enabled_by_default": BOOL, "encoding": STR,
    "entity_category": STR, "entity_picture": STR, "icon": STR,
    "json_attributes_template": TEMPLATE, "json_attributes_topic": STR,
    "name": STR, "object_id": STR, "default_entity_id": STR,
    "origin": DICT, "payload_available": STR, "payload_not_available": STR,
    "qos": INT, "unique_id": STR,
}
PLATFORMS = {
    "sensor": ({"state_topic"}, dict(COMMON, **{
        "device_class": STR, "expire_after": INT, "force_update": BOOL,
        "last_reset_value_template": TEMPLATE, "options": LIST,
        "state_class": STR, "state_topic": STR,
        "suggested_display_precision": INT, "unit_of_measurement": STR,
        "value_template": TEMPLATE})),
    "binary_sensor": ({"state_topic"}, dict(COMMON, **{
        "device_class": STR, "expire_after": INT, "force_update": BOOL,
        "off_delay": INT, "payload_off": STR, "payload_on": STR,
        "state_topic": STR, "value_template": TEMPLATE})),
    "event": ({"state_topic", "event_types"}, dict(COMMON, **{
        "device_class": STR, "event_types": LIST, "state_topic": STR,
        "value_template": TEMPLATE})),
    "button": ({"command_topic"}, dict(COMMON, **{
        "command_template": TEMPLATE, "command_topic": STR,
        "device_class": STR, "payload_press": STR, "retain": BOOL})),
}
DEVICE_KEYS = {"configuration_url": STR, "connections": LIST,
               "hw_version": STR, "identifiers": LIST, "manufacturer": STR,
               "model": STR, "model_id": STR, "name": STR,
               "serial_number": STR, "suggested_area": STR,
               "sw_version": STR, "via_device": STR}
ORIGIN_KEYS = {"name": STR, "sw_version": STR, "support_url": STR}
AVAIL_KEYS = {"topic": STR, "payload_available": STR,
              "payload_not_available": STR, "value_template": TEMPLATE}
OBJECT_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def check_keys(obj, allowed, required, what):
    check(isinstance(obj, dict), "%s is not an object: %r" % (what, obj))
    for k in required:
        check(k in obj, "%s lacks required %r: %r" % (what, k, obj))
    for k, v in obj.items():
        check(k in allowed, "%s: %r is not a documented option" % (what, k))
        t = allowed[k]
        if t == TEMPLATE:
            check(isinstance(v, str), "%s.%s: not a string" % (what, k))
            env().from_string(v)    # must compile
        else:
            check(isinstance(v, t) and not (t is INT and isinstance(v, bool)),
                  "%s.%s: %r is not a %s" % (what, k, v, t.__name__))


def check_config(topic, cfg):
    """Checks one discovery config against the schema; returns the
    component."""
    m = re.match(r"^%s/([a-z_]+)/([^/]+)/([^/]+)/config$" % PREFIX, topic)
    check(m, "discovery topic shape: %s" % topic)
    comp, node, obj = m.groups()
    check(comp in PLATFORMS, "unexpected component %s" % comp)
    check(OBJECT_ID.match(node) and OBJECT_ID.match(obj),
          "node/object id outside [a-zA-Z0-9_-]: %s" % topic)
    required, allowed = PLATFORMS[comp]
    check_keys(cfg, allowed, required | {"unique_id", "name", "device",
                                         "origin"}, topic)
    dev = cfg["device"]
    check_keys(dev, DEVICE_KEYS, {"identifiers", "name", "manufacturer",
                                  "model"}, topic + " device")
    check(dev["identifiers"] and all(isinstance(i, str)
                                     for i in dev["identifiers"]),
          "device identifiers: %r" % dev)
    check_eq(dev["manufacturer"], "qmp2mqtt", "device manufacturer")
    check_keys(cfg["origin"], ORIGIN_KEYS, {"name"}, topic + " origin")
    check_eq(cfg["origin"]["name"], "qmp2mqtt", "origin name")
    if "entity_category" in cfg:
        check(cfg["entity_category"] in ("config", "diagnostic"),
              "entity_category %r" % cfg["entity_category"])
    if "availability" in cfg:
        check("availability_topic" not in cfg,
              "availability and availability_topic together")
        for a in cfg["availability"]:
            check_keys(a, AVAIL_KEYS, {"topic"}, topic + " availability")
        check(cfg.get("availability_mode") in ("all", "any", "latest"),
              "availability_mode %r" % cfg.get("availability_mode"))
    if cfg.get("device_class") == "enum":
        check(cfg.get("options"), "enum sensor without options")
        check("unit_of_measurement" not in cfg and
              "state_class" not in cfg, "enum sensor with a unit/class")
    if comp == "event":
        check(cfg["event_types"] and all(isinstance(x, str)
                                         for x in cfg["event_types"]),
              "event_types: %r" % cfg["event_types"])
    return comp


# ------------------------------------------------------------------ Jinja2

_env = []


def env():
    """A sandboxed Jinja2 environment with what HA adds for MQTT
    templates: to_json, now()."""
    if not _env:
        require_jinja()
        import jinja2.sandbox
        e = jinja2.sandbox.ImmutableSandboxedEnvironment()
        e.filters["to_json"] = lambda o: json.dumps(o)
        e.globals["now"] = lambda: datetime.datetime.now(
            datetime.timezone.utc)
        _env.append(e)
    return _env[0]


def render(tmpl, payload):
    """HA's rendering of a value template on an MQTT payload (bytes)."""
    text = payload.decode()
    try:
        value_json = json.loads(text)
    except ValueError:
        value_json = None
    kw = {"value": text}
    if value_json is not None:
        kw["value_json"] = value_json
    return env().from_string(tmpl).render(**kw).strip()


def available(sub, cfg):
    """What HA would make of cfg's availability from the last payloads
    the subscriber saw (availability_mode all: every topic available)."""
    for a in cfg["availability"]:
        m = sub.last(a["topic"])
        if m is None:
            return False
        v = render(a["value_template"], m.payload) if "value_template" in a \
            else m.payload.decode()
        if v != a.get("payload_available", "online"):
            return False
    return True


# ------------------------------------------------------------------ rig

def cfg_topic(comp, host, vm, key):
    return "%s/%s/%s/%s__%s__%s/config" % (PREFIX, comp, NODE, host, vm, key)


ENTITIES = (("sensor", "mode"), ("binary_sensor", "protected"),
            ("event", "colo_exit"), ("sensor", "last_exit_reason"),
            ("sensor", "qmp"))
BRIDGE_CFG = "%s/binary_sensor/%s/bridge/config" % (PREFIX, NODE)


def vm_topics(vm, button, host=h.HOST):
    t = [cfg_topic(c, host, vm, k) for c, k in ENTITIES]
    if button:
        t.append(cfg_topic("button", host, vm, "takeover"))
    return t


class Rig:
    """broker, simulator (secondaries vm1..vm3), subscriber on the
    bridge's and HA's topics, and a bridge with homeassistant enabled:
    takeover with auth acl for vm1 and vm3, not vm2; a dead primary as
    every VM's peer (so a secondary may take over)."""

    def __init__(self, ctx, mqtt=None, buttons=("vm1", "vm3"), sim=None,
                 broker=None, sub=None, auth="acl", omit=(), name=None,
                 ready=None):
        require_jinja()
        self.ctx = ctx
        self.broker = broker or ctx.mosquitto()
        self.sim = sim or ctx.sim(3, args=("--mode", "secondary"))
        self.sub = sub or ctx.subscriber(
            self.broker.port, topics=(h.BASE + "/#", PREFIX + "/#"))
        vms = [{"name": n, "qmp": a, "takeover": n in buttons}
               for n, a in self.sim.vms() if n not in omit]
        self.vms = [v["name"] for v in vms]
        self.buttons = [n for n in buttons if n not in omit]
        tk = {"enabled": False, "auth": auth}
        if auth == "hmac":
            from test_takeover import write_key
            tk["key_file"] = write_key(ctx)[0]
        self.daemon = takeover_daemon(ctx, with_dead_peer(ctx, vms),
                                      self.broker.port, tk, mqtt=mqtt,
                                      start=False, name=name)
        self.daemon.text += 'homeassistant = { enabled = true; ' \
            'prefix = "%s"; };\n' % PREFIX
        with open(self.daemon.conf, "w") as f:
            f.write(self.daemon.text)
        self.daemon.start()
        ready = self.vms if ready is None else ready
        self.sim.wait_ready(len(ready), 20)
        h.wait_online(self.sub, ready, 20)

    def expected(self):
        t = {BRIDGE_CFG}
        for vm in self.vms:
            t.update(vm_topics(vm, vm in self.buttons))
        t.update(vm_topics(DEAD, False))
        return t

    def configs(self, since=0, timeout=15.0):
        """Waits for one non-empty config on each expected topic (after
        position since of each topic); returns {topic: Msg}."""
        want = self.expected()
        got = {}

        def all_there(s):
            for t in want:
                if t in got:
                    continue
                lst = s.by_topic.get(t, [])
                for m in lst[since if isinstance(since, int) else
                             since.get(t, 0):]:
                    if m.payload:
                        got[t] = m
                        break
            return len(got) == len(want)
        try:
            self.sub.wait(all_there, timeout, "discovery configs")
        except h.TestFailure:
            h.fail("discovery configs missing: %s" % sorted(want - set(got)))
        return got

    def marks(self):
        return {t: self.sub.mark(t) for t in self.expected()}

    def cfg(self, topic):
        m = self.sub.last(topic)
        check(m is not None and m.payload, "no config on %s" % topic)
        return m.json()


def ours(sub):
    """Every discovery topic under our node the subscriber saw."""
    return set(sub.topics_matching(r"^%s/[^/]+/%s/" % (PREFIX, NODE)))


# ------------------------------------------------------------------ tests

def test_configs(ctx):
    broker = ctx.mosquitto()
    sim = ctx.sim(3, args=("--mode", "secondary"))
    sim.cmd("unlisten vm3")     # its QEMU version comes later
    r = Rig(ctx, broker=broker, sim=sim, ready=("vm1", "vm2"))
    got = r.configs()
    check_eq(ours(r.sub), r.expected(), "discovery topics under %s" % NODE)
    uids, devices = set(), {}
    for t, m in got.items():
        check(m.retain, "discovery config not retained: %s" % t)
        cfg = m.json()
        check_config(t, cfg)
        check(cfg["unique_id"] not in uids, "duplicate unique_id %s" %
              cfg["unique_id"])
        uids.add(cfg["unique_id"])
        devices.setdefault(cfg["device"]["identifiers"][0], []).append(t)
    bridge = r.cfg(BRIDGE_CFG)
    bid = bridge["device"]["identifiers"][0]
    check_eq(bridge["device_class"], "connectivity", "bridge device class")
    check_eq(bridge["state_topic"], h.bridge_topic("state"),
             "bridge entity state topic")
    check_eq(len(devices), len(r.vms) + 2, "devices (VMs, dead peer, "
             "bridge)")
    for vm in r.vms + [DEAD]:
        topics = vm_topics(vm, vm in r.buttons)
        ids = {r.cfg(t)["device"]["identifiers"][0] for t in topics}
        check_eq(len(ids), 1, "one device for all of %s's entities" % vm)
        check_eq(sorted(devices[ids.pop()]), sorted(topics),
                 "entities of %s's device" % vm)
        for t in topics:
            c = r.cfg(t)
            check_eq(c["device"].get("via_device"), bid, "via_device")
            check_eq(c["device"]["name"], "%s/%s" % (h.HOST, vm),
                     "device name")
            check_eq([a["topic"] for a in c["availability"]],
                     [h.bridge_topic("state"), h.avail_topic(vm)],
                     "availability topics of %s" % t)
            check_eq(c["availability_mode"], "all", "availability_mode")
        mode = r.cfg(cfg_topic("sensor", h.HOST, vm, "mode"))
        check_eq(mode["state_topic"], h.state_topic(vm), "mode state topic")
        ev = r.cfg(cfg_topic("event", h.HOST, vm, "colo_exit"))
        check_eq(ev["state_topic"], h.event_topic(vm), "event state topic")
        check_eq(sorted(ev["event_types"]),
                 ["error", "none", "processing", "request"], "event_types")
        for key in ("last_exit_reason", "qmp"):
            check_eq(r.cfg(cfg_topic("sensor", h.HOST, vm, key)).get(
                "entity_category"), "diagnostic", "%s category" % key)
    check_eq(sorted(t for t in got if "/button/" in t),
             sorted(cfg_topic("button", h.HOST, vm, "takeover")
                    for vm in ("vm1", "vm3")),
             "buttons (takeover on, auth acl)")
    b = r.cfg(cfg_topic("button", h.HOST, "vm1", "takeover"))
    check_eq(b["command_topic"], "%s/%s/vm1/cmd/takeover" % (h.BASE, h.HOST),
             "button command topic")
    # The model follows the QEMU version once the greeting was read (the
    # first configs may predate it; the device info is then re-sent).
    t3 = cfg_topic("sensor", h.HOST, "vm3", "mode")
    check_eq(r.cfg(t3)["device"]["model"], "QEMU", "model before the "
             "greeting")
    n3 = {t: r.sub.mark(t) for t in vm_topics("vm3", True)}
    sim.cmd("listen vm3")
    for vm in r.vms:
        t = cfg_topic("sensor", h.HOST, vm, "mode")
        r.sub.wait_for(lambda m: m.payload and
                       m.json()["device"]["model"] == "QEMU 7.2.0", 10,
                       "model QEMU 7.2.0 for %s" % vm, topic=t)
    check_eq(r.cfg(cfg_topic("sensor", h.HOST, DEAD, "mode"))["device"][
        "model"], "QEMU", "model of a VM never reached")
    for t in vm_topics("vm3", True):
        m = r.sub.wait_for(lambda m: m.payload, 10, topic=t, since=n3[t])
        check(m.retain, "re-sent config not retained")
        check_eq(m.json()["device"]["model"], "QEMU 7.2.0",
                 "model in %s after the greeting" % t)
        check_config(t, m.json())


def test_values(ctx):
    r = Rig(ctx)
    r.configs()
    mode_t = r.cfg(cfg_topic("sensor", h.HOST, "vm1", "mode"))
    prot = r.cfg(cfg_topic("binary_sensor", h.HOST, "vm1", "protected"))
    qmp = r.cfg(cfg_topic("sensor", h.HOST, "vm1", "qmp"))
    reason = r.cfg(cfg_topic("sensor", h.HOST, "vm1", "last_exit_reason"))
    ev = r.cfg(cfg_topic("event", h.HOST, "vm1", "colo_exit"))

    st = r.sub.wait_json(h.state_topic("vm1"),
                         lambda s: s.get("mode") == "secondary", 10)
    st = r.sub.last(h.state_topic("vm1"))
    check_eq(render(mode_t["value_template"], st.payload), "secondary",
             "COLO mode sensor")
    check_eq(render(prot["value_template"], st.payload), prot["payload_on"],
             "COLO protected while secondary")
    check_eq(render(qmp["value_template"], st.payload), "connected",
             "QMP sensor")
    check(render(qmp["value_template"], st.payload) in qmp["options"],
          "QMP value within the enum's options")
    check_eq(render(reason["value_template"], st.payload), "unknown",
             "last exit reason before any exit")

    # A COLO_EXIT with reason error: the event entity's type, then the
    # state's last_exit.
    mark = r.sub.mark(h.event_topic("vm1"))
    r.sim.cmd("exit vm1 secondary error")
    e = r.sub.wait_for(lambda m: True, 10, topic=h.event_topic("vm1"),
                       since=mark)
    out = json.loads(render(ev["value_template"], e.payload))
    check_eq(out.get("event_type"), "error", "event type of a COLO_EXIT "
             "with reason error")
    check(out["event_type"] in ev["event_types"], "event type declared")
    check_eq(out.get("mode"), "secondary", "event attribute mode")
    st = r.sub.wait_json(h.state_topic("vm1"), lambda s: (
        s.get("last_exit") or {}).get("reason") == "error", 10)
    st = r.sub.last(h.state_topic("vm1"))
    check_eq(render(reason["value_template"], st.payload), "error",
             "last exit reason sensor")
    # A future reason is still an event (type none, raw reason kept).
    fut = json.loads(render(ev["value_template"], json.dumps(
        dict(e.json(), reason="future-x")).encode()))
    check_eq((fut["event_type"], fut["reason"]), ("none", "future-x"),
             "event of an unknown reason")

    # Out of COLO: protected OFF; the never-reached peer: disconnected.
    r.sim.cmd("state vm2 none secondary request")
    st2 = r.sub.wait_json(h.state_topic("vm2"),
                          lambda s: s.get("mode") == "none", 20,
                          since=0)
    payload = st2.payload
    prot2 = r.cfg(cfg_topic("binary_sensor", h.HOST, "vm2", "protected"))
    check_eq(render(prot2["value_template"], payload), prot2["payload_off"],
             "COLO protected out of COLO")
    check_eq(render(r.cfg(cfg_topic("sensor", h.HOST, "vm2", "mode"))[
        "value_template"], payload), "none", "COLO mode none")
    dst = r.sub.wait_json(h.state_topic(DEAD), lambda s: True, 10)
    dq = r.cfg(cfg_topic("sensor", h.HOST, DEAD, "qmp"))
    check_eq(render(dq["value_template"], dst.payload),
             "disconnected", "QMP sensor of an unreachable VM")
    check_eq(render(r.cfg(cfg_topic("sensor", h.HOST, DEAD, "mode"))[
        "value_template"], dst.payload), "unknown",
        "COLO mode never read")


def test_availability(ctx):
    r = Rig(ctx, mqtt={"keepalive": 2})
    r.configs()
    cfgs = {t: r.cfg(t) for t in vm_topics("vm1", True)}
    r.sub.wait_json(h.bridge_topic("state"),
                    lambda s: s.get("state") == "online", 10)
    for t, c in cfgs.items():
        check(available(r.sub, c), "%s unavailable while all is up" % t)
    check(not available(r.sub, r.cfg(cfg_topic("sensor", h.HOST, DEAD,
                                               "mode"))),
          "a VM whose QMP is offline is available")
    mark = r.sub.mark(h.bridge_topic("state"))
    r.daemon.kill9()
    m = r.sub.wait_for(lambda m: json.loads(m.payload).get("state") ==
                       "offline", 15, "Last Will on bridge/state",
                       topic=h.bridge_topic("state"), since=mark)
    check(m.retain, "Last Will not retained")
    # The VM's own availability topic still says online (nobody wrote
    # it): only the bridge's state makes the entities unavailable.
    check_eq(r.sub.last(h.avail_topic("vm1")).payload, b"online",
             "vm1 availability after the bridge died")
    for t, c in cfgs.items():
        check(not available(r.sub, c),
              "%s still available with the bridge dead" % t)
    bcfg = r.cfg(BRIDGE_CFG)
    check_eq(render(bcfg["value_template"], m.payload), bcfg["payload_off"],
             "bridge connectivity sensor after the Last Will")


def test_ha_online(ctx):
    r = Rig(ctx, mqtt={"version": 5})
    r.configs()
    import test_takeover as tt
    ops = tt.Client(ctx, r.broker.port)
    for round_ in range(2):
        marks = r.marks()
        ops.publish(PREFIX + "/status", b"online")
        got = r.configs(since=marks, timeout=15)
        check_eq(set(got), r.expected(), "configs re-sent after HA online "
                 "(round %d)" % round_)
        for t, m in got.items():
            check(m.retain, "re-sent config not retained: %s" % t)
    # Anything else on the status topic is no birth message.
    marks = r.marks()
    ops.publish(PREFIX + "/status", b"offline")
    r.sim.cmd("exit vm1 secondary error")   # a barrier through the bridge
    r.sub.wait_for(lambda m: True, 10, topic=h.event_topic("vm1"))
    stats = h.stats_request(r.sub, r.daemon, lambda s: True)
    del stats
    check(all(r.sub.mark(t) == n for t, n in marks.items()),
          "configs re-sent after 'offline' on the status topic")


def test_cleanup(ctx, version=5):
    """Restart without vm2, and vm3 without takeover: vm2's configs and
    vm3's button cleared; the rest kept; hv2's configs (another bridge)
    and a foreign config untouched."""
    # The same client id across the restart, as in real life (a broker
    # must still hand the new process its predecessor's retained configs).
    cid = {"client_id": "qmp2mqtt-e2e-hass-hv1", "version": version}
    r = Rig(ctx, name="hv1a", mqtt=cid)
    r.configs()
    # Another bridge (host hv2) with discovery: its node is its own.
    sim2 = ctx.sim(1, prefix="w", args=("--mode", "secondary"),
                   name="sim2")
    d2 = h.Daemon(ctx, vms=sim2.vms(), port=r.broker.port,
                  bridge={"host": "hv2"}, name="hv2",
                  mqtt={"version": version})
    d2.text += 'homeassistant = { enabled = true; };\n'
    with open(d2.conf, "w") as f:
        f.write(d2.text)
    d2.start()
    hv2_topic = "%s/sensor/qmp2mqtt_hv2/hv2__w1__mode/config" % PREFIX
    r.sub.wait_for(lambda m: m.payload, 15, topic=hv2_topic)
    import test_takeover as tt
    ops = tt.Client(ctx, r.broker.port)
    foreign = "%s/sensor/other_node/hv1__vm2__mode/config" % PREFIX
    ops.publish(foreign, b'{"name":"x"}', retain=True)
    r.daemon.stop()
    gone = vm_topics("vm2", False) + [cfg_topic("button", h.HOST, "vm3",
                                                "takeover")]
    marks = {t: r.sub.mark(t) for t in gone}
    r2 = Rig(ctx, broker=r.broker, sim=r.sim, sub=r.sub, omit=("vm2",),
             buttons=("vm1",), name="hv1b", mqtt=cid)
    for t in gone:
        r.sub.wait_for(lambda m: m.payload == b"" and m.retain, 15,
                       "empty retained config (cleared) on %s" % t, topic=t,
                       since=marks[t])
    r2.configs()
    # What a client subscribing now (HA starting) gets: the retained set.
    late = ctx.subscriber(r.broker.port, topics=(PREFIX + "/#",))
    # The broker queues every retained message for a subscription when
    # it handles the SUBSCRIBE: a live message published after the SUBACK
    # comes after all of them.
    ops.publish(PREFIX + "/barrier", b"x")
    late.wait_for(lambda m: True, 10, topic=PREFIX + "/barrier")
    retained = {t for t in late.topics_matching("^" + PREFIX + "/")
                if late.last(t).payload}
    check_eq(retained & set(gone), set(), "cleared configs still retained")
    check(r2.expected() <= retained, "kept configs missing: %s" %
          sorted(r2.expected() - retained))
    check(hv2_topic in retained, "another host's config was cleared")
    check(foreign in retained, "a foreign config was cleared")
    log = r2.daemon.log_text()
    check("hv1/vm2 is not configured any more" in log,
          "no log line about vm2's configs")
    if version == 3:
        # The bridge's own configs come back to it (no No Local): only
        # retained ones count, so nothing is cleared by that; and HA's
        # "online" still triggers a resend.
        marks = r2.marks()
        ops.publish(PREFIX + "/status", b"online")
        r2.configs(since=marks, timeout=15)
        for t in r2.expected():
            check(all(m.payload for m in r.sub.on(t)[marks[t]:]),
                  "a kept config was cleared under MQTT 3.1.1: %s" % t)
    ops.publish(foreign, b"", retain=True)


def test_cleanup_mqtt3(ctx):
    """test_cleanup under MQTT 3.1.1, plus a resend on HA's online."""
    test_cleanup(ctx, version=3)


def test_button_press(ctx):
    r = Rig(ctx)
    r.configs()
    btn = r.cfg(cfg_topic("button", h.HOST, "vm1", "takeover"))
    # HA renders command_template with value = payload_press at each press.
    payload = env().from_string(btn["command_template"]).render(
        value=btn.get("payload_press", "PRESS"))
    req = json.loads(payload)
    check(set(req) == {"id", "issued_us"} and isinstance(req["issued_us"],
                                                         int),
          "button request: %r" % req)
    h.log("button press: %s -> %s" % (btn["command_topic"], payload))
    from test_takeover import Client, wait_subscribed
    wait_subscribed(r.broker, r.daemon)
    ops = Client(ctx, r.broker.port)
    mark = r.sub.mark(result_topic("vm1"))
    ops.publish(btn["command_topic"], payload.encode(),
                retain=btn.get("retain", False))
    res = r.sub.wait_for(lambda m: m.json().get("id") == req["id"], 15,
                         topic=result_topic("vm1"), since=mark).json()
    check_eq((res["status"], res["reason"]), ("ok", "ok"),
             "takeover by the button: %r" % res)
    check_eq(r.sim.count("vm1")["heartbeats"], 1, "heartbeats of vm1")
    check_eq(r.sim.out.count(r"^recv vm1 %s$" % HB), 1, "recv lines")
    # A second press is a new request (new id), not a replay.
    p2 = env().from_string(btn["command_template"]).render(value="PRESS")
    check(json.loads(p2)["id"] != req["id"], "two presses, one id")


def test_hmac_no_button(ctx):
    r = Rig(ctx, auth="hmac", buttons=("vm1", "vm2", "vm3"))
    r.buttons = []
    got = r.configs()
    check_eq([t for t in got if "/button/" in t], [], "buttons with hmac")
    check_eq([t for t in ours(r.sub) if "/button/" in t], [],
             "button topics with hmac")


# ------------------------------------------------------------------ fleet

def plain_daemon(ctx, broker, vms, extra, mqtt=None):
    """h.Daemon with homeassistant on (and extra config text)."""
    d = h.Daemon(ctx, vms=vms, port=broker.port, mqtt=mqtt)
    d.text += extra + 'homeassistant = { enabled = true; };\n'
    with open(d.conf, "w") as f:
        f.write(d.text)
    return d.start()


def wait_configs(sub, topics, since=None, what="configs"):
    """Waits for a non-empty retained config on every topic (after its
    mark in since)."""
    since = since or {}
    for t in topics:
        m = sub.wait_for(lambda m: m.payload and m.retain, 15,
                         "%s: %s" % (what, t), topic=t,
                         since=since.get(t, 0))
        check_config(re.sub("^[^/]+/", PREFIX + "/", t), m.json())


def wait_cleared(sub, topics, since, what="cleared"):
    for t in topics:
        sub.wait_for(lambda m: m.payload == b"" and m.retain, 15,
                     "%s: empty retained config on %s" % (what, t),
                     topic=t, since=since.get(t, 0))


def none_cleared(sub, topics, since, what):
    for t in topics:
        check(all(m.payload for m in sub.on(t)[since.get(t, 0):]),
              "%s: %s was cleared" % (what, t))


def test_reload(ctx):
    require_jinja()
    import test_reload as tr
    broker = ctx.mosquitto()
    sim = ctx.sim(3)
    sub = ctx.subscriber(broker.port, topics=(h.BASE + "/#", PREFIX + "/#",
                                              "ha2/#"))
    vm = dict(sim.vms())
    ha = 'homeassistant = { enabled = true; };\n'

    def text(names, hass=ha):
        return tr.config_text(d, broker.port, [
            {"name": n, "qmp": vm[n]} for n in names]) + hass

    d = plain_daemon(ctx, broker, [(n, vm[n]) for n in ("vm1", "vm2")], "")
    h.wait_online(sub, ["vm1", "vm2"], 20)
    wait_configs(sub, vm_topics("vm1", False) + vm_topics("vm2", False) +
                 [BRIDGE_CFG])
    # vm2 leaves, vm3 joins (bridge.removed_vm_state: keep).
    kept = vm_topics("vm1", False) + [BRIDGE_CFG]
    marks = {t: sub.mark(t) for t in kept + vm_topics("vm2", False) +
             vm_topics("vm3", False)}
    line = tr.reload(d, text(("vm1", "vm3")), "reload -vm2 +vm3")
    check("applied" in line, "reload not applied: %s" % line)
    wait_cleared(sub, vm_topics("vm2", False), marks, "vm2 removed")
    wait_configs(sub, vm_topics("vm3", False), marks, "vm3 added")
    st = sub.wait_json(h.state_topic("vm2"), lambda s: s.get("gone") is
                       True, 10, "vm2 state gone (removed_vm_state keep)")
    check(st.retain, "vm2's gone state not retained")
    none_cleared(sub, kept + vm_topics("vm3", False), marks, "reload")
    check("homeassistant: %s/vm2 is not served any more" % h.HOST in
          d.log_text(), "no log line about vm2's configs")
    # The prefix changes: the old configs cleared, new ones announced.
    now = vm_topics("vm1", False) + vm_topics("vm3", False) + [BRIDGE_CFG]
    moved = [re.sub("^" + PREFIX + "/", "ha2/", t) for t in now]
    marks = {t: sub.mark(t) for t in now + moved}
    line = tr.reload(d, text(("vm1", "vm3"), 'homeassistant = { enabled = '
                             'true; prefix = "ha2"; };\n'), "prefix ha2")
    check("applied" in line, "reload not applied: %s" % line)
    wait_cleared(sub, now, marks, "old prefix")
    wait_configs(sub, moved, marks, "new prefix")
    # Off: what was announced stays.  On again: announced at once.
    marks = {t: sub.mark(t) for t in now + moved}
    line = tr.reload(d, text(("vm1", "vm3"), ""), "homeassistant off")
    check("applied" in line, "reload not applied: %s" % line)
    check("homeassistant: turned off" in d.log_text(), "no 'turned off' "
          "log line")
    line = tr.reload(d, text(("vm1", "vm3")), "homeassistant on")
    check("applied" in line, "reload not applied: %s" % line)
    wait_configs(sub, now, marks, "turned on again")
    none_cleared(sub, moved, marks, "turned off")
    # HA's status is still followed after all of that.
    import test_takeover as tt
    marks = {t: sub.mark(t) for t in now}
    tt.Client(ctx, broker.port).publish(PREFIX + "/status", b"online")
    wait_configs(sub, now, marks, "resend on online after reloads")


def test_discover(ctx):
    require_jinja()
    broker = ctx.mosquitto()
    sim = ctx.sim(2)
    sub = ctx.subscriber(broker.port, topics=(h.BASE + "/#", PREFIX + "/#"))
    d = plain_daemon(ctx, broker, [], 'discover = ( { glob = "%s/*.qmp"; '
                     '} );\n' % sim.sockdir)
    h.wait_online(sub, ["vm1", "vm2"], 20)
    wait_configs(sub, vm_topics("vm1", False) + vm_topics("vm2", False) +
                 [BRIDGE_CFG], what="discovered")
    # A socket appears (bound, not listening: a VM found, never reached).
    path = os.path.join(sim.sockdir, "vm9.qmp")
    marks = {t: sub.mark(t) for t in vm_topics("vm9", False)}
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    wait_configs(sub, vm_topics("vm9", False), marks, "socket appeared")
    # ... and goes away: its configs go.
    kept = vm_topics("vm1", False) + vm_topics("vm2", False)
    marks = {t: sub.mark(t) for t in kept + vm_topics("vm9", False)}
    os.unlink(path)
    wait_cleared(sub, vm_topics("vm9", False), marks, "socket removed")
    none_cleared(sub, kept, marks, "socket removed")
    d.check_alive()


if __name__ == "__main__":
    h.main(test_configs, test_values, test_availability, test_ha_online,
           test_cleanup, test_cleanup_mqtt3, test_button_press,
           test_hmac_no_button, test_reload, test_discover)
