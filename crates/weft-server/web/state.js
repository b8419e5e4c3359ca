// <weft-state>: a session's keyed state by scope (session, app:, user:,
// temp:): view, edit (values are JSON), add and delete keys.
import { api } from './api.js';
import { h, notice, confirmDialog } from './dom.js';

/** The scope of a key: its `app:`, `user:` or `temp:` prefix, else the session's. */
function scopeOf(key) {
  const m = /^(app|user|temp):/.exec(key);
  return m ? m[1] : 'session';
}

class WeftState extends HTMLElement {
  connectedCallback() {
    this.sid = this.getAttribute('session');
    this.load();
  }

  path(rest = '') { return `/sessions/${encodeURIComponent(this.sid)}${rest}`; }

  async load() {
    let entries;
    try {
      const map = await api('GET', this.path('/state'));
      entries = Object.entries(map || {}).map(([key, value]) => ({ key, value, scope: scopeOf(key) }));
    } catch (e) {
      this.replaceChildren(h('p', { class: 'error' }, e.message));
      return;
    }
    const scopes = {};
    for (const e of entries) (scopes[e.scope] ||= []).push(e);
    const key = h('input', { placeholder: 'key (e.g. app:theme)', 'aria-label': 'New key', required: true });
    const value = h('input', { placeholder: 'JSON value, e.g. "dark" or 3', 'aria-label': 'New value', required: true });
    const sid = encodeURIComponent(this.sid);
    this.replaceChildren(
      h('nav', { class: 'crumbs' }, h('a', { href: '#/' }, 'Sessions'), ' / ', h('a', { href: `#/s/${sid}` }, this.sid), ' / state'),
      h('h1', {}, 'State'),
      h('div', {}, Object.keys(scopes).length ? null : h('p', { class: 'muted' }, 'No state yet.'),
        Object.entries(scopes).map(([scope, list]) => h('section', { class: 'scope' }, h('h2', {}, scope),
          h('table', {}, h('tbody', {}, list.map((e) => this.row(e))))))),
      h('form', { class: 'row add', onsubmit: (e) => { e.preventDefault(); this.put(key.value.trim(), value.value); } },
        key, value, h('button', { class: 'primary' }, 'Set')));
  }

  row(e) {
    const input = h('textarea', { rows: 1, 'aria-label': `Value of ${e.key}` }, JSON.stringify(e.value));
    return h('tr', { dataset: { key: e.key } },
      h('th', { scope: 'row' }, h('code', {}, e.key)),
      h('td', {}, input),
      h('td', { class: 'actions' },
        h('button', { class: 'small', onclick: () => this.put(e.key, input.value) }, 'Save'),
        h('button', { class: 'small danger', onclick: () => this.remove(e.key) }, 'Delete')));
  }

  async put(key, raw) {
    let value;
    try { value = JSON.parse(raw); } catch { notice(`The value of ${key} is not JSON: quote text, e.g. "dark"`, 'error'); return; }
    try { await api('PUT', this.path(`/state/${encodeURIComponent(key)}`), { value }); notice(`Saved ${key}`); this.load(); } catch (e) { notice(e.message, 'error'); }
  }

  async remove(key) {
    if (!(await confirmDialog(`Delete ${key}?`))) return;
    try { await api('DELETE', this.path(`/state/${encodeURIComponent(key)}`)); notice(`Deleted ${key}`); this.load(); } catch (e) { notice(e.message, 'error'); }
  }
}

customElements.define('weft-state', WeftState);
