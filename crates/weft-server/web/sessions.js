// <weft-sessions>: the sessions list, newest first, with paging, filters
// (name, status, profile, project), full-text search over messages,
// sub-sessions as a tree, rename and delete.
import { api } from './api.js';
import { h, when, notice, confirmDialog, promptDialog, badge } from './dom.js';

const STATUSES = ['', 'created', 'active', 'completed', 'failed', 'terminated', 'ended_uncleanly'];
const PAGE = 25;

class WeftSessions extends HTMLElement {
  connectedCallback() {
    this.cursors = ['']; // cursor of each page seen; last is the current page
    this.filters = { name: '', status: '', profileName: '', project: '' };
    this.render();
    this.load();
  }

  render() {
    const field = (key, label, input) => h('label', {}, label, input);
    this.nameInput = h('input', { type: 'search', placeholder: 'part of a name', 'aria-label': 'Filter by name' });
    this.statusSelect = h('select', { 'aria-label': 'Status' }, STATUSES.map((s) => h('option', { value: s }, s || 'any status')));
    this.profileSelect = h('select', { 'aria-label': 'Profile' }, h('option', { value: '' }, 'any profile'));
    this.projectInput = h('input', { type: 'search', placeholder: 'project slug', 'aria-label': 'Project' });
    this.searchInput = h('input', { type: 'search', name: 'q', placeholder: 'words in messages', 'aria-label': 'Search messages' });
    this.list = h('div', { class: 'list', 'aria-live': 'polite' });
    this.results = h('div', { class: 'results' });
    this.pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
    const apply = () => {
      this.filters = { name: this.nameInput.value.trim(), status: this.statusSelect.value,
        profileName: this.profileSelect.value, project: this.projectInput.value.trim() };
      this.cursors = [''];
      this.load();
    };
    this.replaceChildren(
      h('div', { class: 'page-head' }, h('h1', {}, 'Sessions'),
        h('button', { class: 'primary', onclick: () => this.create() }, 'New session')),
      h('form', { class: 'search', role: 'search', onsubmit: (e) => { e.preventDefault(); this.search(); } },
        this.searchInput, h('button', {}, 'Search')),
      this.results,
      h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); apply(); } },
        field('name', 'Name', this.nameInput), field('status', 'Status', this.statusSelect),
        field('profile', 'Profile', this.profileSelect), field('project', 'Project', this.projectInput),
        h('button', {}, 'Filter')),
      this.list, this.pager);
    this.statusSelect.addEventListener('change', apply);
    this.profileSelect.addEventListener('change', apply);
    api('GET', '/profiles').then((ps) => {
      for (const p of ps) this.profileSelect.append(h('option', { value: p.name }, p.name));
    }).catch(() => {});
  }

  query(cursor) {
    const q = new URLSearchParams({ limit: String(PAGE) });
    for (const [k, v] of Object.entries(this.filters)) if (v) q.set(k, v);
    // Sub-sessions sit under their parent (the row's ▸), unless a name is
    // looked for.
    if (!this.filters.name) q.set('topLevel', 'true');
    if (cursor) q.set('cursor', cursor);
    return q.toString();
  }

  async load() {
    const cursor = this.cursors[this.cursors.length - 1];
    try {
      const { body, headers } = await api('GET', `/sessions/?${this.query(cursor)}`, undefined, { full: true });
      this.next = headers.get('x-next-cursor') || '';
      this.list.replaceChildren(body.length ? h('ul', { class: 'tree' }, body.map((s) => this.row(s)))
        : h('p', { class: 'muted' }, 'No sessions match.'));
      this.pager.replaceChildren(
        h('button', { disabled: this.cursors.length < 2, onclick: () => { this.cursors.pop(); this.load(); } }, '← Newer'),
        h('span', {}, `Page ${this.cursors.length}`),
        h('button', { disabled: !this.next, onclick: () => { this.cursors.push(this.next); this.load(); } }, 'Older →'));
      if (!this.dataset.loaded) performance.mark('weft-interactive');
      this.dataset.loaded = String(Date.now());
    } catch (e) {
      this.list.replaceChildren(h('p', { class: 'error' }, e.message));
    }
  }

  row(s) {
    const children = h('ul', { class: 'tree', hidden: true });
    const toggle = h('button', { class: 'icon', 'aria-expanded': 'false', title: 'Sub-sessions',
      'aria-label': `Sub-sessions of ${s.name || s.sessionId}` }, '▸');
    toggle.addEventListener('click', async () => {
      const open = toggle.getAttribute('aria-expanded') === 'true';
      toggle.setAttribute('aria-expanded', String(!open));
      toggle.textContent = open ? '▸' : '▾';
      children.hidden = open;
      if (!open && !children.childElementCount) {
        try {
          const kids = await api('GET', `/sessions/${encodeURIComponent(s.sessionId)}/children?limit=100`);
          children.replaceChildren(...(kids.length ? kids.map((k) => this.row(k)) : [h('li', { class: 'muted' }, 'no sub-sessions')]));
        } catch (e) { notice(e.message, 'error'); }
      }
    });
    const title = s.name || s.sessionId;
    return h('li', { class: 'session-row', dataset: { id: s.sessionId } },
      h('div', { class: 'row' },
        toggle,
        h('a', { href: `#/s/${encodeURIComponent(s.sessionId)}`, class: 'name' }, title),
        badge(s.status, s.running),
        h('span', { class: 'meta' }, `${s.profileName} · ${s.project} · ${s.turnCount} turns · ${s.tokenUsage.totalTokens} tokens · ${when(s.updatedAt)}`),
        s.forkedFrom ? h('span', { class: 'meta' }, `fork of ${s.forkedFrom.sessionId.slice(0, 8)}…`) : null,
        h('span', { class: 'actions' },
          h('button', { onclick: () => this.rename(s) }, 'Rename'),
          h('button', { class: 'danger', onclick: () => this.remove(s) }, 'Delete'))),
      children);
  }

  async rename(s) {
    const name = await promptDialog('New name', s.name || '');
    if (name === null) return;
    try { await api('PATCH', `/sessions/${encodeURIComponent(s.sessionId)}`, { name }); notice('Renamed'); this.load(); } catch (e) { notice(e.message, 'error'); }
  }

  async remove(s) {
    if (!(await confirmDialog(`Delete session “${s.name || s.sessionId}” and its log? This cannot be undone.`))) return;
    try { await api('DELETE', `/sessions/${encodeURIComponent(s.sessionId)}`); notice('Deleted'); this.load(); } catch (e) { notice(e.message, 'error'); }
  }

  async create() {
    try {
      const s = await api('POST', '/sessions/', {});
      location.hash = `#/s/${encodeURIComponent(s.sessionId)}`;
    } catch (e) { notice(e.message, 'error'); }
  }

  async search() {
    const q = this.searchInput.value.trim();
    if (!q) { this.results.replaceChildren(); return; }
    try {
      const hits = await api('GET', `/search?${new URLSearchParams({ q, limit: '50' })}`);
      this.results.replaceChildren(h('h2', {}, `${hits.length} message${hits.length === 1 ? '' : 's'} with “${q}”`),
        h('ul', { class: 'hits' }, hits.map((hit) => h('li', {},
          h('a', { href: `#/s/${encodeURIComponent(hit.sessionId)}/${hit.seq}` }, hit.sessionName || hit.sessionId),
          h('span', { class: 'meta' }, ` ${hit.role} · ${hit.branch} · ${when(hit.timestamp)}`),
          h('div', { class: 'snippet' }, hit.snippet)))));
    } catch (e) { notice(e.message, 'error'); }
  }
}

customElements.define('weft-sessions', WeftSessions);
