/*
 * qmp2mqtt live fleet page.
 *
 * Connects (MQTT over websockets, mqtt.js) to the broker that served the
 * page, or to ?broker=ws://host:port, subscribes to <base>/# and shows every
 * host and VM that qmp2mqtt bridges publish: COLO mode, availability, pair
 * partner, last exit, bridge state and stats, and a live event log.  A VM is
 * unavailable when its bridge says offline (a dead bridge's VMs keep their
 * retained availability "online": the Last Will only covers bridge/state).
 *
 * The list is virtualized (only the rows in view exist in the DOM), so a
 * fleet of thousands of VMs stays responsive.  No framework.
 */
(function () {
  'use strict';

  var ROW = 44;                 /* px, one list row (CSS --row) */
  var LOG_MAX = 500;            /* entries kept in the event log */
  var TAKEOVER_WAIT_MS = 30000; /* no result by then: "no answer" */

  var params = new URLSearchParams(location.search);
  var BASE = (params.get('base') || 'qmp2mqtt').replace(/^\/+|\/+$/g, '');
  var TAKEOVER = params.get('takeover') !== '0';
  var BROKER = params.get('broker') || defaultBroker();
  /* ?stats=0: everything but bridge/stats.  A bridge's stats carry about
   * 130 bytes per VM, and mosquitto 2.0's websockets listener sends a
   * 130 KB message in 1 to 3 s, holding back every message behind it. */
  var STATS = params.get('stats') !== '0';
  var FILTERS = STATS ? [BASE + '/#'] :
    ['/+/bridge/state', '/+/+/state', '/+/+/availability', '/+/+/event/+',
     '/+/+/result/+'].map(function (f) { return BASE + f; });

  function defaultBroker() {
    if (location.protocol !== 'http:' && location.protocol !== 'https:')
      return null;
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') +
      location.host + '/mqtt';
  }

  function $(id) { return document.getElementById(id); }
  var el = {
    banner: $('banner'), conn: $('conn'), list: $('list'), spacer: $('spacer'),
    empty: $('empty'), search: $('search'), filter: $('filter'), shown: $('shown'),
    log: $('log'), confirm: $('confirm'), cfVm: $('cf-vm'), cfText: $('cf-text')
  };

  /* ------------------------------------------------------------ model */

  var hosts = new Map();        /* name -> host */
  var hostOrder = null;         /* sorted host list, null: re-sort */
  var pending = new Map();      /* takeover id -> vm */
  var structVer = 0;            /* bumps when rows may change */

  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

  function getHost(name) {
    var h = hosts.get(name);
    if (!h) {
      h = { name: name, bridge: null, stats: null, vms: new Map(), order: null,
            collapsed: false, ver: 0, offlineSince: null };
      hosts.set(name, h);
      hostOrder = null;
    }
    return h;
  }

  function getVm(h, name) {
    var v = h.vms.get(name);
    if (!v) {
      v = { host: h.name, name: name, h: h, state: null, avail: null,
            event: null, tk: null, ver: 0, hay: null };
      h.vms.set(name, v);
      h.order = null;
    }
    return v;
  }

  function inColo(mode) { return mode === 'primary' || mode === 'secondary'; }

  function modeOf(v) { return v.state ? v.state.mode : null; }

  /* Available: its bridge is not offline, QMP negotiated. */
  function availability(v) {
    var b = v.h.bridge;
    if (b && b.state === 'offline')
      return { ok: false, why: 'bridge offline' };
    var st = v.state;
    if (v.avail === 'offline')
      return { ok: false, why: liveWhy(st) || 'QMP offline' };
    if (st && st.qmp === 'disconnected')
      return { ok: false, why: liveWhy(st) || 'QMP disconnected' };
    if (v.avail === 'online' || (st && st.qmp === 'connected'))
      return { ok: true, why: b ? '' : 'bridge not seen' };
    return { ok: false, why: 'no data yet' };
  }

  function liveWhy(st) {
    if (!st || !st.liveness) return '';
    if (st.liveness === 'gone') return 'QEMU gone';
    if (st.liveness === 'unreachable') return 'QMP unreachable';
    return '';
  }

  function isProtected(v) { return inColo(modeOf(v)) && availability(v).ok; }

  function lastExit(v) {
    var a = v.state && v.state.last_exit, b = v.event;
    if (!a) return b;
    if (!b) return a;
    return (b.time_us || 0) >= (a.time_us || 0) ? b : a;
  }

  /* ------------------------------------------------------------ messages */

  var received = 0, arrivals = {};
  function onMessage(topic, payload, packet) {
    received++;
    if (params.get('debug')) arrivals[topic] = performance.now();
    if (topic.indexOf(BASE + '/') !== 0) return;
    var parts = topic.slice(BASE.length + 1).split('/');
    if (parts.length < 3) return;
    var live = !packet.retain;
    var text = payloadText(payload);
    var hname = parts[0];

    if (parts[1] === 'bridge' && parts.length === 3) {
      var h = getHost(hname);
      if (parts[2] === 'state') onBridgeState(h, text, live);
      else if (parts[2] === 'stats') { h.stats = parseJson(text); h.ver++; }
      structVer++;
      return schedule();
    }
    var rest = parts.slice(2).join('/');
    if (rest === 'cmd/takeover') return;     /* requests: nothing to show */
    if (rest !== 'state' && rest !== 'availability' &&
        rest !== 'event/colo_exit' && rest !== 'result/takeover') return;
    var h2 = getHost(hname);
    var v = getVm(h2, parts[1]);
    if (rest === 'state') onState(v, text, live);
    else if (rest === 'availability') onAvail(v, text, live);
    else if (rest === 'event/colo_exit') onExit(v, text);
    else onResult(v, text);
    v.ver++;
    v.hay = null;
    structVer++;
    schedule();
  }

  function payloadText(p) {
    try { return new TextDecoder().decode(p); } catch (e) { return String(p); }
  }

  function parseJson(t) {
    if (!t) return null;
    try { var o = JSON.parse(t); return o && typeof o === 'object' ? o : null; }
    catch (e) { return null; }
  }

  function onBridgeState(h, text, live) {
    var o = parseJson(text);
    var was = h.bridge && h.bridge.state;
    h.bridge = o;
    h.ver++;
    var now = o && o.state;
    if (now === 'offline' && was !== 'offline') h.offlineSince = new Date();
    if (now !== 'offline') h.offlineSince = null;
    if (live && now && now !== was) {
      if (now === 'online')
        logEntry('ok', h.name, 'bridge online' + (o.bridge ? ' (' + o.bridge +
          (o.version ? ' ' + o.version : '') + ', ' + (o.vms != null ? o.vms + ' VMs' : '') + ')' : ''));
      else
        logEntry('bad', h.name, 'bridge ' + now + ': its VMs are unavailable');
    }
  }

  function onState(v, text, live) {
    var o = parseJson(text);
    var before = v.state ? v.state.mode : undefined;
    v.state = o;
    if (!o && v.avail === null) { removeVm(v); return; }
    if (live && o && before !== undefined && o.mode !== before)
      logEntry(inColo(o.mode) ? 'ok' : 'warn', v.host + '/' + v.name,
        'mode ' + (before || '—') + ' → ' + (o.mode || '—'));
  }

  function onAvail(v, text, live) {
    var before = v.avail;
    v.avail = text || null;
    if (!text && !v.state) { removeVm(v); return; }
    if (live && before !== v.avail && v.avail)
      logEntry(v.avail === 'online' ? 'ok' : 'bad', v.host + '/' + v.name,
        'QMP ' + v.avail);
  }

  function onExit(v, text) {
    var e = parseJson(text);
    if (!e) return;
    v.event = e;
    logEntry(e.reason === 'error' ? 'bad' : 'warn', v.host + '/' + v.name,
      'COLO exit: mode ' + (e.mode || '—') + ', reason ' + (e.reason || '—') +
      (e.reconciled ? ' (reconciled)' : '') + ' at ' + fmtTime(e.time_us));
  }

  function onResult(v, text) {
    var r = parseJson(text);
    if (!r) return;
    var mine = r.id != null && pending.get(String(r.id)) === v;
    var desc = 'takeover ' + (r.status || '?') +
      (r.reason && r.reason !== r.status ? ' (' + r.reason + ')' : '');
    if (mine && r.authenticated === false) {
      logEntry('warn', v.host + '/' + v.name, desc +
        ': unattributed answer with our id, still waiting');
      return;
    }
    logEntry(r.status === 'ok' ? 'ok' : 'bad', v.host + '/' + v.name,
      desc + (mine ? ' — your request' : '') +
      (r.error && r.error.desc ? ': ' + r.error.desc : ''));
    if (mine) {
      pending.delete(String(r.id));
      clearTimeout(v.tk && v.tk.timer);
      v.tk = { id: r.id, status: r.status === 'ok' ? 'ok' : 'bad',
               text: r.status === 'ok' ? 'takeover ok' :
                 'takeover ' + (r.status || '?') + ': ' + (r.reason || '?') };
    }
  }

  function removeVm(v) {
    v.h.vms.delete(v.name);
    v.h.order = null;
    v.h.ver++;
  }

  /* ------------------------------------------------------------ rendering */

  var timer = null;
  var rows = [];                /* {key, ver, host|vm} in list order */
  var builtVer = -1;
  var pool = new Map();         /* key -> element in the list */
  var logQueue = [];

  function schedule() {
    if (timer === null) timer = setTimeout(flush, 80);
  }

  function flush() {
    timer = null;
    if (builtVer !== structVer) buildRows();
    renderVisible();
    renderLog();
  }

  function sortedHosts() {
    if (!hostOrder)
      hostOrder = Array.from(hosts.values()).sort(function (a, b) {
        return collator.compare(a.name, b.name);
      });
    return hostOrder;
  }

  function sortedVms(h) {
    if (!h.order)
      h.order = Array.from(h.vms.values()).sort(function (a, b) {
        return collator.compare(a.name, b.name);
      });
    return h.order;
  }

  function hay(v) {
    if (v.hay === null) {
      var p = v.state && v.state.peer;
      v.hay = (v.host + '/' + v.name + ' ' + (modeOf(v) || 'none') +
        (p ? ' ' + p.host + '/' + p.vm : '')).toLowerCase();
    }
    return v.hay;
  }

  function passes(f, prot, avail) {
    if (f === 'unprotected') return !prot;
    if (f === 'unavailable') return !avail;
    if (f === 'protected') return prot;
    return true;
  }

  function buildRows() {
    builtVer = structVer;
    var q = el.search.value.trim().toLowerCase();
    var f = el.filter.value;
    var n = { vms: 0, prot: 0, unprot: 0, unavail: 0, bridges: 0, online: 0 };
    var shown = 0;
    rows = [];
    sortedHosts().forEach(function (h) {
      if (h.bridge) {
        n.bridges++;
        if (h.bridge.state === 'online') n.online++;
      }
      var hostHit = q !== '' && h.name.toLowerCase().indexOf(q) >= 0;
      var match = [];
      sortedVms(h).forEach(function (v) {
        var a = availability(v).ok, prot = a && inColo(modeOf(v));
        n.vms++;
        if (prot) n.prot++; else n.unprot++;
        if (!a) n.unavail++;
        if (passes(f, prot, a) && (q === '' || hostHit || hay(v).indexOf(q) >= 0))
          match.push(v);
      });
      if (match.length === 0 && (q !== '' || f !== 'all')) return;
      rows.push({ key: 'h:' + h.name, ver: h.ver + '.' + match.length + '.' +
                  h.vms.size + '.' + h.collapsed, host: h, count: match.length });
      shown += match.length;
      if (!h.collapsed)
        match.forEach(function (v) {
          rows.push({ key: 'v:' + h.name + '/' + v.name,
                      ver: v.ver + '.' + h.ver + '.' + TAKEOVER, vm: v });
        });
    });
    $('n-vms').textContent = n.vms;
    $('n-protected').textContent = n.prot;
    $('n-unprotected').textContent = n.unprot;
    $('n-unavailable').textContent = n.unavail;
    $('n-bridges').textContent = n.online + '/' + n.bridges;
    el.shown.textContent = (q !== '' || f !== 'all') ? shown + ' shown' : '';
    el.spacer.style.height = rows.length * ROW + 'px';
    el.empty.hidden = rows.length > 0;
    el.empty.textContent = hosts.size === 0 ? (client && client.connected ?
      'No qmp2mqtt bridge has published under "' + BASE + '/" yet.' :
      'Waiting for the broker…') : 'No VM matches.';
    document.querySelectorAll('.tile[data-filter]').forEach(function (t) {
      t.classList.toggle('active', t.dataset.filter === f && f !== 'all');
    });
  }

  function renderVisible() {
    var top = el.list.scrollTop, height = el.list.clientHeight || 600;
    var first = Math.max(0, Math.floor(top / ROW) - 8);
    var last = Math.min(rows.length, Math.ceil((top + height) / ROW) + 8);
    var keep = new Map();
    for (var i = first; i < last; i++) {
      var r = rows[i];
      var node = pool.get(r.key);
      if (!node) {
        node = document.createElement('div');
        el.list.appendChild(node);
      }
      if (node.dataset.ver !== r.ver) {
        if (r.host) fillHost(node, r.host, r.count); else fillVm(node, r.vm);
        node.dataset.ver = r.ver;
      }
      var y = i * ROW + 'px';
      if (node.style.top !== y) node.style.top = y;
      keep.set(r.key, node);
    }
    pool.forEach(function (node, key) {
      if (!keep.has(key)) node.remove();
    });
    pool = keep;
  }

  function esc(s) {
    return String(s == null ? '' : s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }

  function fmtTime(us) {
    if (typeof us !== 'number') return '—';
    var d = new Date(Math.floor(us / 1000));
    var p = function (x) { return (x < 10 ? '0' : '') + x; };
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' +
      p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function fmtClock(d) {
    return d.toTimeString().slice(0, 8);
  }

  function fmtUptime(s) {
    if (typeof s !== 'number') return '?';
    if (s < 120) return s + ' s';
    if (s < 7200) return Math.floor(s / 60) + ' min';
    if (s < 172800) return Math.floor(s / 3600) + ' h';
    return Math.floor(s / 86400) + ' d';
  }

  function fillHost(node, h, count) {
    var b = h.bridge, st = b ? b.state : null;
    node.className = 'row host';
    node.dataset.host = h.name;
    node.dataset.bridge = st || 'unknown';
    var badge = st === 'online' ? '<span class="badge online">bridge online</span>' :
      st === 'offline' ? '<span class="badge offline">bridge offline' +
        (h.offlineSince ? ' since ' + fmtClock(h.offlineSince) : '') + '</span>' :
      '<span class="badge">bridge not seen</span>';
    var bits = [];
    if (b && b.bridge) bits.push(esc(b.bridge) + (b.version ? ' ' + esc(b.version) : ''));
    bits.push('<b>' + count + '</b>' + (count !== h.vms.size ? ' of ' + h.vms.size : '') +
      ' VM' + (h.vms.size === 1 ? '' : 's'));
    var s = h.stats;
    if (s && st !== 'offline') {
      var t = s.totals || {}, c = s.commands || {};
      if (s.uptime_s != null) bits.push('up ' + fmtUptime(s.uptime_s));
      bits.push('exits <b>' + num(t.events_out) + '</b>');
      bits.push('published <b>' + num(t.published) + '</b>');
      bits.push('dropped <b>' + num(t.dropped) + '</b>');
      bits.push('reconnects <b>' + num(t.reconnects) + '</b>');
      bits.push('takeovers <b>' + num(c.ok) + '</b> ok / <b>' + num(c.refused) + '</b> refused');
    }
    node.innerHTML = '<span class="twisty">' + (h.collapsed ? '▸' : '▾') + '</span>' +
      '<span class="hname">' + esc(h.name) + '</span>' + badge +
      '<span class="stats">' + bits.join(' · ') + '</span>';
  }

  function num(x) { return typeof x === 'number' ? x : '–'; }

  function fillVm(node, v) {
    var st = v.state || {}, av = availability(v), mode = st.mode;
    node.className = 'row vm' + (av.ok ? '' : ' unavailable');
    node.dataset.host = v.host;
    node.dataset.vm = v.name;
    node.dataset.mode = mode == null ? 'unknown' : mode;
    node.dataset.avail = av.ok ? 'available' : 'unavailable';
    node.dataset.tk = v.tk ? v.tk.status : '';

    var modeSub = '';
    if (st.heartbeat_unconfirmed)   /* its peer's takeovers are refused */
      modeSub = 'heartbeat sent, outcome unknown';
    else if (mode === 'none' && st.last_mode && st.last_mode !== 'none')
      modeSub = 'was ' + st.last_mode;
    else if (st.colo_status === 'unsupported') modeSub = 'no query-colo-status';
    var modeHtml = '<span class="badge ' + (mode ? esc(mode) : '') + '">' +
      esc(mode == null ? (st.colo_status === 'unsupported' ? 'n/a' : '—') : mode) +
      '</span>' + (modeSub ? '<span class="sub">' + esc(modeSub) + '</span>' : '');

    var availHtml = av.ok ?
      '<span class="dot ok"></span>available' +
        (av.why ? '<span class="sub">' + esc(av.why) + '</span>' : '') :
      '<span class="dot bad"></span>unavailable<span class="sub">' + esc(av.why) + '</span>';

    var p = st.peer, peerHtml = '<span class="muted">—</span>';
    if (p) {
      var pbits = [], cls = 'ok';
      if (p.bridge !== 'online') { pbits.push('bridge ' + p.bridge); cls = p.bridge === 'offline' ? 'bad' : 'warn'; }
      if (p.mode) pbits.push(p.mode);
      if (p.liveness) pbits.push(p.liveness);
      else if (p.qmp) pbits.push('QMP ' + p.qmp);
      if (p.liveness === 'gone') cls = 'bad';
      else if (cls === 'ok' && (p.liveness !== 'alive' || !inColo(p.mode))) cls = 'warn';
      peerHtml = '<span class="dot ' + cls + '"></span><a href="#" class="peer" data-q="' +
        esc(p.host + '/' + p.vm) + '">' + esc(p.host + '/' + p.vm) + '</a>' +
        '<span class="sub">' + esc(pbits.join(' · ') || 'no state yet') + '</span>';
    }

    var e = lastExit(v), exitHtml = '<span class="muted">—</span>';
    if (e)
      exitHtml = esc((e.mode || '—') + ' · ' + (e.reason || '—')) +
        '<span class="sub" title="' + esc(e.time || '') + '">' + esc(fmtTime(e.time_us)) +
        (e.reconciled ? ' (reconciled)' : '') + '</span>';

    var act = '';
    if (TAKEOVER && av.ok && inColo(mode))
      act += '<button type="button" class="btn tk"' +
        (v.tk && v.tk.status === 'pending' ? ' disabled' : '') + '>Take over</button>';
    if (v.tk)
      act += '<span class="sub tkres ' + v.tk.status + '">' + esc(v.tk.text) + '</span>';

    node.innerHTML =
      '<span class="c-name"><span class="vname">' + esc(v.name) + '</span>' +
        (st.qemu ? '<span class="sub">QEMU ' + esc(st.qemu) + '</span>' : '') + '</span>' +
      '<span class="c-mode">' + modeHtml + '</span>' +
      '<span class="c-avail">' + availHtml + '</span>' +
      '<span class="c-peer">' + peerHtml + '</span>' +
      '<span class="c-exit">' + exitHtml + '</span>' +
      '<span class="c-act">' + act + '</span>';
  }

  /* ------------------------------------------------------------ event log */

  function logEntry(cls, who, text) {
    logQueue.push({ t: new Date(), cls: cls, who: who, text: text });
    if (logQueue.length > LOG_MAX) logQueue.splice(0, logQueue.length - LOG_MAX);
    schedule();
  }

  function renderLog() {
    if (logQueue.length === 0) return;
    var frag = document.createDocumentFragment();
    logQueue.forEach(function (e) {
      var li = document.createElement('li');
      li.className = e.cls;
      li.innerHTML = '<time>' + fmtClock(e.t) + '</time>' +
        (e.who ? '<span class="who">' + esc(e.who) + '</span> ' : '') + esc(e.text);
      frag.insertBefore(li, frag.firstChild);
    });
    logQueue = [];
    el.log.insertBefore(frag, el.log.firstChild);
    while (el.log.childElementCount > LOG_MAX) el.log.lastElementChild.remove();
  }

  /* ------------------------------------------------------------ takeover */

  var target = null;            /* {v, mode} while the dialog is open */

  function askTakeover(v) {
    var mode = modeOf(v);
    if (!inColo(mode) || !client) return;
    target = { v: v, mode: mode };
    el.cfVm.textContent = v.host + '/' + v.name;
    var p = v.state && v.state.peer;
    el.cfText.textContent = v.name + ' on host ' + v.host + ' is currently ' + mode +
      (p ? '; its pair partner ' + p.host + '/' + p.vm + ' is ' +
        [p.mode || 'in an unknown mode', p.liveness || '', p.bridge !== 'online' ?
          '(bridge ' + p.bridge + ')' : ''].filter(Boolean).join(', ') : '') + '.' +
      ' The request expects mode ' + mode + ': the bridge refuses it if that changed.';
    el.confirm.returnValue = '';
    el.confirm.showModal();
  }

  el.confirm.addEventListener('close', function () {
    var t = target;
    target = null;
    if (el.confirm.returnValue !== 'confirm' || !t) return;
    sendTakeover(t.v, t.mode);
  });

  function sendTakeover(v, mode) {
    var id = 'web-' + randomHex(12);
    var req = { id: id, issued_us: Date.now() * 1000, expect_mode: mode };
    var topic = [BASE, v.host, v.name, 'cmd', 'takeover'].join('/');
    pending.set(id, v);
    v.tk = { id: id, status: 'pending', text: 'takeover sent…' };
    v.tk.timer = setTimeout(function () {
      if (pending.get(id) !== v) return;
      pending.delete(id);
      v.tk = { id: id, status: 'bad', text: 'takeover: no answer' };
      v.ver++; structVer++;
      logEntry('bad', v.host + '/' + v.name, 'takeover: no answer within ' +
        TAKEOVER_WAIT_MS / 1000 + ' s (is takeover enabled with auth "acl"?)');
    }, TAKEOVER_WAIT_MS);
    v.ver++; structVer++;
    logEntry('warn', v.host + '/' + v.name, 'takeover requested (expect ' + mode + ', id ' + id + ')');
    client.publish(topic, JSON.stringify(req), { qos: 1, retain: false }, function (err) {
      if (!err) return;
      pending.delete(id);
      clearTimeout(v.tk && v.tk.timer);
      v.tk = { id: id, status: 'bad', text: 'takeover not sent' };
      v.ver++; structVer++;
      logEntry('bad', v.host + '/' + v.name, 'takeover not sent: ' + err.message);
    });
  }

  function randomHex(n) {
    var a = new Uint8Array(n);
    (window.crypto || window.msCrypto).getRandomValues(a);
    return Array.prototype.map.call(a, function (x) {
      return (x < 16 ? '0' : '') + x.toString(16);
    }).join('');
  }

  /* ------------------------------------------------------------ UI events */

  el.list.addEventListener('scroll', function () { renderVisible(); }, { passive: true });
  window.addEventListener('resize', function () { renderVisible(); });

  el.list.addEventListener('click', function (ev) {
    var t = ev.target;
    var row = t.closest('.row');
    if (!row) return;
    if (t.closest('a.peer')) {
      ev.preventDefault();
      el.search.value = t.closest('a.peer').dataset.q;
      return refilter();
    }
    if (row.classList.contains('host')) {
      var h = hosts.get(row.dataset.host);
      if (h) { h.collapsed = !h.collapsed; h.ver++; structVer++; flush(); }
      return;
    }
    if (t.closest('button.tk')) {
      var hh = hosts.get(row.dataset.host), v = hh && hh.vms.get(row.dataset.vm);
      if (v) askTakeover(v);
    }
  });

  function refilter() {
    structVer++;
    el.list.scrollTop = 0;
    flush();
  }

  el.search.addEventListener('input', refilter);
  el.filter.addEventListener('change', refilter);
  document.querySelectorAll('.tile[data-filter]').forEach(function (t) {
    t.addEventListener('click', function () {
      el.filter.value = t.dataset.filter === el.filter.value ? 'all' : t.dataset.filter;
      refilter();
    });
  });
  document.addEventListener('keydown', function (ev) {
    if (ev.key === '/' && document.activeElement !== el.search && !el.confirm.open) {
      ev.preventDefault();
      el.search.focus();
    }
  });
  $('log-clear').addEventListener('click', function () { el.log.textContent = ''; });

  if (params.get('q')) el.search.value = params.get('q');
  if (params.get('filter')) el.filter.value = params.get('filter');
  if (!el.filter.value) el.filter.value = 'all';

  /* ------------------------------------------------------------ connection */

  var client = null;
  var lostAt = null;
  var everConnected = false;

  function setConn(state, text) {
    el.conn.className = 'conn conn-' + state;
    el.conn.textContent = text;
    el.conn.title = BROKER || '';
    document.body.dataset.conn = state;
    document.body.classList.toggle('stale', state === 'offline');
  }

  function banner(text, ok) {
    el.banner.hidden = !text;
    el.banner.textContent = text || '';
    el.banner.classList.toggle('reconnected', !!ok);
  }

  function connect() {
    if (!BROKER) {
      setConn('offline', 'no broker');
      banner('This page was not served over HTTP: give the broker as ?broker=ws://host:port');
      return;
    }
    if (typeof mqtt === 'undefined') {
      setConn('offline', 'no mqtt.js');
      banner('mqtt.min.js did not load: build the page with "make web".');
      return;
    }
    var opts = {
      clientId: 'qmp2mqtt-web-' + randomHex(6),
      protocolVersion: 4,
      clean: true,
      keepalive: 20,
      reconnectPeriod: 1000,
      connectTimeout: 5000,
      resubscribe: false
    };
    if (params.get('user')) opts.username = params.get('user');
    if (params.get('password')) opts.password = params.get('password');
    setConn('connecting', 'connecting…');
    client = mqtt.connect(BROKER, opts);
    client.on('connect', function () {
      client.subscribe(FILTERS, { qos: 1 }, function (err) {
        if (err) banner('Subscribing to ' + FILTERS.join(', ') + ' failed: ' + err.message);
      });
      setConn('online', 'live');
      if (lostAt) {
        banner('Reconnected to the broker (it was lost at ' + fmtClock(lostAt) + ').', true);
        logEntry('ok', '', 'reconnected to ' + BROKER);
        setTimeout(function () { if (client.connected) banner(''); }, 4000);
      } else {
        banner('');
        logEntry('ok', '', 'connected to ' + BROKER + ', base topic ' + BASE);
      }
      lostAt = null;
      everConnected = true;
      structVer++;
      schedule();
    });
    function lost(reason) {
      if (!lostAt) {
        lostAt = new Date();
        logEntry('bad', '', (everConnected ? 'lost the broker' : 'cannot reach the broker') +
          (reason ? ': ' + reason : ''));
      }
      setConn('offline', 'offline');
      banner((everConnected ? 'Lost the connection to the broker ' + BROKER + ' at ' +
        fmtClock(lostAt) : 'Cannot reach the broker ' + BROKER) +
        (reason ? ' (' + reason + ')' : '') + ' — reconnecting…' +
        (everConnected ? ' What you see may be out of date.' : ''));
    }
    client.on('offline', function () { lost(''); });
    client.on('close', function () { lost(''); });
    client.on('error', function (err) { lost(err && err.message); });
    client.on('message', onMessage);
  }

  setConn('connecting', 'connecting…');
  connect();
  flush();

  /* For tests and curious operators: read-only counters. */
  window.qmp2mqttFleet = {
    base: BASE, broker: BROKER,
    hosts: function () { return hosts.size; },
    vms: function () {
      var n = 0;
      hosts.forEach(function (h) { n += h.vms.size; });
      return n;
    },
    rows: function () { return rows.length; },
    received: function () { return received; },
    arrived: function (topic) { return arrivals[topic]; }
  };
})();
