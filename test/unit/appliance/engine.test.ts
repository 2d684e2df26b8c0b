// The engine and scheduler on a fake clock: one-shot and cron schedules, misfires after downtime,
// start rules (grace, changed while waiting), machine timeouts with retries, Wake-on-LAN repeats
// until check-in or timeout, and the restart note on open tasks.
import { describe, it, expect, afterEach } from '@jest/globals';
import { Engine } from '../../../appliance/engine.ts';
import { nextCron, parseAt } from '../../../appliance/scheduler.ts';
import { Store } from '../../../appliance/store/db.ts';
import { isRackcastError } from '../../../services/errors.ts';
import { FakeClock, tempStore } from './helpers.ts';

const A = '52:54:00:00:00:0a';
const B = '52:54:00:00:00:0b';
const cleanups: (() => void)[] = [];
afterEach(() => { for (const f of cleanups.splice(0)) f(); });
const MIN = 60_000;

function setup(start = '2026-11-25T20:00:00Z', extra: Partial<ConstructorParameters<typeof Engine>[0]> = {}) {
  const clock = new FakeClock(start);
  const t = tempStore(clock);
  cleanups.push(t.cleanup);
  const engine = new Engine({ store: t.store, clock, machineTimeoutMs: 10 * MIN, misfireGraceMs: 30 * MIN, ...extra });
  return { clock, store: t.store, engine, dir: t.dir };
}

describe('schedule parsing', () => {
  it('HH:MM is the next such local time; ISO must be in the future; cron is checked', () => {
    const now = new Date(2026, 10, 25, 20, 0).getTime(); // local 20:00
    expect(Date.parse(parseAt('02:00', now))).toBe(new Date(2026, 10, 26, 2, 0).getTime());
    expect(Date.parse(parseAt('21:30', now))).toBe(new Date(2026, 10, 25, 21, 30).getTime());
    expect(() => parseAt('25:00', now)).toThrow(/not a time of day/);
    expect(parseAt('02:00', Date.parse('2026-11-25T20:00:00Z'), 'America/New_York')).toBe('2026-11-26T07:00:00.000Z'); // EST = UTC-5
    expect(parseAt('02:00', Date.parse('2026-11-25T20:00:00Z'), 'UTC')).toBe('2026-11-26T02:00:00.000Z');
    expect(() => parseAt('2020-01-01T00:00:00Z', now)).toThrow(/in the past/);
    expect(nextCron('0 2 * * *', Date.parse('2026-11-25T20:00:00Z'), 'UTC')).toBe(Date.parse('2026-11-26T02:00:00Z'));
    let err: unknown;
    try { nextCron('not cron', now); } catch (e) { err = e; }
    expect(isRackcastError(err, 'RC_ERR_SCHEDULE_INVALID')).toBe(true);
  });
});

describe('scheduler on a fake clock', () => {
  it('arms a one-shot task at its time, not a tick earlier', async () => {
    const { clock, store, engine } = setup();
    const t = store.create({ kind: 'deploy', image: 'web', machines: [A], at: '2026-11-26T02:00:00Z' });
    engine.start();
    clock.advance(6 * 60 * MIN - 1000); // 01:59:59
    await engine.tick();
    expect(store.task(t.id)?.state).toBe('scheduled');
    expect(store.assignment(A)).toBeUndefined();
    clock.advance(1000);
    await engine.tick();
    expect(store.task(t.id)?.state).toBe('pending');
    expect(store.assignment(A)?.taskId).toBe(t.id);
    await engine.stop();
  });

  it('a cron task arms one child per firing and keeps its next run', async () => {
    const { clock, store, engine } = setup('2026-11-25T20:00:00Z', { timezone: 'UTC' });
    store.setGroup('rack3');
    store.setMachine(A, { group: 'rack3' });
    const p = store.create({ kind: 'deploy', image: 'web', group: 'rack3', cron: '0 2 * * *', nextRunAt: new Date(nextCron('0 2 * * *', clock.now(), 'UTC')).toISOString() });
    clock.advance(6 * 60 * MIN - 24 * 60 * MIN); // so that each step below lands on 02:00
    for (let day = 0; day < 3; day++) {
      clock.advance(24 * 60 * MIN);
      await engine.tick();
      const kids = store.tasks().filter((t) => t.parentId === p.id);
      expect(kids).toHaveLength(day + 1);
      const kid = kids[day];
      // the child finishes before the next night, so the machine is free again
      store.setMachineState(kid?.id as number, A, 'done');
    }
    expect(store.task(p.id)).toMatchObject({ state: 'scheduled', nextRunAt: '2026-11-29T02:00:00.000Z' });
  });

  it('after downtime: a one-shot task missed beyond the grace fails with the reason; a cron task skips', async () => {
    const { clock, store, engine } = setup('2026-11-25T20:00:00Z', { timezone: 'UTC' });
    const once = store.create({ kind: 'deploy', image: 'web', machines: [A], at: '2026-11-26T02:00:00Z' });
    const cron = store.create({ kind: 'deploy', image: 'web', machines: [B], cron: '0 2 * * *', nextRunAt: '2026-11-26T02:00:00.000Z' });
    clock.advance(12 * 60 * MIN); // the appliance was down from 20:00 to 08:00
    await engine.tick();
    const t = store.task(once.id);
    expect(t?.state).toBe('failed');
    expect(t?.reason).toMatch(/was not running at the scheduled time 2026-11-26T02:00:00.000Z .*not started late/);
    expect(store.task(cron.id)).toMatchObject({ state: 'scheduled', nextRunAt: '2026-11-27T02:00:00.000Z' });
    expect(store.events({ taskId: cron.id, kind: 'schedule-missed' })).toHaveLength(1);
    expect(store.tasks().filter((x) => x.parentId === cron.id)).toHaveLength(0);
  });
});

