// The REST API through fastify's inject(): admin token (401 without, 401 wrong, 403 for a machine's
// task token, rotation), 400 with a message naming the field, 404/409, and every route working on
// a real store with a real (small) image; /metrics, /docs, /reports; boot policy and disk pins.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { writeFileSync } from 'node:fs';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { Store } from '../../../appliance/store/db.ts';
import { rotateAdminToken } from '../../../appliance/api/auth.ts';
import { ImageStore } from '../../../services/image/index.ts';
import { prng } from '../../helpers/disks.ts';
import { apiApp, type ApiApp } from './api-app.ts';

let dir: string;
let store: Store;
let app: FastifyInstance;
let token: string;
const A = '52:54:00:00:01:0a';
const B = '52:54:00:00:01:0b';
const C = '52:54:00:00:01:0c';

let fixture: ApiApp;
beforeAll(async () => {
  const b = Buffer.alloc(4 << 20);
  prng(3, 1 << 20).copy(b, 1 << 20);
  fixture = await apiApp('api', b, ['web', 'old']);
  ({ dir, store, app, token } = fixture);
});
afterAll(async () => { await fixture.close(); });

const api = (method: InjectOptions['method'], url: string, payload?: unknown, tok: string | null = token) =>
  app.inject({ method, url, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}), headers: tok ? { authorization: `Bearer ${tok}` } : {} });

describe('auth', () => {
  it('401 without a token or with a wrong one; 200 with the admin token', async () => {
    const none = await api('GET', '/api/v1/machines', undefined, null);
    expect(none.statusCode).toBe(401);
    expect(none.json()).toMatchObject({ code: 'RC_ERR_AUTH', error: expect.stringMatching(/admin token required/) });
    expect((await api('GET', '/api/v1/machines', undefined, 'f'.repeat(64))).statusCode).toBe(401);
    expect((await api('GET', '/api/v1/tasks')).statusCode).toBe(200);
    expect((await api('GET', '/api/v1/events/stream', undefined, null)).statusCode).toBe(401);
    expect((await api('GET', '/reports/1', undefined, null)).statusCode).toBe(401);
  });

  it('a machine\'s task token is refused by the admin API (403)', async () => {
    const t = store.create({ kind: 'register', image: null, machines: [C] });
    const tok = store.assignment(C)?.token as string;
    const r = await api('GET', '/api/v1/tasks', undefined, tok);
    expect(r.statusCode).toBe(403);
    expect(r.json().error).toMatch(/valid only for the client API of its own task/);
    store.cancel(t.id);
  });

  it('rotation: the old token stops working at once, the new one works', async () => {
    const old = token;
    token = rotateAdminToken(dir);
    expect(token).not.toBe(old);
    expect((await api('GET', '/api/v1/machines', undefined, old)).statusCode).toBe(401);
    expect((await api('GET', '/api/v1/machines')).statusCode).toBe(200);
  });
});

describe('client tokens are bound to their own task and machine', () => {
  it('a finished task\'s token is refused for the machine\'s next task (403), its report is refused (409)', async () => {
    const t1 = store.create({ kind: 'deploy', image: 'web', machines: [A] });
    const tok1 = store.assignment(A)?.token as string;
    store.setMachineState(t1.id, A, 'done');
    const t2 = store.create({ kind: 'deploy', image: 'web', machines: [A] });
    const tok2 = store.assignment(A)?.token as string;
    expect(tok2).not.toBe(tok1);
    expect((await app.inject({ method: 'POST', url: '/api/v1/client/hello', payload: { token: tok1, inventory: {} } })).statusCode).toBe(403);
    expect((await app.inject({ method: 'POST', url: '/api/v1/client/report', payload: { token: tok1, state: 'running' } })).statusCode).toBe(409);
    const ok = await app.inject({ method: 'POST', url: '/api/v1/client/hello', payload: { token: tok2, inventory: {} } });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().taskId).toBe(t2.id);
    // the hello of task 2 with A's token marked A (not another machine) as joined in task 2 only
    expect(store.task(t2.id)?.machines[0]?.joinedAt).not.toBeNull();
    expect(store.task(t1.id)?.machines[0]?.joinedAt).toBeNull();
    store.cancel(t2.id);
  });
});

