// The task engine: every transition that time drives, once a tick (1 s by default, any clock).
//  - schedules: arm one-shot tasks at their time, fire cron tasks (scheduler.ts)
//  - deploy start rules: mark a waiting session "started" when its rule says so
//  - machines with no word for machineTimeoutMs fail (and are retried if the task allows)
//  - Wake-on-LAN for machines of a task that have not checked in, until they do or time out
//  - a webhook POST with the report when a task ends (retried; bookkept in the store)
// Everything it decides is written to the store first, so after a restart (even kill -9) the next
// tick carries on from the persisted state; recover() records the restart on every open task.
import type { Store } from './store/db.ts';
import { Scheduler, type Clock } from './scheduler.ts';
import { decideStart } from './tasks.ts';
import { buildReport } from './reports.ts';
import type { Logger } from './serve.ts';

export interface WolSender { wake(mac: string): Promise<void> }

export interface EngineOptions {
  store: Store;
  clock: Clock;
  log?: Logger;
  tickMs?: number;
  machineTimeoutMs: number;
  misfireGraceMs: number;
  timezone?: string;
  wol?: { sender: WolSender; intervalMs: number; timeoutMs: number };
  webhook?: { url: string; timeoutMs?: number; attempts?: number };
}

export const ENGINE_DEFAULTS = { tickMs: 1000, machineTimeoutMs: 2 * 3600_000, misfireGraceMs: 3600_000, wolIntervalMs: 30_000, wolTimeoutMs: 15 * 60_000, webhookAttempts: 3 };

export class Engine {
  readonly o: EngineOptions;
  readonly scheduler: Scheduler;
  #wol = new Map<string, { last: number; count: number; gaveUp: boolean }>();
  #hooks = new Map<number, { tries: number; nextAt: number }>();
  #stop?: () => void;
  #unsub?: () => void;
  #running?: Promise<void>;
  #again = false;

  constructor(o: EngineOptions) {
    this.o = o;
    this.scheduler = new Scheduler({ store: o.store, clock: o.clock, misfireGraceMs: o.misfireGraceMs, ...(o.timezone ? { timezone: o.timezone } : {}) });
  }

  /** After a start: say on every open task that the appliance restarted, and what that means. */
  recover(): void {
    const s = this.o.store;
    for (const t of [...s.tasks({ state: 'pending' }), ...s.tasks({ state: 'running' })]) {
      const note = t.kind === 'deploy' && t.session?.state === 'started'
        ? 'the multicast session ended with the appliance; receivers continue over HTTP (same verification)'
        : 'resumed where it was';
      s.event('appliance-restarted', { state: t.state, note }, undefined, t.id);
    }
  }

  start(): void {
    this.recover();
    this.#stop = this.o.clock.every(this.o.tickMs ?? ENGINE_DEFAULTS.tickMs, () => { void this.tick(); });
    this.#unsub = this.o.store.onChange((c) => { if (c.type === 'event' && c.event.kind === 'task-ended') queueMicrotask(() => { void this.tick(); }); });
  }

  async stop(): Promise<void> {
    this.#stop?.();
    this.#unsub?.();
    await this.#running;
  }

  /** One pass over everything time drives; overlapping calls coalesce. */
  tick(): Promise<void> {
    if (this.#running) { this.#again = true; return this.#running; }
    this.#running = (async () => {
      do {
        this.#again = false;
        try {
          this.scheduler.tick();
          this.#startRules();
          this.#timeouts();
          await this.#wakeUp();
          await this.#webhooks();
        } catch (e) {
          this.o.log?.error({ err: (e as Error).message }, 'engine: tick failed');
        }
      } while (this.#again);
    })().finally(() => { this.#running = undefined; });
    return this.#running;
  }

  #open() {
    const s = this.o.store;
    return [...s.tasks({ state: 'pending' }), ...s.tasks({ state: 'running' })];
  }

  #startRules(): void {
    const now = this.o.clock.now();
    for (const t of this.#open()) {
      if (t.kind !== 'deploy' || t.session?.state !== 'waiting') continue;
      const expected = t.machines.filter((m) => m.state !== 'failed' && m.state !== 'cancelled');
      const joined = expected.filter((m) => m.joinedAt);
      const first = joined.reduce<number | null>((a, m) => { const j = Date.parse(m.joinedAt as string); return a === null || j < a ? j : a; }, null);
      const d = decideStart({ rule: t.startRule, expected: expected.length, joined: joined.length, firstJoinAt: first, now });
      if (d.start) {
        this.o.store.startSession(t.id, d.reason);
        this.o.log?.info({ taskId: t.id, reason: d.reason }, 'task: deploy session may start');
      }
    }
  }

