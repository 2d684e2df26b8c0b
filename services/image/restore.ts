// Restore and verify. Restore first verifies every chunk the image needs (all cores), so a
// missing or corrupt chunk refuses the restore before a single byte of the target changes; then
// it writes every block at its absolute offset through DiskWriter, each block hash-checked again
// as it is decompressed, and zeroes (or discards) the holes.
import { RackcastError } from '../errors.ts';
import { DiskWriter } from './disk-writer.ts';
import type { GrowResult } from './geometry.ts';
import { blockHashes, blockLength, chunkTable, type Manifest } from './manifest.ts';
import { ImageStore, type OpenImage } from './store.ts';
import { WorkerPool } from './worker-pool.ts';
import { readAhead, readFrame } from './chunk-reader.ts';
import { sameBlocks, sameBytes } from './delta.ts';

export interface Progress { phase: 'verify' | 'compare' | 'write'; done: number; total: number }
export interface VerifyProblem { chunk: string; code: string; message: string }
export interface VerifyResult { image: string; digest: string; chunks: number; problems: VerifyProblem[] }

function poolFor(store: ImageStore, workers?: number): WorkerPool {
  return new WorkerPool({ root: store.root, level: 3 }, workers ? { workers } : {});
}

/** Decompress and hash every unique chunk of an image; report every problem, not just the first. */
export async function verifyChunks(store: ImageStore, img: OpenImage, opts: { workers?: number; onProgress?: (p: Progress) => void; pool?: WorkerPool } = {}): Promise<VerifyResult> {
  const m = img.manifest;
  const chunks = chunkTable(m);
  const pool = opts.pool ?? poolFor(store, opts.workers);
  const problems: VerifyProblem[] = [];
  let done = 0;
  const total = chunks.reduce((a, c) => a + c.length, 0);
  try {
    await readAhead(chunks, (c) => readFrame(store.root, c.hash, m.name), async ({ hash, length }, f, readErr) => {
      try {
        if (readErr) throw readErr;
        const { frame, frameLength } = f as { frame: ArrayBuffer; frameLength: number };
        await pool.run({ op: 'checkFrame', hash, length, frame, frameLength, image: m.name }, [frame]);
      } catch (e) {
        const err = e as RackcastError;
        problems.push({ chunk: hash, code: err.code ?? 'RC_ERR_IO', message: err.message });
      }
      done += length;
      opts.onProgress?.({ phase: 'verify', done, total });
    });
  } finally {
    if (!opts.pool) await pool.close();
  }
  problems.sort((a, b) => a.chunk.localeCompare(b.chunk));
  return { image: m.name, digest: img.digest, chunks: chunks.length, problems };
}

export function problemError(r: VerifyResult): RackcastError {
  const first = r.problems[0] as VerifyProblem;
  const more = r.problems.length > 1 ? ` (and ${r.problems.length - 1} more)` : '';
  return new RackcastError(first.code === 'RC_ERR_CHUNK_MISSING' ? 'RC_ERR_CHUNK_MISSING' : 'RC_ERR_CHUNK_CORRUPT',
    `${first.message}${more}`, { image: r.image, chunk: first.chunk, problems: r.problems.length });
}

export interface RestoreOptions {
  store: ImageStore;
  name: string;
  target: string;
  discard?: boolean;
  /** verify every chunk before writing anything (default true) */
  preverify?: boolean;
  /**
   * delta: read and hash the target's blocks first and write only those that differ from the
   * image (a nightly reimage of a disk that mostly holds the image already); holes already zero
   * are left alone
   */
  delta?: boolean;
  /** on a larger target, grow the last partition and its filesystem to fill it (geometry.ts) */
  grow?: boolean;
  workers?: number;
  onProgress?: (p: Progress) => void;
}
/** `table`: what was done to fit the partition table to a larger target (partition/fit.ts), if anything; `grow`: what `grow` did, or why not */
export interface RestoreResult { image: string; digest: string; bytesWritten: number; holes: number; seconds: number; target: string; table?: string; discard?: string; /** delta: bytes already right on the target, not written */ skippedBytes?: number; grow?: GrowResult }

export async function restoreImage(o: RestoreOptions): Promise<RestoreResult> {
  const t0 = performance.now();
  const img = o.store.open(o.name);
  const m: Manifest = img.manifest;
  DiskWriter.check(o.target, m); // refuse a wrong target before spending time on verification
  const pool = poolFor(o.store, o.workers);
  try {
    if (o.preverify !== false) {
      const v = await verifyChunks(o.store, img, { pool, ...(o.onProgress ? { onProgress: o.onProgress } : {}) });
      if (v.problems.length) throw problemError(v);
    }
    const writer = await DiskWriter.open(o.target, m, { discard: o.discard ?? false, grow: o.grow ?? false });
    let written = 0;
    let fitted: Awaited<ReturnType<DiskWriter['fitTable']>>;
    let grown: GrowResult | undefined;
    let discardNote: string | undefined;
    let holes = 0;
    let skipped = 0;
    try {
      const hashes = blockHashes(m);
      const same = o.delta && !writer.fresh ? await sameBlocks(o.target, m, hashes, pool, o.onProgress) : undefined;
      const data = hashes.flatMap((h, i) => (h && !same?.has(i) ? [i] : []));
      holes = hashes.filter((h) => h === null).length;
      if (same) skipped = sameBytes(m, same);
      let done = skipped;
      const free: ArrayBuffer[] = []; // block buffers go to a worker and come back: no allocation per block
      // chunk files are read ahead on this thread; workers decompress and re-hash each into its
      // own block buffer; the block is written only after that check (DiskWriter checks the index)
      await readAhead(data, (i) => readFrame(o.store.root, hashes[i] as string, m.name), async (i, f, readErr) => {
        if (readErr) throw readErr;
        const { frame, frameLength } = f as { frame: ArrayBuffer; frameLength: number };
        const length = blockLength(m, i);
        const buf = free.pop() ?? new ArrayBuffer(m.blockSize);
        const r = await pool.run({ op: 'unpack', hash: hashes[i] as string, length, frame, frameLength, buf, image: m.name }, [frame, buf]);
        await writer.writeBlock(i, new Uint8Array(r.buf as ArrayBuffer, 0, length), r.hash as string);
        free.push(r.buf as ArrayBuffer);
        written += length;
        done += length;
        o.onProgress?.({ phase: 'write', done, total: m.disk.size });
      }, pool.size * 4);
      await writer.finishHoles((n) => { done += n; o.onProgress?.({ phase: 'write', done, total: m.disk.size }); }, same ? (i) => same.has(i) : undefined);
      fitted = await writer.fitTable();
      grown = await writer.growLast();
      discardNote = writer.discardFallback;
    } finally {
      await writer.close();
    }
    o.onProgress?.({ phase: 'write', done: m.disk.size, total: m.disk.size });
    return { image: m.name, digest: img.digest, bytesWritten: written, holes, seconds: (performance.now() - t0) / 1000, target: o.target, ...(fitted ? { table: fitted.reason } : {}), ...(discardNote ? { discard: discardNote } : {}), ...(o.delta ? { skippedBytes: skipped } : {}), ...(grown ? { grow: grown } : {}) };
  } finally {
    await pool.close();
  }
}
