// Deploy options (delta, grow) from the API to the boot client: accepted for deploy tasks and
// stored, refused for other kinds (400 naming the option), copied to a cron task's children,
// and handed to the client in its hello reply only when set.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { Store } from '../../../appliance/store/db.ts';
import { checkDeployOptions } from '../../../appliance/tasks.ts';
import { isRackcastError } from '../../../services/errors.ts';
import { prng } from '../../helpers/disks.ts';
import { apiApp, type ApiApp } from './api-app.ts';

let dir: string;
let store: Store;
let app: FastifyInstance;
let token: string;
const A = '52:54:00:00:07:0a';
const B = '52:54:00:00:07:0b';
const C = '52:54:00:00:07:0c';

let fixture: ApiApp;
beforeAll(async () => {
  const b = Buffer.alloc(2 << 20);
  prng(5, 1 << 20).copy(b, 0);
  fixture = await apiApp('deployopts', b, ['web']);
  ({ dir, store, app, token } = fixture);
});
afterAll(async () => { await fixture.close(); });

const api = (method: InjectOptions['method'], url: string, payload?: unknown) =>
  app.inject({ method, url, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}), headers: { authorization: `Bearer ${token}` } });
const hello = async (mac: string): Promise<Record<string, unknown>> =>
  (await app.inject({ method: 'POST', url: '/api/v1/client/hello', payload: { token: store.assignment(mac)?.token as string, inventory: {} } })).json();

describe('deploy options', () => {
  it('delta and grow are stored on a deploy task and reach the client in its hello reply', async () => {
    const r = await api('POST', '/api/v1/tasks', { kind: 'deploy', image: 'web', machines: [A], delta: true, grow: true });
    expect(r.statusCode).toBe(201);
    expect(r.json()).toMatchObject({ kind: 'deploy', delta: true, grow: true });
    expect(await hello(A)).toMatchObject({ kind: 'deploy', delta: true, grow: true });
  });

  it('unset, they are false on the task and absent from the hello reply', async () => {
    const t = (await api('POST', '/api/v1/tasks', { kind: 'deploy', image: 'web', machines: [B], delta: false })).json();
    expect([t.delta, t.grow]).toEqual([false, false]);
    const h = await hello(B);
    expect('delta' in h || 'grow' in h).toBe(false);
  });

  it('other kinds refuse them (400 naming the option); a non-boolean is a 400 too', async () => {
    const cases: [unknown, RegExp][] = [
      [{ kind: 'capture', image: 'new', machines: [C], delta: true }, /delta is an option of deploy tasks/],
      [{ kind: 'register', machines: [C], grow: true }, /grow is an option of deploy tasks/],
      [{ kind: 'deploy', image: 'web', machines: [C], delta: 'yes' }, /delta/],
    ];
    for (const [body, msg] of cases) {
      const r = await api('POST', '/api/v1/tasks', body);
      expect([r.statusCode, r.json().error]).toEqual([400, expect.stringMatching(msg)]);
    }
    const e = (() => { try { checkDeployOptions('deploy', { grow: 1 }); } catch (x) { return x; } return undefined; })();
    expect(isRackcastError(e, 'RC_ERR_TASK_INVALID')).toBe(true);
  });

  it('a cron task hands them to every child it fires', () => {
    const parent = store.create({ kind: 'deploy', image: 'web', machines: [C], cron: '0 2 * * *', nextRunAt: new Date(Date.now() + 3600_000).toISOString(), delta: true });
    const child = store.fire(parent.id, null);
    expect([child.delta, child.grow]).toEqual([true, false]);
  });
});
