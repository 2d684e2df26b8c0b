// /api/v1 tasks (create, list, show, cancel, start rule, report) and events.
import type { FastifyInstance } from 'fastify';
import { RackcastError } from '../../services/errors.ts';
import { ImageStore, type ImageStore as Images } from '../../services/image/store.ts';
import type { Store, TaskKind, Task } from '../store/db.ts';
import { checkStartRule, type StartRule, TASK_STATES } from '../tasks.ts';
import { nextCron, parseAt } from '../scheduler.ts';
import { buildReport } from '../reports.ts';
import { mac } from './inventory.ts';
import { idParam, macParam, startRule } from './schemas.ts';

export interface TaskDeps { store: Store; images: Images; timezone?: string; defaultRetries?: number }

export interface CreateTask {
  kind: TaskKind; image?: string; machines?: string[]; group?: string; at?: string; cron?: string;
  startRule?: StartRule; retries?: number; wol?: boolean; delta?: boolean; grow?: boolean;
}

const createBody = {
  type: 'object', required: ['kind'], additionalProperties: false,
  properties: {
    kind: { type: 'string', enum: ['deploy', 'capture', 'register'] },
    image: { type: 'string', minLength: 1, maxLength: 128, description: 'deploy: the image to put on the machines; capture: the name of the new image' },
    machines: { type: 'array', minItems: 1, maxItems: 4096, items: macParam.properties.mac },
    group: { type: 'string', minLength: 1, maxLength: 64 },
    at: { type: 'string', minLength: 4, maxLength: 40, description: 'HH:MM (the next such local time) or an ISO date-time' },
    cron: { type: 'string', minLength: 1, maxLength: 100, description: 'a cron expression: each firing creates a child task' },
    startRule,
    retries: { type: 'integer', minimum: 0, maximum: 10 },
    wol: { type: 'boolean', description: 'send Wake-on-LAN packets to the machines until they check in' },
    delta: { type: 'boolean', description: 'deploy: each machine compares its disk with the image first; only the blocks that differ are sent and written' },
    grow: { type: 'boolean', description: 'deploy: on a larger disk, grow the last partition and its filesystem to fill it' },
  },
} as const;

/** Check a task request against the image store and the clock, then create it. */
export function createTask(d: TaskDeps, b: CreateTask): Task {
  const now = d.store.now();
  if (b.kind === 'deploy') {
    if (!b.image) throw new RackcastError('RC_ERR_TASK_INVALID', 'a deploy task needs "image"');
    if (!d.images.has(b.image)) throw new RackcastError('RC_ERR_IMAGE_NOT_FOUND', `no image named "${b.image}" (GET /api/v1/images lists them)`);
  }
  if (b.kind === 'capture') {
    if (!b.image) throw new RackcastError('RC_ERR_TASK_INVALID', 'a capture task needs "image", the name of the new image');
    ImageStore.checkName(b.image);
    if (d.images.has(b.image)) throw new RackcastError('RC_ERR_IMAGE_EXISTS', `an image named "${b.image}" already exists: pick another name`);
  }
  if (b.kind === 'register' && b.image) throw new RackcastError('RC_ERR_TASK_INVALID', 'a register task takes no image');
  const at = b.at ? parseAt(b.at, now, d.timezone) : undefined;
  const nextRunAt = b.cron ? new Date(nextCron(b.cron, now, d.timezone)).toISOString() : undefined;
  return d.store.create({
    kind: b.kind, image: b.image ?? null, ...(b.machines ? { machines: b.machines.map(mac) } : {}), ...(b.group ? { group: b.group } : {}),
    ...(at ? { at } : {}), ...(b.cron ? { cron: b.cron, nextRunAt } : {}), ...(b.startRule ? { startRule: checkStartRule(b.startRule) } : {}),
    retries: b.retries ?? d.defaultRetries ?? 0, wol: b.wol ?? false, ...(b.delta ? { delta: true } : {}), ...(b.grow ? { grow: true } : {}),
  });
}

export function mountTasks(app: FastifyInstance, d: TaskDeps): void {
  const { store } = d;
  const get = (id: number): Task => {
    const t = store.task(id);
    if (!t) throw new RackcastError('RC_ERR_TASK_NOT_FOUND', `no task ${id}`);
    return t;
  };

  app.post<{ Body: CreateTask }>('/tasks', { schema: { tags: ['tasks'], body: createBody } }, async (req, reply) => reply.code(201).send(createTask(d, req.body)));

  app.get('/tasks', { schema: { tags: ['tasks'], querystring: { type: 'object', additionalProperties: false, properties: { state: { type: 'string', enum: [...TASK_STATES] }, limit: { type: 'integer', minimum: 1, maximum: 10000 } } } } },
    async (req) => { const q = req.query as { state?: string; limit?: number }; return store.tasks({ ...(q.state ? { state: q.state } : {}), ...(q.limit ? { limit: q.limit } : {}) }); });

  app.get<{ Params: { id: number } }>('/tasks/:id', { schema: { tags: ['tasks'], params: idParam } }, async (req) => get(req.params.id));

  app.post<{ Params: { id: number }; Body: { reason?: string } | undefined }>('/tasks/:id/cancel', {
    schema: { tags: ['tasks'], params: idParam, body: { type: 'object', additionalProperties: false, properties: { reason: { type: 'string', minLength: 1, maxLength: 500 } } } },
  }, async (req) => { get(req.params.id); return store.cancel(req.params.id, req.body?.reason ?? 'cancelled by the admin'); });

  app.put<{ Params: { id: number }; Body: StartRule }>('/tasks/:id/start-rule', { schema: { tags: ['tasks'], params: idParam, body: startRule } },
    async (req) => store.setStartRule(req.params.id, checkStartRule(req.body)));

  app.get<{ Params: { id: number } }>('/tasks/:id/report', { schema: { tags: ['tasks'], params: idParam } }, async (req) => buildReport(store, get(req.params.id)));

  app.get('/events', {
    schema: { tags: ['events'], querystring: { type: 'object', additionalProperties: false, properties: {
      task: { type: 'integer', minimum: 1 }, mac: macParam.properties.mac, after: { type: 'integer', minimum: 0 }, kind: { type: 'string', maxLength: 40 }, limit: { type: 'integer', minimum: 1, maximum: 10000 },
    } } },
  }, async (req) => {
    const q = req.query as { task?: number; mac?: string; after?: number; kind?: string; limit?: number };
    return store.events({ ...(q.task ? { taskId: q.task } : {}), ...(q.mac ? { mac: mac(q.mac) } : {}), ...(q.after !== undefined ? { after: q.after } : {}), ...(q.kind ? { kind: q.kind } : {}), ...(q.limit ? { limit: q.limit } : {}) });
  });
}
