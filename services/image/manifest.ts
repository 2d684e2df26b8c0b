// The image manifest: everything needed to rebuild a disk from content-addressed chunks.
// Stored as UTF-8 JSON (docs/image-format.md). The signature covers the exact bytes, so no
// canonical-JSON rules are needed: encode once, hash and sign those bytes, never re-serialise.
//
//   field            type                 meaning
//   format           "rackcast.image"     magic
//   version          1                    bumped on incompatible change
//   name             string               image name (see IMAGE_NAME)
//   createdAt        ISO-8601 string
//   source           {path, kind}         what was captured ("block" | "file")
//   disk             {size, sectorSize}   bytes; logical sector size 512 or 4096
//   blockSize        integer              power of two, 64 KiB … 64 MiB
//   compression      {algorithm, level}   "zstd"
//   partitionTable   PartitionTable       raw regions base64, parsed partitions
//   extents          [{start, hashes[]}]  runs of stored blocks; every other block is a hole
//   stats            {blocks, dataBlocks, holeBlocks, uniqueChunks}
//   derivedFrom?     {image, digest, note}  a variant made from another image (`image fit`)
import { createHash } from 'node:crypto';
import { RackcastError } from '../errors.ts';
import type { Partition, PartitionTable } from './partition/table.ts';

export const MANIFEST_FORMAT = 'rackcast.image';
export const MANIFEST_VERSION = 1;
export const MAX_MANIFEST_BYTES = 512 * 1024 * 1024;
/** 1 PiB disks and 2^26 blocks at most: bounded memory for per-block arrays of hostile manifests. */
export const MAX_DISK_BYTES = 2 ** 50;
export const MAX_BLOCKS = 2 ** 26;
export const IMAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const HASH = /^[0-9a-f]{64}$/;

export interface Extent { start: number; hashes: string[] }
export interface ManifestPartitionTable {
  kind: 'gpt' | 'mbr' | 'none';
  diskId?: string;
  partitions: Partition[];
  raw: { offset: number; data: string }[];
  warnings: string[];
}
export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: typeof MANIFEST_VERSION;
  name: string;
  createdAt: string;
  source: { path: string; kind: 'block' | 'file' };
  disk: { size: number; sectorSize: number };
  blockSize: number;
  compression: { algorithm: 'zstd'; level: number };
  partitionTable: ManifestPartitionTable;
  extents: Extent[];
  stats: { blocks: number; dataBlocks: number; holeBlocks: number; uniqueChunks: number };
  /** How each partition was captured (services/image/fs): by its allocation map, or raw and why. Absent: the whole disk was read. */
  usedBlocks?: UsedBlocks;
  /** The image was made from another one (`image fit`): its name and digest, and what was changed. */
  derivedFrom?: { image: string; digest: string; note: string };
}
export interface UsedBlocks {
  version: 1;
  /** the allocation maps of filesystems that were not clean were trusted anyway (--force) */
  forced: boolean;
  /** bytes read from the source (used ranges); the rest of the disk is restored as zeros */
  readBytes: number;
  partitions: { index: number; policy: string; reason: string; usedBytes: number }[];
}

export function tableToManifest(t: PartitionTable): ManifestPartitionTable {
  return {
    kind: t.kind,
    ...(t.diskId !== undefined ? { diskId: t.diskId } : {}),
    partitions: t.partitions,
    raw: t.raw.map((r) => ({ offset: r.offset, data: r.data.toString('base64') })),
    warnings: t.warnings,
  };
}

export function blockCount(m: Pick<Manifest, 'disk' | 'blockSize'>): number {
  return Math.ceil(m.disk.size / m.blockSize);
}

/** Length in bytes of block i (the last block of a disk may be short). */
export function blockLength(m: Pick<Manifest, 'disk' | 'blockSize'>, i: number): number {
  return Math.min(m.blockSize, m.disk.size - i * m.blockSize);
}

/** Per-block content hash, or null for a hole, in block order. */
export function blockHashes(m: Manifest): (string | null)[] {
  const out = new Array<string | null>(blockCount(m)).fill(null);
  for (const e of m.extents) e.hashes.forEach((h, k) => { out[e.start + k] = h; });
  return out;
}

