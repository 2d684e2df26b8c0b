// One task, live: its facts (schedule, start rule, session), the start-rule change while the
// session waits, cancel, the report link; per machine a progress bar, MB/s and the last detail;
// the throughput plot (inline SVG, MB/s over the last minutes, a line per machine and their sum);
// the task's events. Redrawn on the task's events and progress, and once a second while open.
import { h, badge, formValues, debounce, progressBar } from './dom.js';
import { api, guarded, reportHref } from './api.js';
import { FINISHED, live, blockSizes, machinePct } from './live.js';
import { cancelTask, targetText, whenText } from './views-tasks.js';
import { fmtRate, fmtAgo, fmtTime, fmtDuration, startRule, describeRule, plotLayout, sumSeries } from './lib.js';

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];
const PLOT_WINDOW_MS = 10 * 60_000;

export function taskView(root, id) {
  const head = h('div', { class: 'task-head' });
  const body = h('tbody');
  const plot = h('div', { class: 'plot', id: 'plot' });
  const legend = h('div', { class: 'legend' });
  const log = h('ol', { class: 'events', reversed: true });
  const ruleErr = h('p', { class: 'form-error', role: 'alert' });
  let task = null;
  const colorOf = new Map();
  let lastEventId = 0;
  const shown = [];

  // changing the start rule while the session waits (built once: a redraw keeps what is typed)
  const ruleForm = h('form', { id: 'rule-form', class: 'inline-form' },
    h('select', { name: 'rule', 'aria-label': 'new start rule' }, h('option', { value: 'all' }, 'all joined'), h('option', { value: 'grace' }, 'first join + grace'), h('option', { value: 'deadline' }, 'deadline')),
    h('input', { name: 'grace', type: 'number', min: 0, max: 86400, value: 0, size: 6, 'aria-label': 'grace seconds' }),
    h('input', { name: 'deadline', type: 'datetime-local', 'aria-label': 'deadline' }),
    h('button', { type: 'submit' }, 'Change start rule'), ruleErr);
  ruleForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    let b;
    try { b = startRule(formValues(ruleForm)); } catch (err) { ruleErr.textContent = err.message; return; }
    const r = await guarded(() => api('PUT', `/api/v1/tasks/${id}/start-rule`, b), ruleErr);
    if (r) void refresh();
  });

  root.append(
    h('p', {}, h('a', { href: '#/tasks' }, '← all tasks')),
    h('section', { class: 'card' }, head),
    h('section', { class: 'card' }, h('h3', {}, 'Machines'),
      h('table', { id: 'task-machines' },
        h('thead', {}, h('tr', {}, ['machine', 'state', 'progress', 'MB/s', 'detail', 'attempts', 'joined', 'updated'].map((c) => h('th', {}, c)))),
        body)),
    h('section', { class: 'card' }, h('h3', {}, 'Throughput (MB/s)'), plot, legend),
    h('section', { class: 'card' }, h('h3', {}, 'Events'), log));

  const drawHead = (t) => {
    const open = !FINISHED.has(t.state);
    const waiting = t.kind === 'deploy' && open && t.session?.state !== 'started';
    const done = t.machines.filter((m) => m.state === 'done').length;
    head.replaceChildren(
      h('h2', {}, `Task ${t.id}: ${t.kind} ${t.image ?? ''} `, badge(t.state)),
      h('dl', { class: 'facts' },
        h('dt', {}, 'machines'), h('dd', {}, `${targetText(t)} — ${done}/${t.machines.length} done`),
        h('dt', {}, 'when'), h('dd', {}, whenText(t)),
        t.kind === 'deploy' ? [h('dt', {}, 'start rule'), h('dd', {}, describeRule(t.startRule))] : null,
        t.session ? [h('dt', {}, 'session'), h('dd', { id: 'session' }, t.session.state, t.session.reason ? ` — ${t.session.reason}` : '')] : null,
        t.reason ? [h('dt', {}, 'result'), h('dd', {}, t.reason)] : null,
        t.endedAt ? [h('dt', {}, 'duration'), h('dd', {}, fmtDuration((Date.parse(t.endedAt) - Date.parse(t.startedAt ?? t.armedAt ?? t.createdAt)) / 1000))] : null),
      h('div', { class: 'actions' },
        h('a', { id: 'report-link', class: 'button', href: reportHref(t.id), target: '_blank', rel: 'noopener noreferrer' }, FINISHED.has(t.state) ? 'Morning report' : 'Report so far'),
        open ? h('button', { type: 'button', class: 'danger', onclick: () => cancelTask(id, refresh) }, 'Cancel task') : null),
      ...(waiting ? [ruleForm] : []));
  };

  const drawMachines = () => {
    if (!task) return;
    body.replaceChildren(...task.machines.map((m) => {
      const r = live.get(`${id}/${m.mac}`);
      const pct = machinePct(id, m);
      const rate = m.state === 'running' ? (r?.mbps ?? m.mbps) : m.mbps;
      return h('tr', { dataset: { mac: m.mac, state: m.state } },
        h('td', {}, h('span', { class: 'swatch', style: { background: color(m.mac) } }), h('code', {}, m.mac)),
        h('td', {}, badge(m.state)),
        h('td', { class: 'progress-cell' }, progressBar(pct, `${m.mac} progress`)),
        h('td', {}, fmtRate(rate)),
        h('td', { class: 'detail' }, m.detail ?? ''),
        h('td', {}, String(m.attempts + 1)),
        h('td', {}, m.joinedAt ? fmtTime(m.joinedAt) : '–'),
        h('td', { title: m.updatedAt }, fmtAgo(m.updatedAt, Date.now())));
    }));
  };

  const color = (key) => {
    if (!colorOf.has(key)) colorOf.set(key, key === 'total' ? '#111827' : COLORS[colorOf.size % COLORS.length]);
    return colorOf.get(key);
  };

  const drawPlot = () => {
    const from = Date.now() - PLOT_WINDOW_MS;
    const series = [...live.values()].filter((r) => r.taskId === id).map((r) => ({ key: r.mac, points: r.points.filter((p) => p.t >= from) }));
    if (series.length > 1) series.push({ key: 'total', points: sumSeries(series) });
    const W = 760;
    const H = 240;
    const pad = { left: 48, right: 12, top: 12, bottom: 28 };
    const L = plotLayout(series, { width: W, height: H, pad, nowMs: Date.now(), windowMs: PLOT_WINDOW_MS });
    const svg = h('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'throughput in MB/s over time', class: 'plot-svg' },
      h('rect', { x: pad.left, y: pad.top, width: W - pad.left - pad.right, height: H - pad.top - pad.bottom, class: 'plot-area' }),
      L.yTicks.map((t) => h('g', {}, h('line', { x1: pad.left, x2: W - pad.right, y1: t.y, y2: t.y, class: 'grid' }), h('text', { x: pad.left - 6, y: t.y + 4, class: 'tick', 'text-anchor': 'end' }, t.label))),
      L.xTicks.map((t) => h('text', { x: t.x, y: H - 8, class: 'tick', 'text-anchor': 'middle' }, t.label)),
      L.lines.filter((l) => l.points.length).map((l) => h('polyline', {
        class: `series${l.key === 'total' ? ' total' : ''}`, 'data-key': l.key, fill: 'none', stroke: color(l.key),
        points: l.points.map(([x, y]) => `${x},${y}`).join(' '),
      })));
    plot.replaceChildren(svg);
    const n = series.reduce((a, s) => a + s.points.length, 0);
    legend.replaceChildren(...(n ? series.map((s) => h('span', {}, h('span', { class: 'swatch', style: { background: color(s.key) } }), s.key === 'total' ? 'all machines' : s.key)) : [h('span', { class: 'sub' }, 'No throughput yet: it is drawn from the machines\' progress reports as they arrive.')]));
  };

  // the task's events, fetched from the last one shown on (a long task has thousands)
  const drawEvents = async () => {
    const evs = await api('GET', `/api/v1/events?task=${id}&after=${lastEventId}&limit=1000`).catch(() => null);
    if (!evs?.length) return;
    lastEventId = evs[evs.length - 1].id;
    shown.unshift(...evs.reverse().map((e) => h('li', {}, h('time', { datetime: e.at }, fmtTime(e.at).slice(11)), ' ', h('strong', {}, e.kind), e.mac ? ` ${e.mac}` : '', ' ', h('span', { class: 'sub' }, eventText(e.detail)))));
    shown.splice(200);
    log.replaceChildren(...shown);
  };

  const refresh = async () => {
    const t = await guarded(() => api('GET', `/api/v1/tasks/${id}`));
    if (!t) return;
    task = t;
    if (t.image && t.kind === 'deploy' && !blockSizes.has(id)) {
      const img = await api('GET', `/api/v1/images/${encodeURIComponent(t.image)}`).catch(() => null);
      if (img?.blockSize) blockSizes.set(id, img.blockSize);
    }
    drawHead(t);
    drawMachines();
    drawPlot();
    await drawEvents();
  };
  const later = debounce(refresh, 300);
  const tick = setInterval(() => { if (task && !FINISHED.has(task.state)) { drawPlot(); drawMachines(); } }, 1000);
  void refresh();
  return {
    onEvent: (kind, d) => { if (d.taskId === id) later(); },
    onProgress: (taskId) => { if (taskId === id) { drawMachines(); drawPlot(); } },
    leave: () => clearInterval(tick),
  };
}

function eventText(d) {
  if (!d || typeof d !== 'object') return '';
  const parts = [];
  for (const [k, v] of Object.entries(d)) {
    if (v === null || v === undefined) continue;
    if (k === 'log' && Array.isArray(v)) { parts.push(`log: ${v.slice(-2).join(' | ')}`); continue; }
    parts.push(`${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`);
  }
  return parts.join(', ');
}

