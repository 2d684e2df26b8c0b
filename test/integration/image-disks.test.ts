// Capture and restore of real disks: GPT with ext4 + FAT32, MBR with a logical partition.
// Restores must be bit-exact over the whole disk and fsck-clean; the manifest must describe the
// partition table as sfdisk sees it.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore, captureImage, restoreImage } from '../../services/image/index.ts';
import { makeTree, makeGptDisk, makeMbrDisk, extractPart, sh, type TestDisk } from '../helpers/disks.ts';

let work: string;
let store: ImageStore;
let gpt: TestDisk;
let mbr: TestDisk;

function sameFiles(a: string, b: string): boolean {
  try { execFileSync('cmp', ['-s', a, b], { stdio: 'ignore' }); return true; } catch { return false; }
}

function countChunks(root: string): number {
  return readdirSync(join(root, 'chunks')).reduce((n, d) => n + readdirSync(join(root, 'chunks', d)).filter((f) => f.endsWith('.zst')).length, 0);
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'rc-test-disks-'));
  const tree = makeTree(join(work, 'tree'));
  gpt = makeGptDisk(work, tree);
  mbr = makeMbrDisk(work, tree);
  store = ImageStore.open(join(work, 'store'));
});

afterAll(() => { rmSync(work, { recursive: true, force: true }); });

describe('GPT disk with ext4 and FAT32', () => {
  it('captures, restores bit-exact, and both filesystems are fsck-clean', async () => {
    const cap = await captureImage({ store, source: gpt.path, name: 'gpt-ref' });
    const m = cap.image.manifest;
    expect(m.disk.size).toBe(gpt.size);
    expect(m.stats.holeBlocks).toBeGreaterThan(0); // free space between and after partitions
    const target = join(work, 'gpt-restored.img');
    await restoreImage({ store, name: 'gpt-ref', target });
    expect(sameFiles(gpt.path, target)).toBe(true);
    expect(() => sh('e2fsck', ['-fn', extractPart(target, gpt.parts[0]!, join(work, 'p1.ext4'))])).not.toThrow();
    expect(() => sh('fsck.vfat', ['-n', extractPart(target, gpt.parts[1]!, join(work, 'p2.vfat'))])).not.toThrow();
    // the file tree is there: read a file back out of the restored FAT with mtools
    const hostname = sh('mtype', ['-i', join(work, 'p2.vfat'), '::/etc/hostname']);
    expect(hostname).toBe('rack-node-01\n');
    const ls = sh('debugfs', ['-R', 'cat /etc/hostname', join(work, 'p1.ext4')]);
    expect(ls).toContain('rack-node-01');
  });

  it('records the partition table the way sfdisk sees it', async () => {
    const m = store.open('gpt-ref').manifest;
    const sf = JSON.parse(sh('sfdisk', ['--json', gpt.path])).partitiontable;
    expect(m.partitionTable.kind).toBe('gpt');
    expect(m.partitionTable.diskId?.toLowerCase()).toBe(sf.id.toLowerCase());
    expect(m.partitionTable.partitions.map((p) => ({ start: p.start / 512, size: p.size / 512, type: p.type, uuid: p.uuid, name: p.name })))
      .toEqual(sf.partitions.map((p: Record<string, string | number>) => ({ start: p.start, size: p.size, type: String(p.type).toLowerCase(), uuid: String(p.uuid).toLowerCase(), name: p.name })));
    // raw regions: protective MBR, primary header + entries, backup entries + header
    const raw = m.partitionTable.raw;
    expect(raw[0]?.offset).toBe(0);
    expect(raw.some((r) => r.offset === 512 && Buffer.from(r.data, 'base64').subarray(0, 8).toString() === 'EFI PART')).toBe(true);
    expect(raw.some((r) => r.offset === gpt.size - 512)).toBe(true);
    const disk = readFileSync(gpt.path);
    for (const r of raw) {
      const bytes = Buffer.from(r.data, 'base64');
      expect(disk.subarray(r.offset, r.offset + bytes.length).equals(bytes)).toBe(true);
    }
  });

  it('dedups: capturing the same disk again adds no chunk', async () => {
    const before = countChunks(store.root);
    const again = await captureImage({ store, source: gpt.path, name: 'gpt-ref-again' });
    expect(countChunks(store.root)).toBe(before);
    expect(again.newChunks).toBe(0);
    expect(again.image.manifest.extents).toEqual(store.open('gpt-ref').manifest.extents);
  });

  it('restores onto an existing larger file and zeroes what the image has as holes', async () => {
    const target = join(work, 'dirty.img');
    // a "used" disk: non-zero garbage everywhere, larger than the image
    execFileSync('sh', ['-c', `yes rackcast | head -c ${gpt.size + 4 * 1024 * 1024} > ${target}`]);
    const r = await restoreImage({ store, name: 'gpt-ref', target });
    expect(r.table).toMatch(/backup GPT moved/);
    // equal to the source over its size, except what fitting the GPT to the larger disk rewrites:
    // the protective MBR's size field, the primary header (LBA 1) and the old backup (last 33 sectors)
    const want = readFileSync(gpt.path);
    const got = readFileSync(target).subarray(0, gpt.size);
    expect(got.subarray(1024, gpt.size - 33 * 512).equals(want.subarray(1024, gpt.size - 33 * 512))).toBe(true);
    expect(got.subarray(0, 446).equals(want.subarray(0, 446))).toBe(true);
    expect(got.subarray(gpt.size - 33 * 512).every((b) => b === 0)).toBe(true);
    sh('sfdisk', ['--verify', target]);
  });
});

describe('MBR disk with an extended partition', () => {
  it('captures logical partitions and restores bit-exact', async () => {
    const cap = await captureImage({ store, source: mbr.path, name: 'mbr-ref' });
    const pt = cap.image.manifest.partitionTable;
    expect(pt.kind).toBe('mbr');
    const byIndex = Object.fromEntries(pt.partitions.map((p) => [p.index, p]));
    expect(byIndex[1]).toMatchObject({ start: 1 << 20, size: 40 << 20, type: '0x83', bootable: true });
    expect(byIndex[5]).toMatchObject({ start: 50 << 20, size: 40 << 20, type: '0x0c' });
    const target = join(work, 'mbr-restored.img');
    await restoreImage({ store, name: 'mbr-ref', target });
    expect(sameFiles(mbr.path, target)).toBe(true);
    expect(() => sh('e2fsck', ['-fn', extractPart(target, mbr.parts[0]!, join(work, 'm1.ext4'))])).not.toThrow();
    expect(() => sh('fsck.vfat', ['-n', extractPart(target, mbr.parts[1]!, join(work, 'm5.vfat'))])).not.toThrow();
  });
});
