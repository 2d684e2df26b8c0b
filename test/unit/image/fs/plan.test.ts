// planDisk on real disk files (sfdisk tables, real filesystems): per-partition policies, and the
// disk-level used ranges hold the partition table, the GPT backup, gaps, EBRs and raw partitions
// whole, plus the filesystems' used blocks; deleted files' data is left out.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { manifestAllocations, planDisk, type DiskPlan } from '../../../../services/image/fs/index.ts';
import { readPartitionTable } from '../../../../services/image/partition/table.ts';
import { MiB, covered, fileReader, hasTool, makeDisk, makeFat, fileSet, scanMarkers, tempDir, type BuiltDisk } from './helpers.ts';

const tools = ['sfdisk', 'mkfs.ext4', 'mkfs.fat', 'mkntfs', 'mkswap', 'mcopy', 'ntfscp'].every(hasTool);
const d = tools ? describe : describe.skip;

let work: string;
beforeAll(() => { work = tempDir('plan'); });
afterAll(() => { rmSync(work, { recursive: true, force: true }); });

async function plan(path: string): Promise<{ plan: DiskPlan; raw: { offset: number; data: Buffer }[] }> {
  const f = fileReader(path);
  try {
    const table = await readPartitionTable(f.readAt, f.size, 512);
    return { plan: await planDisk(f.readAt, table, f.size), raw: table.raw };
  } finally { f.close(); }
}

function checkMarkers(disk: BuiltDisk, p: DiskPlan): void {
  const marks = scanMarkers(disk.path);
  for (const part of disk.parts) {
    if (part.fs === 'none') {
      const at = [...marks.entries()].filter(([t]) => t.endsWith('raw') && t.startsWith(`${disk.path.split('/').pop()!.slice(0, 3)}${part.index}`)).flatMap(([, o]) => o);
      expect(at.length).toBe(512);
      expect(at.filter((o) => !covered(p.ranges, o))).toEqual([]);
      continue;
    }
    if (part.fs === 'swap') continue;
    for (const [tag] of part.files.keep) {
      const at = marks.get(tag) ?? [];
      expect(at.length).toBeGreaterThan(0);
      expect(at.filter((o) => !covered(p.ranges, o))).toEqual([]);
    }
    for (const [tag] of part.files.del) {
      const at = marks.get(tag) ?? [];
      expect(at.length).toBeGreaterThan(0);
      expect(at.filter((o) => covered(p.ranges, o))).toEqual([]);
    }
  }
}

