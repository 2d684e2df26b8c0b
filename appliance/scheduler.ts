// Schedules: a one-shot task armed at its time, or a cron task that arms a child task at each
// firing (croner computes the next time). The clock is injected, so tests drive time by hand.
// Times the appliance slept through (it was stopped) are not made up silently: a one-shot task
// missed by more than the misfire grace fails with that reason; a cron task skips to its next run.
import { Cron } from 'croner';
import { RackcastError } from '../services/errors.ts';
import type { Store, Task } from './store/db.ts';

export interface Clock {
  now(): number;
  /** call fn every ms until the returned function is called */
  every(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  every(ms, fn) {
    const t = setInterval(fn, ms);
    t.unref();
    return () => clearInterval(t);
  },
};

/** The next time (ms) after `after` that a cron expression names; refuses an invalid expression. */
export function nextCron(expr: string, after: number, timezone?: string): number {
  let c: Cron;
  try {
    c = new Cron(expr, { paused: true, ...(timezone ? { timezone } : {}) });
  } catch (e) {
    throw new RackcastError('RC_ERR_SCHEDULE_INVALID', `cron expression "${expr}" is not valid (${(e as Error).message}): use 5 or 6 fields, e.g. "0 2 * * *" for 02:00 every day`);
  }
  const n = c.nextRun(new Date(after));
  c.stop();
  if (!n) throw new RackcastError('RC_ERR_SCHEDULE_INVALID', `cron expression "${expr}" never fires after ${new Date(after).toISOString()}`);
  return n.getTime();
}

/**
 * "02:00" / "2:30" → the next such time after now (tonight, or tomorrow if it has passed) in
 * `timezone` (default: the host's); an ISO date-time → itself, which must be in the future.
 */
export function parseAt(s: string, now: number, timezone?: string): string {
  const hm = /^(\d{1,2}):(\d{2})$/.exec(s);
  if (hm) {
    const h = Number(hm[1]);
    const m = Number(hm[2]);
    if (h > 23 || m > 59) throw new RackcastError('RC_ERR_SCHEDULE_INVALID', `"${s}" is not a time of day: use HH:MM from 00:00 to 23:59`);
    return new Date(nextCron(`${m} ${h} * * *`, now, timezone)).toISOString();
  }
  const t = Date.parse(s);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}T/.test(s)) throw new RackcastError('RC_ERR_SCHEDULE_INVALID', `"${s}" is neither HH:MM nor an ISO date-time such as 2026-11-26T02:00:00Z`);
  if (t <= now) throw new RackcastError('RC_ERR_SCHEDULE_INVALID', `${new Date(t).toISOString()} is in the past: give a future time`);
  return new Date(t).toISOString();
}

export interface SchedulerOptions {
  store: Store;
  clock: Clock;
  /** a one-shot task missed by more than this fails instead of starting late */
  misfireGraceMs: number;
  timezone?: string;
  onArmed?: (t: Task) => void;
}

export class Scheduler {
  readonly o: SchedulerOptions;

  constructor(o: SchedulerOptions) {
    this.o = o;
  }

  /** Arm or fire every scheduled task that is due; returns the tasks armed now. */
  tick(): Task[] {
    const now = this.o.clock.now();
    const armed: Task[] = [];
    for (const t of this.o.store.tasks({ state: 'scheduled' })) {
      if (t.parentId !== null && !t.nextRunAt && !t.scheduleAt) continue; // a child between insert and arm
      const due = t.nextRunAt ? Date.parse(t.nextRunAt) : NaN;
      if (!(due <= now)) continue;
      const late = now - due;
      if (t.cron) {
        const next = new Date(nextCron(t.cron, now, this.o.timezone)).toISOString();
        if (late > this.o.misfireGraceMs) {
          this.o.store.tx(() => {
            this.o.store.db.prepare('update tasks set next_run_at = ? where id = ?').run(next, t.id);
            this.o.store.event('schedule-missed', { missed: t.nextRunAt, nextRunAt: next, reason: `the appliance was not running at ${t.nextRunAt}` }, undefined, t.id);
          });
          continue;
        }
        armed.push(this.o.store.fire(t.id, next));
      } else if (late > this.o.misfireGraceMs) {
        this.o.store.fail(t.id, `the appliance was not running at the scheduled time ${t.nextRunAt} (${Math.round(late / 1000)} s ago, more than the misfire grace of ${Math.round(this.o.misfireGraceMs / 1000)} s): not started late; create the task again`);
      } else {
        armed.push(this.o.store.arm(t.id));
      }
    }
    for (const t of armed) this.o.onArmed?.(t);
    return armed;
  }
}
