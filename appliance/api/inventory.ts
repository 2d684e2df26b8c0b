// /api/v1 machines, groups and images: list, show, change, delete.
import type { FastifyInstance } from 'fastify';
import { RackcastError } from '../../services/errors.ts';
import type { ImageStore, ImageSummary } from '../../services/image/store.ts';
import { verifyChunks } from '../../services/image/restore.ts';
import { normalizeMac, type MachineSettings, type GroupSettings, type Store } from '../store/db.ts';
import { FINISHED } from '../tasks.ts';
import { macParam, nameParam, nullableString, bootPolicy } from './schemas.ts';

export interface InventoryDeps { store: Store; images: ImageStore }

const machineBody = {
  type: 'object', additionalProperties: false, minProperties: 1,
  properties: { name: nullableString(64), group: nullableString(64), bootPolicy: { anyOf: [bootPolicy, { type: 'null' }] }, diskSerial: nullableString(128), diskWwn: nullableString(128) },
} as const;
const groupBody = {
  type: 'object', additionalProperties: false,
  properties: {
    description: nullableString(500), bootPolicy, diskSerial: nullableString(128), diskWwn: nullableString(128),
    machines: { type: 'array', maxItems: 4096, items: macParam.properties.mac, description: 'make exactly these machines the members' },
  },
} as const;

export function mac(s: string): string {
  const m = normalizeMac(s);
  if (!m) throw new RackcastError('RC_ERR_MACHINE_INVALID', `not a MAC address: ${s}`);
  return m;
}

/** Image sizes with what deduplication saves: stored bytes against the raw disk size. */
export function imageView(s: ImageSummary): ImageSummary & { savedBytes: number; ratio: number } {
  return { ...s, savedBytes: Math.max(0, s.diskSize - s.storedBytes), ratio: s.storedBytes ? Math.round((s.diskSize / s.storedBytes) * 100) / 100 : 0 };
}

export function mountInventory(app: FastifyInstance, d: InventoryDeps): void {
  const { store, images } = d;

  app.get('/machines', { schema: { tags: ['machines'], querystring: { type: 'object', additionalProperties: false, properties: { group: { type: 'string', maxLength: 64 } } } } },
    async (req) => store.machines((req.query as { group?: string }).group !== undefined ? { group: (req.query as { group: string }).group } : {}).map((m) => ({ ...m, task: store.assignment(m.mac)?.taskId ?? null })));

  app.get<{ Params: { mac: string } }>('/machines/:mac', { schema: { tags: ['machines'], params: macParam } }, async (req) => {
    const m = store.machine(mac(req.params.mac));
    if (!m) throw new RackcastError('RC_ERR_MACHINE_NOT_FOUND', `no machine ${mac(req.params.mac)}: it has never network-booted here and was not added (PATCH /api/v1/machines/MAC)`);
    const tasks = store.db.prepare('select task_id id, state from task_machines where mac = ? order by task_id desc limit 20').all(m.mac) as { id: number; state: string }[];
    return { ...m, inventory: store.inventory(m.mac) ?? null, boot: store.bootSettings(m.mac), task: store.assignment(m.mac)?.taskId ?? null, tasks: tasks.map((t) => ({ id: Number(t.id), state: t.state })) };
  });

  app.patch<{ Params: { mac: string }; Body: MachineSettings }>('/machines/:mac', { schema: { tags: ['machines'], params: macParam, body: machineBody } },
    async (req) => store.setMachine(mac(req.params.mac), req.body));

  app.get('/groups', { schema: { tags: ['groups'] } }, async () => store.groups());

  app.get<{ Params: { name: string } }>('/groups/:name', { schema: { tags: ['groups'], params: nameParam } }, async (req) => {
    const g = store.group(req.params.name);
    if (!g) throw new RackcastError('RC_ERR_GROUP_NOT_FOUND', `no group named "${req.params.name}"`);
    return g;
  });

  app.put<{ Params: { name: string }; Body: GroupSettings & { machines?: string[] } }>('/groups/:name', { schema: { tags: ['groups'], params: nameParam, body: groupBody } }, async (req) => {
    const { machines, ...settings } = req.body;
    return store.tx(() => {
      const g = store.setGroup(req.params.name, settings);
      if (machines) {
        const want = new Set(machines.map(mac));
        for (const m of g.machines) if (!want.has(m)) store.setMachine(m, { group: null });
        for (const m of want) store.setMachine(m, { group: g.name });
      }
      return store.group(g.name);
    });
  });

  app.delete<{ Params: { name: string } }>('/groups/:name', { schema: { tags: ['groups'], params: nameParam } }, async (req, reply) => {
    store.deleteGroup(req.params.name);
    return reply.code(204).send();
  });

  app.get('/images', { schema: { tags: ['images'] } }, async () => images.names().map((n) => {
    try { return imageView(images.summary(n)); } catch (e) { return { name: n, error: (e as Error).message }; }
  }));

  app.get<{ Params: { name: string } }>('/images/:name', { schema: { tags: ['images'], params: nameParam } }, async (req) => {
    requireImage(images, req.params.name);
    const img = images.open(req.params.name);
    return { ...imageView(images.summary(req.params.name, img)), blockSize: img.manifest.blockSize, sectorSize: img.manifest.disk.sectorSize, partitionTable: img.manifest.partitionTable.kind, partitions: img.manifest.partitionTable.partitions };
  });

  // Verify an image now: its signature (on open) and every chunk decompressed and hashed. One at a
  // time per image; the result is also an event, so the UI and the morning can see it.
  const verifying = new Set<string>();
  app.post<{ Params: { name: string } }>('/images/:name/verify', { schema: { tags: ['images'], params: nameParam } }, async (req, reply) => {
    requireImage(images, req.params.name);
    if (verifying.has(req.params.name)) throw new RackcastError('RC_ERR_TASK_STATE', `image "${req.params.name}" is being verified already`);
    verifying.add(req.params.name);
    const t0 = performance.now();
    try {
      const r = await verifyChunks(images, images.open(req.params.name), { workers: 2 });
      const result = { image: r.image, digest: r.digest, chunks: r.chunks, ok: r.problems.length === 0, problems: r.problems.slice(0, 100), seconds: (performance.now() - t0) / 1000 };
      store.event(result.ok ? 'image-verified' : 'image-verify-failed', { image: r.image, chunks: r.chunks, problems: r.problems.length });
      return reply.code(200).send(result);
    } finally {
      verifying.delete(req.params.name);
    }
  });

  app.delete<{ Params: { name: string } }>('/images/:name', { schema: { tags: ['images'], params: nameParam } }, async (req, reply) => {
    requireImage(images, req.params.name);
    const using = store.tasks().filter((t) => t.image === req.params.name && !FINISHED.has(t.state) && t.kind === 'deploy');
    if (using.length) throw new RackcastError('RC_ERR_TASK_STATE', `image "${req.params.name}" is used by open task(s) ${using.map((t) => t.id).join(', ')}: cancel them first`);
    images.remove(req.params.name);
    store.event('image-deleted', { image: req.params.name });
    return reply.code(204).send();
  });
}

function requireImage(images: ImageStore, name: string): void {
  if (!images.has(name)) throw new RackcastError('RC_ERR_IMAGE_NOT_FOUND', `no image named "${name}" (GET /api/v1/images lists them)`);
}
