// Restoring a GPT image onto a larger disk moves the backup GPT to the new end (partition/fit.ts):
// sfdisk --verify is clean, the table spans the target, the partitions and their filesystems are
// untouched. A damaged entry array is never moved; an MBR image and an equal-size target are left as
// they are.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore, captureImage, restoreImage } from '../../services/image/index.ts';
import { fitGptToDisk } from '../../services/image/partition/fit.ts';
import { readPartitionTable } from '../../services/image/partition/table.ts';
import { makeTree, makeGptDisk, makeMbrDisk, extractPart, hasTool } from '../helpers/disks.ts';

const MiB = 1 << 20;
const tools = ['sfdisk', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'e2fsck', 'fsck.vfat'].filter((t) => !hasTool(t));
const d = tools.length ? describe.skip : describe;
if (tools.length) console.warn(`gpt-fit tests skipped: missing ${tools.join(', ')}`);

let work: string;
let store: ImageStore;
let gpt: ReturnType<typeof makeGptDisk>;
beforeAll(async () => {
  if (tools.length) return;
  work = mkdtempSync(join(tmpdir(), 'rc-test-gptfit-'));
  store = ImageStore.open(join(work, 'store'));
  const tree = makeTree(join(work, 'tree'));
  gpt = makeGptDisk(work, tree);
  await captureImage({ store, source: gpt.path, name: 'gpt', workers: 2 });
  const mbr = makeMbrDisk(work, tree);
  await captureImage({ store, source: mbr.path, name: 'mbr', workers: 2 });
}, 120_000);
afterAll(() => { if (work) rmSync(work, { recursive: true, force: true }); });

const sfdiskJson = (path: string): { partitiontable: { label: string; lastlba: number; partitions: { start: number; size: number }[] } } =>
  JSON.parse(execFileSync('sfdisk', ['--json', path], { encoding: 'utf8' })) as never;

function readAt(path: string, offset: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  const fd = openSync(path, 'r');
  try { readSync(fd, b, 0, length, offset); } finally { closeSync(fd); }
  return b;
}

d('GPT on a larger target', () => {
  it('moves the backup GPT to the end: verify clean, partitions and filesystems unchanged', async () => {
    const target = join(work, 'bigger.img');
    writeFileSync(target, Buffer.alloc(512, 0xa5)); // not empty: a "disk" that held something
    truncateSync(target, gpt.size + 72 * MiB);
    const r = await restoreImage({ store, name: 'gpt', target });
    expect(r.table).toMatch(/backup GPT moved from LBA \d+ to \d+/);
    // the image's bytes are all there, except the old backup GPT that was cleared
    const want = readFileSync(gpt.path);
    const got = readFileSync(target);
    expect(got.length).toBe(gpt.size + 72 * MiB);
    expect(got.subarray(0, 512).equals(want.subarray(0, 512))).toBe(false); // protective MBR grown
    expect(got.subarray(1024, gpt.size - 33 * 512).equals(want.subarray(1024, gpt.size - 33 * 512))).toBe(true);
    execFileSync('sfdisk', ['--verify', target], { stdio: 'pipe' });
    const before = sfdiskJson(gpt.path).partitiontable;
    const after = sfdiskJson(target).partitiontable;
    expect(after.lastlba).toBe((gpt.size + 72 * MiB) / 512 - 34);
    expect(after.lastlba).toBeGreaterThan(before.lastlba);
    expect(after.partitions.map((p) => [p.start, p.size])).toEqual(before.partitions.map((p) => [p.start, p.size]));
    // our own reader agrees (it checks both headers and both arrays)
    const t = await readPartitionTable(async (o, l) => readAt(target, o, l), gpt.size + 72 * MiB, 512);
    expect(t.kind).toBe('gpt');
    expect(t.warnings).toEqual([]);
    execFileSync('e2fsck', ['-fn', extractPart(target, gpt.parts[0]!, join(work, 'root.ext4'))], { stdio: 'pipe' });
    execFileSync('fsck.vfat', ['-n', extractPart(target, gpt.parts[1]!, join(work, 'esp.vfat'))], { stdio: 'pipe' });
    // once moved, fitting again changes nothing
    const fd = openSync(target, 'r+');
    try {
      const io = { read: async (o: number, l: number) => readAt(target, o, l), write: async (o: number, b: Buffer) => { writeSync(fd, b, 0, b.length, o); } };
      expect((await fitGptToDisk(io, 512, gpt.size + 72 * MiB)).moved).toBe(false);
    } finally { closeSync(fd); }
  }, 60_000);

  it('same-size target: bit-exact, nothing moved; MBR image on a larger target: untouched', async () => {
    const same = join(work, 'same.img');
    rmSync(same, { force: true });
    const r = await restoreImage({ store, name: 'gpt', target: same });
    expect(r.table).toBeUndefined();
    expect(readFileSync(same).equals(readFileSync(gpt.path))).toBe(true);
    const big = join(work, 'mbr-big.img');
    writeFileSync(big, Buffer.alloc(512, 1));
    truncateSync(big, 200 * MiB);
    expect((await restoreImage({ store, name: 'mbr', target: big })).table).toBeUndefined();
  }, 60_000);

  it('refuses to move a table whose entry array is damaged, and changes nothing', async () => {
    const disk = readFileSync(gpt.path);
    const big = Buffer.concat([disk, Buffer.alloc(8 * MiB)]);
    big[1024 + 40] = (big[1024 + 40] as number) ^ 0xff; // first entry's first LBA: array CRC now wrong
    const copy = Buffer.from(big);
    const io = { read: async (o: number, l: number) => Buffer.from(big.subarray(o, o + l)), write: async (o: number, b: Buffer) => { b.copy(big, o); } };
    await expect(fitGptToDisk(io, 512, big.length)).rejects.toThrow(/CRC/i);
    expect(big.equals(copy)).toBe(true);
  });
});
