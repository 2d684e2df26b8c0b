// NTFS used blocks on real volumes made by mkntfs and filled with ntfscp (ntfs-3g; no mounts):
// the used byte count equals partclone's plus the sector(s) past the last cluster (the backup
// boot sector, which partclone.ntfs does not count); kept files are inside the used ranges,
// files truncated to nothing by ntfstruncate are not; dirty volumes are refused unless forced.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { closeSync, copyFileSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Allocation } from '../../../../services/image/fs/index.ts';
import { decodeNtfsBoot } from '../../../../services/image/fs/ntfs.ts';
import { MiB, fileSet, hasTool, makeNtfs, markNtfsDirty, partcloneUsed, shAll, tempDir, expectMarkersCovered, allocFile as alloc } from './helpers.ts';

const tools = hasTool('mkntfs') && hasTool('ntfscp') && hasTool('ntfstruncate') && hasTool('partclone.ntfs');
const d = tools ? describe : describe.skip;

interface Case { name: string; size: number; args: string[] }
const CASES: Case[] = [
  { name: '4 KiB clusters', size: 96 * MiB, args: [] },
  { name: '512-byte clusters (MFT records span two clusters)', size: 64 * MiB, args: ['-c', '512'] },
  { name: '64 KiB clusters', size: 128 * MiB, args: ['-c', '65536'] },
  { name: '4 KiB sectors', size: 96 * MiB, args: ['-s', '4096'] },
];

let work: string;
beforeAll(() => { work = tempDir('ntfs'); });
afterAll(() => { rmSync(work, { recursive: true, force: true }); });

d('NTFS on real volumes', () => {
  for (const [i, c] of CASES.entries()) {
    it(`${c.name}: used bytes = partclone's + the tail; kept files in, deleted files out`, async () => {
      const img = join(work, `ntfs${i}.img`);
      const files = fileSet(`n${i}`, 4, 3);
      makeNtfs(work, img, c.size, c.args, files);
      expect(shAll('ntfsfix', ['-n', img]).status).toBe(0);
      const a = await alloc(img);
      expect(a.policy).toBe('ntfs');
      const pc = partcloneUsed('partclone.ntfs', img, work);
      const boot = decodeNtfsBoot(readFileSync(img).subarray(0, 512), c.size);
      expect(pc.deviceBytes).toBe(boot.clusters * boot.clusterSize);
      expect(a.usedBytes).toBe(pc.usedBytes + (c.size - pc.deviceBytes));
      expectMarkersCovered(img, a.ranges, files);
      rmSync(img);
    });
  }
});

d('NTFS special cases', () => {
  let img: string;
  let base: Allocation;
  beforeAll(async () => {
    img = join(work, 'special.img');
    makeNtfs(work, img, 48 * MiB, [], fileSet('s', 1, 0));
    base = await alloc(img);
  });

  it('refuses a volume marked dirty unless forced', async () => {
    const dirty = join(work, 'dirty.img');
    copyFileSync(img, dirty);
    markNtfsDirty(dirty);
    const a = await alloc(dirty);
    expect(a.policy).toBe('raw');
    expect(a.reason).toMatch(/dirty.*cannot be trusted/);
    const forced = await alloc(dirty, true);
    expect(forced.policy).toBe('ntfs');
    expect(forced.usedBytes).toBe(base.usedBytes);
  });

  it('refuses a torn MFT record (update sequence mismatch)', async () => {
    const torn = join(work, 'torn.img');
    copyFileSync(img, torn);
    const disk = readFileSync(img);
    const boot = decodeNtfsBoot(disk.subarray(0, 512), disk.length);
    const fd = openSync(torn, 'r+');
    writeSync(fd, Buffer.from([0x55, 0x55]), 0, 2, boot.mftLcn * boot.clusterSize + 6 * boot.recordSize + 510); // $Bitmap's first stride
    closeSync(fd);
    const a = await alloc(torn);
    expect(a.policy).toBe('raw');
    expect(a.reason).toMatch(/update sequence mismatch/);
  });
});
