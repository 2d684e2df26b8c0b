// The appliance's HTTP side (fastify): per-machine iPXE scripts, boot artifacts, images for the
// data plane (manifest, signature, chunks — what receivers fetch), a health check, the client API,
// and the control plane (appliance/api: REST API, events stream, reports, metrics, OpenAPI).
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { imageFile } from '../../services/multicast/http-source.ts';
import type { ImageStore } from '../../services/image/store.ts';
import { environmentScript, localDiskScript, withFsTools, DEFAULT_ARTIFACTS, FSTOOLS_INITRD, type BootArtifacts } from '../boot/script.ts';
import { normalizeMac, type Store } from '../store/db.ts';
import { sendFile } from './files.ts';
import { mountClientApi } from './client-api.ts';
import { mountUi } from '../ui/mount.ts';
import type { Sessions } from '../sessions.ts';
import { registerControlPlane, registerSwagger } from '../api/index.ts';

export interface AppOptions {
  store: Store;
  images: ImageStore;
  dataDir: string;
  /** http://address:port as machines reach it */
  baseUrl: string;
  unknown: 'register' | 'ignore';
  artifacts?: BootArtifacts;
  logger?: boolean | object;
  /** multicast sessions for deploy tasks (started by the client API's hello) */
  sessions?: Sessions;
  /** control-plane settings: the timezone of cron schedules, the default retries of new tasks */
  timezone?: string;
  defaultRetries?: number;
}

const ARTIFACT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/;

export function buildApp(o: AppOptions): FastifyInstance {
  // unknown properties are an error (400 naming them), not silently dropped (fastify's default)
  const app = Fastify({ logger: o.logger ?? false, trustProxy: false, ajv: { customOptions: { removeAdditional: false } } });
  registerSwagger(app); // first: it documents the routes registered after it

  app.get('/api/v1/health', async () => ({ ok: true, images: o.images.names().length, machines: o.store.machines().length }));

  void app.register(async (client) => {
    mountClientApi(client, { store: o.store, images: o.images, baseUrl: o.baseUrl, ...(o.sessions ? { sessions: o.sessions } : {}) });
  });
  registerControlPlane(app, { store: o.store, images: o.images, dataDir: o.dataDir, ...(o.timezone ? { timezone: o.timezone } : {}), ...(o.defaultRetries !== undefined ? { defaultRetries: o.defaultRetries } : {}) });
  mountUi(app);

  app.get<{ Params: { file: string } }>('/boot/:file', async (req, reply) => {
    const m = /^(.+)\.ipxe$/.exec(req.params.file);
    const mac = m ? normalizeMac(m[1] as string) : undefined;
    if (!mac) return reply.code(404).type('text/plain').send('not found: expected /boot/<mac>.ipxe\n');
    const isNew = o.store.sawMachine(mac);
    let a = o.store.assignment(mac);
    if (!a && isNew && o.unknown === 'register') {
      o.store.createTask('register', null, [mac]);
      a = o.store.assignment(mac);
    }
    reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store');
    const boot = o.store.bootSettings(mac);
    if (boot.policy === 'local') return localDiskScript(mac, 'boot policy local');
    if (!a) return localDiskScript(mac, isNew ? 'unknown machine (policy: ignore)' : 'no task');
    if (a.state === 'pending') o.store.setMachineState(a.taskId, mac, 'booting');
    // a disk pinned by serial or WWN (machine or group setting) overrides the client's own choice
    const pins = [boot.diskSerial ? `rackcast.disk-serial=${boot.diskSerial}` : '', boot.diskWwn ? `rackcast.disk-wwn=${boot.diskWwn}` : ''].filter(Boolean).join(' ');
    // a deploy that grows the last partition also needs e2fsck/resize2fs/ntfsresize/losetup
    const grow = a.kind === 'deploy' && o.store.task(a.taskId)?.grow === true;
    const art = withFsTools(o.artifacts ?? DEFAULT_ARTIFACTS, grow, existsSync(join(o.dataDir, 'boot', FSTOOLS_INITRD)));
    return environmentScript(o.baseUrl, mac, a, art, pins);
  });

  const files = (dir: string, type: string) => async (req: FastifyRequest<{ Params: { name: string } }>, reply: FastifyReply) => {
    if (!ARTIFACT.test(req.params.name)) return reply.code(404).send();
    return sendFile(req, reply, join(o.dataDir, dir, req.params.name), type);
  };
  app.get('/boot/files/:name', files('boot', 'application/octet-stream'));
  app.get('/boot/bin/:name', files('tftp', 'application/octet-stream'));

  // the data plane (manifests, chunks): the same whitelist as `rackcast mcast send`'s server
  const data = async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const f = imageFile(o.images, req.url.split('?')[0] as string);
    if (!f) return reply.code(404).send();
    reply.header('cache-control', f.immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
    return sendFile(req, reply, f.path, f.type);
  };
  app.get('/images/:name/:file', data);
  app.get('/chunks/:hash', data);
  return app;
}
