// The multicast chunk table and the Bits bitset (services/multicast/chunks.ts).
import { describe, it, expect } from '@jest/globals';
import { createHash } from 'node:crypto';
import { Bits, chunkTable } from '../../../services/multicast/chunks.ts';
import { extentsFrom, MANIFEST_FORMAT, MANIFEST_VERSION, type Manifest } from '../../../services/image/manifest.ts';

const h = (s: string): string => createHash('sha256').update(s).digest('hex');
const A = h('A'), B = h('B'), C = h('C'), D = h('D');
const BS = 65536;

/** A hand-built manifest with the given per-block hashes (null = hole) and disk size. */
function manifest(blocks: (string | null)[], size = blocks.length * BS): Manifest {
  const data = blocks.filter((b) => b !== null);
  return {
    format: MANIFEST_FORMAT, version: MANIFEST_VERSION, name: 'mc-test', createdAt: '2026-01-01T00:00:00.000Z',
    source: { path: '/dev/null', kind: 'file' },
    disk: { size, sectorSize: 512 },
    blockSize: BS,
    compression: { algorithm: 'zstd', level: 3 },
    partitionTable: { kind: 'none', partitions: [], raw: [], warnings: [] },
    extents: extentsFrom(blocks),
    stats: { blocks: blocks.length, dataBlocks: data.length, holeBlocks: blocks.length - data.length, uniqueChunks: new Set(data).size },
  };
}

describe('chunkTable', () => {
  it('lists unique chunks in first-use order, with their blocks and lengths (repeats, holes, short last block)', () => {
    //            0  1  2  3     4  5     6     7  8
    const blocks = [A, B, A, null, B, C, null, null, D];
    const m = manifest(blocks, 8 * BS + 1000); // block 8 is 1000 bytes
    expect(m.extents).toHaveLength(3);
    expect(chunkTable(m)).toEqual([
      { index: 0, hash: A, length: BS, blocks: [0, 2] },
      { index: 1, hash: B, length: BS, blocks: [1, 4] },
      { index: 2, hash: C, length: BS, blocks: [5] },
      { index: 3, hash: D, length: 1000, blocks: [8] },
    ]);
  });

  it('first use decides the order, not the hash or the extent order in the manifest', () => {
    const m = manifest([D, null, C, B, A, D, A]);
    m.extents.reverse(); // extents need not be listed in disk order for the table to be in block order
    const t = chunkTable(m);
    expect(t.map((e) => e.hash)).toEqual([D, C, B, A]);
    expect(t.map((e) => e.index)).toEqual([0, 1, 2, 3]);
    expect(t.map((e) => e.blocks)).toEqual([[0, 5], [2], [3], [4, 6]]);
  });

  it('every data block appears in exactly one entry, holes in none', () => {
    const blocks = [A, null, A, A, null, B, B, null, C, A];
    const t = chunkTable(manifest(blocks, 9 * BS + 512));
    const covered = t.flatMap((e) => e.blocks).sort((x, y) => x - y);
    expect(covered).toEqual(blocks.flatMap((b, i) => (b ? [i] : [])));
    expect(t.find((e) => e.hash === A)).toEqual({ index: 0, hash: A, length: BS, blocks: [0, 2, 3, 9] });
  });

  it('a short last block that is a hole does not matter', () => {
    expect(chunkTable(manifest([A, A, null], 2 * BS + 4096))).toEqual([{ index: 0, hash: A, length: BS, blocks: [0, 1] }]);
  });

  it('a single short block', () => {
    expect(chunkTable(manifest([B], 512))).toEqual([{ index: 0, hash: B, length: 512, blocks: [0] }]);
  });

  it('an all-hole image has no chunks', () => {
    expect(chunkTable(manifest([null, null, null]))).toEqual([]);
  });
});

