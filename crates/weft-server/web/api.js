// The daemon's API from the page: JSON calls under /api/v1 with the bearer
// token (asked for once when the daemon answers 401, kept in
// sessionStorage, never put in a URL), and SSE streams read with fetch (so
// the token goes in a header) that reconnect with Last-Event-ID.
import { h } from './dom.js';

const KEY = 'weft.token';
let asking = null;

function headers(extra = {}) {
  const t = sessionStorage.getItem(KEY);
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

/** Asks for the daemon's token (one dialog however many calls wait). */
function askToken(wrong) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', required: true, 'aria-label': 'Token' });
    const dialog = h('dialog', { class: 'confirm', id: 'token-dialog' },
      h('form', { method: 'dialog' },
        h('p', {}, wrong ? 'That token was refused. Enter the token this daemon was started with:'
          : 'This daemon requires a token (weft serve --token). Enter it:'),
        input,
        h('div', { class: 'row' }, h('button', { value: 'ok', class: 'primary' }, 'Use token'))));
    dialog.addEventListener('close', () => {
      if (input.value) sessionStorage.setItem(KEY, input.value);
      dialog.remove();
      asking = null;
      resolve();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
  return asking;
}

/** An API failure: the daemon's `detail`, and the HTTP status. */
export class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

/** Calls the API: `api('GET', '/sessions/')`; resolves the JSON answer, or
 * `{body, headers}` with `{full: true}`. */
export async function api(method, path, body, { full = false } = {}) {
  for (let attempt = 0; ; attempt++) {
    const init = { method, headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }) };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(`/api/v1${path}`, init);
    if (res.status === 401 && attempt < 3) {
      await askToken(attempt > 0 || sessionStorage.getItem(KEY));
      continue;
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    if (!res.ok) throw new ApiError(res.status, (data && data.detail) || `${res.status} ${res.statusText}`);
    return full ? { body: data, headers: res.headers } : data;
  }
}

/** Follows a session's SSE stream (`/sessions/{id}/stream`): calls
 * `onEvent(name, data, id)` for each event, reconnects after a dropped
 * connection with `Last-Event-ID` (the last record seq seen) and calls
 * `onReconnect()` then. `close()` stops it. */
export class Follow {
  constructor(sessionId, { onEvent, onReconnect, onState, after } = {}) {
    this.url = `/api/v1/sessions/${encodeURIComponent(sessionId)}/stream`;
    this.onEvent = onEvent || (() => {});
    this.onReconnect = onReconnect || (() => {});
    this.onState = onState || (() => {});
    this.lastId = after ?? null;
    this.closed = false;
    this.reconnects = 0;
    this.run();
  }

  close() { this.closed = true; if (this.abort) this.abort.abort(); }

  async run() {
    let first = true;
    while (!this.closed) {
      if (!first) { this.reconnects++; this.onReconnect(this.reconnects); }
      first = false;
      this.abort = new AbortController();
      try {
        const extra = { Accept: 'text/event-stream' };
        if (this.lastId !== null) extra['Last-Event-ID'] = String(this.lastId);
        const res = await fetch(this.url, { headers: headers(extra), signal: this.abort.signal });
        if (res.status === 401) { await askToken(true); continue; }
        if (!res.ok || !res.body) throw new Error(`stream answered ${res.status}`);
        this.onState('open');
        await this.read(res.body.getReader());
      } catch (e) {
        if (this.closed) return;
      }
      if (this.closed) return;
      this.onState('reconnecting');
      await new Promise((r) => setTimeout(r, 300));
    }
  }

  async read(reader) {
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        this.dispatch(block);
      }
    }
  }

  dispatch(block) {
    let name = 'message';
    let id = null;
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') name = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id') id = value;
    }
    if (!data.length) return;
    let parsed;
    try { parsed = JSON.parse(data.join('\n')); } catch { return; }
    if (id !== null && /^\d+$/.test(id)) this.lastId = Number(id);
    this.onEvent(name, parsed, id);
  }
}
