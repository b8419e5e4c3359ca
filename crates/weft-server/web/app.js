// The web UI's entry: a hash router over the pages (web components).
//   #/                       sessions
//   #/s/{id}[/{seq}]         a session (scrolled to message seq)
//   #/s/{id}/branches        its branches side by side
//   #/s/{id}/state           its state
// Only the sessions list is loaded with the page (the first thing shown);
// the other pages' modules are imported when first routed to, and fetched
// in the background once the list is on screen, so the first load makes
// as few requests as it can.
import { h } from './dom.js';
import './sessions.js';

const PAGES = {
  'weft-session': () => import('./session.js'),
  'weft-branches': () => import('./branches.js'),
  'weft-state': () => import('./state.js'),
};

let routed = 0;

async function route() {
  const mine = ++routed;
  const main = document.getElementById('main');
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  let tag = 'weft-sessions';
  const attrs = {};
  if (parts[0] === 's' && parts[1]) {
    attrs.session = parts[1];
    if (parts[2] === 'branches') tag = 'weft-branches';
    else if (parts[2] === 'state') tag = 'weft-state';
    else {
      tag = 'weft-session';
      attrs.seq = /^\d+$/.test(parts[2] || '') ? parts[2] : undefined;
    }
  }
  if (PAGES[tag]) {
    try {
      await PAGES[tag]();
    } catch (e) {
      if (mine === routed) main.replaceChildren(h('p', { class: 'error' }, `This page could not be loaded (${e.message}); reload to try again.`));
      return;
    }
    if (mine !== routed) return; // another route was taken meanwhile
  }
  main.replaceChildren(h(tag, attrs));
  main.focus({ preventScroll: true });
  document.body.dataset.ready = 'true';
}

/** Fetches the other pages' modules when the browser is idle. */
function warm() {
  const load = () => Object.values(PAGES).forEach((page) => page().catch(() => {}));
  if ('requestIdleCallback' in window) requestIdleCallback(load, { timeout: 2000 });
  else setTimeout(load, 500);
}

window.addEventListener('hashchange', route);
route().then(warm);
