// FAT12/16/32 used blocks on real volumes made by mkfs.fat and filled with mtools (no mounts):
// the used byte count equals partclone's (FAT16/32) and fsck.fat's cluster count (all three:
// partclone 0.3.23 miscounts FAT12, docs/decisions.md); kept files are inside the used ranges,
// deleted ones are not; bad clusters are not used; dirty volumes are refused unless forced.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { closeSync, copyFileSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { allocationFor, type Allocation } from '../../../../services/image/fs/index.ts';
import { decodeFatBpb } from '../../../../services/image/fs/fat.ts';
import { fileReader, fileSet, hasTool, makeFat, partcloneUsed, shAll, tempDir, expectMarkersCovered, allocFile as alloc } from './helpers.ts';

const tools = hasTool('mkfs.fat') && hasTool('mcopy') && hasTool('fsck.fat') && hasTool('partclone.fat');
const d = tools ? describe : describe.skip;

interface Case { name: string; bits: 12 | 16 | 32; kib: number; args: string[]; partclone: boolean }
const CASES: Case[] = [
  { name: 'FAT12, 2 KiB clusters', bits: 12, kib: 8000, args: [], partclone: false },
  { name: 'FAT12, 16 KiB clusters', bits: 12, kib: 40000, args: ['-s', '32'], partclone: false },
  { name: 'FAT16, 2 KiB clusters', bits: 16, kib: 40000, args: [], partclone: true },
  { name: 'FAT16, 512-byte clusters, 1 FAT', bits: 16, kib: 24000, args: ['-s', '1', '-f', '1'], partclone: true },
  { name: 'FAT32, 512-byte clusters', bits: 32, kib: 65536, args: ['-s', '1'], partclone: true },
  { name: 'FAT32, 4 KiB clusters', bits: 32, kib: 300 * 1024, args: ['-s', '8'], partclone: true },
];

let work: string;
beforeAll(() => { work = tempDir('fat'); });
afterAll(() => { rmSync(work, { recursive: true, force: true }); });

/** fsck.fat's view: bytes of the volume not in free clusters. */
function fsckUsedBytes(img: string, size: number): number {
  const r = shAll('fsck.fat', ['-n', img]);
  expect(r.status).toBe(0);
  const m = /(\d+)\/(\d+) clusters/.exec(r.out);
  if (!m) throw new Error(r.out);
  const bpb = decodeFatBpb(readFileSync(img).subarray(0, 512), size);
  return size - (Number(m[2]) - Number(m[1])) * bpb.sectorsPerCluster * bpb.bytesPerSector;
}

d('FAT on real volumes', () => {
  for (const [i, c] of CASES.entries()) {
    it(`${c.name}: used bytes = fsck.fat's${c.partclone ? ' = partclone\'s' : ''}; kept files in, deleted files out`, async () => {
      const img = join(work, `fat${i}.img`);
      const files = fileSet(`f${i}`, 4, 3, c.kib < 10000 ? 200 * 1024 : 300 * 1024);
      makeFat(work, img, c.kib, c.bits, c.args, files);
      const size = c.kib * 1024;
      const a = await alloc(img);
      expect(a.policy).toBe(`fat${c.bits}`);
      expect(a.usedBytes).toBe(fsckUsedBytes(img, size));
      if (c.partclone) {
        const pc = partcloneUsed('partclone.fat', img, work);
        expect(a.usedBytes).toBe(pc.usedBytes + (size - pc.deviceBytes));
      }
      expectMarkersCovered(img, a.ranges, files);
      rmSync(img);
    });
  }
});

d('FAT special cases', () => {
  let img: string;
  let base: Allocation;
  const size = 40000 * 1024;
  beforeAll(async () => {
    img = join(work, 'special16.img');
    makeFat(work, img, 40000, 16, [], fileSet('s', 2, 0));
    base = await alloc(img);
  });
  const patched = (name: string, edits: [number, Buffer][]): string => {
    const out = join(work, name);
    copyFileSync(img, out);
    const fd = openSync(out, 'r+');
    for (const [at, b] of edits) writeSync(fd, b, 0, b.length, at);
    closeSync(fd);
    return out;
  };
  const u16 = (v: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16LE(v); return b; };

  it('counts bad clusters as not used, and any other non-zero entry as used', async () => {
    const bpb = decodeFatBpb(readFileSync(img).subarray(0, 512), size);
    const fat = (k: number, c: number): number => (bpb.reservedSectors + k * bpb.fatSectors) * bpb.bytesPerSector + c * 2;
    const last = bpb.clusters + 1; // a free cluster at the end
    const badImg = patched('bad.img', [0, 1].map((k) => [fat(k, last), u16(0xfff7)]));
    const bad = await alloc(badImg);
    expect(bad.usedBytes).toBe(base.usedBytes);
    expect(bad.reason).toMatch(/1 bad clusters skipped/);
    const eoc = await alloc(patched('eoc.img', [0, 1].map((k) => [fat(k, last), u16(0xffff)])));
    expect(eoc.usedBytes).toBe(base.usedBytes + bpb.sectorsPerCluster * bpb.bytesPerSector);
  });

  it('refuses a volume marked dirty (boot sector state or FAT[1]) unless forced', async () => {
    const bpb = decodeFatBpb(readFileSync(img).subarray(0, 512), size);
    const dirtyBs = await alloc(patched('dirty-bs.img', [[0x25, Buffer.from([1])]]));
    expect(dirtyBs.policy).toBe('raw');
    expect(dirtyBs.reason).toMatch(/dirty.*cannot be trusted/);
    expect(dirtyBs.ranges).toEqual([[0, size]]);
    const fat1 = bpb.reservedSectors * bpb.bytesPerSector + 2;
    const notClean = patched('dirty-fat.img', [[fat1, u16(0x7fff)]]);
    expect((await alloc(notClean)).reason).toMatch(/not cleanly shut down/);
    const forced = await alloc(notClean, true);
    expect(forced.policy).toBe('fat16');
    expect(forced.usedBytes).toBe(base.usedBytes);
    expect(forced.reason).toMatch(/FORCED/);
  });

  it('refuses a BPB that claims more than the partition, or a FAT too small for its clusters', async () => {
    const f = fileReader(img);
    try {
      const small = await allocationFor(f.readAt, { start: 0, size: 20 * 1024 * 1024 }, {});
      expect(small.policy).toBe('raw');
      expect(small.reason).toMatch(/more than its partition/);
    } finally { f.close(); }
    const tiny = await alloc(patched('tinyfat.img', [[22, u16(1)]]));
    expect(tiny.policy).toBe('raw');
  });
});
