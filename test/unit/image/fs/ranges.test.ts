// The range and bitmap helpers behind every allocation reader, against naive references.
import { describe, it, expect } from '@jest/globals';
import { RangeBuilder, bitRuns, clip, normalize, subtract, totalBytes, type Range } from '../../../../services/image/fs/ranges.ts';

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 2 ** 32; };
}
const toSet = (rs: readonly Range[]): Set<number> => { const s = new Set<number>(); for (const [a, b] of rs) for (let i = a; i < b; i++) s.add(i); return s; };

describe('ranges', () => {
  it('normalize sorts and merges touching and overlapping ranges, drops empty ones', () => {
    expect(normalize([[5, 7], [0, 2], [2, 3], [6, 9], [10, 10], [12, 11]])).toEqual([[0, 3], [5, 9]]);
  });

  it('RangeBuilder merges in order and repairs out-of-order input', () => {
    const b = new RangeBuilder();
    b.add(0, 4); b.add(4, 8); b.add(6, 7); b.add(10, 12);
    expect(b.done()).toEqual([[0, 8], [10, 12]]);
    const c = new RangeBuilder();
    c.add(10, 12); c.add(0, 4); c.add(3, 11);
    expect(c.done()).toEqual([[0, 12]]);
  });

  it('subtract, clip and totalBytes agree with a set model', () => {
    const next = rng(7);
    for (let t = 0; t < 200; t++) {
      const mk = (): Range[] => normalize(Array.from({ length: Math.floor(next() * 6) }, () => { const a = Math.floor(next() * 100); return [a, a + Math.floor(next() * 20)] as Range; }));
      const a = mk();
      const b = mk();
      const sa = toSet(a);
      const sb = toSet(b);
      const diff = subtract(a, b);
      expect(toSet(diff)).toEqual(new Set([...sa].filter((x) => !sb.has(x))));
      expect(normalize(diff)).toEqual(diff);
      expect(toSet(clip(a, 30, 60))).toEqual(new Set([...sa].filter((x) => x >= 30 && x < 60)));
      const lo = Math.floor(next() * 120);
      const hi = lo + Math.floor(next() * 40);
      expect(toSet(clip(a, lo, hi))).toEqual(new Set([...sa].filter((x) => x >= lo && x < hi)));
      expect(totalBytes(a)).toBe(sa.size);
    }
  });

  it('bitRuns finds every run of set bits, LSB first, and counts them', () => {
    const next = rng(11);
    for (let t = 0; t < 200; t++) {
      const buf = Buffer.from(Array.from({ length: 1 + Math.floor(next() * 20) }, () => [0, 0xff, Math.floor(next() * 256)][Math.floor(next() * 3)] as number));
      const nbits = Math.floor(next() * (buf.length * 8 + 1));
      const runs: Range[] = [];
      const n = bitRuns(buf, nbits, 1000, (a, b) => runs.push([a, b]));
      const want: number[] = [];
      for (let i = 0; i < nbits; i++) if (((buf[i >> 3] as number) >> (i & 7)) & 1) want.push(1000 + i);
      expect(n).toBe(want.length);
      expect([...toSet(runs)].sort((x, y) => x - y)).toEqual(want);
      expect(normalize(runs)).toEqual(runs); // maximal, ordered runs
    }
  });
});
