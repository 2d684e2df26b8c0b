// Delta restore: the target is hashed first and only blocks that differ are written. A disk that
// already holds the image except a few changed blocks (and some garbage in a hole) is made
// bit-exact again by writing just those; a fresh target writes everything.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { closeSync, copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore, captureImage, restoreImage } from '../../services/image/index.ts';
import { seededBytes } from '../helpers/rng.ts';

const BS = 1 << 20;
let work: string;
let store: ImageStore;
let src: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'rc-test-delta-'));
  store = ImageStore.open(join(work, 'store'));
  const disk = seededBytes(21, 16 * BS);
  disk.fill(0, 5 * BS, 8 * BS); // three hole blocks
  src = join(work, 'src.img');
  writeFileSync(src, disk);
  await captureImage({ store, source: src, name: 'img', blockSize: BS, workers: 2, usedOnly: false });
});
afterAll(() => { if (work) rmSync(work, { recursive: true, force: true }); });

describe('restore --delta', () => {
  it('writes only the blocks that differ (and zeroes only dirty holes); the result is bit-exact', async () => {
    const t = join(work, 'target.img');
    copyFileSync(src, t);
    const fd = openSync(t, 'r+');
    try {
      writeSync(fd, Buffer.from('changed since last night'), 0, 24, 2 * BS + 100); // block 2
      writeSync(fd, Buffer.from('more changes'), 0, 12, 11 * BS); // block 11
      writeSync(fd, Buffer.from('garbage in a hole'), 0, 17, 6 * BS + 5); // hole block 6
    } finally { closeSync(fd); }
    const phases = new Set<string>();
    const r = await restoreImage({ store, name: 'img', target: t, delta: true, workers: 2, onProgress: (p) => phases.add(p.phase) });
    expect(r.bytesWritten).toBe(2 * BS);
    expect(r.skippedBytes).toBe(13 * BS); // 11 data blocks and 2 clean holes matched
    expect(phases.has('compare')).toBe(true);
    expect(readFileSync(t).equals(readFileSync(src))).toBe(true);
    // nothing differs now: a second delta writes nothing
    const again = await restoreImage({ store, name: 'img', target: t, delta: true, workers: 2 });
    expect(again.bytesWritten).toBe(0);
    expect(again.skippedBytes).toBe(16 * BS);
  });

  it('without --delta everything is written; on a fresh file delta has nothing to compare', async () => {
    const t = join(work, 'full.img');
    copyFileSync(src, t);
    expect((await restoreImage({ store, name: 'img', target: t, workers: 2 })).bytesWritten).toBe(13 * BS);
    const fresh = join(work, 'fresh.img');
    const r = await restoreImage({ store, name: 'img', target: fresh, delta: true, workers: 2 });
    expect(r.bytesWritten).toBe(13 * BS);
    expect(readFileSync(fresh).equals(readFileSync(src))).toBe(true);
  });
});
