// Capture: read a disk (block device or file) once, sequentially, in blocks; workers drop
// all-zero blocks as holes, hash and compress the rest and store new chunks; then the manifest is
// signed and committed. Nothing is visible in the store until every chunk is on disk.
// captureToTarget is the same read for a network capture: chunks go to a ChunkTarget (the
// appliance, over HTTP) and the manifest goes back to the caller to commit there.
import { open } from 'node:fs/promises';
import { RackcastError } from '../errors.ts';
import { inspectPath, usersOf } from './device.ts';
import { blockCount, blockLength, extentsFrom, tableToManifest, MANIFEST_FORMAT, MANIFEST_VERSION, type Manifest } from './manifest.ts';
import { readPartitionTable } from './partition/table.ts';
import { ImageStore, STORE_DEFAULTS, type OpenImage } from './store.ts';
import { WorkerPool } from './worker-pool.ts';
import { oneAtATime, readAhead } from './chunk-reader.ts';
import { planDisk, manifestAllocations } from './fs/index.ts';
import { clip, totalBytes, type Range } from './fs/ranges.ts';

export interface Progress { done: number; total: number }
export interface CaptureOptions {
  store: ImageStore;
  source: string;
  name: string;
  blockSize?: number;
  level?: number;
  workers?: number;
  /**
   * capture even though the source is mounted (the image may then be inconsistent), and trust the
   * allocation maps of filesystems that are not clean
   */
  force?: boolean;
  /**
   * read only what the filesystems use (services/image/fs; default true): unused space becomes
   * holes. false: every byte is read (zero blocks still become holes).
   */
  usedOnly?: boolean;
  onProgress?: (p: Progress) => void;
  /** what the capture will read, partition by partition (before reading starts) */
  onPlan?: (plan: { partitions: { index: number; policy: string; reason: string; usedBytes: number }[]; readBytes: number } | undefined) => void;
  signal?: AbortSignal;
  /** recorded in the manifest: the source is a variant of another image (`image fit`) */
  derivedFrom?: Manifest['derivedFrom'];
}
export interface CaptureResult { image: OpenImage; newChunks: number; newBytes: number; reusedChunks: number; seconds: number }

/**
 * Where a network capture sends its chunks (the boot client's HTTP uploader to the appliance).
 * The receiving side decompresses and hash-checks every frame before it keeps it.
 */
export interface ChunkTarget {
  /** Does the destination already hold this chunk? Then it is neither compressed nor sent. */
  has(hash: string): Promise<boolean>;
  /** Send one chunk: the zstd frame of `length` raw bytes hashing to `hash`. */
  put(hash: string, length: number, frame: Uint8Array): Promise<void>;
}
export type RemoteCaptureOptions = Omit<CaptureOptions, 'store'> & {
  target: ChunkTarget;
  /** scratch directory for the workers (nothing is written there) */
  tmpDir: string;
};
export interface RemoteCaptureResult { manifest: Manifest; newChunks: number; newBytes: number; reusedChunks: number; seconds: number }

interface BlockOutcome { hash: string | null; existed: boolean; newBytes: number; buf: ArrayBuffer }
type PerBlock = (pool: WorkerPool, buf: ArrayBuffer, length: number) => Promise<BlockOutcome>;

/**
 * Read the source once, sequentially, in blocks; `perBlock` (in workers) turns each into a hole
 * or a stored/sent chunk. Returns the unsigned manifest: nothing is committed here.
 */
