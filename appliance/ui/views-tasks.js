// The Tasks view: the list (state, progress, watch / report / cancel) and the two forms, a deploy
// (image; a group or machines; now, at a time such as 02:00, or cron; the session's start rule;
// retries; Wake-on-LAN) and a capture. Errors show the API's own message next to the form.
import { h, badge, field, formValues, clearError, debounce, progressBar } from './dom.js';
import { api, guarded, reportHref } from './api.js';
import { FINISHED, machinePct } from './live.js';
import { fmtBytes, fmtTime, taskBody, describeRule } from './lib.js';

export function targetText(t) {
  if (t.target?.group) return `group ${t.target.group}`;
  const n = t.target?.machines?.length ?? t.machines.length;
  return n === 1 ? (t.target?.machines?.[0] ?? t.machines[0]?.mac ?? '1 machine') : `${n} machines`;
}

export function whenText(t) {
  if (t.cron) return `cron "${t.cron}", next ${fmtTime(t.nextRunAt)}`;
  if (t.state === 'scheduled') return `at ${fmtTime(t.scheduleAt ?? t.nextRunAt)}`;
  if (t.startedAt) return `started ${fmtTime(t.startedAt)}`;
  return `created ${fmtTime(t.createdAt)}`;
}

function taskProgress(t) {
  const ms = t.machines;
  if (!ms.length) return null;
  const pcts = ms.map((m) => machinePct(t.id, m));
  return Math.floor(pcts.reduce((a, b) => a + b, 0) / ms.length);
}

