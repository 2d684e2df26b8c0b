// Token-bucket pacing (services/multicast/pacer.ts). Pacer reads performance.now(); jest's modern
// fake timers fake it (checked by the first test), so time here is advanced by hand.
import { describe, it, expect, jest, beforeEach, afterEach } from '@jest/globals';
import { Pacer } from '../../../services/multicast/pacer.ts';

const MB = 1_000_000; // bytes per second

beforeEach(() => { jest.useFakeTimers({ now: 0 }); });
afterEach(() => { jest.useRealTimers(); });

const tick = (ms: number): void => { jest.advanceTimersByTime(ms); };

/** Spend everything the pacer allows without time passing; the total is the stored credit. */
function drain(p: Pacer): number {
  let total = 0;
  for (let i = 0; i < 100_000; i++) {
    const t = p.take();
    if (t <= 1e-6) break;
    p.spend(t);
    total += t;
  }
  return total;
}

describe('Pacer', () => {
  it('runs on faked performance.now()', () => {
    const t0 = performance.now();
    tick(7);
    expect(performance.now() - t0).toBe(7);
  });

  it('starts with no credit', () => {
    expect(new Pacer(10 * MB).take()).toBe(0);
  });

  it('accrues rate × elapsed time', () => {
    const p = new Pacer(1 * MB);
    tick(1);
    expect(p.take()).toBeCloseTo(1000, 6);
    tick(2);
    expect(p.take()).toBeCloseTo(3000, 6); // take() alone spends nothing
    expect(p.rate).toBe(1 * MB);
  });

  describe('take() is capped at one burst', () => {
    it('2 ms worth at a high rate', () => {
      const p = new Pacer(10 * MB); // burst 20 000 B
      tick(5);
      expect(p.take()).toBeCloseTo(20_000, 6);
      const q = new Pacer(100 * MB); // burst 200 000 B
      tick(1);
      expect(q.take()).toBeCloseTo(100_000, 6);
      tick(9);
      expect(q.take()).toBeCloseTo(200_000, 6);
    });

    it('at least 9000 bytes (one jumbo datagram) at a low rate', () => {
      const p = new Pacer(1 * MB); // 2 ms worth = 2000 B < 9000
      tick(15);
      expect(p.take()).toBeCloseTo(9000, 6);
    });

    it('honours custom burst and carry windows', () => {
      const p = new Pacer(10 * MB, 5, 50); // burst 50 000 B, carry 500 000 B
      tick(1000);
      expect(p.take()).toBeCloseTo(50_000, 6);
      expect(drain(p)).toBeCloseTo(500_000, 3);
    });
  });

  describe('credit', () => {
    it('unspent credit is kept across wake-ups (a late timer does not lower the rate)', () => {
      const p = new Pacer(10 * MB);
      tick(10); // 100 000 B of credit, 20 000 B per burst
      for (let i = 0; i < 5; i++) {
        expect(p.take()).toBeCloseTo(20_000, 6);
        p.spend(20_000);
      }
      expect(p.take()).toBeCloseTo(0, 6);
    });

    it('is kept up to carryMs (20 ms) worth, never more', () => {
      const p = new Pacer(10 * MB);
      tick(15);
      expect(drain(p)).toBeCloseTo(150_000, 3); // below the cap: all of it
      tick(20);
      expect(drain(p)).toBeCloseTo(200_000, 3); // exactly the cap
      tick(1000);
      expect(drain(p)).toBeCloseTo(200_000, 3); // an idle second: still the cap
      tick(3_600_000);
      expect(drain(p)).toBeCloseTo(200_000, 3);
    });

    it('at a low rate the credit cap is one jumbo datagram (9000 B), not the smaller carry window', () => {
      const p = new Pacer(0.2 * MB); // carry 4000 B, burst floor 9000 B
      tick(1000);
      expect(p.take()).toBeCloseTo(9000, 6);
    });

    it('spend() reduces it', () => {
      const p = new Pacer(1 * MB);
      tick(5);
      p.spend(3000);
      expect(p.take()).toBeCloseTo(2000, 6);
      p.spend(1500);
      expect(p.take()).toBeCloseTo(500, 6);
    });

    it('overspending leaves a debt that accrual repays first', () => {
      const p = new Pacer(1 * MB);
      tick(5);
      p.spend(8000); // one datagram more than the credit
      expect(p.take()).toBeCloseTo(-3000, 6);
      tick(3);
      expect(p.take()).toBeCloseTo(0, 6);
      tick(2);
      expect(p.take()).toBeCloseTo(2000, 6);
    });
  });

  describe('setRate', () => {
    it('changes accrual from then on', () => {
      const p = new Pacer(1 * MB);
      tick(2);
      p.setRate(4 * MB);
      expect(p.rate).toBe(4 * MB);
      expect(p.take()).toBeCloseTo(2000, 6); // time before the change accrued at the old rate
      tick(1);
      expect(p.take()).toBeCloseTo(6000, 6);
    });

    it('changes the burst and the carry cap', () => {
      const p = new Pacer(1 * MB);
      tick(1000);
      expect(p.take()).toBeCloseTo(9000, 6);
      p.setRate(100 * MB); // burst 200 000 B, carry 2 000 000 B
      tick(1);
      expect(p.take()).toBeCloseTo(20_000 + 100_000, 6);
      tick(1000);
      expect(p.take()).toBeCloseTo(200_000, 6);
      p.setRate(1 * MB); // carry back to 20 000 B: the surplus is dropped
      expect(drain(p)).toBeCloseTo(20_000, 3);
    });
  });

  describe('reset', () => {
    it('forgets credit', () => {
      const p = new Pacer(1 * MB);
      tick(10);
      expect(p.take()).toBeCloseTo(9000, 6);
      p.reset();
      expect(p.take()).toBe(0);
      tick(1);
      expect(p.take()).toBeCloseTo(1000, 6);
    });

    it('forgets debt too, and time before the reset', () => {
      const p = new Pacer(1 * MB);
      tick(500);
      p.spend(50_000);
      p.reset();
      expect(p.take()).toBe(0);
      tick(2);
      expect(p.take()).toBeCloseTo(2000, 6);
    });
  });

  describe('lostSeconds: sending time lost to a late wake-up', () => {
    it('counts the credit the carry cap discards, in seconds at the rate', () => {
      const p = new Pacer(10 * MB); // carry 20 ms
      for (let i = 0; i < 50; i++) { tick(2); p.spend(p.take()); } // on time: nothing lost
      expect(p.lostSeconds).toBe(0);
      tick(50); // descheduled for 50 ms: 30 ms of it is beyond the carry window
      expect(drain(p)).toBeCloseTo(200_000, 3);
      expect(p.lostSeconds).toBeCloseTo(0.030, 9);
      tick(25);
      p.take();
      expect(p.lostSeconds).toBeCloseTo(0.035, 9); // adds up
    });

    it('does not count idle time ended by reset(), nor a rate cut that shrinks the cap', () => {
      const p = new Pacer(10 * MB);
      tick(1000);
      p.reset();
      expect(p.take()).toBe(0);
      expect(p.lostSeconds).toBe(0);
      tick(20); // credit at the cap (200 000 B)
      p.take();
      p.setRate(1 * MB); // cap 20 000 B now
      p.take();
      expect(p.lostSeconds).toBe(0);
    });
  });

  // Regression: at low rates the credit cap was below one datagram and the sender stalled.
  it('at 1 Mbit/s, polled every millisecond as the sender does, eventually allows one 9000-byte datagram', () => {
    const p = new Pacer(125_000); // 1 Mbit/s
    let best = 0;
    for (let ms = 0; ms < 2000; ms++) {
      tick(1);
      best = Math.max(best, p.take());
    }
    expect(best).toBeGreaterThanOrEqual(9000);
  });
});
