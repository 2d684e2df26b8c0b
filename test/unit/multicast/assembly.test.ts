// Reassembly of a chunk's frame from DATA fragments (services/multicast/assembly.ts).
import { describe, it, expect } from '@jest/globals';
import { Assembly, BufferPool } from '../../../services/multicast/assembly.ts';
import { blockRange, encodeParity } from '../../../services/multicast/fec.ts';
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
      expect(out.byteLength).toBe(count * fragSize); // room for count full fragments; the frame is its first frameLength bytes
      expect(Buffer.from(out, 0, len).equals(frame)).toBe(true);
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

  // The receiver hands over the whole datagram and where its payload is (no view per datagram);
  // the bytes are copied at once, so the datagram buffer may be reused (here: overwritten) after.
  it('copies each payload out of its datagram (start, length), which may then be reused', () => {
    const frame = seededBytes(6, 3000);
    const frags = fragments(frame, 1448);
    const a = new Assembly(0, frags.length, 1448);
    const dgram = Buffer.alloc(24 + 1448 + 5);
    for (const k of [2, 0, 1]) {
      const f = frags[k] as Buffer;
      dgram.fill(0xcc);
      f.copy(dgram, 24);
      expect(a.add(k, frags.length, 1448, dgram, 24, f.length)).toBe('ok');
    }
    dgram.fill(0xdd);
    expect(a.frameLength).toBe(3000);
    expect(Buffer.from(a.assemble(), 0, 3000).equals(frame)).toBe(true);
  });

  it('a payload whose length does not fit is a mismatch also when given as (start, length)', () => {
    const a = new Assembly(0, 3, 10);
    const dgram = Buffer.alloc(24 + 10);
    expect(a.add(0, 3, 10, dgram, 24, 9)).toBe('mismatch');
    expect(a.add(2, 3, 10, dgram, 24, 10)).toBe('ok');
    expect(a.add(1, 3, 10, dgram, 24)).toBe('ok'); // length defaults to the rest of the buffer
    expect(a.have).toBe(2);
    expect(a.frameLength).toBe(30);
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
      expect(Buffer.from(a.assemble(), 0, frame.length).equals(frame)).toBe(true);
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
    expect(Buffer.from(a.assemble(), 0, frame.length).equals(frame)).toBe(true);
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
      expect(Buffer.from(a.assemble(), 0, frame.length).equals(frame)).toBe(true);
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

  describe('with a BufferPool', () => {
    it('reassembles into a pooled shared buffer, which serves the next assembly once given back', () => {
      const pool = new BufferPool(64);
      const frame = seededBytes(9, 35);
      const frags = fragments(frame, 10);
      const a = new Assembly(0, 4, 10, pool);
      frags.forEach((f, k) => a.add(k, 4, 10, f));
      const out = a.assemble();
      expect(out).toBeInstanceOf(SharedArrayBuffer);
      expect(out.byteLength).toBe(64);
      expect(Buffer.from(out, 0, 35).equals(frame)).toBe(true);
      pool.give(out as SharedArrayBuffer);
      expect(pool.take()).toBe(out);
      expect(pool.take()).not.toBe(out); // taken: a new one
    });

    it('a reused buffer holding another frame still yields exactly the new frame', () => {
      const pool = new BufferPool(64);
      const first = new Assembly(0, 2, 30, pool);
      first.add(0, 2, 30, Buffer.alloc(30, 0xaa));
      first.add(1, 2, 30, Buffer.alloc(30, 0xbb));
      pool.give(first.assemble() as SharedArrayBuffer);
      const frame = seededBytes(10, 25);
      const b = new Assembly(1, 3, 10, pool);
      fragments(frame, 10).forEach((f, k) => b.add(k, 3, 10, f));
      expect(b.frameLength).toBe(25);
      expect(Buffer.from(b.assemble(), 0, b.frameLength).equals(frame)).toBe(true);
    });

    it('discard gives the buffer back; an assembly never started takes none', () => {
      const pool = new BufferPool(64);
      const untouched = new Assembly(0, 4, 10, pool);
      untouched.discard();
      const a = new Assembly(0, 4, 10, pool);
      a.add(1, 4, 10, Buffer.alloc(10));
      const held = pool.take(); // a second buffer: the pool had none free
      a.discard();
      expect(pool.take()).not.toBe(held);
      pool.give(held);
      pool.give(held); // given twice: kept once
      expect(pool.take()).toBe(held);
      expect(pool.take()).not.toBe(held);
    });

    it('a frame larger than the pool\'s buffers gets its own, which the pool does not take back', () => {
      const pool = new BufferPool(16);
      const a = new Assembly(0, 3, 10, pool);
      [0, 1, 2].forEach((k) => a.add(k, 3, 10, Buffer.alloc(10, k)));
      const out = a.assemble();
      expect(out).toBeInstanceOf(ArrayBuffer);
      expect(out.byteLength).toBe(30);
    });

    it('keeps at most `keep` free buffers', () => {
      const pool = new BufferPool(8, 2);
      const bufs = [pool.take(), pool.take(), pool.take()];
      bufs.forEach((b) => pool.give(b));
      const again = [pool.take(), pool.take(), pool.take()];
      expect(again.filter((b) => bufs.includes(b))).toHaveLength(2);
      pool.give(new SharedArrayBuffer(4)); // another size is never pooled
      expect(pool.take().byteLength).toBe(8);
    });
  });
});

