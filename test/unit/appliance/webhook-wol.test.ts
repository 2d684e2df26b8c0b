// The webhook POST when a task ends (a real HTTP server on 127.0.0.1), with retries and its
// bookkeeping; the Wake-on-LAN packet and broadcast arithmetic; the SSE stream on 127.0.0.1.
import { describe, it, expect, afterEach } from '@jest/globals';
import { createServer, get, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Engine } from '../../../appliance/engine.ts';
import { magicPacket, broadcastAddress, servingBroadcast } from '../../../appliance/wol.ts';
import { buildApp } from '../../../appliance/http/app.ts';
import { ensureAdminToken } from '../../../appliance/api/auth.ts';
import { ImageStore } from '../../../services/image/store.ts';
import { FakeClock, tempStore } from './helpers.ts';

const A = '52:54:00:00:02:0a';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => { for (const f of cleanups.splice(0).reverse()) await f(); });

async function hookServer(statuses: number[]): Promise<{ url: string; bodies: unknown[] }> {
  const bodies: unknown[] = [];
  const srv: Server = createServer((req, res) => {
    let b = '';
    req.on('data', (c: Buffer) => { b += c.toString(); });
    req.on('end', () => { bodies.push({ method: req.method, type: req.headers['content-type'], body: JSON.parse(b) as unknown }); res.statusCode = statuses[bodies.length - 1] ?? 204; res.end(); });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/hook`, bodies };
}
const waitFor = async (f: () => boolean, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (!f()) { if (Date.now() > end) throw new Error('timed out'); await new Promise((r) => setTimeout(r, 20)); }
};

describe('webhook', () => {
  it('POSTs the report when a task ends, once; retries a failing endpoint with back-off', async () => {
    const hook = await hookServer([500, 204]);
    const clock = new FakeClock('2026-11-26T02:00:00Z');
    const t = tempStore(clock);
    cleanups.push(t.cleanup);
    const engine = new Engine({ store: t.store, clock, machineTimeoutMs: 3600_000, misfireGraceMs: 60_000, webhook: { url: hook.url, attempts: 3 } });
    engine.start();
    cleanups.push(() => engine.stop());
    const task = t.store.create({ kind: 'deploy', image: 'web', machines: [A] });
    t.store.setMachineState(task.id, A, 'done', 'ok'); // the task ends: the engine is told at once
    await waitFor(() => hook.bodies.length === 1);
    expect(hook.bodies[0]).toMatchObject({ method: 'POST', type: 'application/json', body: { event: 'task-ended', report: { task: { id: task.id, state: 'done' }, summary: { done: 1 } } } });
    expect(t.store.task(task.id)?.notifiedAt).toBeNull(); // 500: not yet
    clock.advance(4000);
    await engine.tick();
    expect(hook.bodies).toHaveLength(1); // back-off: 5 s
    clock.advance(1000);
    await engine.tick();
    expect(hook.bodies).toHaveLength(2);
    expect(t.store.task(task.id)?.notifiedAt).not.toBeNull();
    expect(t.store.events({ taskId: task.id, kind: 'webhook-sent' })[0]?.detail).toMatchObject({ status: 204, tries: 2 });
    clock.advance(60_000);
    await engine.tick();
    expect(hook.bodies).toHaveLength(2);
  });

  it('gives up after the configured attempts and records why', async () => {
    const hook = await hookServer([503, 503]);
    const clock = new FakeClock('2026-11-26T02:00:00Z');
    const t = tempStore(clock);
    cleanups.push(t.cleanup);
    const engine = new Engine({ store: t.store, clock, machineTimeoutMs: 3600_000, misfireGraceMs: 60_000, webhook: { url: hook.url, attempts: 2 } });
    const task = t.store.create({ kind: 'deploy', image: 'web', machines: [A] });
    t.store.cancel(task.id);
    await engine.tick();
    clock.advance(5000);
    await engine.tick();
    expect(hook.bodies).toHaveLength(2);
    expect(t.store.events({ taskId: task.id, kind: 'webhook-failed' })[0]?.detail).toMatchObject({ status: 503, tries: 2 });
  });
});

describe('Wake-on-LAN packets', () => {
  it('is 6 × 0xff then the MAC 16 times (102 bytes)', () => {
    const p = magicPacket('52-54-00-AB-CD-EF');
    expect(p.length).toBe(102);
    expect(p.subarray(0, 6).toString('hex')).toBe('ffffffffffff');
    expect(p.subarray(6).toString('hex')).toBe('525400abcdef'.repeat(16));
    expect(() => magicPacket('52:54:00')).toThrow(/not a MAC/);
  });
  it('broadcast address from address and prefix, or from the interface holding the address', () => {
    expect(broadcastAddress('10.77.0.1', 24)).toBe('10.77.0.255');
    expect(broadcastAddress('192.168.13.200', 20)).toBe('192.168.15.255');
    expect(broadcastAddress('10.0.0.1', 32)).toBe('10.0.0.1');
    expect(servingBroadcast('10.77.0.1', '10.77.0.0/23')).toBe('10.77.1.255');
    expect(servingBroadcast('127.0.0.1')).toBe('127.255.255.255'); // lo is 127.0.0.1/8
    expect(() => servingBroadcast('192.0.2.77')).toThrow(/no interface holds/);
  });
});

describe('server-sent events', () => {
  it('streams stored events (replaying after Last-Event-ID) and live progress, admin token required', async () => {
    const t = tempStore();
    cleanups.push(t.cleanup);
    const { token } = ensureAdminToken(t.dir);
    const app = buildApp({ store: t.store, images: ImageStore.open(t.dir), dataDir: t.dir, baseUrl: 'http://127.0.0.1', unknown: 'ignore' });
    await app.listen({ host: '127.0.0.1', port: 0 });
    cleanups.push(() => app.close());
    const port = (app.server.address() as AddressInfo).port;
    const task = t.store.create({ kind: 'deploy', image: 'web', machines: [A] });
    const first = t.store.events()[0]?.id as number;
    let text = '';
    const res = await new Promise<IncomingMessage>((resolve) => {
      const req = get({ host: '127.0.0.1', port, path: '/api/v1/events/stream', headers: { authorization: `Bearer ${token}`, 'last-event-id': String(first) } }, resolve);
      cleanups.push(() => { req.destroy(); });
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    res.on('data', (c: Buffer) => { text += c.toString(); });
    await waitFor(() => text.includes('event: task-armed'));
    expect(text).not.toContain(`id: ${first}\n`); // already seen by the client
    t.store.setMachineProgress(task.id, A, { done: 100, total: 1000, mbps: 12.5 });
    t.store.setMachineState(task.id, A, 'done');
    await waitFor(() => text.includes('event: task-ended'));
    expect(text).toContain(`event: progress\ndata: {"taskId":${task.id},"mac":"${A}","done":100,"total":1000,"mbps":12.5}`);
    const closing = Date.now();
    await app.close(); // with the stream still open: it ends, it does not hold the close
    expect(Date.now() - closing).toBeLessThan(2000);
    const app2 = buildApp({ store: t.store, images: ImageStore.open(t.dir), dataDir: t.dir, baseUrl: 'http://127.0.0.1', unknown: 'ignore' });
    cleanups.push(() => app2.close());
    expect((await app2.inject({ method: 'GET', url: '/api/v1/events/stream' })).statusCode).toBe(401);
  });
});
