// GET /metrics: Prometheus text exposition (format 0.0.4), written here: gauges of machines,
// tasks and per-machine progress of open tasks, images and stored bytes, counters of events.
import type { FastifyInstance } from 'fastify';
import type { ImageStore } from '../../services/image/store.ts';
import type { Store } from '../store/db.ts';
import { TASK_STATES, MACHINE_STATES } from '../tasks.ts';

const label = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

export function metricsText(store: Store, images: ImageStore): string {
  const out: string[] = [];
  const metric = (name: string, type: 'gauge' | 'counter', help: string, rows: [Record<string, string>, number][]): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [l, v] of rows) {
      const ls = Object.entries(l).map(([k, x]) => `${k}="${label(x)}"`).join(',');
      out.push(`${name}${ls ? `{${ls}}` : ''} ${Number.isFinite(v) ? v : 0}`);
    }
  };
  const count = (sql: string, ...a: string[]): number => Number((store.db.prepare(sql).get(...a) as { n: number }).n);
  metric('rackcast_machines', 'gauge', 'machines known to the appliance', [[{}, count('select count(*) n from machines')]]);
  metric('rackcast_tasks', 'gauge', 'tasks by state', TASK_STATES.map((s) => [{ state: s }, count('select count(*) n from tasks where state = ?', s)]));
  metric('rackcast_task_machines', 'gauge', 'machines in tasks by state', MACHINE_STATES.map((s) => [{ state: s }, count('select count(*) n from task_machines where state = ?', s)]));
  const open = store.db.prepare(`select m.task_id, m.mac, m.bytes_done, m.bytes_total, m.mbps from task_machines m join tasks t on t.id = m.task_id
    where t.state in ('pending', 'running') and m.bytes_total is not null`).all() as { task_id: number; mac: string; bytes_done: number; bytes_total: number; mbps: number }[];
  metric('rackcast_machine_bytes_done', 'gauge', 'bytes done of the open task, per machine', open.map((r) => [{ task: String(r.task_id), mac: r.mac }, r.bytes_done]));
  metric('rackcast_machine_bytes_total', 'gauge', 'bytes to do in the open task, per machine', open.map((r) => [{ task: String(r.task_id), mac: r.mac }, r.bytes_total]));
  metric('rackcast_machine_mbps', 'gauge', 'current throughput (MB/s) per machine', open.map((r) => [{ task: String(r.task_id), mac: r.mac }, r.mbps]));
  const names = images.names();
  let stored = 0;
  let raw = 0;
  for (const n of names) { try { const s = images.summary(n); stored += s.storedBytes; raw += s.diskSize; } catch { /* a broken image is listed by the API */ } }
  metric('rackcast_images', 'gauge', 'complete images in the store', [[{}, names.length]]);
  metric('rackcast_image_disk_bytes', 'gauge', 'sum of the images\' disk sizes', [[{}, raw]]);
  metric('rackcast_image_stored_bytes', 'gauge', 'sum of the images\' stored (compressed) chunks, shared chunks counted per image', [[{}, stored]]);
  const kinds = store.db.prepare('select kind, count(*) n from events group by kind order by kind').all() as { kind: string; n: number }[];
  metric('rackcast_events_total', 'counter', 'events recorded, by kind', kinds.map((k) => [{ kind: k.kind }, Number(k.n)]));
  return out.join('\n') + '\n';
}

export function mountMetrics(app: FastifyInstance, store: Store, images: ImageStore): void {
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => reply.type('text/plain; version=0.0.4; charset=utf-8').send(metricsText(store, images)));
}
