// ext2/3/4 used blocks on real filesystems made by e2fsprogs (no mounts): the used byte count
// equals partclone's, every sector of every kept file is inside the used ranges and no sector of
// a deleted file is; unclean filesystems are refused unless forced.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { openSync, writeSync, closeSync, readFileSync, rmSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { allocationFor } from '../../../../services/image/fs/index.ts';
import { decodeExtSuper, extHasSuper } from '../../../../services/image/fs/ext.ts';
import { MiB, fileReader, fileSet, hasTool, makeExt, partcloneUsed, sh, shAll, tempDir, expectMarkersCovered, allocFile as alloc } from './helpers.ts';

const tools = hasTool('mkfs.ext4') && hasTool('debugfs') && hasTool('partclone.ext4');
const d = tools ? describe : describe.skip;

/** ref: whose count to compare with; partclone 0.3.23 cannot read bigalloc (it refuses: "bitmap free count err"), so dumpe2fs's free count there */
interface Case { name: string; mkfs: string; args: string[]; size: number; policy: string; uninit?: boolean; ref?: 'dumpe2fs' }
const CASES: Case[] = [
  { name: 'ext4, 4 KiB blocks, flex_bg, 16 groups', mkfs: 'mkfs.ext4', args: ['-b', '4096', '-g', '8192'], size: 128 * MiB, policy: 'ext4', uninit: true },
  { name: 'ext4, 4 KiB blocks, no flex_bg', mkfs: 'mkfs.ext4', args: ['-b', '4096', '-g', '8192', '-O', '^flex_bg'], size: 128 * MiB, policy: 'ext4', uninit: true },
  { name: 'ext4, 4 KiB blocks, default 128 MiB groups', mkfs: 'mkfs.ext4', args: ['-b', '4096'], size: 300 * MiB, policy: 'ext4' },
  { name: 'ext4, 1 KiB blocks, flex_bg', mkfs: 'mkfs.ext4', args: ['-b', '1024'], size: 64 * MiB, policy: 'ext4', uninit: true },
  { name: 'ext4, 1 KiB blocks, no flex_bg', mkfs: 'mkfs.ext4', args: ['-b', '1024', '-O', '^flex_bg'], size: 64 * MiB, policy: 'ext4', uninit: true },
  { name: 'ext4, 64bit descriptors + meta_bg, 1 KiB blocks, 64 groups in 4 meta groups', mkfs: 'mkfs.ext4', args: ['-b', '1024', '-g', '1024', '-O', '64bit,meta_bg,^resize_inode'], size: 64 * MiB, policy: 'ext4', uninit: true },
  { name: 'ext4, 64bit, 4 KiB blocks, no sparse_super', mkfs: 'mkfs.ext4', args: ['-b', '4096', '-g', '4096', '-O', '64bit,^sparse_super,^resize_inode'], size: 96 * MiB, policy: 'ext4' },
  { name: 'ext4, bigalloc 16 KiB clusters', mkfs: 'mkfs.ext4', args: ['-b', '4096', '-O', 'bigalloc', '-C', '16384'], size: 128 * MiB, policy: 'ext4', ref: 'dumpe2fs' },
  { name: 'ext3, 4 KiB blocks', mkfs: 'mkfs.ext3', args: ['-b', '4096', '-g', '8192'], size: 96 * MiB, policy: 'ext3' },
  { name: 'ext2, 2 KiB blocks', mkfs: 'mkfs.ext2', args: ['-b', '2048'], size: 64 * MiB, policy: 'ext2' },
  { name: 'ext2, 1 KiB blocks, sparse_super2', mkfs: 'mkfs.ext2', args: ['-b', '1024', '-O', 'sparse_super2'], size: 48 * MiB, policy: 'ext2' },
];

let work: string;
beforeAll(() => { work = tempDir('ext'); });
afterAll(() => { rmSync(work, { recursive: true, force: true }); });

