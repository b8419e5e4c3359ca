// <weft-branches>: a session's branches side by side: each with its
// transcript and a prompt box; split one, make one the default, delete
// one, send mail between them and collect it.
import { api } from './api.js';
import { h, notice, confirmDialog, promptDialog } from './dom.js';
import { messageView } from './transcript.js';

class WeftBranches extends HTMLElement {
  connectedCallback() {
    this.sid = this.getAttribute('session');
    this.load();
  }

  path(rest = '') { return `/sessions/${encodeURIComponent(this.sid)}${rest}`; }

  async load() {
    try {
      const [session, branches, mail] = await Promise.all([
        api('GET', this.path()), api('GET', this.path('/branches')), api('GET', this.path('/mail'))]);
      const columns = await Promise.all(branches.map(async (b) => ({
        b, messages: await api('GET', this.path(`/branches/${encodeURIComponent(b.name)}/transcript`)) })));
      this.render(session, branches, columns, mail);
    } catch (e) {
      this.replaceChildren(h('p', { class: 'error' }, e.message), h('a', { href: '#/' }, 'Back to sessions'));
    }
  }

  render(session, branches, columns, mail) {
    const sid = encodeURIComponent(this.sid);
    const names = branches.map((b) => b.name);
    const select = (label) => h('select', { 'aria-label': label }, names.map((n) => h('option', { value: n }, n)));
    const from = select('From branch');
    const to = select('To branch');
    if (names.length > 1) to.value = names[1];
    const item = h('input', { placeholder: 'a message for the other branch', 'aria-label': 'Mail text', required: true });
    this.replaceChildren(
      h('nav', { class: 'crumbs' }, h('a', { href: '#/' }, 'Sessions'), ' / ',
        h('a', { href: `#/s/${sid}` }, session.name || session.sessionId), ' / branches'),
      h('div', { class: 'page-head' }, h('h1', {}, 'Branches'), h('span', { class: 'meta' }, `${branches.length} branches`)),
      h('form', { class: 'mail-form', onsubmit: (e) => { e.preventDefault(); this.mail(from.value, to.value, item.value); } },
        h('label', {}, 'Mail from ', from), h('label', {}, 'to ', to), item, h('button', {}, 'Send mail'),
        h('button', { type: 'button', onclick: () => this.collect() }, `Collect mail (${mail.length} pending)`)),
      h('div', { class: 'columns' }, columns.map(({ b, messages }) => this.column(b, messages))));
  }

  column(b, messages) {
    const prompt = h('input', { placeholder: `prompt on ${b.name}`, 'aria-label': `Prompt on ${b.name}` });
    return h('section', { class: 'column', dataset: { branch: b.name }, 'aria-label': `Branch ${b.name}` },
      h('header', {},
        h('h2', {}, b.name, b.default ? h('span', { class: 'badge completed' }, 'default') : null),
        h('span', { class: 'meta' }, `${b.messageCount} messages${b.createdFrom ? ` · split from ${b.createdFrom.branch} at ${b.createdFrom.uptoSeq}` : ''}`),
        h('div', { class: 'row' },
          h('button', { class: 'small', onclick: () => this.split(b) }, 'Split'),
          b.default ? null : h('button', { class: 'small', onclick: () => this.makeDefault(b) }, 'Make default'),
          b.default ? null : h('button', { class: 'small danger', onclick: () => this.remove(b) }, 'Delete'))),
      h('div', { class: 'transcript' }, messages.map((m) => messageView(m))),
      h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); this.prompt(b, prompt.value); } },
        prompt, h('button', {}, 'Send')));
  }

  async act(what, call) {
    try { await call(); notice(what); this.load(); } catch (e) { notice(e.message, 'error'); }
  }

  async split(b) {
    const name = await promptDialog(`Name of the branch split from ${b.name}`, `${b.name}-2`, 'Split');
    if (name === null) return;
    this.act('Split', () => api('POST', this.path(`/branches/${encodeURIComponent(b.name)}/split`), { name: name || undefined }));
  }

  makeDefault(b) { this.act(`${b.name} is the default`, () => api('POST', this.path(`/branches/${encodeURIComponent(b.name)}/default`))); }

  async remove(b) {
    if (!(await confirmDialog(`Delete branch ${b.name}?`))) return;
    this.act('Deleted', () => api('DELETE', this.path(`/branches/${encodeURIComponent(b.name)}`)));
  }

  prompt(b, content) {
    if (!content.trim()) return;
    this.act('Prompt sent', () => api('POST', this.path(`/branches/${encodeURIComponent(b.name)}/send-message?multitask=enqueue`), { content }));
  }

  mail(from, to, item) {
    if (!item.trim()) return;
    this.act('Mail sent', () => api('POST', this.path('/mail'), { from, to, category: 'message', item }));
  }

  collect() { this.act('Mail collected', () => api('POST', this.path('/mail/collect'), {})); }
}

customElements.define('weft-branches', WeftBranches);
