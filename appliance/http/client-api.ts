// The API the boot-environment client talks to. Its only credential is the per-task token that
// the machine's iPXE script put on the kernel command line (rackcast.token=…).
//
//   POST /api/v1/client/hello   { token, inventory }  → the task: kind, image, image URL, multicast
//                               group, what to do after. Records the inventory; for a deploy task
//                               makes sure the task's multicast session runs.
//   POST /api/v1/client/report  { token, state: running|done|failed, detail?, log?,
//                               progress?: {done, total (bytes), mbps, verify?} } → 204
//   (capture tasks: chunk upload and commit in capture-api.ts; a capture is done when its image
//   is committed, so a capture client never reports done itself)
//
// 403: unknown token, or (hello) the machine's part of the task is finished. 409: a report for a
// machine already done or failed (a late progress report must never reopen it). 400: bad body.
import type { FastifyInstance } from 'fastify';
import type { Progress, Store } from '../store/db.ts';
import type { Sessions } from '../sessions.ts';
import type { ImageStore } from '../../services/image/store.ts';
import { mountCaptureApi, type CaptureIngest } from './capture-api.ts';

export interface ClientApiOptions {
  store: Store;
  /** http://address:port as machines reach it */
  baseUrl: string;
  sessions?: Sessions;
  /** the image store: network captures upload into it (capture-api.ts) */
  images?: ImageStore;
}

const FINISHED = new Set(['done', 'failed', 'cancelled']);

const helloSchema = {
  body: {
    type: 'object', required: ['token', 'inventory'], additionalProperties: false,
    properties: { token: { type: 'string', minLength: 1, maxLength: 200 }, inventory: { type: 'object' } },
  },
} as const;

const reportSchema = {
  body: {
    type: 'object', required: ['token', 'state'], additionalProperties: false,
    properties: {
      token: { type: 'string', minLength: 1, maxLength: 200 },
      state: { type: 'string', enum: ['running', 'done', 'failed'] },
      detail: { type: 'string', maxLength: 2000 },
      log: { type: 'array', maxItems: 200, items: { type: 'string', maxLength: 2000 } },
      progress: {
        type: 'object', required: ['done', 'total'], additionalProperties: false,
        properties: { done: { type: 'integer', minimum: 0 }, total: { type: 'integer', minimum: 0 }, mbps: { type: 'number', minimum: 0 }, verify: { type: 'string', enum: ['ok', 'failed', 'skipped'] } },
      },
    },
  },
} as const;

export interface HelloReply {
  taskId: number; kind: string; image: string | null; imageUrl: string | null;
  multicast: { group: string; port: number }; after: 'reboot' | 'poweroff';
  /** deploy options, present when set (appliance/tasks.ts DeployOptions) */
  delta?: boolean; grow?: boolean;
}

export function mountClientApi(app: FastifyInstance, o: ClientApiOptions): void {
  const ingest: CaptureIngest | undefined = o.images ? mountCaptureApi(app, { store: o.store, images: o.images }) : undefined;
  app.post<{ Body: { token: string; inventory: Record<string, unknown> } }>('/api/v1/client/hello', { schema: helloSchema, bodyLimit: 1 << 20 }, async (req, reply) => {
    const a = o.store.byToken(req.body.token);
    if (!a || FINISHED.has(a.state)) return reply.code(403).send({ error: 'unknown token, or this machine\'s task is finished' });
    if (a.kind === 'capture' && a.image && o.images?.has(a.image)) {
      o.store.setMachineState(a.taskId, a.mac, 'failed', `an image named "${a.image}" already exists: delete it or capture under another name`);
      return reply.code(409).send({ error: `an image named "${a.image}" already exists` });
    }
    o.store.setInventory(a.mac, req.body.inventory);
    o.store.event('client-hello', { kind: a.kind, image: a.image }, a.mac, a.taskId);
    const imageUrl = a.image ? `${o.baseUrl}/images/${a.image}` : null;
    // a deploy gets its task's multicast session (started by the first hello); when none can run,
    // an address nobody sends to: the receiver hears no ANNOUNCE and continues over HTTP
    let multicast = { group: '239.255.77.255', port: 9799 };
    const task = a.kind === 'deploy' ? o.store.task(a.taskId) : undefined;
    if (a.kind === 'deploy' && a.image && imageUrl && o.sessions) {
      const open = task ? task.machines.filter((m) => !FINISHED.has(m.state)).length : 1;
      multicast = o.sessions.ensure(a.taskId, a.image, imageUrl, open) ?? multicast;
    }
    const res: HelloReply = {
      taskId: a.taskId, kind: a.kind, image: a.image, imageUrl, multicast,
      after: a.kind === 'register' ? 'poweroff' : 'reboot',
      ...(task?.delta ? { delta: true } : {}), ...(task?.grow ? { grow: true } : {}),
    };
    return res;
  });

  app.post<{ Body: { token: string; state: 'running' | 'done' | 'failed'; detail?: string; log?: string[]; progress?: Omit<Progress, 'mbps'> & { mbps?: number } } }>('/api/v1/client/report', { schema: reportSchema, bodyLimit: 1 << 20 }, async (req, reply) => {
    const a = o.store.byToken(req.body.token);
    if (!a) return reply.code(403).send({ error: 'unknown token' });
    if (FINISHED.has(a.state)) return reply.code(409).send({ error: `this machine's part of task ${a.taskId} is already ${a.state}` });
    const { state, detail, log, progress } = req.body;
    if (a.kind === 'capture' && state === 'done') return reply.code(409).send({ error: 'a capture is done when its image is committed (POST /api/v1/client/capture/commit), not by a report' });
    if (a.kind === 'capture' && state === 'failed') ingest?.release(a.taskId);
    if (log?.length) o.store.event('client-log', { state, log }, a.mac, a.taskId);
    if (progress) o.store.setMachineProgress(a.taskId, a.mac, { ...progress, mbps: progress.mbps ?? 0 });
    o.store.setMachineState(a.taskId, a.mac, state, detail);
    return reply.code(204).send();
  });
}
