// The appliance's HTTP app over a real store for API tests (fastify inject): a temp data directory,
// a small disk captured as the named images, the admin token, the store and the built app.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../appliance/http/app.ts';
import { Store } from '../../../appliance/store/db.ts';
import { ensureAdminToken } from '../../../appliance/api/auth.ts';
import { ImageStore, captureImage } from '../../../services/image/index.ts';

export interface ApiApp { dir: string; store: Store; app: FastifyInstance; token: string; close(): Promise<void> }

export async function apiApp(tag: string, disk: Buffer, images: string[]): Promise<ApiApp> {
  const dir = mkdtempSync(join(tmpdir(), `rc-test-${tag}-`));
  const path = join(dir, 'disk.img');
  writeFileSync(path, disk);
  const imageStore = ImageStore.open(dir);
  for (const name of images) await captureImage({ store: imageStore, source: path, name, blockSize: 1 << 20 });
  const token = ensureAdminToken(dir).token;
  const store = Store.open(dir);
  const app = buildApp({ store, images: imageStore, dataDir: dir, baseUrl: 'http://10.0.0.1:8080', unknown: 'ignore' });
  await app.ready();
  return { dir, store, app, token, close: async () => { await app.close(); store.close(); rmSync(dir, { recursive: true, force: true }); } };
}
