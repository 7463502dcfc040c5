#!/usr/bin/env node
// The Node.js peer of the benchmark: the bridge a user would write instead
// of qmp2mqtt, the simplest way, with mqtt.js (npm "mqtt", locked in
// package-lock.json next to this file).  Same job and command line as
// ../peer.py: qmp_capabilities on every QMP socket, each COLO_EXIT as JSON
// on <base>/<host>/<vm>/event/colo_exit at QoS 1, x-colo-lost-heartbeat on
// cmd/takeover followed by a result/takeover {"id", "status"} (no signature
// or pair check).  Prints "ready N" once N sockets are negotiated.
//
//   node peer.js -p PORT -H HOST -b BASE -B BRIDGE_ID VM=PATH...  (or @FILE)
'use strict';
const net = require('net');
const fs = require('fs');
const mqtt = require('mqtt');

let args = process.argv.slice(2);
const opts = {};
while (args.length && args[0].startsWith('-')) {
  opts[args[0]] = args[1];
  args = args.slice(2);
}
if (args.length && args[0].startsWith('@'))
  args = fs.readFileSync(args[0].slice(1), 'utf8').split(/\s+/).filter(Boolean);
const host = opts['-H'] || 'hv1', base = opts['-b'] || 'qmp2mqtt';
const bridge = opts['-B'] || 'peer';
const vms = new Map(args.map((a) => { const i = a.indexOf('='); return [a.slice(0, i), a.slice(i + 1)]; }));

const cli = mqtt.connect('mqtt://127.0.0.1:' + opts['-p'],
  { protocolVersion: 5, clientId: 'peer-js-' + process.pid });
const conns = new Map();
const pending = new Map();
let ready = 0;

cli.on('connect', () => cli.subscribe(`${base}/${host}/+/cmd/takeover`, { qos: 1 }));
cli.on('message', (topic, payload) => {
  const vm = topic.split('/')[2];
  let id = '';
  try { id = JSON.parse(payload.toString()).id || ''; } catch (e) { /* */ }
  const c = conns.get(vm);
  if (!c) return;
  pending.set(vm, id);
  c.sock.write('{"execute": "x-colo-lost-heartbeat"}\n');
});

function handle(vm, c, msg) {
  if (msg.QMP) {
    c.sock.write('{"execute": "qmp_capabilities"}\n');
  } else if ('return' in msg && !c.ready) {
    c.ready = true;
    if (++ready === vms.size) console.log('ready ' + ready);
  } else if (msg.event === 'COLO_EXIT') {
    c.seq++;
    const t = msg.timestamp.seconds * 1000000 + msg.timestamp.microseconds;
    const d = msg.data || {};
    const out = { schema: 1, event: 'colo_exit', host, vm, mode: d.mode,
      reason: d.reason, time: new Date(t / 1000).toISOString(), time_us: t,
      seq: c.seq, bridge };
    cli.publish(`${base}/${host}/${vm}/event/colo_exit`, JSON.stringify(out), { qos: 1 });
  } else if (('return' in msg || 'error' in msg) && pending.has(vm)) {
    const id = pending.get(vm);
    pending.delete(vm);
    cli.publish(`${base}/${host}/${vm}/result/takeover`,
      JSON.stringify({ id, status: 'return' in msg ? 'ok' : 'failed' }), { qos: 1 });
  }
}

function connect(vm) {
  const c = conns.get(vm) || { seq: 0 };
  c.ready = false;
  c.buf = '';
  c.sock = net.createConnection(vms.get(vm));
  c.sock.setEncoding('utf8');
  c.sock.on('data', (data) => {
    const lines = (c.buf + data).split('\n');
    c.buf = lines.pop();
    for (const ln of lines) if (ln.trim()) handle(vm, c, JSON.parse(ln));
  });
  c.sock.on('error', () => {});
  c.sock.on('close', () => setTimeout(() => connect(vm), 50));
  conns.set(vm, c);
}

for (const vm of vms.keys()) connect(vm);
process.on('SIGTERM', () => process.exit(0));