d('ext2/3/4 on real filesystems', () => {
  for (const [i, c] of CASES.entries()) {
    it(`${c.name}: used bytes = partclone's; kept files in, deleted files out`, async () => {
      const img = join(work, `ext${i}.img`);
      const files = fileSet(`e${i}`, 5, 4);
      makeExt(work, img, c.size, c.mkfs, c.args, files);
      expect(shAll('e2fsck', ['-fn', img]).status).toBe(0);
      const a = await alloc(img);
      expect(a.policy).toBe(c.policy);
      if (c.uninit) expect(a.reason).toMatch(/BLOCK_UNINIT/);
      if (c.ref === 'dumpe2fs') {
        const h = sh('dumpe2fs', ['-h', img]);
        const field = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(h)?.[1] ?? NaN);
        expect(a.usedBytes).toBe((field('Block count') - field('Free blocks')) * field('Block size'));
      } else {
        const pc = partcloneUsed('partclone.extfs', img, work);
        // partclone counts the blocks of the filesystem; bytes past its last block would be ours too
        expect(a.usedBytes).toBe(pc.usedBytes + (c.size - pc.deviceBytes));
      }
      expect(a.usedBytes).toBeLessThan(c.size / 2);
      expectMarkersCovered(img, a.ranges, files);
      rmSync(img);
    });
  }

  it('computes superblock backups like sparse_super (0, 1, powers of 3, 5, 7)', () => {
    const sb = Buffer.alloc(1024);
    sb.writeUInt16LE(0xef53, 56);
    sb.writeUInt32LE(8192 * 100, 4);
    sb.writeUInt32LE(1, 20);
    sb.writeUInt32LE(8192, 32);
    sb.writeUInt32LE(8192, 36);
    sb.writeUInt32LE(1024, 40);
    sb.writeUInt32LE(1, 76);
    sb.writeUInt16LE(256, 88);
    sb.writeUInt32LE(0x1, 100); // sparse_super
    const s = decodeExtSuper(sb, 8192 * 100 * 1024);
    expect(Array.from({ length: 100 }, (_, g) => g).filter((g) => extHasSuper(s, g))).toEqual([0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
  });
});

d('unclean ext filesystems', () => {
  let img: string;
  beforeAll(() => {
    img = join(work, 'dirty.img');
    makeExt(work, img, 32 * MiB, 'mkfs.ext4', ['-b', '1024'], fileSet('dd', 2, 1));
  });
  const patched = (name: string, fn: (sb: Buffer) => void): string => {
    const out = join(work, name);
    copyFileSync(img, out);
    const sb = readFileSync(img).subarray(1024, 2048);
    fn(sb);
    const fd = openSync(out, 'r+');
    writeSync(fd, sb, 0, 1024, 1024);
    closeSync(fd);
    return out;
  };

  it('refuses a filesystem not marked valid (mounted or crashed), unless forced', async () => {
    const f = patched('notvalid.img', (sb) => sb.writeUInt16LE(0, 58));
    const a = await alloc(f);
    expect(a.policy).toBe('raw');
    expect(a.reason).toMatch(/not cleanly unmounted.*cannot be trusted/);
    expect(a.usedBytes).toBe(32 * MiB);
    const forced = await alloc(f, true);
    expect(forced.policy).toBe('ext4');
    expect(forced.reason).toMatch(/FORCED/);
    expect(forced.usedBytes).toBe((await alloc(img)).usedBytes);
  });

  it('refuses a journal that needs recovery, and the error state', async () => {
    const rec = await alloc(patched('recover.img', (sb) => sb.writeUInt32LE(sb.readUInt32LE(96) | 0x4, 96)));
    expect(rec.policy).toBe('raw');
    expect(rec.reason).toMatch(/journal needs recovery/);
    const err = await alloc(patched('errors.img', (sb) => sb.writeUInt16LE(3, 58)));
    expect(err.policy).toBe('raw');
    expect(err.reason).toMatch(/errors/);
  });

  it('refuses a group whose descriptor free count disagrees with its bitmap, unless forced', async () => {
    const out = join(work, 'mismatch.img');
    copyFileSync(img, out);
    const gd = readFileSync(img).subarray(2048, 2048 + 32); // 1 KiB blocks: the GDT is block 2; group 0 first
    gd.writeUInt16LE(gd.readUInt16LE(0x0c) + 1, 0x0c);
    const fd = openSync(out, 'r+');
    writeSync(fd, gd, 0, 32, 2048);
    closeSync(fd);
    const a = await alloc(out);
    expect(a.policy).toBe('raw');
    expect(a.reason).toMatch(/group 0's descriptor counts \d+ free clusters, its bitmap \d+/);
    const forced = await alloc(out, true);
    expect(forced.policy).toBe('ext4');
    expect(forced.usedBytes).toBe((await alloc(img)).usedBytes);
  });

  it('refuses unknown incompatible features and a filesystem larger than its partition', async () => {
    const unk = await alloc(patched('unknown.img', (sb) => sb.writeUInt32LE(sb.readUInt32LE(96) | 0x40000000, 96)));
    expect(unk.policy).toBe('raw');
    expect(unk.reason).toMatch(/unknown/);
    const f = fileReader(img);
    try {
      const small = await allocationFor(f.readAt, { start: 0, size: 16 * MiB }, {});
      expect(small.policy).toBe('raw');
      expect(small.reason).toMatch(/more than its partition/);
      expect(small.ranges).toEqual([[0, 16 * MiB]]);
    } finally { f.close(); }
  });
});
