// The control-plane store: migrations over an old database, groups and machine settings, tasks
// with targets, retries, progress, cancel, start rules; state survives closing and reopening.
import { describe, it, expect, afterEach } from '@jest/globals';
import { DatabaseSync } from 'node:sqlite';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store, MIGRATIONS, type Change } from '../../../appliance/store/db.ts';
import { decideStart, parseStartRule } from '../../../appliance/tasks.ts';
import { isRackcastError } from '../../../services/errors.ts';
import { tempStore } from './helpers.ts';

const A = '52:54:00:00:00:0a';
const B = '52:54:00:00:00:0b';
const C = '52:54:00:00:00:0c';
const cleanups: (() => void)[] = [];
afterEach(() => { for (const f of cleanups.splice(0)) f(); });
const fresh = (): Store => { const t = tempStore(); cleanups.push(t.cleanup); return t.store; };
const code = (f: () => unknown): string => { try { f(); return 'no error'; } catch (e) { return isRackcastError(e) ? e.code : String(e); } };

describe('store migrations', () => {
  it('upgrades a schema-1 database in place and keeps its rows', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rc-test-mig-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const db = new DatabaseSync(join(dir, 'rackcast.db'));
    db.exec('create table schema_version (version integer not null); insert into schema_version values (1);');
    db.exec(MIGRATIONS[0] as string);
    db.exec(`insert into tasks (id, kind, image, state, created_at, updated_at) values (7, 'deploy', 'web', 'pending', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
      insert into task_machines (task_id, mac, token, updated_at) values (7, '${A}', 'tok', '2026-01-01T00:00:00.000Z');`);
    db.close();
    const s = Store.open(dir);
    try {
      expect((s.db.prepare('select version from schema_version').get() as { version: number }).version).toBe(MIGRATIONS.length);
      const t = s.task(7);
      expect(t).toMatchObject({ kind: 'deploy', image: 'web', state: 'pending', retries: 0, startRule: { kind: 'all' }, wol: false });
      expect(t?.machines[0]).toMatchObject({ mac: A, state: 'pending', attempts: 0 });
      expect(s.assignment(A)?.token).toBe('tok');
    } finally { s.close(); }
  });
});

describe('machines and groups', () => {
  it('groups carry boot policy and a pinned disk; a machine inherits them unless it has its own', () => {
    const s = fresh();
    s.setGroup('rack3', { bootPolicy: 'auto', diskSerial: 'S3XYZ', description: 'third rack' });
    s.setMachine(A, { group: 'rack3', name: 'web-01' });
    s.setMachine(B, { group: 'rack3', diskWwn: '0x5000c500a1b2c3d4' });
    expect(s.group('rack3')?.machines).toEqual([A, B]);
    expect(s.bootSettings(A)).toEqual({ policy: 'auto', diskSerial: 'S3XYZ', diskWwn: null });
    expect(s.bootSettings(B)).toEqual({ policy: 'auto', diskSerial: 'S3XYZ', diskWwn: '0x5000c500a1b2c3d4' });
    expect(s.machine(A)).toMatchObject({ name: 'web-01', group: 'rack3', bootCount: 0 });
    expect(code(() => s.setMachine(C, { group: 'nope' }))).toBe('RC_ERR_GROUP_NOT_FOUND');
    expect(code(() => s.setGroup('bad name'))).toBe('RC_ERR_GROUP_INVALID');
    s.deleteGroup('rack3');
    expect(s.machine(A)?.group).toBeNull();
  });

  it('a machine with boot policy local is never given a task', () => {
    const s = fresh();
    s.setMachine(A, { bootPolicy: 'local' });
    expect(code(() => s.create({ kind: 'deploy', image: 'web', machines: [A] }))).toBe('RC_ERR_TASK_INVALID');
    expect(s.tasks()).toEqual([]); // rolled back whole
  });
});

