// The morning report of a task: per machine the result, duration, MB/s, verify result and every
// error with the log lines the client sent (client-log events). JSON for the API and the webhook,
// HTML for /reports/<task>. Built from the store alone, so it is the same after a restart.
import type { Store, Task } from './store/db.ts';
import { FINISHED } from './tasks.ts';

export interface MachineError { at: string; what: string; lines: string[] }
export interface MachineReport {
  mac: string; name: string | null; result: string; detail: string | null; attempts: number;
  startedAt: string | null; endedAt: string | null; durationSeconds: number | null;
  bytes: number | null; totalBytes: number | null; mbps: number | null; verify: string;
  errors: MachineError[]; wolPackets: number;
}
export interface TaskReport {
  generatedAt: string;
  task: Pick<Task, 'id' | 'kind' | 'image' | 'state' | 'reason' | 'createdAt' | 'startedAt' | 'endedAt' | 'target' | 'startRule' | 'session' | 'retries'> & { durationSeconds: number | null; finished: boolean };
  summary: { machines: number; done: number; failed: number; cancelled: number; open: number; bytes: number; mbps: number | null };
  machines: MachineReport[];
}

const secs = (a: string | null, b: string | null): number | null => (a && b ? Math.max(0, (Date.parse(b) - Date.parse(a)) / 1000) : null);

export function buildReport(store: Store, t: Task): TaskReport {
  const events = store.events({ taskId: t.id, limit: 10000 });
  const machines = t.machines.map((m): MachineReport => {
    const mine = events.filter((e) => e.mac === m.mac);
    const errors: MachineError[] = [];
    for (const e of mine) {
      const lines = Array.isArray(e.detail.log) ? (e.detail.log as unknown[]).map(String) : [];
      if (e.kind === 'client-log' && (e.detail.state === 'failed' || lines.some((l) => /error|fail/i.test(l)))) errors.push({ at: e.at, what: `client log (${String(e.detail.state)})`, lines });
      else if (e.kind === 'machine-retry') errors.push({ at: e.at, what: `failed, retrying (attempt ${String(e.detail.attempt)} of ${String(e.detail.of)}): ${String(e.detail.detail ?? '')}`, lines: [] });
      else if (e.kind === 'machine-state' && e.detail.state === 'failed') errors.push({ at: e.at, what: `failed: ${String(e.detail.detail ?? 'no detail')}`, lines: [] });
      else if (e.kind === 'wol-gave-up') errors.push({ at: e.at, what: `did not check in after ${String(e.detail.packets)} Wake-on-LAN packet(s)`, lines: [] });
    }
    const duration = secs(m.startedAt, m.endedAt);
    const bytes = m.bytesDone;
    const mbps = bytes !== null && duration ? bytes / duration / 1e6 : m.mbps;
    return {
      mac: m.mac, name: store.machine(m.mac)?.name ?? null, result: m.state, detail: m.detail, attempts: m.attempts + 1,
      startedAt: m.startedAt, endedAt: m.endedAt, durationSeconds: duration, bytes, totalBytes: m.bytesTotal, mbps: mbps === null ? null : Math.round(mbps * 10) / 10,
      verify: m.verify ?? 'not reported', errors, wolPackets: mine.filter((e) => e.kind === 'wol-sent').length,
    };
  });
  const count = (s: string): number => machines.filter((m) => m.result === s).length;
  const bytes = machines.reduce((a, m) => a + (m.bytes ?? 0), 0);
  const duration = secs(t.startedAt ?? t.armedAt, t.endedAt);
  return {
    generatedAt: new Date(store.now()).toISOString(),
    task: { id: t.id, kind: t.kind, image: t.image, state: t.state, reason: t.reason, createdAt: t.createdAt, startedAt: t.startedAt, endedAt: t.endedAt, target: t.target, startRule: t.startRule, session: t.session, retries: t.retries, durationSeconds: duration, finished: FINISHED.has(t.state) },
    summary: { machines: machines.length, done: count('done'), failed: count('failed'), cancelled: count('cancelled'), open: machines.filter((m) => !FINISHED.has(m.result)).length, bytes, mbps: duration && bytes ? Math.round(bytes / duration / 1e5) / 10 : null },
    machines,
  };
}

const esc = (s: unknown): string => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const dur = (s: number | null): string => (s === null ? '–' : s < 120 ? `${s.toFixed(0)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`);

export function reportHtml(r: TaskReport): string {
  const t = r.task;
  const rows = r.machines.map((m) => `<tr class="${esc(m.result)}"><td>${esc(m.mac)}${m.name ? ` (${esc(m.name)})` : ''}</td><td>${esc(m.result)}</td><td>${esc(m.attempts)}</td><td>${dur(m.durationSeconds)}</td>`
    + `<td>${m.mbps === null ? '–' : esc(m.mbps.toFixed(1))}</td><td>${esc(m.verify)}</td><td>${esc(m.detail)}${m.errors.map((e) => `<details><summary>${esc(e.at)} ${esc(e.what)}</summary><pre>${esc(e.lines.join('\n'))}</pre></details>`).join('')}</td></tr>`).join('\n');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>rackcast task ${t.id} report</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
tr.failed td{background:#fdd}tr.done td{background:#efe}pre{margin:0;font-size:12px}</style></head>
<body><h1>Task ${t.id}: ${esc(t.kind)} ${esc(t.image ?? '')} — ${esc(t.state)}</h1>
<p>${t.reason ? `${esc(t.reason)}. ` : ''}Created ${esc(t.createdAt)}, started ${esc(t.startedAt ?? '–')}, ended ${esc(t.endedAt ?? '–')} (${dur(t.durationSeconds)}).
${r.summary.done} done, ${r.summary.failed} failed, ${r.summary.cancelled} cancelled, ${r.summary.open} open of ${r.summary.machines}; ${r.summary.mbps === null ? '' : `${r.summary.mbps} MB/s overall`}</p>
<table><thead><tr><th>machine</th><th>result</th><th>attempts</th><th>duration</th><th>MB/s</th><th>verify</th><th>details and errors</th></tr></thead>
<tbody>
${rows}
</tbody></table>
<p><small>generated ${esc(r.generatedAt)} · JSON: /api/v1/tasks/${t.id}/report</small></p>
</body></html>
`;
}
