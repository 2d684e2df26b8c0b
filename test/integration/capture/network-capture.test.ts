// Network capture without VMs: the boot client's uploader (boot-env/client/capture.ts) reads a
// disk file and sends it over real HTTP to the appliance (buildApp on 127.0.0.1), which verifies
// every chunk and commits the image. Also: an interrupted capture never shows up as an image and
// resumes by sending only what is missing; the appliance restarting mid-capture is survived by
// retries; corrupt or unauthorised uploads are refused and keep nothing.
import { describe, it, expect, beforeEach, afterEach } from '@jest/globals';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../appliance/http/app.ts';
import { Store } from '../../../appliance/store/db.ts';
import { ImageStore, captureToTarget, restoreImage } from '../../../services/image/index.ts';
import { ZstdCodec } from '../../../services/image/zstd.ts';
import { applianceTarget } from '../../../boot-env/client/capture.ts';
import { seededBytes } from '../../helpers/rng.ts';

const BS = 1 << 20;
const MAC = '52:54:00:00:0c:01';
let dir: string;
let data: string;
let store: Store;
let images: ImageStore;
let app: FastifyInstance;
let url: string;
let disk: string;
const quiet = (): void => undefined;

/** 24 blocks and a bit: random blocks, zero blocks, a duplicate. */
function makeDisk(path: string): Buffer {
  const b = seededBytes(7, 24 * BS + 4096);
  b.fill(0, 3 * BS, 5 * BS);
  b.copy(b, 10 * BS, 1 * BS, 2 * BS);
  writeFileSync(path, b);
  return b;
}