describe('machines and groups', () => {
  it('PATCH adds or changes a machine; GET lists and shows it', async () => {
    expect((await api('PUT', '/api/v1/groups/rack3', { description: 'third rack', diskSerial: 'S3XYZ' })).statusCode).toBe(200);
    const r = await api('PATCH', `/api/v1/machines/${B.toUpperCase().replaceAll(':', '-')}`, { name: 'web-02', group: 'rack3' });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toMatchObject({ mac: B, name: 'web-02', group: 'rack3' });
    const show = (await api('GET', `/api/v1/machines/${B}`)).json();
    expect(show).toMatchObject({ mac: B, boot: { policy: 'auto', diskSerial: 'S3XYZ', diskWwn: null }, task: null });
    expect((await api('GET', '/api/v1/machines?group=rack3')).json().map((m: { mac: string }) => m.mac)).toEqual([B]);
    expect((await api('GET', '/api/v1/machines/52:54:00:99:99:99')).statusCode).toBe(404);
  });

  it('PUT a group with members; GET; DELETE; bad input is a 400 naming the field', async () => {
    const g = await api('PUT', '/api/v1/groups/lab', { bootPolicy: 'auto', machines: [A, B] });
    expect(g.json()).toMatchObject({ name: 'lab', machines: [A, B] });
    expect((await api('GET', '/api/v1/groups')).json().map((x: { name: string }) => x.name)).toEqual(['lab', 'rack3']);
    const bad = await api('PUT', '/api/v1/groups/lab', { bootPolicy: 'sometimes' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toMatch(/bootPolicy/);
    const badMac = await api('PATCH', '/api/v1/machines/nope', { name: 'x' });
    expect(badMac.statusCode).toBe(400);
    expect(badMac.json().error).toMatch(/mac/);
    const badSerial = await api('PATCH', `/api/v1/machines/${A}`, { diskSerial: 'has space' });
    expect(badSerial.statusCode).toBe(400);
    expect(badSerial.json()).toMatchObject({ code: 'RC_ERR_MACHINE_INVALID', error: expect.stringMatching(/diskSerial/) });
    expect((await api('PATCH', `/api/v1/machines/${A}`, {})).statusCode).toBe(400);
    expect((await api('PATCH', `/api/v1/machines/${A}`, { group: 'missing' })).statusCode).toBe(404);
    expect((await api('DELETE', '/api/v1/groups/lab')).statusCode).toBe(204);
    expect((await api('GET', '/api/v1/groups/lab')).statusCode).toBe(404);
    expect(store.machine(A)?.group).toBeNull();
  });
});

describe('images', () => {
  it('list and show with sizes and dedup savings; delete refused while a task uses it; 404 for unknown', async () => {
    expect((await api('DELETE', '/api/v1/images/old')).statusCode).toBe(204);
    expect((await api('GET', '/api/v1/images/old')).statusCode).toBe(404);
    const list = (await api('GET', '/api/v1/images')).json();
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ name: 'web', diskSize: 4 << 20, blocks: 4, dataBlocks: 1 });
    expect(list[0].savedBytes).toBe(list[0].diskSize - list[0].storedBytes);
    const show = (await api('GET', '/api/v1/images/web')).json();
    expect(show).toMatchObject({ name: 'web', blockSize: 1 << 20, sectorSize: 512 });
    expect((await api('GET', '/api/v1/images/nope')).statusCode).toBe(404);
    const v = await api('POST', '/api/v1/images/web/verify');
    expect(v.statusCode).toBe(200);
    expect(v.json()).toMatchObject({ image: 'web', chunks: 1, ok: true, problems: [] });
    expect((await api('POST', '/api/v1/images/nope/verify')).statusCode).toBe(404);
    // a damaged chunk is found and named
    const images = ImageStore.open(dir);
    const h = (images.open('web').manifest.extents[0]?.hashes[0]) as string;
    const { readFileSync, writeFileSync } = await import('node:fs');
    const good = readFileSync(images.chunkPath(h));
    writeFileSync(images.chunkPath(h), Buffer.from('not a zstd frame'));
    try {
      const bad = (await api('POST', '/api/v1/images/web/verify')).json();
      expect(bad).toMatchObject({ ok: false, chunks: 1 });
      expect(JSON.stringify(bad.problems)).toContain(h.slice(0, 16));
    } finally {
      writeFileSync(images.chunkPath(h), good);
    }
    const t = store.create({ kind: 'deploy', image: 'web', machines: [C] });
    const del = await api('DELETE', '/api/v1/images/web');
    expect(del.statusCode).toBe(409);
    expect(del.json().error).toMatch(new RegExp(`open task\\(s\\) ${t.id}`));
    store.cancel(t.id);
  });
});

