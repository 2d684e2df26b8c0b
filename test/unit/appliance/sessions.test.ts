// Multicast sessions per deploy task: each running task gets its own slot (group and port), a
// task's later hellos find its session, and a slot is free again when its session ends.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore, captureImage } from '../../../services/image/index.ts';
import { Sessions, slotAddress, MAX_SESSIONS } from '../../../appliance/sessions.ts';
import { seededBytes } from '../../helpers/rng.ts';

let dir: string;
let images: ImageStore;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rc-test-sessions-'));
  images = ImageStore.open(join(dir, 'store'));
  writeFileSync(join(dir, 'disk.img'), seededBytes(3, 1 << 20));
  await captureImage({ store: images, source: join(dir, 'disk.img'), name: 'web', blockSize: 1 << 16, workers: 1 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Sessions', () => {
  it('slot k is group 239.255.77.(1+k), port 9700+k', () => {
    expect(slotAddress(0)).toEqual({ group: '239.255.77.1', port: 9700 });
    expect(slotAddress(MAX_SESSIONS - 1)).toEqual({ group: `239.255.77.${MAX_SESSIONS}`, port: 9700 + MAX_SESSIONS - 1 });
  });

  it('gives concurrent tasks their own group and port, the same one to a task\'s later hellos, and frees it at the end', async () => {
    const s = new Sessions({ images, interfaceAddress: '127.0.0.1', rateMbit: 10, maxWaitMs: 60_000 });
    try {
      const a = s.ensure(1, 'web', 'http://127.0.0.1:1/images/web', 2);
      const b = s.ensure(2, 'web', 'http://127.0.0.1:1/images/web', 1);
      expect(a).toEqual(slotAddress(0));
      expect(b).toEqual(slotAddress(1));
      expect(s.ensure(1, 'web', 'http://127.0.0.1:1/images/web', 2)).toEqual(a);
      expect(s.running().map((r) => [r.taskId, r.port]).sort()).toEqual([[1, 9700], [2, 9701]]);
    } finally {
      await s.close();
    }
    expect(s.running()).toEqual([]);
    const again = new Sessions({ images, interfaceAddress: '127.0.0.1', rateMbit: 10, maxWaitMs: 60_000 });
    try {
      expect(again.ensure(3, 'web', 'http://127.0.0.1:1/images/web', 1)).toEqual(slotAddress(0));
    } finally {
      await again.close();
    }
  });
});