describe('tasks', () => {
  it('resolves a group target to its machines and refuses contradictory specs', () => {
    const s = fresh();
    s.setGroup('g');
    s.setMachine(A, { group: 'g' });
    s.setMachine(B, { group: 'g' });
    const t = s.create({ kind: 'deploy', image: 'web', group: 'g', retries: 2 });
    expect(t).toMatchObject({ state: 'pending', target: { group: 'g' }, retries: 2, session: { state: 'waiting', reason: null } });
    expect(t.machines.map((m) => m.mac)).toEqual([A, B]);
    expect(code(() => s.create({ kind: 'deploy', image: 'web', group: 'g', machines: [C] }))).toBe('RC_ERR_TASK_INVALID');
    expect(code(() => s.create({ kind: 'deploy', image: null, machines: [C] }))).toBe('RC_ERR_TASK_INVALID');
    expect(code(() => s.create({ kind: 'capture', image: 'x', machines: [B, C] }))).toBe('RC_ERR_TASK_INVALID');
    expect(code(() => s.create({ kind: 'deploy', image: 'web', machines: ['zz'] }))).toBe('RC_ERR_MACHINE_INVALID');
    expect(code(() => s.create({ kind: 'deploy', image: 'web', machines: [A] }))).toBe('RC_ERR_USAGE'); // A is busy
    expect(code(() => s.create({ kind: 'deploy', image: 'web', machines: [C], retries: 11 }))).toBe('RC_ERR_TASK_INVALID');
    expect(code(() => s.create({ kind: 'deploy', image: 'web', machines: [C], at: '2030-01-01T00:00:00Z', cron: '0 2 * * *' }))).toBe('RC_ERR_TASK_INVALID');
  });

  it('retries a failed machine as configured, then reports it failed; one failure never blocks the other', () => {
    const s = fresh();
    const t = s.create({ kind: 'deploy', image: 'web', machines: [A, B], retries: 1 });
    s.setMachineState(t.id, A, 'booting');
    s.setMachineState(t.id, B, 'booting');
    expect(s.task(t.id)?.state).toBe('running');
    s.setMachineState(t.id, A, 'failed', 'disk write error');
    expect(s.task(t.id)?.machines[0]).toMatchObject({ state: 'pending', attempts: 1, detail: 'disk write error' });
    expect(s.assignment(A)?.taskId).toBe(t.id); // its next boot tries again
    s.setMachineState(t.id, B, 'done', 'ok');
    s.setMachineState(t.id, A, 'booting');
    s.setMachineState(t.id, A, 'failed', 'disk write error again');
    const end = s.task(t.id);
    expect(end?.state).toBe('failed');
    expect(end?.reason).toBe('1 of 2 machine(s) failed');
    expect(end?.machines.map((m) => m.state)).toEqual(['failed', 'done']);
    expect(end?.endedAt).not.toBeNull();
    expect(s.events({ taskId: t.id, kind: 'machine-retry' })).toHaveLength(1);
    expect(s.events({ taskId: t.id, kind: 'task-ended' })[0]?.detail).toEqual({ state: 'failed', reason: '1 of 2 machine(s) failed' });
  });

  it('records progress (and tells listeners) only while the machine is open', () => {
    const s = fresh();
    const seen: Change[] = [];
    s.onChange((c) => seen.push(c));
    const t = s.create({ kind: 'deploy', image: 'web', machines: [A] });
    s.setMachineProgress(t.id, A, { done: 1 << 20, total: 8 << 20, mbps: 55.5 });
    expect(s.task(t.id)?.machines[0]).toMatchObject({ bytesDone: 1 << 20, bytesTotal: 8 << 20, mbps: 55.5 });
    expect(seen.filter((c) => c.type === 'progress')).toHaveLength(1);
    s.setMachineProgress(t.id, A, { done: 8 << 20, total: 8 << 20, mbps: 60, verify: 'ok' });
    s.setMachineState(t.id, A, 'done');
    s.setMachineProgress(t.id, A, { done: 1, total: 8 << 20, mbps: 1 });
    expect(s.task(t.id)?.machines[0]).toMatchObject({ bytesDone: 8 << 20, verify: 'ok', state: 'done' });
  });

  it('cancel ends every open machine; their next boot is local; cancelling twice is refused', () => {
    const s = fresh();
    const t = s.create({ kind: 'deploy', image: 'web', machines: [A, B] });
    s.setMachineState(t.id, A, 'done');
    const c = s.cancel(t.id, 'changed my mind');
    expect(c.state).toBe('cancelled');
    expect(c.machines.map((m) => m.state)).toEqual(['done', 'cancelled']);
    expect(s.assignment(B)).toBeUndefined();
    expect(code(() => s.cancel(t.id))).toBe('RC_ERR_TASK_STATE');
    expect(code(() => s.cancel(999))).toBe('RC_ERR_TASK_NOT_FOUND');
  });

  it('a scheduled task holds no machines until armed; the start rule changes only while waiting', () => {
    const s = fresh();
    const t = s.create({ kind: 'deploy', image: 'web', machines: [A], at: '2030-01-01T02:00:00Z', startRule: { kind: 'grace', seconds: 60 } });
    expect(t).toMatchObject({ state: 'scheduled', nextRunAt: '2030-01-01T02:00:00.000Z', machines: [] });
    expect(s.assignment(A)).toBeUndefined();
    expect(s.setStartRule(t.id, { kind: 'all' }).startRule).toEqual({ kind: 'all' });
    const armed = s.arm(t.id);
    expect(armed.state).toBe('pending');
    expect(s.assignment(A)?.taskId).toBe(t.id);
    s.startSession(t.id, 'test');
    expect(s.task(t.id)?.session).toEqual({ state: 'started', reason: 'test' });
    expect(code(() => s.setStartRule(t.id, { kind: 'grace', seconds: 5 }))).toBe('RC_ERR_TASK_STATE');
    expect(code(() => s.setStartRule(t.id, { kind: 'grace', seconds: -5 } as never))).toBe('RC_ERR_TASK_STATE');
  });

  it('a client hello marks the machine joined', () => {
    const s = fresh();
    const t = s.create({ kind: 'deploy', image: 'web', machines: [A, B] });
    s.event('client-hello', {}, A, t.id);
    expect(s.task(t.id)?.machines.map((m) => Boolean(m.joinedAt))).toEqual([true, false]);
  });

  it('everything is in the file: a reopened store sees the same tasks, machines and events', () => {
    const t0 = tempStore();
    cleanups.push(t0.cleanup);
    const t = t0.store.create({ kind: 'deploy', image: 'web', machines: [A, B], retries: 1 });
    t0.store.setMachineState(t.id, A, 'running');
    t0.store.setMachineProgress(t.id, A, { done: 5, total: 10, mbps: 3 });
    const before = t0.store.task(t.id);
    const events = t0.store.events();
    t0.store.close();
    const s = Store.open(t0.dir);
    cleanups.push(() => s.close());
    expect(s.task(t.id)).toEqual(before);
    expect(s.events()).toEqual(events);
  });
});