describe('Assembly with PARITY (fec.ts)', () => {
  const fs = 100;
  const frame = seededBytes(77, fs * 150 + 37); // 151 fragments: blocks 0–2 cover 0–149, 150 is never coded
  const frags = fragments(frame, fs);
  const parity = (b: number, j: number): Buffer => {
    const [first, end] = blockRange(b, frags.length);
    return Buffer.from(encodeParity(j, frags.slice(first, end), new Uint8Array(fs)));
  };
  const whole = (a: Assembly): Buffer => Buffer.from(new Uint8Array(a.assemble(), 0, a.frameLength));

  it('rebuilds the lost fragments of each block from as many parities, whichever arrive first', () => {
    const lost = new Set([3, 10, 63, 64, 100, 127, 128, 149]);
    const a = new Assembly(0, frags.length, fs);
    frags.forEach((f, k) => { if (!lost.has(k)) a.add(k, frags.length, fs, f); });
    expect(a.complete()).toBe(false);
    // block 0 lacks 3 (3, 10, 63), block 1 lacks 3 (64, 100, 127), block 2 lacks 2 (128, 149)
    expect(a.addParity(0, 7, frags.length, fs, parity(0, 7))).toBe('ok');
    expect(a.addParity(0, 7, frags.length, fs, parity(0, 7))).toBe('dup');
    for (const j of [0, 190]) a.addParity(0, j, frags.length, fs, parity(0, j));
    for (const j of [5, 6, 9]) a.addParity(1, j, frags.length, fs, parity(1, j));
    expect(a.complete()).toBe(false);
    a.addParity(2, 1, frags.length, fs, parity(2, 1));
    // a plain repair of 128 leaves block 2 lacking one fragment: the parity already here rebuilds it
    a.add(128, frags.length, fs, frags[128] as Buffer);
    expect(a.complete()).toBe(true);
    expect(a.rebuilt).toBe(7);
    expect(whole(a).equals(frame)).toBe(true);
    expect(a.addParity(2, 2, frags.length, fs, parity(2, 2))).toBe('useless');
  });

  it('refuses a parity that does not fit the chunk, and has no use for one before any fragment', () => {
    const a = new Assembly(0, frags.length, fs);
    expect(a.addParity(0, 0, frags.length, fs, parity(0, 0))).toBe('useless');
    a.add(0, frags.length, fs, frags[0] as Buffer);
    expect(a.addParity(3, 0, frags.length, fs, parity(0, 0))).toBe('mismatch'); // block 3 would start at the last fragment
    expect(a.addParity(0, 0, frags.length + 1, fs, parity(0, 0))).toBe('mismatch');
    expect(a.addParity(0, 0, frags.length, fs, parity(0, 0).subarray(1))).toBe('mismatch');
  });
});
