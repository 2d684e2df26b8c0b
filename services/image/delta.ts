// Delta: which blocks of a target already hold what an image wants there, so that only the others
// need writing. Shared by `image restore --delta` and the multicast receiver's delta mode (which
// also tells the sender which chunks it no longer needs). The target is read once, in order, on a
// read-only handle (beside the writer's exclusive one); worker threads hash.
import { open } from 'node:fs/promises';
import { RackcastError } from '../errors.ts';
import { blockLength, type Manifest } from './manifest.ts';
import type { WorkerPool } from './worker-pool.ts';
import { oneAtATime, readAhead } from './chunk-reader.ts';

export interface CompareProgress { phase: 'compare'; done: number; total: number }

/**
 * Blocks of `target` that already hold what the image wants (the same hash, or all zero for a
 * hole). `hashes` is blockHashes(m).
 */
export async function sameBlocks(target: string, m: Manifest, hashes: (string | null)[], pool: WorkerPool, onProgress?: (p: CompareProgress) => void): Promise<Set<number>> {
  const same = new Set<number>();
  const fh = await open(target, 'r');
  const free: ArrayBuffer[] = [];
  let done = 0;
  try {
    const read = oneAtATime(async (i: number): Promise<ArrayBuffer> => {
      const buf = free.pop() ?? new ArrayBuffer(m.blockSize);
      const len = blockLength(m, i);
      const { bytesRead } = await fh.read(new Uint8Array(buf, 0, len), 0, len, i * m.blockSize);
      if (bytesRead !== len) throw new RackcastError('RC_ERR_IO', `short read at offset ${i * m.blockSize} of ${target}`, { path: target });
      return buf;
    });
    await readAhead(hashes.map((_, i) => i), read, async (i, buf, err) => {
      if (err) throw err;
      const len = blockLength(m, i);
      const r = await pool.run({ op: 'hash', buf: buf as ArrayBuffer, length: len }, [buf as ArrayBuffer]);
      if (hashes[i] === null ? r.hole === true : r.hash === hashes[i]) same.add(i);
      free.push(r.buf as ArrayBuffer);
      done += len;
      onProgress?.({ phase: 'compare', done, total: m.disk.size });
    }, pool.size * 3);
  } finally {
    await fh.close();
  }
  return same;
}

/** Bytes of the disk that `same` covers (what a delta did not have to write). */
export function sameBytes(m: Manifest, same: Iterable<number>): number {
  let n = 0;
  for (const i of same) n += blockLength(m, i);
  return n;
}
