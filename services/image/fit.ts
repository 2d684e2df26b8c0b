// `image fit NAME --size BYTES`: a derived image for a disk smaller than the image's.
//
// An image cannot simply be cut off at a smaller size: ext4 keeps superblock and group-descriptor
// backups spread over the whole filesystem (its bitmap marks them used up to the last group),
// NTFS its backup boot sector in the last sector, GPT its backup at the disk's end. So the
// filesystem is shrunk with its own tool, on the appliance, once per size:
//
//   1. plan from the manifest's table sectors alone (partition/grow.ts, mode 'fit'): refuse at
//      once what no shrinking can fix (partitions overlapping or following the last one, …);
//   2. materialize the image into a sparse file under the store's tmp/ (restoreImage: every chunk
//      verified, only data blocks written, holes stay sparse);
//   3. if the last partition does not end inside the new size: check its filesystem (e2fsck -f
//      -y / ntfsresize --check; the file is our private copy), ask its minimum (resize2fs -P /
//      ntfsresize --info) and refuse with the bytes needed when it does not fit, else shrink it
//      (resize2fs / ntfsresize --size) to the largest size that fits (fs/resize.ts);
//   4. truncate the file, rewrite the table for the new size (the last partition's end, GPT
//      backup at the new end, CRCs, protective MBR; MBR entries), check the filesystem (e2fsck
//      -fn / ntfsfix -n) and the table (our reader without warnings, sfdisk --verify);
//   5. capture the file as the new image (captureImage: used-block planning; blocks before the
//      last partition are the same chunks as the original's), `derivedFrom` naming the original.
// The temp file is removed in every case; the new image appears only at the capture's commit.
import { randomBytes } from 'node:crypto';
import { open, rm, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { RackcastError } from '../errors.ts';
import { captureImage } from './capture.ts';
import { filesystemOf } from './geometry.ts';
import { checkBeforeResize, checkFs, minimumSize, runTool, shrinkFs, withPartition, type ResizableFs } from './fs/resize.ts';
import type { Manifest } from './manifest.ts';
import { handleIo, type SectorIo } from './partition/fit.ts';
import { planLastPartition, type LastPartitionPlan } from './partition/grow.ts';
import { readPartitionTable } from './partition/table.ts';
import { restoreImage } from './restore.ts';
import { ImageStore, type OpenImage } from './store.ts';

export interface FitProgress { phase: 'verify' | 'write' | 'shrink' | 'capture'; done: number; total: number }
export interface FitOptions {
  store: ImageStore;
  name: string;
  /** the target disk's size in bytes (rounded down to whole sectors) */
  size: number;
  /** the new image's name (default NAME-fit-20g, -256m, or -BYTES) */
  as?: string;
  workers?: number;
  onProgress?: (p: FitProgress) => void;
  signal?: AbortSignal;
}
export interface FitImageResult {
  image: OpenImage;
  from: string;
  size: number;
  partition: number;
  /** the filesystem found in the last partition */
  filesystem?: string;
  oldSize: number;
  newSize: number;
  /** the filesystem's minimum size, when it had to shrink */
  minimum?: number;
  /** one summary line per tool run */
  tools: string[];
  newChunks: number;
  newBytes: number;
  seconds: number;
}

/** NAME-fit-20g for whole GiB, NAME-fit-256m for whole MiB, else NAME-fit-BYTES. */
export function fitName(name: string, size: number): string {
  const [unit, suffix] = size % 2 ** 30 === 0 ? [2 ** 30, 'g'] : size % 2 ** 20 === 0 ? [2 ** 20, 'm'] : [1, ''];
  return `${name}-fit-${size / unit}${suffix}`;
}

function gib(n: number): string {
  return `${n} bytes (${(n / 2 ** 30).toFixed(2)} GiB)`;
}

function tooSmall(m: Manifest, size: number, needed: number, why: string): RackcastError {
  return new RackcastError('RC_ERR_TARGET_TOO_SMALL', `image ${m.name} cannot be fitted to ${gib(size)}: ${why}; it needs at least ${gib(needed)}`, { image: m.name, size, needed });
}

/** Reads of the table sectors a manifest carries (zeros elsewhere): planning without a disk. */
function manifestIo(m: Manifest): SectorIo {
  const raw = m.partitionTable.raw.map((r) => ({ offset: r.offset, data: Buffer.from(r.data, 'base64') }));
  return {
    read: async (offset, length) => {
      const b = Buffer.alloc(length);
      for (const r of raw) if (r.offset < offset + length && r.offset + r.data.length > offset) r.data.copy(b, Math.max(0, r.offset - offset), Math.max(0, offset - r.offset));
      return b;
    },
    write: async () => { throw new RackcastError('RC_ERR_IO', 'the manifest is read-only'); },
  };
}

async function fileIo(path: string): Promise<SectorIo & { close(): Promise<void> }> {
  const fh = await open(path, 'r+');
  return { ...handleIo(fh, path), close: async () => { await fh.sync(); await fh.close(); } };
}

async function plan(io: SectorIo, m: Manifest, size: number): Promise<LastPartitionPlan> {
  const o = await planLastPartition(io, m.disk.sectorSize, m.disk.size, size, 'fit');
  if (!o.ok) throw tooSmall(m, size, m.disk.size, `its partition table cannot be changed (${o.reason})`);
  return o.plan;
}

/** Step 3: make the last partition's filesystem fit `p.newSize`; returns its minimum. */
async function shrinkLast(path: string, io: SectorIo, m: Manifest, size: number, p: LastPartitionPlan, tools: string[], tick: () => void, signal?: AbortSignal): Promise<{ fs: ResizableFs; policy: string; minimum: number }> {
  const f = await filesystemOf(io, p);
  const whole = p.start + p.oldSize + p.tailBytes;
  if ('why' in f) throw tooSmall(m, size, whole, `partition ${p.index}, the last, cannot shrink (${f.why})`);
  const o = signal ? { signal } : {};
  const minimum = await withPartition(path, p.start, p.oldSize, async (dev) => {
    tools.push(await checkBeforeResize(f.fs, dev, 'yes', o));
    tick();
    const min = await minimumSize(f.fs, dev, o);
    tick();
    if (min > p.newSize) {
      const ss = m.disk.sectorSize;
      throw tooSmall(m, size, Math.ceil((p.start + min) / ss) * ss + p.tailBytes, `partition ${p.index} (${f.policy}) can shrink to ${min} bytes at the least, and starts at byte ${p.start}`);
    }
    tools.push(await shrinkFs(f.fs, dev, p.newSize, o));
    return min;
  }, signal);
  return { fs: f.fs, policy: f.policy, minimum };
}

/** Step 4's checks: the table as our reader and sfdisk see it. */
async function checkTable(path: string, io: SectorIo, m: Manifest, size: number, signal?: AbortSignal): Promise<string> {
  const t = await readPartitionTable((o, l) => io.read(o, l), size, m.disk.sectorSize);
  if (t.kind !== m.partitionTable.kind || t.warnings.length) {
    throw new RackcastError('RC_ERR_PT_INVALID', `the rewritten table does not read back cleanly: ${t.kind}; ${t.warnings.join('; ')}`, { image: m.name });
  }
  const r = await runTool('sfdisk', ['--verify', path], signal ? { signal } : {});
  if (r.stderr.trim() !== '' || !/No errors detected/.test(r.stdout)) throw new RackcastError('RC_ERR_PT_INVALID', `sfdisk --verify: ${r.stdout.trim()} ${r.stderr.trim()}`, { image: m.name });
  return 'sfdisk --verify: no errors';
}

export async function fitImage(o: FitOptions): Promise<FitImageResult> {
  const t0 = performance.now();
  const img = o.store.open(o.name);
  const m = img.manifest;
  const ss = m.disk.sectorSize;
  const size = Math.floor(o.size / ss) * ss;
  const name = o.as ?? fitName(m.name, size);
  ImageStore.checkName(name);
  if (o.store.has(name)) throw new RackcastError('RC_ERR_IMAGE_EXISTS', `an image named "${name}" already exists`, { image: name });
  if (!(size > 0)) throw new RackcastError('RC_ERR_USAGE', `--size must be at least one sector (${ss} bytes)`);
  if (size >= m.disk.size) {
    throw new RackcastError('RC_ERR_USAGE', `image ${m.name}'s disk is ${gib(m.disk.size)}: it fits a disk of ${gib(size)} as it is (restore it there, with --grow to use the space)`, { image: m.name, size });
  }
  await plan(manifestIo(m), m, size); // refuse what cannot work before writing anything
  const tmp = join(o.store.root, 'tmp', `fit-${name}-${randomBytes(4).toString('hex')}.img`);
  const abort = (): void => { if (o.signal?.aborted) throw new RackcastError('RC_ERR_IO', `fit of ${m.name} interrupted`, { image: m.name }); };
  const tools: string[] = [];
  try {
    await restoreImage({
      store: o.store, name: m.name, target: tmp, ...(o.workers ? { workers: o.workers } : {}),
      onProgress: (p) => { abort(); o.onProgress?.({ phase: p.phase === 'verify' ? 'verify' : 'write', done: p.done, total: p.total }); },
    });
    abort();
    let step = 0;
    const tick = (): void => { abort(); o.onProgress?.({ phase: 'shrink', done: ++step, total: 4 }); };
    o.onProgress?.({ phase: 'shrink', done: 0, total: 4 });
    const io = await fileIo(tmp);
    let p: LastPartitionPlan;
    let shrunk: Awaited<ReturnType<typeof shrinkLast>> | undefined;
    try {
      p = await plan(io, m, size);
      if (p.newSize < p.oldSize) shrunk = await shrinkLast(tmp, io, m, size, p, tools, tick, o.signal);
      abort();
    } finally {
      await io.close();
    }
    await truncate(tmp, size);
    const cut = await fileIo(tmp);
    try {
      await p.apply(cut);
      tools.push(await checkTable(tmp, cut, m, size, o.signal));
    } finally {
      await cut.close();
    }
    if (shrunk) {
      const fs = shrunk.fs;
      tools.push(await withPartition(tmp, p.start, p.newSize, (dev) => checkFs(fs, dev, o.signal ? { signal: o.signal } : {}), o.signal));
    }
    o.onProgress?.({ phase: 'shrink', done: 4, total: 4 });
    const note = p.newSize < p.oldSize ? `fitted to ${size} bytes: partition ${p.index} (${shrunk?.policy}) shrunk from ${p.oldSize} to ${p.newSize} bytes`
      : `fitted to ${size} bytes: partition table rewritten, partitions unchanged`;
    const cap = await captureImage({
      store: o.store, source: tmp, name, blockSize: m.blockSize, level: m.compression.level, derivedFrom: { image: m.name, digest: img.digest, note },
      ...(o.workers ? { workers: o.workers } : {}), ...(o.signal ? { signal: o.signal } : {}),
      onProgress: (q) => o.onProgress?.({ phase: 'capture', done: q.done, total: q.total }),
    });
    return {
      image: cap.image, from: m.name, size, partition: p.index, oldSize: p.oldSize, newSize: p.newSize, tools,
      ...(shrunk ? { filesystem: shrunk.policy, minimum: shrunk.minimum } : {}), newChunks: cap.newChunks, newBytes: cap.newBytes, seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    await rm(tmp, { force: true });
  }
}