export function uniqueHashes(m: Manifest): Set<string> {
  const s = new Set<string>();
  for (const e of m.extents) for (const h of e.hashes) s.add(h);
  return s;
}

/** A unique chunk: its ordinal in order of first use, content hash, length, and the blocks it fills. */
export interface ChunkEntry { index: number; hash: string; length: number; blocks: number[] }

/**
 * The image's unique chunks in order of first use. Verify, export, import and multicast all walk
 * this (a chunk used by several blocks is checked, exported or sent once; its ordinal is its index
 * on the multicast wire).
 */
export function chunkTable(m: Manifest): ChunkEntry[] {
  const byHash = new Map<string, ChunkEntry>();
  const out: ChunkEntry[] = [];
  // in disk order even if a caller built the extents out of order (decodeManifest refuses that)
  for (const x of [...m.extents].sort((p, q) => p.start - q.start)) {
    x.hashes.forEach((h, k) => {
      const i = x.start + k;
      let e = byHash.get(h);
      if (!e) {
        e = { index: out.length, hash: h, length: blockLength(m, i), blocks: [] };
        byHash.set(h, e);
        out.push(e);
      }
      e.blocks.push(i);
    });
  }
  return out;
}

/** Build extents from a per-block hash array (null = hole). */
export function extentsFrom(hashes: readonly (string | null)[]): Extent[] {
  const out: Extent[] = [];
  let cur: Extent | undefined;
  hashes.forEach((h, i) => {
    if (h === null) { cur = undefined; return; }
    if (!cur) { cur = { start: i, hashes: [] }; out.push(cur); }
    cur.hashes.push(h);
  });
  return out;
}

export function encodeManifest(m: Manifest): Buffer {
  return Buffer.from(JSON.stringify(m, null, 1) + '\n', 'utf8');
}

export function manifestDigest(bytes: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(bytes).digest('hex');
}

function bad(msg: string, path: string): never {
  throw new RackcastError('RC_ERR_MANIFEST_INVALID', `manifest: ${path}: ${msg}`, { path });
}
function obj(v: unknown, p: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad('expected an object', p);
  return v as Record<string, unknown>;
}
function int(v: unknown, p: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) bad(`expected an integer in [${min}, ${max}]`, p);
  return v;
}
function str(v: unknown, p: string, max = 4096): string {
  if (typeof v !== 'string' || v.length > max) bad(`expected a string of at most ${max} characters`, p);
  return v;
}
function arr(v: unknown, p: string): unknown[] {
  if (!Array.isArray(v)) bad('expected an array', p);
  return v;
}

