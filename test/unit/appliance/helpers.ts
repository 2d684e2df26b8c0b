// A fake clock for the engine and scheduler, and a throw-away data directory with a store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clock } from '../../../appliance/scheduler.ts';
import { Store } from '../../../appliance/store/db.ts';

export class FakeClock implements Clock {
  t: number;
  #timers = new Set<{ every: number; next: number; fn: () => void }>();

  constructor(start: string | number) {
    this.t = typeof start === 'number' ? start : Date.parse(start);
  }

  now(): number {
    return this.t;
  }

  every(ms: number, fn: () => void): () => void {
    const timer = { every: ms, next: this.t + ms, fn };
    this.#timers.add(timer);
    return () => { this.#timers.delete(timer); };
  }

  /** Move time forward, firing interval callbacks in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (let guard = 0; guard < 100000; guard++) {
      const due = [...this.#timers].filter((x) => x.next <= end).sort((a, b) => a.next - b.next)[0];
      if (!due) break;
      this.t = due.next;
      due.next += due.every;
      due.fn();
    }
    this.t = end;
  }
}

export function tempStore(clock?: Clock): { dir: string; store: Store; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'rc-test-store-'));
  const store = Store.open(dir, clock ? { now: () => clock.now() } : {});
  return { dir, store, cleanup: () => { store.close(); rmSync(dir, { recursive: true, force: true }); } };
}
