// Drives Debian's chromium (playwright-core, no browser download) for
// tests/e2e/test_web.py.  One JSON request per line on stdin, one JSON answer
// per line on stdout: {"id": N, "ok": true, "value": ...} or
// {"id": N, "ok": false, "error": "..."}.  The first line out is
// {"ready": true, "version": "..."} once the browser runs, or
// {"ready": false, "launch_error": "..."} (then exit 3: the browser cannot
// run here).  Page console messages and errors go to stderr.
//
// Requests: {"op": "goto", "page": P, "url": U}           opens/reuses page P
//           {"op": "wait", "page": P, "js": EXPR, "timeout": MS}
//                      waits until the expression is truthy; its value
//           {"op": "eval", "page": P, "js": EXPR}
//           {"op": "click" | "fill", "page": P, "selector": S, "text": T}
//           {"op": "screenshot", "page": P, "path": FILE}
//           {"op": "close", "page": P}, {"op": "quit"}
import { chromium } from 'playwright-core';
import readline from 'node:readline';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const err = (...a) => process.stderr.write(a.join(' ') + '\n');

let browser;
try {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
    timeout: 60000,
  });
} catch (e) {
  out({ ready: false, launch_error: String(e && e.message || e).slice(0, 2000) });
  process.exit(3);
}
const context = await browser.newContext({ viewport: { width: 1400, height: 820 } });
const pages = new Map();

async function page(name, create) {
  let p = pages.get(name);
  if (!p && create) {
    p = await context.newPage();
    p.on('console', (m) => err(`[${name}] console.${m.type()}: ${m.text()}`));
    p.on('pageerror', (e) => err(`[${name}] PAGE ERROR: ${e.message}`));
    p.on('requestfailed', (r) => err(`[${name}] request failed: ${r.url()} ${r.failure()?.errorText}`));
    pages.set(name, p);
  }
  if (!p) throw new Error(`no page ${name}`);
  return p;
}

async function run(req) {
  const P = req.page || 'main';
  const timeout = req.timeout ?? 10000;
  switch (req.op) {
    case 'goto': {
      const p = await page(P, true);
      await p.goto(req.url, { timeout, waitUntil: 'load' });
      return p.url();
    }
    case 'wait': {
      const p = await page(P);
      const h = await p.waitForFunction(req.js, undefined, { timeout, polling: 50 });
      return await h.jsonValue();
    }
    case 'eval':
      return await (await page(P)).evaluate(req.js);
    case 'click':
      await (await page(P)).click(req.selector, { timeout });
      return true;
    case 'fill':
      await (await page(P)).fill(req.selector, req.text ?? '', { timeout });
      return true;
    case 'screenshot':
      await (await page(P)).screenshot({ path: req.path, fullPage: !!req.full });
      return req.path;
    case 'close': {
      const p = pages.get(P);
      if (p) { pages.delete(P); await p.close(); }
      return true;
    }
    case 'quit':
      await browser.close();
      out({ id: req.id, ok: true, value: 'bye' });
      process.exit(0);
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

out({ ready: true, version: browser.version() });
const rl = readline.createInterface({ input: process.stdin });
// One request at a time, in order.
let chain = Promise.resolve();
rl.on('line', (line) => {
  if (!line.trim()) return;
  chain = chain.then(async () => {
    let req;
    try { req = JSON.parse(line); } catch (e) { out({ ok: false, error: `bad JSON: ${e.message}` }); return; }
    try {
      out({ id: req.id, ok: true, value: await run(req) ?? null });
    } catch (e) {
      out({ id: req.id, ok: false, error: String(e && e.message || e).slice(0, 4000) });
    }
  });
});
rl.on('close', () => { chain.then(() => browser.close()).finally(() => process.exit(0)); });
