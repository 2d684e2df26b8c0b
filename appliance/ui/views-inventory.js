// The Machines and Images views: tables refreshed from the API when related events arrive.
import { h, badge, clearError, debounce, inParallel } from './dom.js';
import { api, guarded } from './api.js';
import { fmtBytes, fmtAgo, fmtTime, dedupSavings, inventorySummary } from './lib.js';

export function machinesView(root) {
  const body = h('tbody');
  root.append(h('section', { class: 'card' },
    h('h2', {}, 'Machines'),
    h('p', { class: 'hint' }, 'Machines appear when they network-boot (or when added by MAC through the API); the inventory is what the boot environment reported at its last hello.'),
    h('table', { id: 'machines' },
      h('thead', {}, h('tr', {}, ['MAC', 'group', 'vendor / product', 'firmware', 'CPU / memory', 'disks', 'state', 'last seen'].map((c) => h('th', {}, c)))),
      body)));
  const refresh = async () => {
    const list = await guarded(() => api('GET', '/api/v1/machines'));
    if (!list) return;
    const details = await inParallel(list, 6, (m) => api('GET', `/api/v1/machines/${m.mac}`).catch(() => null));
    const now = Date.now();
    body.replaceChildren(...list.map((m, i) => {
      const d = details[i];
      const inv = inventorySummary(d?.inventory);
      const cur = m.task ? d?.tasks?.find((t) => t.id === m.task) : null;
      return h('tr', { dataset: { mac: m.mac } },
        h('td', {}, h('code', {}, m.mac), m.name ? h('div', { class: 'sub' }, m.name) : null),
        h('td', {}, m.group ?? '–'),
        h('td', {}, inv.model),
        h('td', {}, inv.firmware),
        h('td', {}, inv.cpu, h('div', { class: 'sub' }, inv.memory)),
        h('td', {}, inv.disks.length ? inv.disks.map((x) => h('div', {}, x)) : '–'),
        h('td', {}, m.task ? [h('a', { href: `#/tasks/${m.task}` }, `task ${m.task}`), ' ', badge(cur?.state ?? 'pending')] : h('span', { class: 'sub' }, 'idle')),
        h('td', { title: m.lastSeen }, fmtAgo(m.lastSeen, now), h('div', { class: 'sub' }, `${m.bootCount} boot(s)`)));
    }));
    if (!list.length) body.append(h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'No machines yet: PXE-boot one, or add one with PATCH /api/v1/machines/MAC.')));
  };
  const later = debounce(refresh, 2000); // a deploy reports progress every few seconds per machine
  void refresh();
  return { onEvent: (kind) => { if (/^(machine|client|task)-/.test(kind)) later(); } };
}

export function imagesView(root) {
  const body = h('tbody');
  root.append(h('section', { class: 'card' },
    h('h2', {}, 'Images'),
    h('p', { class: 'hint' }, 'Disk size is the whole disk; data is its non-empty blocks; stored is what the chunk store holds for it (zstd, holes skipped). Images share identical chunks, so the store as a whole may hold less than the sum.'),
    h('table', { id: 'images' },
      h('thead', {}, h('tr', {}, ['name', 'disk size', 'data', 'stored', 'savings', 'created', 'digest', ''].map((c) => h('th', {}, c)))),
      body)));
  const refresh = async () => {
    const list = await guarded(() => api('GET', '/api/v1/images'));
    if (!list) return;
    const details = await inParallel(list, 4, (im) => (im.error ? null : api('GET', `/api/v1/images/${encodeURIComponent(im.name)}`).catch(() => null)));
    body.replaceChildren(...list.map((im, i) => {
      if (im.error) return h('tr', { dataset: { image: im.name } }, h('td', {}, im.name), h('td', { colspan: 7, class: 'form-error' }, im.error));
      const d = details[i];
      const s = dedupSavings(im, d?.blockSize);
      return h('tr', { dataset: { image: im.name } },
        h('td', {}, h('strong', {}, im.name), d ? h('div', { class: 'sub' }, `${d.partitionTable}, ${d.partitions?.length ?? 0} partition(s), ${fmtBytes(d.blockSize)} blocks`) : null),
        h('td', {}, fmtBytes(im.diskSize)),
        h('td', {}, fmtBytes(s.dataBytes ?? im.diskSize), h('div', { class: 'sub' }, `${im.dataBlocks} of ${im.blocks} blocks`)),
        h('td', {}, fmtBytes(im.storedBytes), h('div', { class: 'sub' }, `${im.uniqueChunks} chunks`)),
        h('td', { class: 'savings' }, `${fmtBytes(s.savedBytes)} (${s.savedPercent}%)`, h('div', { class: 'sub' }, s.ratio ? `${s.ratio}× smaller than its data` : '')),
        h('td', { title: im.createdAt }, fmtTime(im.createdAt)),
        h('td', {}, h('code', { title: im.digest }, `${String(im.digest).replace(/^sha256:/, '').slice(0, 12)}…`)),
        h('td', {},
          h('button', { type: 'button', class: 'verify', onclick: (e) => verify(im.name, e.currentTarget) }, 'Verify'), ' ',
          h('span', { class: 'verify-result sub' }, verified.get(im.name) ?? ''), ' ',
          h('button', { type: 'button', class: 'danger', onclick: () => remove(im.name) }, 'Delete')));
    }));
    if (!list.length) body.append(h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'No images yet: capture one (Tasks → Capture, or rackcast image capture).')));
  };
  const verified = new Map();
  const verify = async (name, button) => {
    clearError();
    button.disabled = true;
    const cell = button.parentElement?.querySelector('.verify-result');
    if (cell) cell.textContent = 'verifying…';
    const r = await guarded(() => api('POST', `/api/v1/images/${encodeURIComponent(name)}/verify`));
    button.disabled = false;
    const text = !r ? 'verify failed' : r.ok ? `verified: ${r.chunks} chunks OK (${r.seconds.toFixed(1)} s)` : `${r.problems.length} damaged chunk(s)!`;
    verified.set(name, text);
    if (cell) cell.textContent = text;
  };
  const remove = async (name) => {
    if (!confirm(`Delete image "${name}"? Its chunks are freed by the next gc unless other images share them.`)) return;
    clearError();
    const ok = await guarded(async () => { await api('DELETE', `/api/v1/images/${encodeURIComponent(name)}`); return true; });
    if (ok) void refresh();
  };
  void refresh();
  return { onEvent: (kind) => { if (kind === 'image-deleted' || kind === 'task-ended') void refresh(); } };
}