async function start(port = 0): Promise<void> {
  app = buildApp({ store, images, dataDir: data, baseUrl: 'http://127.0.0.1', unknown: 'ignore' });
  await app.listen({ host: '127.0.0.1', port });
  const a = app.server.address();
  url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : port}`;
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rc-test-netcap-'));
  data = join(dir, 'data');
  store = Store.open(data);
  images = ImageStore.open(data);
  disk = join(dir, 'disk.img');
  await start();
});
afterEach(async () => {
  await app.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const tokenFor = (name: string): { id: number; token: string } => {
  const t = store.createTask('capture', name, [MAC]);
  return { id: t.id, token: store.assignment(MAC)?.token as string };
};

describe('network capture (client uploader → appliance)', () => {
  it('captures a disk over HTTP; the image is listed only after commit and restores bit-exact', async () => {
    const want = makeDisk(disk);
    const { id, token } = tokenFor('netcap');
    const target = applianceTarget({ url, token, log: quiet });
    const r = await captureToTarget({ source: disk, name: 'netcap', target, tmpDir: dir, blockSize: BS, workers: 2 });
    expect(images.names()).not.toContain('netcap'); // chunks are there, the image is not
    expect(r.newChunks).toBe(22); // 25 blocks: 2 holes, one duplicate
    expect(r.reusedChunks).toBe(1);
    expect(target.sent.requests).toBe(22);
    const c = await target.commit(r.manifest);
    expect(c.image).toBe('netcap');
    expect(images.names()).toContain('netcap');
    expect(store.task(id)?.state).toBe('done');
    const out = join(dir, 'out.img');
    writeFileSync(out, '');
    await restoreImage({ store: images, name: 'netcap', target: out });
    expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(createHash('sha256').update(want).digest('hex'));
    // a finished task's token no longer opens the upload
    const h = await fetch(`${url}/api/v1/client/chunks/${'0'.repeat(64)}`, { method: 'HEAD', headers: { authorization: `Bearer ${token}` } });
    expect(h.status).toBe(403);
  });

  it('an interrupted capture is not an image; the next attempt sends only the missing chunks', async () => {
    makeDisk(disk);
    const { token } = tokenFor('resume');
    const ac = new AbortController();
    const first = applianceTarget({ url, token, log: quiet });
    let seen = 0;
    await expect(captureToTarget({
      source: disk, name: 'resume', target: first, tmpDir: dir, blockSize: BS, workers: 1, signal: ac.signal,
      onProgress: () => { if (++seen === 12) ac.abort(); },
    })).rejects.toThrow(/aborted/);
    expect(images.names()).toEqual([]);
    expect(first.sent.requests).toBeGreaterThan(5);
    const second = applianceTarget({ url, token, log: quiet });
    const r = await captureToTarget({ source: disk, name: 'resume', target: second, tmpDir: dir, blockSize: BS, workers: 2 });
    expect(second.sent.requests + first.sent.requests).toBe(22);
    expect(r.reusedChunks).toBe(first.sent.requests + 1);
    await second.commit(r.manifest);
    expect(images.names()).toEqual(['resume']);
  });

  it('survives the appliance restarting mid-capture (requests are retried)', async () => {
    makeDisk(disk);
    const { token } = tokenFor('restart');
    const port = Number(new URL(url).port);
    const logs: string[] = [];
    const target = applianceTarget({ url, token, log: (l) => logs.push(l), retryMs: 30_000 });
    let seen = 0;
    let restarted: Promise<void> | undefined;
    const r = await captureToTarget({
      source: disk, name: 'restart', target, tmpDir: dir, blockSize: BS, workers: 1,
      onProgress: () => {
        if (++seen !== 8) return;
        restarted = (async () => {
          await app.close();
          await new Promise((res) => setTimeout(res, 1500));
          await start(port);
        })();
      },
    });
    await restarted;
    await target.commit(r.manifest);
    expect(logs.some((l) => /retrying/.test(l))).toBe(true);
    expect(images.names()).toEqual(['restart']);
  });

  it('refuses corrupt chunks (422, nothing kept), wrong tokens (403), early commits (409) and a report of done (409)', async () => {
    const { token } = tokenFor('bad');
    const codec = new ZstdCodec(3);
    const block = seededBytes(9, 65536);
    const hash = createHash('sha256').update(block).digest('hex');
    const put = (h: string, body: Uint8Array, tok = token): Promise<Response> => fetch(`${url}/api/v1/client/chunks/${h}?length=65536`, { method: 'PUT', headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/octet-stream' }, body });
    const other = createHash('sha256').update('x').digest('hex');
    expect((await put(other, codec.compress(block))).status).toBe(422); // content does not hash to the name
    expect(existsSync(images.chunkPath(other))).toBe(false);
    expect((await put(hash, Buffer.from('not zstd at all'))).status).toBe(422);
    expect((await put(hash, codec.compress(block), 'wrong-token')).status).toBe(403);
    expect((await fetch(`${url}/api/v1/client/chunks/nothex`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' }, body: codec.compress(block) })).status).toBe(400);
    expect((await put(hash, codec.compress(block))).status).toBe(201);
    expect((await put(hash, codec.compress(block))).status).toBe(200);
    expect(images.hasChunk(hash)).toBe(true);
    // a deploy task's token cannot upload
    store.createTask('deploy', 'web', ['52:54:00:00:0c:02']);
    const dtok = store.assignment('52:54:00:00:0c:02')?.token as string;
    expect((await put(hash, codec.compress(block), dtok)).status).toBe(403);
    // commit with a chunk the appliance does not have
    makeDisk(disk);
    const local = applianceTarget({ url, token, log: quiet });
    const skipAll = { has: async () => true, put: async () => undefined };
    const r = await captureToTarget({ source: disk, name: 'bad', target: skipAll, tmpDir: dir, blockSize: BS, workers: 1 });
    await expect(local.commit(r.manifest)).rejects.toThrow(/HTTP 409.*not on the appliance/);
    await expect(local.commit({ ...r.manifest, name: 'other' })).rejects.toThrow(/HTTP 400/);
    const rep = await fetch(`${url}/api/v1/client/report`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, state: 'done' }) });
    expect(rep.status).toBe(409);
    expect(images.names()).toEqual([]);
  });

  it('a capture task for a name that exists fails at hello with the reason', async () => {
    makeDisk(disk);
    const { token } = tokenFor('dup');
    const t = applianceTarget({ url, token, log: quiet });
    await t.commit((await captureToTarget({ source: disk, name: 'dup', target: t, tmpDir: dir, blockSize: BS, workers: 1 })).manifest);
    const again = store.createTask('capture', 'dup', [MAC]);
    const tok = store.assignment(MAC)?.token as string;
    const r = await fetch(`${url}/api/v1/client/hello`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: tok, inventory: {} }) });
    expect(r.status).toBe(409);
    expect(store.task(again.id)?.machines[0]?.detail).toMatch(/already exists/);
  });
});
