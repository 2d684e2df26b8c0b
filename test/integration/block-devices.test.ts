// Real block devices (loop devices made by this test, removed at the end): restore onto a block
// device, and the refusals a sysadmin relies on: a mounted target, a file attached to a mounted
// loop device, a too-small device, capturing a mounted source without --force.
// Needs root and loop devices; skipped with a message otherwise.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore, captureImage, restoreImage } from '../../services/image/index.ts';
import { isRackcastError, type ErrorCode } from '../../services/errors.ts';
import { makeTree, makeGptDisk, sh, type TestDisk } from '../helpers/disks.ts';

const canLoop = process.getuid?.() === 0 && (() => { try { sh('losetup', ['-f']); return true; } catch { return false; } })();
const d = canLoop ? describe : describe.skip;
if (!canLoop) console.warn('block-devices.test: skipped (needs root and loop devices)');

let work: string;
let store: ImageStore;
let disk: TestDisk;
const loops: string[] = [];
const mounts: string[] = [];

function attach(file: string): string {
  const dev = sh('losetup', ['--find', '--show', file]).trim();
  loops.push(dev);
  return dev;
}

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(isRackcastError(e) ? e.code : e).toBe(code);
}

beforeAll(async () => {
  if (!canLoop) return;
  work = mkdtempSync(join(tmpdir(), 'rc-test-blk-'));
  disk = makeGptDisk(work, makeTree(join(work, 'tree')));
  store = ImageStore.open(join(work, 'store'));
  await captureImage({ store, source: disk.path, name: 'ref' });
});

afterAll(() => {
  for (const m of mounts.reverse()) { try { sh('umount', [m]); } catch { /* already gone */ } }
  for (const l of loops.reverse()) { try { sh('losetup', ['-d', l]); } catch { /* already gone */ } }
  if (work) rmSync(work, { recursive: true, force: true });
});

d('restore onto block devices', () => {
  it('writes an image onto a loop device bit-exact, zeroing old data in the holes', async () => {
    const backing = join(work, 'target.img');
    execFileSync('sh', ['-c', `yes old-data | head -c ${disk.size} > ${backing}`]);
    const dev = attach(backing);
    await restoreImage({ store, name: 'ref', target: dev });
    expect(readFileSync(backing).equals(readFileSync(disk.path))).toBe(true);
  });

  it('refuses a device smaller than the image and leaves it untouched', async () => {
    const small = join(work, 'small.img');
    execFileSync('sh', ['-c', `yes keep | head -c ${disk.size / 2} > ${small}`]);
    const before = readFileSync(small);
    const dev = attach(small);
    await expectCode(restoreImage({ store, name: 'ref', target: dev }), 'RC_ERR_TARGET_TOO_SMALL');
    expect(readFileSync(small).equals(before)).toBe(true);
  });

  it('refuses a mounted device, a file behind a mounted loop device, and a mounted capture source', async () => {
    const fsFile = join(work, 'mounted.img');
    sh('truncate', ['-s', String(disk.size), fsFile]);
    sh('mkfs.ext4', ['-q', '-F', fsFile]);
    const dev = attach(fsFile);
    const mnt = join(work, 'mnt');
    mkdirSync(mnt);
    sh('mount', [dev, mnt]);
    mounts.push(mnt);
    await expectCode(restoreImage({ store, name: 'ref', target: dev }), 'RC_ERR_TARGET_MOUNTED');
    await expectCode(restoreImage({ store, name: 'ref', target: fsFile }), 'RC_ERR_TARGET_MOUNTED');
    await expectCode(captureImage({ store, source: dev, name: 'mounted' }), 'RC_ERR_SOURCE');
    expect(store.has('mounted')).toBe(false);
    sh('umount', [mnt]);
    mounts.pop();
    sh('e2fsck', ['-fn', fsFile]); // the refused restore did not touch the filesystem
  });
});