describe('start rule', () => {
  const now = Date.parse('2026-11-26T02:00:00Z');
  it('all: only when every expected machine joined', () => {
    expect(decideStart({ rule: { kind: 'all' }, expected: 3, joined: 2, firstJoinAt: now - 1e6, now }).start).toBe(false);
    expect(decideStart({ rule: { kind: 'all' }, expected: 3, joined: 3, firstJoinAt: now, now })).toEqual({ start: true, reason: 'all 3 machine(s) joined' });
  });
  it('deadline: at the time with whoever joined, never with nobody', () => {
    const rule = { kind: 'deadline' as const, at: '2026-11-26T02:00:00.000Z' };
    expect(decideStart({ rule, expected: 3, joined: 1, firstJoinAt: now - 10, now: now - 1 }).start).toBe(false);
    expect(decideStart({ rule, expected: 3, joined: 1, firstJoinAt: now - 10, now }).start).toBe(true);
    expect(decideStart({ rule, expected: 3, joined: 0, firstJoinAt: null, now: now + 5000 }).start).toBe(false);
  });
  it('grace: first join plus the grace period', () => {
    const rule = { kind: 'grace' as const, seconds: 60 };
    expect(decideStart({ rule, expected: 3, joined: 0, firstJoinAt: null, now }).start).toBe(false);
    expect(decideStart({ rule, expected: 3, joined: 1, firstJoinAt: now - 59_000, now }).start).toBe(false);
    expect(decideStart({ rule, expected: 3, joined: 1, firstJoinAt: now - 60_000, now }).start).toBe(true);
  });
  it('parses the CLI spelling', () => {
    expect(parseStartRule('grace=90')).toEqual({ kind: 'grace', seconds: 90 });
    expect(parseStartRule('deadline=2026-11-26T02:30:00Z')).toEqual({ kind: 'deadline', at: '2026-11-26T02:30:00.000Z' });
    expect(code(() => parseStartRule('soon'))).toBe('RC_ERR_USAGE');
  });
});
