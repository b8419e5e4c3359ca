// Shared support of the browser tests: a real `weft serve` (the debug
// binary, a temp home, the scripted provider) and Chromium through
// playwright-core. scripts/browser-test sets WEFT_BIN, WEFT_BROWSER,
// PLAYWRIGHT_DIR and WEFT_DOCS.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the browser tests with scripts/browser-test`);
  return v;
}

/** playwright-core's chromium, from the pinned install. */
export function playwright() {
  const require = createRequire(`${need('PLAYWRIGHT_DIR')}/`);
  return require('playwright-core');
}

/** Launches Debian's Chromium headless. */
export async function launch() {
  const { chromium } = playwright();
  return chromium.launch({ executablePath: need('WEFT_BROWSER'), headless: true, args: ['--no-sandbox'] });
}

/** Where screenshots go (docs/). */
export function docs(name) {
  const dir = need('WEFT_DOCS');
  mkdirSync(dir, { recursive: true });
  return join(dir, name);
}

/** Starts `weft serve` on a free port with `responses` (the scripted
 * provider's script) and `env`; resolves {base, stop, api}. With
 * `inMemory`, its home is on /dev/shm when there is one (tmpfs: seeding
 * thousands of sessions is not bound by fsync). */
export async function daemon({ responses, env = {}, token, inMemory = false } = {}) {
  const shm = inMemory && existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const scratch = mkdtempSync(join(shm, 'weft-browser-'));
  const home = join(scratch, 'home');
  const project = join(scratch, 'project');
  mkdirSync(home); mkdirSync(project);
  writeFileSync(join(project, 'script.json'), JSON.stringify({ responses: responses || [{ text: 'ok' }] }));
  const args = ['serve', '--host', '127.0.0.1', '--port', '0', '--provider', 'scripted', '--script', 'script.json'];
  if (token) args.push('--token', token);
  const child = spawn(need('WEFT_BIN'), args, {
    cwd: project,
    env: { ...process.env, WEFT_HOME: home, WEFT_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`weft serve did not start in 30 s:\n${log}`)), 30000);
    const seen = (chunk) => {
      log += chunk;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    child.stdout.on('data', seen);
    child.stderr.on('data', seen);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`weft serve exited (${code}):\n${log}`)); });
  });
  child.removeAllListeners('exit');
  const api = async (method, path, body) => {
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(`${base}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const stop = async () => {
    child.kill('SIGTERM');
    await new Promise((r) => { if (child.exitCode !== null) r(); else child.on('exit', r); });
    rmSync(scratch, { recursive: true, force: true });
  };
  return { base, api, stop, log: () => log };
}

/** Records every text the element matching `selector` shows (a
 * MutationObserver in the page): window.__texts. */
export async function recordTexts(page, selector) {
  await page.evaluate((sel) => {
    window.__texts = [];
    const observer = new MutationObserver(() => {
      const el = document.querySelector(sel);
      if (el) {
        const t = el.textContent;
        if (window.__texts[window.__texts.length - 1] !== t) window.__texts.push(t);
      }
    });
    observer.observe(document.body, { subtree: true, childList: true, characterData: true });
  }, selector);
}