describe('engine', () => {
  it('grace rule: the session starts grace seconds after the first join; a rule changed while waiting applies', async () => {
    const { clock, store, engine } = setup();
    const t = store.create({ kind: 'deploy', image: 'web', machines: [A, B], startRule: { kind: 'grace', seconds: 120 } });
    store.event('client-hello', {}, A, t.id);
    clock.advance(119_000);
    await engine.tick();
    expect(store.task(t.id)?.session?.state).toBe('waiting');
    store.setStartRule(t.id, { kind: 'all' }); // wait for B after all
    clock.advance(10 * MIN);
    await engine.tick();
    expect(store.task(t.id)?.session?.state).toBe('waiting');
    expect(store.sessionMayStart(t.id)).toBe(false);
    store.event('client-hello', {}, B, t.id);
    await engine.tick();
    expect(store.task(t.id)?.session).toEqual({ state: 'started', reason: 'all 2 machine(s) joined' });
    expect(store.sessionMayStart(t.id)).toBe(true);
  });

  it('a machine with no word for the timeout fails with the reason, and is retried if allowed', async () => {
    const { clock, store, engine } = setup();
    const t = store.create({ kind: 'capture', image: 'ref', machines: [A], retries: 1 });
    store.setMachineState(t.id, A, 'running');
    clock.advance(9 * MIN);
    await engine.tick();
    expect(store.task(t.id)?.machines[0]?.state).toBe('running');
    clock.advance(2 * MIN);
    await engine.tick();
    expect(store.task(t.id)?.machines[0]).toMatchObject({ state: 'pending', attempts: 1 });
    store.setMachineState(t.id, A, 'booting');
    clock.advance(11 * MIN);
    await engine.tick();
    const end = store.task(t.id);
    expect(end?.state).toBe('failed');
    expect(end?.machines[0]?.detail).toMatch(/^no word from the machine for 660 s while booting \(timeout 600 s\)/);
  });

  it('Wake-on-LAN repeats for machines that have not checked in, stops when they do, gives up at the timeout', async () => {
    const sent: string[] = [];
    const { clock, store, engine } = setup('2026-11-25T20:00:00Z', { wol: { sender: { wake: async (m) => { sent.push(m); } }, intervalMs: 30_000, timeoutMs: 5 * MIN } });
    const t = store.create({ kind: 'deploy', image: 'web', machines: [A, B], wol: true });
    engine.start();
    await engine.tick();
    expect(sent.sort()).toEqual([A, B]);
    for (let i = 0; i < 3; i++) { clock.advance(30_000); await engine.tick(); }
    expect(sent.filter((m) => m === A)).toHaveLength(4);
    store.setMachineState(t.id, A, 'booting'); // A fetched its iPXE script: it is awake
    for (let i = 0; i < 20; i++) { clock.advance(30_000); await engine.tick(); }
    expect(sent.filter((m) => m === A)).toHaveLength(4);
    const bCount = sent.filter((m) => m === B).length;
    expect(bCount).toBe(11); // at 0, 30 … 300 s
    const gaveUp = store.events({ taskId: t.id, kind: 'wol-gave-up' });
    expect(gaveUp.map((e) => e.mac)).toEqual([B]);
    expect(gaveUp[0]?.detail).toEqual({ packets: 11, timeoutSeconds: 300 });
    await engine.stop();
  });

  it('on start it notes the restart on every open task and resumes time-driven work from the file', async () => {
    const { clock, store, engine, dir } = setup();
    const t = store.create({ kind: 'deploy', image: 'web', machines: [A], startRule: { kind: 'grace', seconds: 60 } });
    store.event('client-hello', {}, A, t.id); // joined; then the appliance "dies"
    store.close();
    clock.advance(61_000);
    const again = Store.open(dir, { now: () => clock.now() });
    cleanups.push(() => again.close());
    const e2 = new Engine({ store: again, clock, machineTimeoutMs: 10 * MIN, misfireGraceMs: 30 * MIN });
    e2.start();
    await e2.tick();
    expect(again.events({ taskId: t.id, kind: 'appliance-restarted' })).toHaveLength(1);
    expect(again.task(t.id)?.session?.state).toBe('started');
    await e2.stop();
    void engine;
  });
});