describe('Bits', () => {
  it.each([1, 5, 31, 32, 33, 64, 70, 100])('set/has/clear/count/full over %i bits', (size) => {
    const b = new Bits(size);
    expect(b.size).toBe(size);
    expect(b.count).toBe(0);
    expect(b.full()).toBe(false);
    expect(b.gaps(10)).toEqual([[0, size]]);
    for (let i = 0; i < size; i++) {
      expect(b.has(i)).toBe(false);
      expect(b.set(i)).toBe(true);
      expect(b.has(i)).toBe(true);
      expect(b.set(i)).toBe(false); // already set
      expect(b.count).toBe(i + 1);
    }
    expect(b.full()).toBe(true);
    expect(b.gaps(10)).toEqual([]);
    for (let i = size - 1; i >= 0; i -= 2) {
      expect(b.clear(i)).toBe(true);
      expect(b.clear(i)).toBe(false); // already clear
      expect(b.has(i)).toBe(false);
    }
    expect(b.count).toBe(size - Math.ceil(size / 2));
    expect(b.full()).toBe(false);
    for (let i = 0; i < size; i++) expect(b.has(i)).toBe((size - 1 - i) % 2 === 1);
  });

  it('bit 31 and bit 32 live in different words and do not disturb each other', () => {
    const b = new Bits(64);
    b.set(31);
    expect([b.has(30), b.has(31), b.has(32), b.has(0)]).toEqual([false, true, false, false]);
    b.set(32);
    b.clear(31);
    expect([b.has(31), b.has(32), b.count]).toEqual([false, true, 1]);
  });

  it('ignores out-of-range indices: set/clear return false, count unchanged, has is false', () => {
    for (const size of [0, 1, 33, 70]) {
      const b = new Bits(size);
      for (const i of [-1, -32, size, size + 1, Math.ceil(size / 32) * 32 - 1, Math.ceil(size / 32) * 32, 2 ** 31, 2 ** 32 + 1]) {
        if (i >= 0 && i < size) continue;
        expect(b.set(i)).toBe(false);
        expect(b.has(i)).toBe(false);
        expect(b.clear(i)).toBe(false);
        expect(b.count).toBe(0);
      }
      if (size > 0) {
        b.setAll();
        for (const i of [-1, size, size + 5]) {
          expect(b.clear(i)).toBe(false);
          expect(b.has(i)).toBe(false);
        }
        expect(b.count).toBe(size);
        expect(b.full()).toBe(true);
      }
    }
  });

  it('a zero-size set is full and has no gaps', () => {
    const b = new Bits(0);
    expect(b.full()).toBe(true);
    expect(b.gaps(10)).toEqual([]);
    b.setAll();
    expect(b.count).toBe(0);
  });

  it('setAll sets exactly size bits (size not a multiple of 32) and is idempotent', () => {
    for (const size of [1, 31, 33, 70]) {
      const b = new Bits(size);
      b.set(3 % size);
      b.setAll();
      b.setAll();
      expect(b.count).toBe(size);
      expect(b.full()).toBe(true);
      expect(b.has(size)).toBe(false);
    }
  });

  it('gaps reports clear ranges [first, count] in order, including one that runs to the end, and respects max', () => {
    const b = new Bits(70);
    for (const i of [0, 1, 5, 31, 32, 40]) b.set(i);
    // clear: 2-4, 6-30, 33-39, 41-69
    const all: [number, number][] = [[2, 3], [6, 25], [33, 7], [41, 29]];
    expect(b.gaps(100)).toEqual(all);
    for (let max = 0; max <= 5; max++) expect(b.gaps(max)).toEqual(all.slice(0, max));
  });

  it('gaps over a checkerboard: one gap per clear bit, across word boundaries', () => {
    const b = new Bits(67);
    for (let i = 0; i < 67; i += 2) b.set(i);
    expect(b.gaps(1000)).toEqual(Array.from({ length: 33 }, (_, k) => [2 * k + 1, 1]));
    expect(b.gaps(16)).toHaveLength(16);
  });
});
