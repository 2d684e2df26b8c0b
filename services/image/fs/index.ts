// Used blocks: which bytes of a disk a capture must read (docs/image-format.md, "Used blocks").
//
// allocationFor() recognises the filesystem in one partition by its magic and reads its
// allocation map (ext2/3/4 block bitmaps, the FAT, NTFS's $Bitmap); anything else — another
// filesystem, LVM, swap, RAID members, encrypted volumes, unreadable or contradictory metadata,
// a filesystem that is not clean — is 'raw' (every byte used) with a reason. It never throws for
// bad input: the input is a disk someone else wrote.
//
// planDisk() does that for every partition of a table and gives the disk-level list of used byte
// ranges: everything outside the partitions (the table itself, the GPT backup, gaps, EBRs) and
// every raw partition is used, as are the filesystems' used ranges.
import type { Partition, PartitionTable } from '../partition/table.ts';
import { extAllocation, EXT_MAGIC } from './ext.ts';
import { fatAllocation, fatBootSectorProblem } from './fat.ts';
import { ntfsAllocation, NTFS_OEM } from './ntfs.ts';
import { clip, normalize, subtract, totalBytes, type Range } from './ranges.ts';
import { FsRefusal, PartReader, type ReadAt } from './reader.ts';
import type { Allocation, AllocationOptions, FsPolicy } from './types.ts';

export type { Allocation, AllocationOptions, FsPolicy } from './types.ts';
export type { Range } from './ranges.ts';
export type { ReadAt } from './reader.ts';

export interface PartitionRef { start: number; size: number; typeHint?: string }

/** Partition types (MBR ids, GPT type GUIDs, lower case) whose contents are never a plain filesystem. */
const RAW_TYPES: Record<string, string> = {
  '0x82': 'Linux swap', '0x8e': 'Linux LVM physical volume', '0xfd': 'Linux RAID member',
  '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f': 'Linux swap',
  'e6d6d379-f507-44c2-a23c-238f2a3df928': 'Linux LVM physical volume',
  'a19d880f-05fc-4d3b-a006-743f0f84911e': 'Linux RAID member',
  'ca7d7ccb-63ed-4c53-861c-1742536059cc': 'LUKS encrypted volume',
  '5808c8aa-7e8f-42e0-85d2-e1e90434cfb3': 'Windows LDM metadata',
  'af9b60a0-1431-4f62-bc68-3311714a69ad': 'Windows LDM data',
  'e3c9e316-0b5c-4db8-817d-f92df00215ae': 'Microsoft reserved partition',
};
/** MBR extended-partition containers: their logical partitions are planned one by one. */
export const MBR_CONTAINER_TYPES = new Set(['0x05', '0x0f', '0x85']);

function raw(p: PartitionRef, reason: string): Allocation {
  return { policy: 'raw', reason, usedBytes: p.size, ranges: p.size > 0 ? [[p.start, p.start + p.size]] : [] };
}

/** Other signatures a partition may carry (what blkid would call it), for the reason text. */
function otherSignature(head: Buffer): string | undefined {
  if (head.length >= 6 && head.toString('latin1', 0, 6) === 'LUKS\xba\xbe') return 'LUKS encrypted volume';
  for (let s = 0; s < 4; s++) if (head.length >= s * 512 + 8 && head.toString('latin1', s * 512, s * 512 + 8) === 'LABELONE') return 'LVM2 physical volume';
  for (const page of [4096, 8192, 16384, 65536]) {
    if (head.length >= page) {
      const sig = head.toString('latin1', page - 10, page);
      if (sig === 'SWAPSPACE2' || sig === 'SWAP-SPACE') return 'Linux swap';
    }
  }
  if (head.length >= 0x1000 + 4 && head.readUInt32LE(0x1000) === 0xa92b4efc) return 'Linux RAID member (md 1.2 superblock)';
  if (head.length >= 0x10000 + 8 && head.toString('latin1', 0x10040, 0x10048) === '_BHRfS_M') return 'btrfs filesystem (not supported)';
  if (head.length >= 4 && head.toString('latin1', 0, 4) === 'XFSB') return 'xfs filesystem (not supported)';
  if (head.length >= 11 && head.toString('latin1', 3, 11) === 'EXFAT   ') return 'exFAT filesystem (not supported)';
  return undefined;
}

/**
 * The allocation of the filesystem in one partition. `readAt` reads absolute disk bytes (it may
 * return fewer at the end of the disk). Never throws: anything unexpected is 'raw' with a reason.
 */
