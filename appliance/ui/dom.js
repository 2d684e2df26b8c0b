// DOM helpers of the web UI: element building (HTML and SVG), state badges, progress bars, the
// error banner, form values, and two small async utilities. Nothing here knows the API.

export const $ = (sel) => document.querySelector(sel);

/** h('td', { class: 'x', onclick: f }, 'text', child) → element; null/false children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const svg = ['svg', 'g', 'line', 'polyline', 'text', 'rect', 'path'].includes(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

export const badge = (state) => h('span', { class: `badge s-${state}` }, state);

export function progressBar(pct, label) {
  const fill = h('div', { class: 'fill' });
  fill.style.width = `${pct}%`;
  return h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct, 'aria-label': label }, fill, h('span', { class: 'pct' }, `${pct}%`));
}

export function showError(msg) {
  $('#error-text').textContent = msg;
  $('#error').hidden = false;
}
export function clearError() {
  $('#error').hidden = true;
}

export function field(label, input, hint) {
  return h('label', { class: 'field' }, h('span', {}, label), input, hint ? h('small', {}, hint) : null);
}

export function formValues(form) {
  const fd = new FormData(form);
  const v = Object.fromEntries([...fd.entries()].filter(([k]) => k !== 'machines'));
  v.machines = fd.getAll('machines');
  v.wol = fd.get('wol') === 'on';
  v.delta = fd.get('delta') === 'on';
  v.grow = fd.get('grow') === 'on';
  return v;
}

/** f once, `ms` after the first of a burst of calls (many events → one refresh). */
export function debounce(f, ms) {
  let timer = null;
  return () => { if (!timer) timer = setTimeout(() => { timer = null; f(); }, ms); };
}

/** f over items, at most n at a time (keeps a long machine list from opening 40 requests at once). */
export async function inParallel(items, n, f) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) { const i = next++; out[i] = await f(items[i], i); }
  }));
  return out;
}
