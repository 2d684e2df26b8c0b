// The client API (hello/report) through fastify's inject, and the deploy client's disk rule.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../appliance/http/app.ts';
import { Store } from '../../../appliance/store/db.ts';
import { ImageStore } from '../../../services/image/store.ts';
import { chooseDisk, diskPin } from '../../../boot-env/client/task.ts';
import type { Disk } from '../../../boot-env/client/inventory.ts';

let dir: string;
let store: Store;
let app: FastifyInstance;
const BASE = 'http://10.0.0.1:8080';
const A = '52:54:00:00:00:0a';
const B = '52:54:00:00:00:0b';

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'rc-test-clientapi-'));
  store = Store.open(dir);
  app = buildApp({ store, images: ImageStore.open(dir), dataDir: dir, baseUrl: BASE, unknown: 'ignore' });
});
afterAll(async () => {
  await app.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const post = (url: string, payload: unknown) => app.inject({ method: 'POST', url, payload: payload as Record<string, unknown> });

describe('client API', () => {
  it('hello: answers the task, stores the inventory; report: states; done machines boot locally', async () => {
    const t = store.createTask('deploy', 'web', [A, B]);
    const tokA = store.assignment(A)?.token as string;
    const r = await post('/api/v1/client/hello', { token: tokA, inventory: { disks: [{ name: 'vda' }] } });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ taskId: t.id, kind: 'deploy', image: 'web', imageUrl: `${BASE}/images/web`, multicast: { group: '239.255.77.255', port: 9799 }, after: 'reboot' }); // no sessions here: nobody sends, the client uses HTTP
    expect(store.inventory(A)).toEqual({ disks: [{ name: 'vda' }] });

    expect((await post('/api/v1/client/report', { token: tokA, state: 'running', detail: '3/10' })).statusCode).toBe(204);
    expect(store.task(t.id)?.machines.find((m) => m.mac === A)).toMatchObject({ state: 'running', detail: '3/10' });
    expect((await post('/api/v1/client/report', { token: tokA, state: 'done', detail: 'ok' })).statusCode).toBe(204);
    expect(store.task(t.id)?.state).toBe('running'); // B is still open
    // a late progress report never reopens a finished machine; a finished machine's hello is refused
    expect((await post('/api/v1/client/report', { token: tokA, state: 'running', detail: '9/10' })).statusCode).toBe(409);
    expect((await post('/api/v1/client/hello', { token: tokA, inventory: {} })).statusCode).toBe(403);
    const script = await app.inject({ method: 'GET', url: `/boot/${A}.ipxe` });
    expect(script.body).toContain(`for ${A}: booting the local disk`);
    expect(script.body).not.toContain('kernel');

    const tokB = store.assignment(B)?.token as string;
    expect((await post('/api/v1/client/report', { token: tokB, state: 'failed', detail: 'boom', log: ['a', 'b'] })).statusCode).toBe(204);
    expect(store.task(t.id)?.state).toBe('failed');
  });

  it('refuses unknown tokens (403) and malformed bodies (400)', async () => {
    expect((await post('/api/v1/client/hello', { token: 'nope', inventory: {} })).statusCode).toBe(403);
    expect((await post('/api/v1/client/report', { token: 'nope', state: 'done' })).statusCode).toBe(403);
    expect((await post('/api/v1/client/hello', { token: 'x' })).statusCode).toBe(400);
    expect((await post('/api/v1/client/hello', { token: 'x', inventory: 'no' })).statusCode).toBe(400);
    expect((await post('/api/v1/client/report', { token: 'x', state: 'bogus' })).statusCode).toBe(400);
    expect((await post('/api/v1/client/report', { token: 'x', state: 'done', detail: { a: 1 } })).statusCode).toBe(400);
  });
});

describe('deploy target rule', () => {
  const disk = (name: string, size: number, removable = false): Disk => ({ name, size, removable, rotational: false, transport: 'virtio' });
  it('takes the largest fixed disk, never removable, loop, ram or sr', () => {
    expect(chooseDisk([disk('sda', 100), disk('nvme0n1', 500), disk('sdb', 900, true), disk('loop0', 9000), disk('sr0', 9000)])).toEqual({ disk: disk('nvme0n1', 500) });
  });
  it('explains when there is none', () => {
    expect(chooseDisk([disk('sdb', 900, true)])).toEqual({ error: expect.stringMatching(/only removable disk\(s\) sdb/) });
    expect(chooseDisk([])).toEqual({ error: expect.stringMatching(/no disk found/) });
  });
  it('a pinned disk (serial or WWN from the kernel command line) wins, and is never replaced by another', () => {
    const disks = [{ ...disk('sda', 900), serial: 'BIG1' }, { ...disk('sdb', 100), serial: ' S3Z9NB0K ', wwid: 'naa.5002538e40a1b2c3' }];
    expect(diskPin(new Map([['disk-serial', 'S3Z9NB0K']]))).toEqual({ serial: 'S3Z9NB0K' });
    expect(diskPin(new Map([['mode', 'deploy']]))).toBeUndefined();
    expect(chooseDisk(disks, { serial: 'S3Z9NB0K' })).toEqual({ disk: disks[1] });
    expect(chooseDisk(disks, { wwn: '0x5002538E40A1B2C3' })).toEqual({ disk: disks[1] });
    expect(chooseDisk(disks, { serial: 'GONE' })).toEqual({ error: expect.stringMatching(/pinned disk \(serial GONE\) is not in this machine.*sda serial=BIG1/) });
    expect(chooseDisk([{ ...disk('sdc', 64, true), serial: 'USB' }], { serial: 'USB' })).toEqual({ error: expect.stringMatching(/removable disk, which is never used/) });
  });
});

describe('client progress reports', () => {
  it('record bytes and MB/s for the task (no event per report), and the detail line', async () => {
    const M = '52:54:00:00:00:0c';
    const t = store.createTask('deploy', 'web', [M]);
    const tok = store.assignment(M)?.token as string;
    expect((await post('/api/v1/client/hello', { token: tok, inventory: {} })).statusCode).toBe(200);
    expect((await post('/api/v1/client/report', { token: tok, state: 'running', detail: 'target /dev/vda' })).statusCode).toBe(204);
    const events = (): number => (store.db.prepare('select count(*) n from events where task_id = ?').get(t.id) as { n: number }).n;
    const before = events();
    for (const done of [1, 2, 3]) {
      expect((await post('/api/v1/client/report', { token: tok, state: 'running', detail: `${done}/4`, progress: { done: done << 20, total: 4 << 20, mbps: 12.5 } })).statusCode).toBe(204);
    }
    expect(events()).toBe(before);
    expect(store.task(t.id)?.machines[0]).toMatchObject({ state: 'running', detail: '3/4', bytesDone: 3 << 20, bytesTotal: 4 << 20, mbps: 12.5 });
    expect((await post('/api/v1/client/report', { token: tok, state: 'running', progress: { done: -1, total: 4 } })).statusCode).toBe(400);
  });
});