export async function allocationFor(readAt: ReadAt, partition: PartitionRef, opts: AllocationOptions = {}): Promise<Allocation> {
  const p = partition;
  if (!Number.isSafeInteger(p.start) || !Number.isSafeInteger(p.size) || p.start < 0 || p.size < 0) {
    return { policy: 'raw', reason: `partition extent ${p.start}+${p.size} is not a byte range`, usedBytes: 0, ranges: [] };
  }
  const hint = p.typeHint?.toLowerCase();
  if (hint !== undefined && MBR_CONTAINER_TYPES.has(hint)) return raw(p, 'extended partition container');
  if (hint !== undefined && RAW_TYPES[hint] !== undefined) return raw(p, `partition type ${hint} (${RAW_TYPES[hint]}): captured raw`);
  if (p.size < 4096) return raw(p, `partition of ${p.size} bytes is too small for a supported filesystem`);
  const r = new PartReader(readAt, p.start, p.size);
  try {
    const head = Buffer.from(await r.at(0, Math.min(p.size, 0x10000 + 0x100), 'first 64 KiB of the partition'));
    const found: ('ext' | 'fat' | 'ntfs')[] = [];
    if (head.toString('latin1', 3, 11) === NTFS_OEM) found.push('ntfs');
    if (head.readUInt16LE(1024 + 56) === EXT_MAGIC) found.push('ext');
    if (!found.includes('ntfs') && fatBootSectorProblem(head.subarray(0, 512)) === undefined) found.push('fat');
    const other = otherSignature(head);
    if (other !== undefined) return raw(p, `${other}: captured raw${found.length ? ` (a stale ${found.join('/')} signature is also present)` : ''}`);
    if (found.length > 1) return raw(p, `ambiguous: both ${found.join(' and ')} signatures are present; captured raw`);
    const kind = found[0];
    if (kind === undefined) return raw(p, 'no supported filesystem (ext2/3/4, FAT, NTFS) found: captured raw');
    const a = kind === 'ext' ? await extAllocation(r, opts) : kind === 'fat' ? await fatAllocation(r, opts) : await ntfsAllocation(r, opts);
    // every parser keeps its ranges inside the partition; make sure of it
    const ranges = clip(normalize(a.ranges), p.start, p.start + p.size);
    return { ...a, ranges, usedBytes: totalBytes(ranges) };
  } catch (e) {
    if (e instanceof FsRefusal) return raw(p, `${e.message}: captured raw`);
    const why = e instanceof RangeError ? `malformed metadata (${e.message})` : `unexpected error (${(e as Error).message ?? String(e)})`;
    return raw(p, `${why}: captured raw`);
  }
}

export interface PartitionPlan {
  index: number;
  start: number;
  size: number;
  type: string;
  allocation: Allocation;
}

export interface DiskPlan {
  diskSize: number;
  partitions: PartitionPlan[];
  /** absolute byte ranges of the disk a capture must read; everything else may be a hole */
  ranges: Range[];
  usedBytes: number;
}

/**
 * Plan a capture: each partition's allocation, and the disk's used byte ranges. Used = everything
 * not inside a filesystem-mapped partition (table sectors, GPT backup, gaps, EBRs, raw partitions)
 * plus the filesystems' used ranges. A disk without partitions is tried as one whole-disk
 * filesystem (a "superfloppy", reported as partition index 0). Never throws for bad input.
 */
export async function planDisk(readAt: ReadAt, table: Pick<PartitionTable, 'kind' | 'partitions'>, diskSize: number, opts: AllocationOptions = {}): Promise<DiskPlan> {
  // No partitions (no table, or an "MBR" that is really a FAT boot sector with empty entries):
  // the whole disk may be one filesystem.
  const parts: Partition[] = table.partitions.length === 0 ? [{ index: 0, start: 0, size: diskSize, type: 'none' }] : table.partitions;
  const plans: PartitionPlan[] = [];
  const mapped: Range[] = []; // extents of partitions whose filesystem says what is used
  const extents: Range[] = []; // extents of every partition but containers
  const used: Range[] = [];
  for (const part of parts) {
    const start = Math.max(0, Math.min(part.start, diskSize));
    const end = Math.max(start, Math.min(part.start + part.size, diskSize));
    const ref: PartitionRef = { start, size: end - start, typeHint: part.type };
    const container = table.kind === 'mbr' && MBR_CONTAINER_TYPES.has(part.type.toLowerCase());
    let allocation = await allocationFor(readAt, ref, opts);
    if (end - start < part.size) allocation = { ...allocation, reason: `${allocation.reason} (partition clipped to the disk's end)` };
    plans.push({ index: part.index, start: part.start, size: part.size, type: part.type, allocation });
    if (container) continue; // its EBRs and free space stay used as "outside any partition"
    extents.push([start, end]);
    if (allocation.policy === 'raw') used.push([start, end]);
    else { mapped.push([start, end]); used.push(...allocation.ranges); }
  }
  const outside = subtract([[0, diskSize]], normalize(mapped));
  const ranges = normalize([...outside, ...used]);
  // a container's own figure: what of it, outside its logical partitions, is captured
  const inPartitions = normalize(extents);
  for (const pl of plans) {
    if (table.kind === 'mbr' && MBR_CONTAINER_TYPES.has(pl.type.toLowerCase())) {
      const usedIn = totalBytes(subtract(clip(ranges, pl.start, pl.start + pl.size), inPartitions));
      pl.allocation = { ...pl.allocation, reason: 'extended partition container: its EBRs and space outside logical partitions are captured; logical partitions are planned on their own', usedBytes: usedIn, ranges: [] };
    }
  }
  return { diskSize, partitions: plans, ranges, usedBytes: totalBytes(ranges) };
}

/** The per-partition record proposed for the manifest (docs/image-format.md, "Used blocks"). */
export function manifestAllocations(plan: DiskPlan): { index: number; policy: FsPolicy; reason: string; usedBytes: number }[] {
  return plan.partitions.map((p) => ({ index: p.index, policy: p.allocation.policy, reason: p.allocation.reason, usedBytes: p.allocation.usedBytes }));
}
