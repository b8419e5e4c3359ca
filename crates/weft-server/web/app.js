// The web UI's entry: a hash router over the pages (web components).
//   #/                       sessions
//   #/s/{id}[/{seq}]         a session (scrolled to message seq)
//   #/s/{id}/branches        its branches side by side
//   #/s/{id}/state           its state
import { h } from './dom.js';
import './sessions.js';
import './session.js';
import './branches.js';
import './state.js';

function route() {
  const main = document.getElementById('main');
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  let page;
  if (parts[0] === 's' && parts[1]) {
    const attrs = { session: parts[1] };
    if (parts[2] === 'branches') page = h('weft-branches', attrs);
    else if (parts[2] === 'state') page = h('weft-state', attrs);
    else page = h('weft-session', { ...attrs, seq: /^\d+$/.test(parts[2] || '') ? parts[2] : undefined });
  } else {
    page = h('weft-sessions');
  }
  main.replaceChildren(page);
  main.focus({ preventScroll: true });
  document.body.dataset.ready = 'true';
}

window.addEventListener('hashchange', route);
route();
