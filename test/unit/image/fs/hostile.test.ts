// Hostile input: real small filesystems with their metadata corrupted at random (seeded), and
// readers that fail, return short reads or garbage. allocationFor must always resolve, quickly,
// with a well-formed allocation inside the partition; it never throws.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { allocationFor, type Allocation, type ReadAt } from '../../../../services/image/fs/index.ts';
import { decodeNtfsBoot } from '../../../../services/image/fs/ntfs.ts';
import { MiB, fileSet, hasTool, makeExt, makeFat, makeNtfs, tempDir } from './helpers.ts';

const tools = hasTool('mkfs.ext4') && hasTool('mkfs.fat') && hasTool('mkntfs') && hasTool('mcopy') && hasTool('ntfscp');
const d = tools ? describe : describe.skip;

function memReader(disk: Buffer, edits: [number, Buffer][] = []): ReadAt {
  return async (offset, length) => {
    const out = Buffer.from(disk.subarray(Math.min(offset, disk.length), Math.min(offset + length, disk.length)));
    for (const [at, b] of edits) {
      for (let i = 0; i < b.length; i++) if (at + i >= offset && at + i < offset + out.length) out[at + i - offset] = b[i] as number;
    }
    return out;
  };
}

/** xorshift32, seeded: failures are reproducible */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 2 ** 32; };
}

function wellFormed(a: Allocation, start: number, size: number): void {
  expect(['ext4', 'ext3', 'ext2', 'fat12', 'fat16', 'fat32', 'ntfs', 'raw']).toContain(a.policy);
  expect(typeof a.reason).toBe('string');
  expect(a.reason.length).toBeGreaterThan(0);
  let prev = -1;
  let sum = 0;
  for (const [s, e] of a.ranges) {
    expect(s).toBeGreaterThan(prev); // sorted, disjoint and not touching
    expect(e).toBeGreaterThan(s);
    expect(s).toBeGreaterThanOrEqual(start);
    expect(e).toBeLessThanOrEqual(start + size);
    sum += e - s;
    prev = e;
  }
  expect(a.usedBytes).toBe(sum);
}

let work: string;
const images: Record<string, { disk: Buffer; hot: [number, number][] }> = {};

beforeAll(() => {
  if (!tools) return;
  work = tempDir('hostile');
  const e1 = join(work, 'e1.img');
  makeExt(work, e1, 4 * MiB, 'mkfs.ext4', ['-b', '1024', '-g', '1024'], fileSet('h', 3, 1, 40 * 1024));
  const e4 = join(work, 'e4.img');
  makeExt(work, e4, 12 * MiB, 'mkfs.ext4', ['-b', '4096', '-g', '1024', '-O', '64bit'], fileSet('h', 3, 1, 40 * 1024));
  const f12 = join(work, 'f12.img');
  makeFat(work, f12, 2000, 12, [], fileSet('h', 3, 1, 40 * 1024));
  const f32 = join(work, 'f32.img');
  makeFat(work, f32, 34 * 1024, 32, ['-s', '1'], fileSet('h', 3, 1, 40 * 1024));
  const n = join(work, 'n.img');
  makeNtfs(work, n, 8 * MiB, [], fileSet('h', 3, 1, 40 * 1024));
  const nd = readFileSync(n);
  const nb = decodeNtfsBoot(nd.subarray(0, 512), nd.length);
  const mft = nb.mftLcn * nb.clusterSize;
  images.ext1k = { disk: readFileSync(e1), hot: [[1024, 1024 + 1024], [2048, 4096], [0, 64 * 1024]] };
  images.ext4k = { disk: readFileSync(e4), hot: [[1024, 2048], [4096, 8192], [0, 128 * 1024]] };
  images.fat12 = { disk: readFileSync(f12), hot: [[0, 512], [512, 512 + 6 * 512]] };
  images.fat32 = { disk: readFileSync(f32), hot: [[0, 512], [32 * 512, 32 * 512 + 65536]] };
  images.ntfs = { disk: nd, hot: [[0, 512], [mft, mft + 16 * nb.recordSize]] };
});
afterAll(() => { if (work) rmSync(work, { recursive: true, force: true }); });

