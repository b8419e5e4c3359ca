// Small DOM helpers shared by the pages: element building (text is always
// set as text, never parsed as HTML), formatting and notices.

/** Builds an element: h('a', {href: '#/', class: 'x', onclick: f}, 'text', child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** A short local date and time. */
export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'short' });
}

/** Shows a notice at the bottom of the page for a few seconds. */
export function notice(text, kind = 'info') {
  const box = document.getElementById('notices');
  const el = h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  box.append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 3000);
}

/** Asks a yes/no question in a modal dialog; resolves true on yes. */
export function confirmDialog(question, yes = 'Delete') {
  return new Promise((resolve) => {
    const dialog = h('dialog', { class: 'confirm' },
      h('form', { method: 'dialog' },
        h('p', {}, question),
        h('div', { class: 'row' },
          h('button', { value: 'no', autofocus: true }, 'Cancel'),
          h('button', { value: 'yes', class: 'danger' }, yes))));
    dialog.addEventListener('close', () => { resolve(dialog.returnValue === 'yes'); dialog.remove(); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Asks for one line of text in a modal dialog; resolves the text or null. */
export function promptDialog(question, value = '', ok = 'Save') {
  return new Promise((resolve) => {
    const input = h('input', { name: 'v', value, 'aria-label': question, autofocus: true });
    const dialog = h('dialog', { class: 'confirm' },
      h('form', { method: 'dialog' },
        h('label', {}, question, input),
        h('div', { class: 'row' },
          h('button', { value: 'no', formnovalidate: true }, 'Cancel'),
          h('button', { value: 'yes', class: 'primary' }, ok))));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'yes' ? input.value : null);
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** The status badge of a session. */
export function badge(status, running) {
  return h('span', { class: `badge ${running ? 'running' : status}` }, running ? 'running' : status);
}