/** Parse and validate manifest bytes. Throws RC_ERR_MANIFEST_INVALID saying which field is wrong. */
export function decodeManifest(bytes: Uint8Array): Manifest {
  if (bytes.length > MAX_MANIFEST_BYTES) bad(`larger than ${MAX_MANIFEST_BYTES} bytes`, '$');
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8'));
  } catch (e) {
    bad(`not JSON (${(e as Error).message})`, '$');
  }
  const m = obj(v, '$');
  if (m.format !== MANIFEST_FORMAT) bad(`expected "${MANIFEST_FORMAT}"`, 'format');
  if (m.version !== MANIFEST_VERSION) bad(`unsupported version ${String(m.version)}`, 'version');
  const name = str(m.name, 'name', 128);
  if (!IMAGE_NAME.test(name)) bad('not a valid image name', 'name');
  str(m.createdAt, 'createdAt', 64);
  const src = obj(m.source, 'source');
  str(src.path, 'source.path');
  if (src.kind !== 'block' && src.kind !== 'file') bad('expected "block" or "file"', 'source.kind');
  const disk = obj(m.disk, 'disk');
  const size = int(disk.size, 'disk.size', 1, MAX_DISK_BYTES);
  const sectorSize = int(disk.sectorSize, 'disk.sectorSize', 512, 65536);
  if (sectorSize & (sectorSize - 1)) bad('not a power of two', 'disk.sectorSize');
  const bs = int(m.blockSize, 'blockSize', 65536, 64 << 20);
  if (bs & (bs - 1) || bs % sectorSize) bad('not a power of two multiple of the sector size', 'blockSize');
  const comp = obj(m.compression, 'compression');
  if (comp.algorithm !== 'zstd') bad('expected "zstd"', 'compression.algorithm');
  int(comp.level, 'compression.level', 1, 22);
  const pt = obj(m.partitionTable, 'partitionTable');
  if (pt.kind !== 'gpt' && pt.kind !== 'mbr' && pt.kind !== 'none') bad('unknown kind', 'partitionTable.kind');
  arr(pt.partitions, 'partitionTable.partitions').forEach((p, i) => {
    const q = obj(p, `partitionTable.partitions[${i}]`);
    int(q.index, `partitionTable.partitions[${i}].index`, 1);
    int(q.start, `partitionTable.partitions[${i}].start`);
    int(q.size, `partitionTable.partitions[${i}].size`);
    str(q.type, `partitionTable.partitions[${i}].type`, 64);
  });
  arr(pt.raw, 'partitionTable.raw').forEach((r, i) => {
    const q = obj(r, `partitionTable.raw[${i}]`);
    int(q.offset, `partitionTable.raw[${i}].offset`, 0, size);
    str(q.data, `partitionTable.raw[${i}].data`, 16 << 20);
  });
  arr(pt.warnings, 'partitionTable.warnings').forEach((w, i) => str(w, `partitionTable.warnings[${i}]`));
  const blocks = Math.ceil(size / bs);
  if (blocks > MAX_BLOCKS) bad(`${blocks} blocks; at most ${MAX_BLOCKS} (use a larger block size)`, 'disk.size');
  let next = 0;
  let data = 0;
  const unique = new Set<string>();
  arr(m.extents, 'extents').forEach((e, i) => {
    const x = obj(e, `extents[${i}]`);
    const start = int(x.start, `extents[${i}].start`, next, blocks - 1);
    const hashes = arr(x.hashes, `extents[${i}].hashes`);
    if (hashes.length === 0 || start + hashes.length > blocks) bad('empty, or runs past the end of the disk', `extents[${i}]`);
    hashes.forEach((h, k) => {
      if (typeof h !== 'string' || !HASH.test(h)) bad('expected a lowercase SHA-256 hex digest', `extents[${i}].hashes[${k}]`);
      unique.add(h);
    });
    next = start + hashes.length + 1; // extents are sorted, disjoint and not adjacent
    data += hashes.length;
  });
  if (m.usedBlocks !== undefined) {
    const u = obj(m.usedBlocks, 'usedBlocks');
    if (u.version !== 1) bad('unsupported version', 'usedBlocks.version');
    if (typeof u.forced !== 'boolean') bad('expected a boolean', 'usedBlocks.forced');
    int(u.readBytes, 'usedBlocks.readBytes', 0, size);
    arr(u.partitions, 'usedBlocks.partitions').forEach((p, i) => {
      const q = obj(p, `usedBlocks.partitions[${i}]`);
      int(q.index, `usedBlocks.partitions[${i}].index`);
      str(q.policy, `usedBlocks.partitions[${i}].policy`, 16);
      str(q.reason, `usedBlocks.partitions[${i}].reason`, 2000);
      int(q.usedBytes, `usedBlocks.partitions[${i}].usedBytes`, 0, size);
    });
  }
  if (m.derivedFrom !== undefined) {
    const d = obj(m.derivedFrom, 'derivedFrom');
    str(d.image, 'derivedFrom.image', 128);
    str(d.digest, 'derivedFrom.digest', 80);
    str(d.note, 'derivedFrom.note', 2000);
  }
  const st = obj(m.stats, 'stats');
  if (st.blocks !== blocks || st.dataBlocks !== data || st.holeBlocks !== blocks - data || st.uniqueChunks !== unique.size) {
    bad('do not match the extents', 'stats');
  }
  return m as unknown as Manifest;
}
