// GET /api/v1/events/stream: server-sent events (text/event-stream). Every stored event as
// `event: <kind>` with its id (a reconnecting client sends Last-Event-ID, or ?after=N, and gets
// what it missed from the events table first), and live progress as `event: progress` (not
// stored: the latest is in the task). A comment line every 15 s keeps proxies from closing it.
import type { FastifyInstance } from 'fastify';
import type { Store, Change } from '../store/db.ts';

export function mountStream(app: FastifyInstance, store: Store, keepAliveMs = 15_000): void {
  // open streams end when the appliance stops (server.close() would wait for them forever)
  const open = new Set<() => void>();
  app.addHook('preClose', async () => { for (const end of [...open]) end(); });
  app.get('/events/stream', {
    schema: { tags: ['events'], querystring: { type: 'object', additionalProperties: false, properties: { after: { type: 'integer', minimum: 0 }, task: { type: 'integer', minimum: 1 } } } },
  }, (req, reply) => {
    const q = req.query as { after?: number; task?: number };
    const last = Number(req.headers['last-event-id']);
    const after = Number.isInteger(last) && last >= 0 ? last : q.after;
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    const send = (c: Change): void => {
      if (c.type === 'event') {
        if (q.task && c.event.taskId !== q.task) return;
        res.write(`id: ${c.event.id}\nevent: ${c.event.kind}\ndata: ${JSON.stringify(c.event)}\n\n`);
      } else {
        if (q.task && c.taskId !== q.task) return;
        res.write(`event: progress\ndata: ${JSON.stringify({ taskId: c.taskId, mac: c.mac, ...c.progress })}\n\n`);
      }
    };
    res.write(': rackcast events\n\n');
    if (after !== undefined) for (const e of store.events({ after, ...(q.task ? { taskId: q.task } : {}), limit: 1000 })) send({ type: 'event', event: e });
    const unsub = store.onChange(send);
    const ka = setInterval(() => res.write(': keep-alive\n\n'), keepAliveMs);
    ka.unref();
    const end = (): void => {
      if (!open.delete(end)) return;
      clearInterval(ka);
      unsub();
      res.end();
    };
    open.add(end);
    req.raw.once('close', end);
    res.once('close', end);
  });
}