export function tasksView(root) {
  const body = h('tbody');
  const deployErr = h('p', { class: 'form-error', role: 'alert' });
  const captureErr = h('p', { class: 'form-error', role: 'alert' });
  const notice = h('p', { class: 'notice', role: 'status' });
  const imageSel = h('select', { name: 'image', required: true });
  const groupSel = h('select', { name: 'group' });
  const machineBoxes = h('div', { class: 'checks' });
  const captureSel = h('select', { name: 'machines', required: true });

  const deploy = h('form', { id: 'deploy-form', class: 'grid' },
    field('Image', imageSel),
    h('fieldset', {}, h('legend', {}, 'Machines'),
      h('label', {}, h('input', { type: 'radio', name: 'target', value: 'group', checked: true }), ' a group '), groupSel,
      h('label', {}, h('input', { type: 'radio', name: 'target', value: 'machines' }), ' these machines:'), machineBoxes),
    h('fieldset', {}, h('legend', {}, 'When'),
      h('label', {}, h('input', { type: 'radio', name: 'when', value: 'at', checked: true }), ' at '), h('input', { name: 'at', value: '02:00', size: 22, 'aria-label': 'time', placeholder: 'HH:MM or ISO date-time' }),
      h('small', {}, 'HH:MM is the next such time: tonight, or tomorrow if it has passed'),
      h('label', {}, h('input', { type: 'radio', name: 'when', value: 'cron' }), ' every '), h('input', { name: 'cron', value: '0 2 * * *', size: 14, 'aria-label': 'cron expression' }),
      h('label', {}, h('input', { type: 'radio', name: 'when', value: 'now' }), ' now')),
    h('fieldset', {}, h('legend', {}, 'Start the multicast session'),
      h('select', { name: 'rule', 'aria-label': 'start rule' },
        h('option', { value: 'all' }, 'when all machines have joined'),
        h('option', { value: 'grace' }, 'after the first join plus a grace period'),
        h('option', { value: 'deadline' }, 'at a deadline, with whoever joined')),
      h('label', {}, ' grace (s) ', h('input', { name: 'grace', type: 'number', min: 0, max: 86400, value: 300, size: 6 })),
      h('label', {}, ' deadline ', h('input', { name: 'deadline', type: 'datetime-local' }))),
    field('Retries per machine', h('input', { name: 'retries', type: 'number', min: 0, max: 10, placeholder: 'default' })),
    h('label', { class: 'field inline' }, h('input', { type: 'checkbox', name: 'wol', checked: true }), h('span', {}, 'Wake-on-LAN the machines')),
    h('label', { class: 'field inline' }, h('input', { type: 'checkbox', name: 'delta' }), h('span', {}, 'Delta: send and write only the blocks that differ from each disk')),
    h('label', { class: 'field inline' }, h('input', { type: 'checkbox', name: 'grow' }), h('span', {}, 'Grow the last partition onto larger disks')),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create deploy task')),
    deployErr);
  deploy.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = formValues(deploy);
    let b;
    try { b = taskBody({ ...v, kind: 'deploy' }); } catch (err) { deployErr.textContent = err.message; return; }
    const t = await guarded(() => api('POST', '/api/v1/tasks', b), deployErr);
    if (t) { notice.textContent = `Task ${t.id} created: deploy ${t.image} to ${targetText(t)}, ${t.state === 'scheduled' ? `at ${fmtTime(t.scheduleAt ?? t.nextRunAt)}` : t.state}.`; void refresh(); }
  });

  const capture = h('form', { id: 'capture-form', class: 'grid' },
    field('Machine', captureSel),
    field('New image name', h('input', { name: 'image', required: true, placeholder: 'web-2026-11', pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]*', title: 'letters, digits, . _ -' })),
    h('fieldset', {}, h('legend', {}, 'When'),
      h('label', {}, h('input', { type: 'radio', name: 'when', value: 'now', checked: true }), ' at its next network boot'),
      h('label', {}, h('input', { type: 'radio', name: 'when', value: 'at' }), ' at '), h('input', { name: 'at', value: '02:00', size: 22, 'aria-label': 'time' })),
    h('label', { class: 'field inline' }, h('input', { type: 'checkbox', name: 'wol' }), h('span', {}, 'Wake-on-LAN the machine')),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create capture task')),
    captureErr);
  capture.addEventListener('submit', async (e) => {
    e.preventDefault();
    let b;
    try { b = taskBody({ ...formValues(capture), kind: 'capture', target: 'machines' }); } catch (err) { captureErr.textContent = err.message; return; }
    const t = await guarded(() => api('POST', '/api/v1/tasks', b), captureErr);
    if (t) { notice.textContent = `Task ${t.id} created: capture ${targetText(t)} as ${t.image}.`; void refresh(); }
  });

  root.append(
    h('section', { class: 'card' }, h('h2', {}, 'Tasks'), notice,
      h('table', { id: 'tasks' },
        h('thead', {}, h('tr', {}, ['#', 'kind', 'image', 'machines', 'when', 'start rule', 'state', 'progress', ''].map((c) => h('th', {}, c)))),
        body)),
    h('div', { class: 'two' },
      h('section', { class: 'card' }, h('h2', {}, 'Deploy an image'), deploy),
      h('section', { class: 'card' }, h('h2', {}, 'Capture a machine'), capture)));

  const fillForms = async () => {
    const [images, groups, machines] = await Promise.all([api('GET', '/api/v1/images'), api('GET', '/api/v1/groups'), api('GET', '/api/v1/machines')]);
    const keep = (sel) => sel.value;
    const img = keep(imageSel);
    imageSel.replaceChildren(h('option', { value: '' }, images.length ? '— choose —' : '(no images)'), ...images.filter((i) => !i.error).map((i) => h('option', { value: i.name }, `${i.name} (${fmtBytes(i.diskSize)})`)));
    imageSel.value = images.some((i) => i.name === img) ? img : '';
    const g = keep(groupSel);
    groupSel.replaceChildren(h('option', { value: '' }, groups.length ? '— choose —' : '(no groups)'), ...groups.map((x) => h('option', { value: x.name }, `${x.name} (${x.machines.length})`)));
    groupSel.value = groups.some((x) => x.name === g) ? g : '';
    const ticked = new Set([...machineBoxes.querySelectorAll('input:checked')].map((i) => i.value));
    machineBoxes.replaceChildren(...machines.map((m) => h('label', {}, h('input', { type: 'checkbox', name: 'machines', value: m.mac, checked: ticked.has(m.mac) }), ` ${m.mac}${m.name ? ` (${m.name})` : ''}${m.group ? ` [${m.group}]` : ''}`)));
    if (!machines.length) machineBoxes.append(h('span', { class: 'sub' }, '(no machines yet)'));
    const c = keep(captureSel);
    captureSel.replaceChildren(h('option', { value: '' }, '— choose —'), ...machines.map((m) => h('option', { value: m.mac }, `${m.mac}${m.name ? ` (${m.name})` : ''}`)));
    captureSel.value = machines.some((m) => m.mac === c) ? c : '';
  };

  const refresh = async () => {
    const list = await guarded(() => api('GET', '/api/v1/tasks'));
    if (!list) return;
    list.sort((a, b) => b.id - a.id);
    body.replaceChildren(...list.map((t) => {
      const pct = taskProgress(t);
      const n = t.machines.length;
      const done = t.machines.filter((m) => m.state === 'done').length;
      return h('tr', { dataset: { task: t.id } },
        h('td', {}, h('a', { href: `#/tasks/${t.id}` }, String(t.id))),
        h('td', {}, t.kind),
        h('td', {}, t.image ?? '–'),
        h('td', {}, targetText(t)),
        h('td', {}, whenText(t)),
        h('td', {}, t.kind === 'deploy' ? describeRule(t.startRule) : '–'),
        h('td', {}, badge(t.state), t.reason ? h('div', { class: 'sub' }, t.reason) : null),
        h('td', {}, n ? [progressBar(pct ?? 0, `task ${t.id} progress`), h('div', { class: 'sub' }, `${done}/${n} done`)] : h('span', { class: 'sub' }, t.state === 'scheduled' ? 'not armed yet' : '–')),
        h('td', { class: 'row-actions' },
          h('a', { href: `#/tasks/${t.id}` }, 'Watch'),
          h('a', { href: reportHref(t.id), target: '_blank', rel: 'noopener noreferrer' }, 'Report'),
          FINISHED.has(t.state) ? null : h('button', { type: 'button', class: 'danger', onclick: () => cancelTask(t.id, refresh) }, 'Cancel')));
    }));
    if (!list.length) body.append(h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No tasks yet: create one below.')));
  };
  const later = debounce(refresh, 400);
  void guarded(fillForms);
  void refresh();
  return {
    onEvent: (kind) => { later(); if (/^(machine-set|machine-seen|group-|image-|task-ended)/.test(kind)) void guarded(fillForms); },
    onProgress: later,
  };
}

export async function cancelTask(id, then) {
  if (!confirm(`Cancel task ${id}? Its machines that have not finished boot their local disk next time.`)) return;
  clearError();
  const ok = await guarded(async () => { await api('POST', `/api/v1/tasks/${id}/cancel`, { reason: 'cancelled in the web UI' }); return true; });
  if (ok) void then();
}

