// Capture reads only what the filesystems use (services/image/fs through captureImage): on a GPT
// disk with ext4 + FAT32 where deleted files left data in free space, the image holds less data
// than a raw capture, the deleted data is not in it, the restored disk is fsck-clean with the
// same files, and the manifest records each partition's policy. --raw (usedOnly: false) stays
// bit-exact.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore, captureImage, restoreImage } from '../../services/image/index.ts';
import { makeTree, makeGptDisk, extractPart, hasTool, type TestDisk } from '../helpers/disks.ts';

const MiB = 1 << 20;
const MARK = 'RACKCAST-DELETED-SECRET-';
const missing = ['sfdisk', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'mdel', 'debugfs', 'e2fsck', 'fsck.vfat'].filter((t) => !hasTool(t));
const d = missing.length ? describe.skip : describe;
if (missing.length) console.warn(`used-capture tests skipped: missing ${missing.join(', ')}`);

let work: string;
let store: ImageStore;
let disk: TestDisk;

/** Write a file into a partition of the disk and delete it again: its data stays in free space. */
function leaveDeleted(): void {
  const secret = join(work, 'secret.txt');
  writeFileSync(secret, (MARK + 'x'.repeat(100) + '\n').repeat(40000)); // ~5 MiB
  const root = extractPart(disk.path, disk.parts[0]!, join(work, 'root.ext4'));
  execFileSync('debugfs', ['-w', '-R', `write ${secret} secret.txt`, root], { stdio: 'pipe' });
  execFileSync('debugfs', ['-w', '-R', 'rm secret.txt', root], { stdio: 'pipe' });
  const esp = extractPart(disk.path, disk.parts[1]!, join(work, 'esp.vfat'));
  execFileSync('mcopy', ['-i', esp, secret, '::/secret.txt']);
  execFileSync('mdel', ['-i', esp, '::/secret.txt']);
  const fd = openSync(disk.path, 'r+');
  try {
    for (const [i, f] of [root, esp].entries()) { const b = readFileSync(f); writeSync(fd, b, 0, b.length, disk.parts[i]!.start); }
  } finally { closeSync(fd); }
  expect(readFileSync(disk.path).includes(MARK)).toBe(true);
}

beforeAll(() => {
  if (missing.length) return;
  work = mkdtempSync(join(tmpdir(), 'rc-test-usedcap-'));
  store = ImageStore.open(join(work, 'store'));
  disk = makeGptDisk(work, makeTree(join(work, 'tree')), 128 * MiB);
  leaveDeleted();
}, 60_000);
afterAll(() => { if (work) rmSync(work, { recursive: true, force: true }); });

d('capture reads only used blocks', () => {
  it('holds less than a raw capture, not the deleted data; restores fsck-clean with the same files', async () => {
    const plans: string[] = [];
    const used = await captureImage({ store, source: disk.path, name: 'used', blockSize: MiB, workers: 2, onPlan: (p) => { for (const x of p?.partitions ?? []) plans.push(`${x.index}:${x.policy}`); } });
    const raw = await captureImage({ store, source: disk.path, name: 'raw', blockSize: MiB, workers: 2, usedOnly: false });
    expect(plans).toEqual(['1:ext4', '2:fat32']);
    const um = used.image.manifest;
    expect(um.usedBlocks?.partitions.map((p) => p.policy)).toEqual(['ext4', 'fat32']);
    expect(um.usedBlocks?.readBytes).toBeLessThan(disk.size);
    expect(raw.image.manifest.usedBlocks).toBeUndefined();
    expect(um.stats.dataBlocks).toBeLessThan(raw.image.manifest.stats.dataBlocks);

    const out = join(work, 'restored.img');
    await restoreImage({ store, name: 'used', target: out });
    const got = readFileSync(out);
    expect(got.includes(MARK)).toBe(false);
    execFileSync('e2fsck', ['-fn', extractPart(out, disk.parts[0]!, join(work, 'r-root.ext4'))], { stdio: 'pipe' });
    execFileSync('fsck.vfat', ['-n', extractPart(out, disk.parts[1]!, join(work, 'r-esp.vfat'))], { stdio: 'pipe' });
    const cat = (img: string, path: string): Buffer => execFileSync('debugfs', ['-R', `cat ${path}`, img], { stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 * MiB });
    for (const f of ['/etc/app/config.ini', '/var/lib/data/blob3.bin', '/home/user/notes.txt']) {
      expect(cat(join(work, 'r-root.ext4'), f).equals(cat(join(work, 'root.ext4'), f))).toBe(true);
    }
    const mtype = (img: string): string => execFileSync('mtype', ['-i', img, '::/etc/app/config.ini'], { encoding: 'utf8' });
    expect(mtype(join(work, 'r-esp.vfat'))).toBe(mtype(join(work, 'esp.vfat')));
    // the partition table is the source's
    expect(got.subarray(0, 34 * 512).equals(readFileSync(disk.path).subarray(0, 34 * 512))).toBe(true);
  }, 120_000);

  it('--raw (usedOnly: false) restores bit-exact, deleted data included', async () => {
    const out = join(work, 'restored-raw.img');
    await restoreImage({ store, name: 'raw', target: out });
    expect(readFileSync(out).equals(readFileSync(disk.path))).toBe(true);
  }, 60_000);
});