describe('tasks', () => {
  it('create validates: a 400 names the field; unknown image 404; bad schedule 400', async () => {
    const cases: [unknown, RegExp][] = [
      [{}, /kind/],
      [{ kind: 'explode', image: 'web', machines: [A] }, /kind/],
      [{ kind: 'deploy', image: 'web', machines: ['zz:zz'] }, /machines/],
      [{ kind: 'deploy', image: 'web', machines: [A], retries: 11 }, /retries/],
      [{ kind: 'deploy', image: 'web', machines: [A], startRule: { kind: 'grace' } }, /startRule/],
      [{ kind: 'deploy', image: 'web', machines: [A], color: 'red' }, /additional properties/],
      [{ kind: 'deploy', image: 'web', machines: [A], group: 'rack3' }, /either machines or a group/],
      [{ kind: 'deploy', image: 'web', machines: [A], cron: 'every night' }, /cron expression "every night" is not valid/],
      [{ kind: 'deploy', image: 'web', machines: [A], at: '2001-01-01T00:00:00Z' }, /in the past/],
      [{ kind: 'capture', image: 'bad name!', machines: [A] }, /name/],
    ];
    for (const [body, msg] of cases) {
      const r = await api('POST', '/api/v1/tasks', body);
      expect([r.statusCode, r.json().error]).toEqual([400, expect.stringMatching(msg)]);
    }
    expect((await api('POST', '/api/v1/tasks', { kind: 'deploy', image: 'nope', machines: [A] })).statusCode).toBe(404);
    expect((await api('POST', '/api/v1/tasks', { kind: 'capture', image: 'web', machines: [A] })).statusCode).toBe(409);
    expect((await api('GET', '/api/v1/tasks/99999')).statusCode).toBe(404);
    expect((await api('GET', '/api/v1/tasks/abc')).statusCode).toBe(400);
  });

  it('deploy to a group tonight: scheduled, start rule changeable, cancel; list, show, report, events', async () => {
    const r = await api('POST', '/api/v1/tasks', { kind: 'deploy', image: 'web', group: 'rack3', at: '02:00', startRule: { kind: 'grace', seconds: 300 }, retries: 2, wol: true });
    expect(r.statusCode).toBe(201);
    const t = r.json();
    expect(t).toMatchObject({ kind: 'deploy', image: 'web', state: 'scheduled', target: { group: 'rack3' }, retries: 2, wol: true, startRule: { kind: 'grace', seconds: 300 } });
    expect(new Date(t.nextRunAt).getHours()).toBe(2);
    const sr = await api('PUT', `/api/v1/tasks/${t.id}/start-rule`, { kind: 'deadline', at: '2030-01-01T03:00:00Z' });
    expect(sr.json().startRule).toEqual({ kind: 'deadline', at: '2030-01-01T03:00:00.000Z' });
    expect((await api('PUT', `/api/v1/tasks/${t.id}/start-rule`, { kind: 'later' })).statusCode).toBe(400);
    expect((await api('GET', '/api/v1/tasks?state=scheduled')).json().map((x: { id: number }) => x.id)).toContain(t.id);
    expect((await api('GET', `/api/v1/tasks/${t.id}`)).json().id).toBe(t.id);
    const c = await api('POST', `/api/v1/tasks/${t.id}/cancel`, { reason: 'not tonight' });
    expect(c.json()).toMatchObject({ state: 'cancelled', reason: 'not tonight' });
    expect((await api('POST', `/api/v1/tasks/${t.id}/cancel`, {})).statusCode).toBe(409);
    const ev = (await api('GET', `/api/v1/events?task=${t.id}`)).json().map((e: { kind: string }) => e.kind);
    expect(ev).toEqual(['task-created', 'start-rule-set', 'task-ended']);
  });

  it('a running deploy: report JSON and HTML carry results, MB/s, verify and the client\'s error lines', async () => {
    await api('PATCH', `/api/v1/machines/${B}`, { group: 'rack3' }); // (the group test above moved it out)
    const t = (await api('POST', '/api/v1/tasks', { kind: 'deploy', image: 'web', machines: [A, B] })).json();
    const tokA = store.assignment(A)?.token as string;
    const tokB = store.assignment(B)?.token as string;
    await app.inject({ method: 'GET', url: `/boot/${A}.ipxe` });
    const script = (await app.inject({ method: 'GET', url: `/boot/${B}.ipxe` })).body;
    expect(script).toContain('rackcast.disk-serial=S3XYZ'); // B's group pins its disk
    store.setMachineProgress(t.id, A, { done: 4 << 20, total: 4 << 20, mbps: 80, verify: 'ok' });
    await app.inject({ method: 'POST', url: '/api/v1/client/report', payload: { token: tokA, state: 'done', detail: 'verified' } });
    await app.inject({ method: 'POST', url: '/api/v1/client/report', payload: { token: tokB, state: 'failed', detail: 'write failed', log: ['dd: error writing /dev/sda: Input/output error', 'giving up'] } });
    const rep = (await api('GET', `/api/v1/tasks/${t.id}/report`)).json();
    expect(rep.task).toMatchObject({ id: t.id, state: 'failed', reason: '1 of 2 machine(s) failed', finished: true });
    expect(rep.summary).toMatchObject({ machines: 2, done: 1, failed: 1 });
    const [ma, mb] = rep.machines;
    expect(ma).toMatchObject({ mac: A, result: 'done', verify: 'ok', bytes: 4 << 20 });
    expect(mb).toMatchObject({ mac: B, result: 'failed', detail: 'write failed', verify: 'not reported' });
    expect(mb.errors[0].lines).toEqual(['dd: error writing /dev/sda: Input/output error', 'giving up']);
    const html = await app.inject({ method: 'GET', url: `/reports/${t.id}?token=${token}` });
    expect(html.statusCode).toBe(200);
    expect(html.headers['content-type']).toMatch(/text\/html/);
    expect(html.body).toContain('dd: error writing /dev/sda: Input/output error');
    expect(html.body).toContain(`Task ${t.id}: deploy web — failed`);
    expect((await app.inject({ method: 'GET', url: '/reports/99999', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(404);
    // after success the machine boots its local disk
    expect((await app.inject({ method: 'GET', url: `/boot/${A}.ipxe` })).body).toContain('booting the local disk');
  });

  it('boot policy local sends the machine to its local disk', async () => {
    await api('PATCH', `/api/v1/machines/${C}`, { bootPolicy: 'local' });
    expect((await app.inject({ method: 'GET', url: `/boot/${C}.ipxe` })).body).toContain('boot policy local');
    const r = await api('POST', '/api/v1/tasks', { kind: 'deploy', image: 'web', machines: [C] });
    expect([r.statusCode, r.json().error]).toEqual([400, expect.stringMatching(/boot policy "local"/)]);
  });
});

describe('metrics and docs', () => {
  it('/metrics is Prometheus text with task and machine gauges', async () => {
    const r = await app.inject({ method: 'GET', url: '/metrics' });
    expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const n = store.tasks().filter((t) => t.state === 'cancelled').length;
    expect(r.body).toContain(`rackcast_tasks{state="cancelled"} ${n}`);
    expect(r.body).toContain('# TYPE rackcast_machines gauge');
    expect(r.body).toMatch(/^rackcast_images 1$/m);
    expect(r.body).toMatch(/^rackcast_events_total\{kind="task-created"\} \d+$/m);
  });

  it('/docs/json is OpenAPI with every API route; /docs lists them', async () => {
    const spec = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
    expect(spec.openapi).toMatch(/^3\./);
    for (const p of ['/api/v1/tasks', '/api/v1/tasks/{id}', '/api/v1/tasks/{id}/cancel', '/api/v1/machines/{mac}', '/api/v1/groups/{name}', '/api/v1/images', '/api/v1/events', '/api/v1/client/hello']) expect(Object.keys(spec.paths)).toContain(p);
    expect(spec.paths['/api/v1/tasks'].post.requestBody).toBeDefined();
    const page = await app.inject({ method: 'GET', url: '/docs' });
    expect(page.body).toContain('/api/v1/tasks/{id}/report');
  });
});
