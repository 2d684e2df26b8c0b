// Capture: read a disk (block device or file) once, sequentially, in blocks; workers drop
// all-zero blocks as holes, hash and compress the rest and store new chunks; then the manifest is
// signed and committed. Nothing is visible in the store until every chunk is on disk.
import { open } from 'node:fs/promises';
import { RackcastError } from '../errors.ts';
import { inspectPath, usersOf } from './device.ts';
import { blockCount, blockLength, extentsFrom, tableToManifest, MANIFEST_FORMAT, MANIFEST_VERSION, type Manifest } from './manifest.ts';
import { readPartitionTable } from './partition/table.ts';
import { ImageStore, STORE_DEFAULTS, type OpenImage } from './store.ts';
import { WorkerPool } from './worker-pool.ts';
import { readAhead } from './chunk-reader.ts';

export interface Progress { done: number; total: number }
export interface CaptureOptions {
  store: ImageStore;
  source: string;
  name: string;
  blockSize?: number;
  level?: number;
  workers?: number;
  /** capture even though the source is mounted (the image may then be inconsistent) */
  force?: boolean;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
}
export interface CaptureResult { image: OpenImage; newChunks: number; newBytes: number; reusedChunks: number; seconds: number }

export async function captureImage(o: CaptureOptions): Promise<CaptureResult> {
  const t0 = performance.now();
  ImageStore.checkName(o.name);
  if (o.store.has(o.name)) throw new RackcastError('RC_ERR_IMAGE_EXISTS', `an image named "${o.name}" already exists`, { image: o.name });
  const blockSize = o.blockSize ?? STORE_DEFAULTS.blockSize;
  const info = inspectPath(o.source);
  if (info.kind === 'missing') throw new RackcastError('RC_ERR_SOURCE', `${o.source} does not exist`, { path: o.source });
  if (info.size === 0) throw new RackcastError('RC_ERR_SOURCE', `${o.source} is empty`, { path: o.source });
  const users = usersOf(info);
  if (users.length && !o.force) {
    throw new RackcastError('RC_ERR_SOURCE', `${o.source} is in use (${users.join('; ')}): unmount it, or use --force to capture a possibly inconsistent image`, { path: o.source, users });
  }
  const fh = await open(o.source, 'r');
  const op = o.store.beginWrite('capture');
  const pool = new WorkerPool({ root: o.store.root, level: o.level ?? STORE_DEFAULTS.level }, o.workers ? { workers: o.workers } : {});
  try {
    const readAt = async (offset: number, length: number): Promise<Buffer> => {
      const b = Buffer.alloc(length);
      const { bytesRead } = await fh.read(b, 0, length, offset);
      return b.subarray(0, bytesRead);
    };
    const table = await readPartitionTable(readAt, info.size, info.sectorSize);
    const dims = { disk: { size: info.size, sectorSize: info.sectorSize }, blockSize };
    const n = blockCount(dims);
    const hashes = new Array<string | null>(n).fill(null);
    const free: ArrayBuffer[] = [];
    const stats = { newChunks: 0, newBytes: 0, reusedChunks: 0, done: 0 };
    // One read at a time, in disk order (the source is read once, sequentially); workers hash,
    // compress and store up to pool.size × 3 blocks behind it; block buffers are reused.
    let reading = Promise.resolve();
    const read = (i: number): Promise<ArrayBuffer> => {
      const next = reading.then(async () => {
        if (o.signal?.aborted) throw new RackcastError('RC_ERR_IO', 'capture aborted', { image: o.name });
        const buf = free.pop() ?? new ArrayBuffer(blockSize);
        const len = blockLength(dims, i);
        const { bytesRead } = await fh.read(new Uint8Array(buf, 0, len), 0, len, i * blockSize);
        if (bytesRead !== len) throw new RackcastError('RC_ERR_IO', `short read at offset ${i * blockSize} of ${o.source} (device shrank?)`, { path: o.source, offset: i * blockSize });
        return buf;
      });
      reading = next.then(() => undefined, () => undefined);
      return next;
    };
    await readAhead(Array.from({ length: n }, (_, i) => i), read, async (i, buf, readErr) => {
      if (readErr) throw readErr;
      const len = blockLength(dims, i);
      const r = await pool.run({ op: 'store', buf: buf as ArrayBuffer, length: len }, [buf as ArrayBuffer]);
      if (!r.hole) {
        hashes[i] = r.hash as string;
        if (r.existed) stats.reusedChunks++; else { stats.newChunks++; stats.newBytes += r.stored ?? 0; }
      }
      free.push(r.buf as ArrayBuffer);
      stats.done += len;
      o.onProgress?.({ done: stats.done, total: info.size });
    }, pool.size * 3);
    o.store.syncChunks();
    const extents = extentsFrom(hashes);
    const data = hashes.filter((h) => h !== null).length;
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      name: o.name,
      createdAt: new Date().toISOString(),
      source: { path: o.source, kind: info.kind === 'block' ? 'block' : 'file' },
      disk: dims.disk,
      blockSize,
      compression: { algorithm: 'zstd', level: o.level ?? STORE_DEFAULTS.level },
      partitionTable: tableToManifest(table),
      extents,
      stats: { blocks: n, dataBlocks: data, holeBlocks: n - data, uniqueChunks: new Set(hashes.filter((h) => h !== null)).size },
    };
    const image = o.store.commit(manifest);
    return { image, newChunks: stats.newChunks, newBytes: stats.newBytes, reusedChunks: stats.reusedChunks, seconds: (performance.now() - t0) / 1000 };
  } finally {
    await pool.close();
    await fh.close();
    op.end();
  }
}