d('planDisk', () => {
  it('GPT: ext4, FAT16, swap, NTFS, an unformatted partition, with gaps', async () => {
    const disk = makeDisk(work, 'gpt', 'gpt', [
      { fs: 'ext4', size: 32 * MiB, type: 'L' },
      { fs: 'fat16', size: 24 * MiB, type: 'U', gapBefore: 2 * MiB },
      { fs: 'swap', size: 8 * MiB, type: 'S' },
      { fs: 'ntfs', size: 24 * MiB, type: 'EBD0A0A2-B9E5-4433-87C0-68B9B72699C7' },
      { fs: 'none', size: 4 * MiB, type: 'L' },
    ], 3 * MiB);
    const { plan: p } = await plan(disk.path);
    expect(p.partitions.map((x) => [x.index, x.allocation.policy])).toEqual([[1, 'ext4'], [2, 'fat16'], [3, 'raw'], [4, 'ntfs'], [5, 'raw']]);
    expect(p.partitions[2]!.allocation.reason).toMatch(/swap/i);
    expect(p.partitions[4]!.allocation.reason).toMatch(/no supported filesystem/);
    const [p1, p2, p3, p4, p5] = disk.parts as [BuiltDisk['parts'][0], BuiltDisk['parts'][0], BuiltDisk['parts'][0], BuiltDisk['parts'][0], BuiltDisk['parts'][0]];
    // table area, the gap, raw partitions and the tail (with the GPT backup) are used whole
    for (const [s, e] of [[0, p1.start], [p1.start + p1.size, p2.start], [p3.start, p3.start + p3.size], [p5.start, disk.size]] as const) {
      expect(covered(p.ranges, s, e - s)).toBe(true);
    }
    // each filesystem partition contributes exactly its allocation
    let sum = p1.start + (p2.start - p1.start - p1.size) + p3.size + (disk.size - p5.start);
    for (const x of [p.partitions[0]!, p.partitions[1]!, p.partitions[3]!]) sum += x.allocation.usedBytes;
    expect(p.usedBytes).toBe(sum);
    expect(p.usedBytes).toBeLessThan(disk.size / 2);
    expect(p4.size).toBe(24 * MiB);
    checkMarkers(disk, p);
    expect(manifestAllocations(p)).toEqual(p.partitions.map((x) => ({ index: x.index, policy: x.allocation.policy, reason: x.allocation.reason, usedBytes: x.allocation.usedBytes })));
    rmSync(disk.path);
  });

  it('MBR: FAT32 primary, extended with ext4 (1 KiB blocks) and FAT12 logicals: EBRs stay used', async () => {
    const disk = makeDisk(work, 'mbr', 'dos', [
      { fs: 'fat32', size: 40 * MiB, type: 'c' },
      { fs: 'ext4-1k', size: 16 * MiB, type: '83', logical: true },
      { fs: 'fat12', size: 4 * MiB, type: '1', logical: true },
    ]);
    const { plan: p, raw } = await plan(disk.path);
    expect(p.partitions.map((x) => [x.index, x.allocation.policy])).toEqual([[1, 'fat32'], [2, 'raw'], [5, 'ext4'], [6, 'fat12']]);
    const ext = p.partitions[1]!;
    expect(ext.allocation.reason).toMatch(/extended partition container/);
    expect(ext.allocation.ranges).toEqual([]);
    expect(ext.allocation.usedBytes).toBe(2 * MiB); // the 1 MiB before each logical (its EBR and alignment gap)
    expect(raw.length).toBe(3); // MBR + 2 EBRs
    for (const r of raw) expect(covered(p.ranges, r.offset, r.data.length)).toBe(true);
    checkMarkers(disk, p);
    rmSync(disk.path);
  });

  it('a disk without a partition table holding a filesystem ("superfloppy") is planned as one', async () => {
    const img = join(work, 'floppy.img');
    makeFat(work, img, 8 * 1024, 16, ['-s', '1'], fileSet('fl', 2, 1));
    const { plan: p } = await plan(img);
    expect(p.partitions.map((x) => x.allocation.policy)).toEqual(['fat16']);
    expect(p.usedBytes).toBe(p.partitions[0]!.allocation.usedBytes);
    expect(p.usedBytes).toBeLessThan(8 * MiB);
    rmSync(img);
  });

  it('an unknown disk is used whole; hostile tables are clipped to the disk', async () => {
    const readAt = async (o: number, l: number): Promise<Buffer> => Buffer.alloc(Math.max(0, Math.min(l, 10 * MiB - o)));
    const none = await planDisk(readAt, { kind: 'none', partitions: [] }, 10 * MiB);
    expect(none.ranges).toEqual([[0, 10 * MiB]]);
    expect(none.partitions[0]!.allocation.policy).toBe('raw');
    const weird = await planDisk(readAt, { kind: 'gpt', partitions: [
      { index: 1, start: 9 * MiB, size: 4 * MiB, type: '0fc63daf-8483-4772-8e79-3d69d8477de4' },
      { index: 2, start: 20 * MiB, size: MiB, type: '0fc63daf-8483-4772-8e79-3d69d8477de4' },
    ] }, 10 * MiB);
    expect(weird.ranges).toEqual([[0, 10 * MiB]]);
    expect(weird.partitions[0]!.allocation.reason).toMatch(/clipped/);
  });
});
