// The rackcast web UI: machines, images, tasks (create a deploy for tonight or a capture, cancel,
// watch one live). Plain browser ES modules over the REST API (/api/v1, admin bearer token) and
// its server-sent events; no build step, no framework. This module signs in and out and routes.
import { $, clearError } from './dom.js';
import { api, getToken, setToken, onUnauthorized } from './api.js';
import { startStream, stopStream } from './live.js';
import { machinesView, imagesView } from './views-inventory.js';
import { tasksView } from './views-tasks.js';
import { taskView } from './view-task.js';

let view = {};

function signOut(why) {
  setToken('', false);
  stopStream();
  view.leave?.();
  view = {};
  $('#view').replaceChildren();
  $('#logout').hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = why ?? '';
}

async function signIn(t) {
  setToken(t.trim(), false);
  try {
    await api('GET', '/api/v1/tasks?limit=1');
  } catch (e) {
    signOut(e.status === 401 || e.status === 403 ? `not signed in: ${e.message}` : e.message);
    return;
  }
  setToken(t.trim(), true);
  $('#login').hidden = true;
  $('#logout').hidden = false;
  startStream({
    onEvent: (kind, d) => view.onEvent?.(kind, d),
    onProgress: (taskId) => view.onProgress?.(taskId),
    onUnauthorized: signOut,
  });
  route();
}

function route() {
  if (!getToken()) return;
  clearError();
  view.leave?.();
  const hash = location.hash || '#/tasks';
  const m = /^#\/tasks\/(\d+)$/.exec(hash);
  const name = m ? 'tasks' : hash.replace(/^#\//, '');
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === name);
  const root = $('#view');
  root.replaceChildren();
  view = m ? taskView(root, Number(m[1])) : name === 'machines' ? machinesView(root) : name === 'images' ? imagesView(root) : tasksView(root);
}

onUnauthorized(signOut);
$('#login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  void signIn($('#token-input').value);
});
$('#logout').addEventListener('click', () => signOut('signed out'));
$('#error-close').addEventListener('click', clearError);
window.addEventListener('hashchange', route);
if (getToken()) void signIn(getToken());
else signOut();