  #timeouts(): void {
    const now = this.o.clock.now();
    for (const t of this.#open()) {
      for (const m of t.machines) {
        if (m.state !== 'booting' && m.state !== 'running') continue;
        const quiet = now - Date.parse(m.updatedAt);
        if (quiet > this.o.machineTimeoutMs) {
          this.o.store.setMachineState(t.id, m.mac, 'failed', `no word from the machine for ${Math.round(quiet / 1000)} s while ${m.state} (timeout ${Math.round(this.o.machineTimeoutMs / 1000)} s): check its console`);
        }
      }
    }
  }

  async #wakeUp(): Promise<void> {
    const w = this.o.wol;
    if (!w) return;
    const now = this.o.clock.now();
    for (const t of this.#open()) {
      if (!t.wol || !t.armedAt) continue;
      const armed = Date.parse(t.armedAt);
      for (const m of t.machines) {
        if (m.state !== 'pending') continue;
        const key = `${t.id}/${m.mac}`;
        const st = this.#wol.get(key) ?? { last: -Infinity, count: 0, gaveUp: false };
        this.#wol.set(key, st);
        if (st.gaveUp) continue;
        if (now - armed > w.timeoutMs) {
          st.gaveUp = true;
          this.o.store.event('wol-gave-up', { packets: st.count, timeoutSeconds: Math.round(w.timeoutMs / 1000) }, m.mac, t.id);
          continue;
        }
        if (now - st.last < w.intervalMs) continue;
        st.last = now;
        try {
          await w.sender.wake(m.mac);
          st.count++;
          this.o.store.event('wol-sent', { packet: st.count }, m.mac, t.id);
        } catch (e) {
          this.o.log?.warn({ mac: m.mac, err: (e as Error).message }, 'wol: send failed');
        }
      }
    }
  }

  async #webhooks(): Promise<void> {
    const h = this.o.webhook;
    if (!h) return;
    const s = this.o.store;
    const now = this.o.clock.now();
    const ended = s.db.prepare(`select id from tasks where state in ('done', 'failed', 'cancelled') and notified_at is null order by id limit 20`).all() as { id: number }[];
    for (const { id } of ended) {
      const st = this.#hooks.get(id) ?? { tries: 0, nextAt: 0 };
      if (now < st.nextAt) continue;
      const t = s.task(Number(id));
      if (!t) continue;
      const body = JSON.stringify({ event: 'task-ended', report: buildReport(s, t) });
      let status = 0;
      let err = '';
      try {
        const r = await fetch(h.url, { method: 'POST', headers: { 'content-type': 'application/json', 'user-agent': 'rackcast' }, body, signal: AbortSignal.timeout(h.timeoutMs ?? 5000) });
        status = r.status;
        await r.arrayBuffer().catch(() => undefined);
      } catch (e) {
        err = (e as Error).message;
      }
      st.tries++;
      if (status >= 200 && status < 300) {
        s.markNotified(t.id, true, { url: h.url, status, tries: st.tries });
        this.#hooks.delete(id);
      } else if (st.tries >= (h.attempts ?? ENGINE_DEFAULTS.webhookAttempts)) {
        s.markNotified(t.id, false, { url: h.url, status, error: err, tries: st.tries });
        this.o.log?.warn({ taskId: t.id, url: h.url, status, err }, 'webhook: gave up');
        this.#hooks.delete(id);
      } else {
        st.nextAt = now + 5000 * 2 ** (st.tries - 1);
        this.#hooks.set(id, st);
      }
    }
  }
}
