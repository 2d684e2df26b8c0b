// Restore with discard (TRIM): holes are discarded instead of zeroed — punched out of a file
// target, BLKDISCARD on a block device — and read back as zeros; a device where discard fails
// gets its holes zeroed instead, and the restore says so. Loop devices are made by this test and
// removed at the end (root needed for those cases).
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImageStore, captureImage, restoreImage } from '../../services/image/index.ts';
import { makeTree, makeGptDisk, sh, type TestDisk } from '../helpers/disks.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const canLoop = process.getuid?.() === 0 && (() => { try { sh('losetup', ['-f']); return true; } catch { return false; } })();
let work: string;
let store: ImageStore;
let disk: TestDisk;
const loops: string[] = [];
const garbage = (path: string, size: number): void => { execFileSync('sh', ['-c', `yes rackcast | head -c ${size} > ${path}`]); };

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'rc-test-discard-'));
  disk = makeGptDisk(work, makeTree(join(work, 'tree')));
  store = ImageStore.open(join(work, 'store'));
  await captureImage({ store, source: disk.path, name: 'ref', workers: 2 });
  expect(store.open('ref').manifest.stats.holeBlocks).toBeGreaterThan(0);
}, 60_000);
afterAll(() => {
  for (const l of loops.reverse()) { try { sh('losetup', ['-d', l]); } catch { /* gone */ } }
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('restore --discard', () => {
  it('file target: holes are punched (fewer blocks allocated) and read as zeros', async () => {
    const t = join(work, 'file.img');
    garbage(t, disk.size);
    const before = statSync(t).blocks;
    const r = await restoreImage({ store, name: 'ref', target: t, discard: true });
    expect(r.discard).toBeUndefined();
    expect(readFileSync(t).equals(readFileSync(disk.path))).toBe(true);
    expect(statSync(t).blocks).toBeLessThan(before);
  }, 60_000);

  (canLoop ? it : it.skip)('block device: BLKDISCARD, read back as zeros; a failing discard falls back to zeroing', async () => {
    const f = join(work, 'loop.img');
    garbage(f, disk.size);
    const dev = sh('losetup', ['--find', '--show', f]).trim();
    loops.push(dev);
    const r = await restoreImage({ store, name: 'ref', target: dev, discard: true });
    expect(r.discard).toBeUndefined();
    execFileSync('blockdev', ['--flushbufs', dev]);
    expect(readFileSync(f).equals(readFileSync(disk.path))).toBe(true);
    // a device that refuses discard: a blkdiscard that fails, first on PATH (fake at unit level)
    garbage(f, disk.size);
    execFileSync('blockdev', ['--flushbufs', dev]);
    const bin = join(work, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'blkdiscard'), '#!/bin/sh\necho "blkdiscard: BLKDISCARD ioctl failed: Operation not supported" >&2\nexit 1\n');
    chmodSync(join(bin, 'blkdiscard'), 0o755);
    // through the CLI, so the fake PATH reaches the child process
    const out = execFileSync(join(ROOT, 'node_modules/.bin/node'), [join(ROOT, 'bin/rackcast.js'), 'image', 'restore', 'ref', dev, '--discard', '--store', store.root],
      { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` } });
    expect(out).toMatch(/note: discard failed \(blkdiscard: BLKDISCARD ioctl failed: Operation not supported\): holes zeroed instead/);
    execFileSync('blockdev', ['--flushbufs', dev]);
    expect(readFileSync(f).equals(readFileSync(disk.path))).toBe(true);
  }, 60_000);
});