async function scan(o: Omit<CaptureOptions, 'store'>, workerRoot: string, perBlock: PerBlock): Promise<{ manifest: Manifest; newChunks: number; newBytes: number; reusedChunks: number }> {
  const blockSize = o.blockSize ?? STORE_DEFAULTS.blockSize;
  const info = inspectPath(o.source);
  if (info.kind === 'missing') throw new RackcastError('RC_ERR_SOURCE', `${o.source} does not exist`, { path: o.source });
  if (info.size === 0) throw new RackcastError('RC_ERR_SOURCE', `${o.source} is empty`, { path: o.source });
  const users = usersOf(info);
  if (users.length && !o.force) {
    throw new RackcastError('RC_ERR_SOURCE', `${o.source} is in use (${users.join('; ')}): unmount it, or use --force to capture a possibly inconsistent image`, { path: o.source, users });
  }
  const fh = await open(o.source, 'r');
  const pool = new WorkerPool({ root: workerRoot, level: o.level ?? STORE_DEFAULTS.level }, o.workers ? { workers: o.workers } : {});
  try {
    const readAt = async (offset: number, length: number): Promise<Buffer> => {
      const b = Buffer.alloc(length);
      const { bytesRead } = await fh.read(b, 0, length, offset);
      return b.subarray(0, bytesRead);
    };
    const table = await readPartitionTable(readAt, info.size, info.sectorSize);
    const dims = { disk: { size: info.size, sectorSize: info.sectorSize }, blockSize };
    const n = blockCount(dims);
    const plan = o.usedOnly === false ? undefined : await planDisk(readAt, table, info.size, { force: o.force ?? false });
    o.onPlan?.(plan ? { partitions: manifestAllocations(plan), readBytes: plan.usedBytes } : undefined);
    /** the used byte ranges inside block i (undefined: read it whole) */
    const usedIn = (i: number): Range[] | undefined => plan && clip(plan.ranges, i * blockSize, i * blockSize + blockLength(dims, i));
    const hashes = new Array<string | null>(n).fill(null);
    const free: ArrayBuffer[] = [];
    const stats = { newChunks: 0, newBytes: 0, reusedChunks: 0, done: 0, readBytes: 0 };
    // One read at a time, in disk order (the source is read once, sequentially); workers hash,
    // compress and store up to pool.size × 3 blocks behind it; block buffers are reused.
    const readFully = async (into: Uint8Array, offset: number): Promise<void> => {
      const { bytesRead } = await fh.read(into, 0, into.length, offset);
      if (bytesRead !== into.length) throw new RackcastError('RC_ERR_IO', `short read at offset ${offset} of ${o.source} (device shrank?)`, { path: o.source, offset });
    };
    // A block no filesystem uses is not read at all (null: a hole). A block mostly used is read
    // whole and its unused parts zeroed; otherwise only its used pieces are read.
    const read = oneAtATime(async (i: number): Promise<ArrayBuffer | null> => {
      if (o.signal?.aborted) throw new RackcastError('RC_ERR_IO', 'capture aborted', { image: o.name });
      const len = blockLength(dims, i);
      const base = i * blockSize;
      const used = usedIn(i);
      if (used && used.length === 0) return null;
      const buf = free.pop() ?? new ArrayBuffer(blockSize);
      const view = new Uint8Array(buf, 0, len);
      if (!used || totalBytes(used) * 2 >= len) {
        await readFully(view, base);
        if (used) {
          let at = base;
          for (const [s, e] of used) { view.fill(0, at - base, s - base); at = e; }
          view.fill(0, at - base, len);
        }
      } else {
        view.fill(0);
        for (const [s, e] of used) await readFully(view.subarray(s - base, e - base), s);
      }
      stats.readBytes += used ? totalBytes(used) : len;
      return buf;
    });
    await readAhead(Array.from({ length: n }, (_, i) => i), read, async (i, buf, readErr) => {
      if (readErr) throw readErr;
      const len = blockLength(dims, i);
      if (buf === null) { // unused by every filesystem: a hole, never read
        stats.done += len;
        o.onProgress?.({ done: stats.done, total: info.size });
        return;
      }
      const r = await perBlock(pool, buf as ArrayBuffer, len);
      if (r.hash) {
        hashes[i] = r.hash;
        if (r.existed) stats.reusedChunks++; else { stats.newChunks++; stats.newBytes += r.newBytes; }
      }
      free.push(r.buf);
      stats.done += len;
      o.onProgress?.({ done: stats.done, total: info.size });
    }, pool.size * 3);
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
      ...(plan ? { usedBlocks: { version: 1 as const, forced: o.force ?? false, readBytes: stats.readBytes, partitions: manifestAllocations(plan) } } : {}),
      ...(o.derivedFrom ? { derivedFrom: o.derivedFrom } : {}),
    };
    return { manifest, newChunks: stats.newChunks, newBytes: stats.newBytes, reusedChunks: stats.reusedChunks };
  } finally {
    await pool.close();
    await fh.close();
  }
}

/** Capture into the local store: chunks are written as they come, the image appears at commit. */
export async function captureImage(o: CaptureOptions): Promise<CaptureResult> {
  const t0 = performance.now();
  ImageStore.checkName(o.name);
  if (o.store.has(o.name)) throw new RackcastError('RC_ERR_IMAGE_EXISTS', `an image named "${o.name}" already exists`, { image: o.name });
  const op = o.store.beginWrite('capture');
  try {
    const r = await scan(o, o.store.root, async (pool, buf, length) => {
      const w = await pool.run({ op: 'store', buf, length }, [buf]);
      return { hash: w.hole ? null : w.hash as string, existed: w.existed ?? false, newBytes: w.stored ?? 0, buf: w.buf as ArrayBuffer };
    });
    o.store.syncChunks();
    const image = o.store.commit(r.manifest);
    return { image, newChunks: r.newChunks, newBytes: r.newBytes, reusedChunks: r.reusedChunks, seconds: (performance.now() - t0) / 1000 };
  } finally {
    op.end();
  }
}

/**
 * Capture to a remote target (a machine booted into the client, sending to the appliance): each
 * block is hashed first; a chunk the target already has (an earlier image, or this capture
 * before a dropped connection) is neither compressed nor sent. Returns the manifest for the
 * target to check and commit.
 */
export async function captureToTarget(o: RemoteCaptureOptions): Promise<RemoteCaptureResult> {
  const t0 = performance.now();
  ImageStore.checkName(o.name);
  const sent = new Set<string>();
  const r = await scan(o, o.tmpDir, async (pool, buf, length) => {
    const h = await pool.run({ op: 'hash', buf, length }, [buf]);
    if (h.hole) return { hash: null, existed: false, newBytes: 0, buf: h.buf as ArrayBuffer };
    const hash = h.hash as string;
    if (sent.has(hash) || await o.target.has(hash)) return { hash, existed: true, newBytes: 0, buf: h.buf as ArrayBuffer };
    sent.add(hash);
    const c = await pool.run({ op: 'compress', buf: h.buf as ArrayBuffer, length }, [h.buf as ArrayBuffer]);
    await o.target.put(hash, length, new Uint8Array(c.frame as ArrayBuffer));
    return { hash, existed: false, newBytes: c.stored ?? 0, buf: c.buf as ArrayBuffer };
  });
  return { manifest: r.manifest, newChunks: r.newChunks, newBytes: r.newBytes, reusedChunks: r.reusedChunks, seconds: (performance.now() - t0) / 1000 };
}