d('corrupted metadata never throws or hangs', () => {
  for (const name of ['ext1k', 'ext4k', 'fat12', 'fat32', 'ntfs']) {
    it(`${name}: 400 seeded corruptions`, async () => {
      const { disk, hot } = images[name] as { disk: Buffer; hot: [number, number][] };
      const clean = await allocationFor(memReader(disk), { start: 0, size: disk.length });
      expect(clean.policy).not.toBe('raw');
      const next = rng(0xc0ffee ^ name.length * 977);
      const policies = new Map<string, number>();
      const t0 = performance.now();
      for (let iter = 0; iter < 400; iter++) {
        const edits: [number, Buffer][] = [];
        const n = 1 + Math.floor(next() * 6);
        for (let k = 0; k < n; k++) {
          const [a, b] = hot[Math.floor(next() * hot.length)] as [number, number];
          const at = a + Math.floor(next() * (b - a - 4));
          const mode = Math.floor(next() * 4);
          const v = Buffer.alloc(4);
          v.writeUInt32LE(Math.floor(next() * 2 ** 32));
          if (mode === 0) edits.push([at, v.subarray(0, 1)]);
          else if (mode === 1) edits.push([at, v]);
          else edits.push([at, Buffer.alloc(4, mode === 2 ? 0xff : 0)]);
        }
        const a = await allocationFor(memReader(disk, edits), { start: 0, size: disk.length }, { force: next() < 0.5 });
        wellFormed(a, 0, disk.length);
        policies.set(a.policy, (policies.get(a.policy) ?? 0) + 1);
      }
      expect(performance.now() - t0).toBeLessThan(60_000);
      expect(policies.get('raw') ?? 0).toBeGreaterThan(0); // the corruptions were noticed at least sometimes
    });
  }
});

d('failing and lying readers', () => {
  it('a reader that throws, returns short, or returns no Buffer gives raw with a reason', async () => {
    const { disk } = images.ext1k as { disk: Buffer };
    const size = disk.length;
    const throwing: ReadAt = async (o, l) => { if (o > 8192) throw new Error('EIO'); return disk.subarray(o, o + l); };
    const short: ReadAt = async (o, l) => disk.subarray(o, o + Math.min(l, 700));
    const notBuffer = (async () => 'nope') as unknown as ReadAt;
    for (const r of [throwing, short, notBuffer]) {
      const a = await allocationFor(r, { start: 0, size });
      wellFormed(a, 0, size);
      expect(a.policy).toBe('raw');
      expect(a.ranges).toEqual([[0, size]]);
    }
    const t = await allocationFor(throwing, { start: 0, size });
    expect(t.reason).toMatch(/EIO/);
  });

  it('a partition past the end of the disk, or with nonsense extents', async () => {
    const { disk } = images.fat12 as { disk: Buffer };
    const off = await allocationFor(memReader(disk), { start: disk.length - 4096, size: 1 << 30 });
    wellFormed(off, disk.length - 4096, 1 << 30);
    expect(off.policy).toBe('raw');
    for (const p of [{ start: -1, size: 10 }, { start: 0, size: Number.NaN }, { start: 0.5, size: 4096 }]) {
      const a = await allocationFor(memReader(disk), p);
      expect(a.policy).toBe('raw');
      expect(a.ranges).toEqual([]);
    }
    const tiny = await allocationFor(memReader(disk), { start: 0, size: 100 });
    expect(tiny).toEqual({ policy: 'raw', reason: expect.stringMatching(/too small/), usedBytes: 100, ranges: [[0, 100]] });
  });

  it('the same filesystem at a partition offset gives the same ranges, shifted', async () => {
    for (const name of ['ext4k', 'fat32', 'ntfs']) {
      const { disk } = images[name] as { disk: Buffer };
      const at = 3 * MiB;
      const big = Buffer.concat([Buffer.alloc(at), disk, Buffer.alloc(MiB)]);
      const a = await allocationFor(memReader(disk), { start: 0, size: disk.length });
      const b = await allocationFor(memReader(big), { start: at, size: disk.length });
      expect(b.policy).toBe(a.policy);
      expect(b.ranges).toEqual(a.ranges.map(([s, e]) => [s + at, e + at]));
    }
  });
});
