// Reassembly of a chunk's frame from DATA fragments (services/multicast/assembly.ts).
import { describe, it, expect } from '@jest/globals';
import { Assembly } from '../../../services/multicast/assembly.ts';
import { prng, seededBytes } from '../../helpers/rng.ts';

/** The fragments of `frame` at `fragSize`, as the sender cuts them. */
function fragments(frame: Buffer, fragSize: number): Buffer[] {
  const out: Buffer[] = [];
  for (let s = 0; s < frame.length; s += fragSize) out.push(frame.subarray(s, Math.min(s + fragSize, frame.length)));
  return out;
}

function shuffled<T>(xs: readonly T[], seed: number): T[] {
  const next = prng(seed);
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [a[i], a[j]] = [a[j] as T, a[i] as T];
  }
  return a;
}

describe('Assembly', () => {
  it.each([
    [1, 1], [100, 7], [100, 10], [1448 * 5, 1448], [1448 * 5 + 1, 1448], [65536, 8948], [1000, 999], [1000, 1000],
  ])('reassembles a %i-byte frame from %i-byte fragments in any order', (len, fragSize) => {
    const frame = seededBytes(len * 31 + fragSize, len);
    const frags = fragments(frame, fragSize);
    const count = frags.length;
    for (const seed of [1, 2, 3]) {
      const a = new Assembly(9, count, fragSize);
      expect(a.complete()).toBe(false);
      const order = shuffled(frags.map((f, k) => [k, f] as const), seed * 1000 + len);
      order.forEach(([k, f], n) => {
        expect(a.complete()).toBe(false);
        expect(a.add(k, count, fragSize, f)).toBe('ok');
        expect(a.have).toBe(n + 1);
      });
      expect(a.complete()).toBe(true);
      expect(a.frameLength).toBe(len);
      expect(a.mismatches).toBe(0);
      expect(a.gaps(10)).toEqual([]);
      const out = a.assemble();
      expect(out).toBeInstanceOf(ArrayBuffer);
      expect(out.byteLength).toBe(len);
      expect(Buffer.from(out).equals(frame)).toBe(true);
    }
  });

  it('learns the frame length only from the last fragment', () => {
    const frame = seededBytes(5, 25);
    const frags = fragments(frame, 10);
    const a = new Assembly(0, 3, 10);
    expect(a.frameLength).toBe(-1);
    a.add(0, 3, 10, frags[0] as Buffer);
    a.add(1, 3, 10, frags[1] as Buffer);
    expect(a.frameLength).toBe(-1);
    expect(a.complete()).toBe(false);
    a.add(2, 3, 10, frags[2] as Buffer);
    expect(a.frameLength).toBe(25);
    expect(a.complete()).toBe(true);
  });

  // Assembly keeps each payload as given (zero-copy, commit b2166cf: node:dgram gives every
  // datagram its own buffer), so here every fragment is a view at offset 24 of its own datagram.
  it('reassembles from payload views into separate datagram buffers', () => {
    const frame = seededBytes(6, 3000);
    const frags = fragments(frame, 1448);
    const a = new Assembly(0, frags.length, 1448);
    for (const k of [2, 0, 1]) {
      const f = frags[k] as Buffer;
      const dgram = Buffer.alloc(24 + f.length + 5, 0xcc);
      f.copy(dgram, 24);
      expect(a.add(k, frags.length, 1448, new Uint8Array(dgram.buffer, dgram.byteOffset + 24, f.length))).toBe('ok');
    }
    expect(a.frameLength).toBe(3000);
    expect(Buffer.from(a.assemble()).equals(frame)).toBe(true);
  });

  it('a 1-fragment chunk', () => {
    for (const [len, fragSize] of [[1, 1448], [1448, 1448], [700, 1448]] as const) {
      const frame = seededBytes(len, len);
      const a = new Assembly(3, 1, fragSize);
      expect(a.gaps(5)).toEqual([[0, 1]]);
      expect(a.add(0, 1, fragSize, frame)).toBe('ok');
      expect(a.complete()).toBe(true);
      expect(a.frameLength).toBe(len);
      expect(a.add(0, 1, fragSize, frame)).toBe('dup');
      expect(Buffer.from(a.assemble()).equals(frame)).toBe(true);
    }
  });

  it('duplicates are "dup" and change nothing, even with different bytes', () => {
    const frame = seededBytes(7, 35);
    const frags = fragments(frame, 10);
    const a = new Assembly(0, 4, 10);
    expect(a.add(1, 4, 10, frags[1] as Buffer)).toBe('ok');
    expect(a.add(1, 4, 10, frags[1] as Buffer)).toBe('dup');
    expect(a.add(1, 4, 10, Buffer.alloc(10, 0xff))).toBe('dup');
    expect(a.add(3, 4, 10, frags[3] as Buffer)).toBe('ok');
    expect(a.add(3, 4, 10, Buffer.alloc(2))).toBe('dup'); // a shorter last fragment: still a duplicate
    expect(a.frameLength).toBe(35);
    expect(a.have).toBe(2);
    expect(a.mismatches).toBe(0);
    a.add(0, 4, 10, frags[0] as Buffer);
    a.add(2, 4, 10, frags[2] as Buffer);
    expect(Buffer.from(a.assemble()).equals(frame)).toBe(true);
  });

  describe('fragments that do not fit are "mismatch" and counted', () => {
    const cases: [string, number, number, number, number][] = [
      // name, k, count, fragSize, payload length — against an Assembly(count 4, fragSize 10)
      ['another fragment count', 0, 5, 10, 10],
      ['another fragment count (fewer)', 0, 3, 10, 10],
      ['another fragment size', 0, 4, 11, 11],
      ['another fragment size (smaller)', 1, 4, 9, 9],
      ['an over-long last fragment', 3, 4, 10, 11],
      ['a short non-last fragment', 1, 4, 10, 9],
      ['an over-long non-last fragment', 2, 4, 10, 12],
      ['an index equal to the count', 4, 4, 10, 10],
      ['an index past the count', 100, 4, 10, 10],
    ];
    it.each(cases)('%s', (_name, k, count, fragSize, len) => {
      const a = new Assembly(0, 4, 10);
      expect(a.add(0, 4, 10, Buffer.alloc(10, 1))).toBe('ok');
      expect(a.add(k, count, fragSize, Buffer.alloc(len, 2))).toBe('mismatch');
      expect(a.mismatches).toBe(1);
      expect(a.have).toBe(1);
      expect(a.frameLength).toBe(-1);
      expect(a.add(k, count, fragSize, Buffer.alloc(len, 2))).toBe('mismatch');
      expect(a.mismatches).toBe(2);
    });

    it('a mismatch never takes a slot: the genuine fragment is still accepted afterwards', () => {
      const frame = seededBytes(8, 40);
      const frags = fragments(frame, 10);
      const a = new Assembly(0, 4, 10);
      expect(a.add(2, 4, 12, Buffer.alloc(12))).toBe('mismatch');
      expect(a.add(3, 4, 10, Buffer.alloc(11))).toBe('mismatch');
      frags.forEach((f, k) => expect(a.add(k, 4, 10, f)).toBe('ok'));
      expect(a.mismatches).toBe(2);
      expect(Buffer.from(a.assemble()).equals(frame)).toBe(true);
    });
  });

  describe('gaps', () => {
    it('reports missing ranges [first, count] in order', () => {
      const a = new Assembly(0, 12, 4);
      expect(a.gaps(100)).toEqual([[0, 12]]);
      for (const k of [0, 3, 4, 8, 11]) a.add(k, 12, 4, Buffer.alloc(4));
      // have 0, 3, 4, 8, 11 → missing 1-2, 5-7, 9-10
      expect(a.gaps(100)).toEqual([[1, 2], [5, 3], [9, 2]]);
    });

    it('respects max', () => {
      const a = new Assembly(0, 12, 4);
      for (const k of [0, 3, 4, 8, 11]) a.add(k, 12, 4, Buffer.alloc(4));
      expect(a.gaps(0)).toEqual([]);
      expect(a.gaps(1)).toEqual([[1, 2]]);
      expect(a.gaps(2)).toEqual([[1, 2], [5, 3]]);
      expect(a.gaps(3)).toEqual([[1, 2], [5, 3], [9, 2]]);
    });

    it('includes a gap running to the last fragment', () => {
      const a = new Assembly(0, 6, 4);
      a.add(0, 6, 4, Buffer.alloc(4));
      a.add(2, 6, 4, Buffer.alloc(4));
      expect(a.gaps(10)).toEqual([[1, 1], [3, 3]]);
    });

    it('alternating fragments give one gap each, capped by max (e.g. a NACK of 16 ranges)', () => {
      const n = 100;
      const a = new Assembly(0, n, 4);
      for (let k = 0; k < n; k += 2) a.add(k, n, 4, Buffer.alloc(4));
      expect(a.gaps(1000)).toEqual(Array.from({ length: 50 }, (_, i) => [2 * i + 1, 1]));
      expect(a.gaps(16)).toHaveLength(16);
    });

    it('is empty for a complete chunk', () => {
      const a = new Assembly(0, 2, 4);
      a.add(1, 2, 4, Buffer.alloc(1));
      a.add(0, 2, 4, Buffer.alloc(4));
      expect(a.gaps(10)).toEqual([]);
    });
  });
});
