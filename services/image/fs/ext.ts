// ext2/3/4 allocation: superblock → block group descriptors → block bitmaps.
//
// Layout (the kernel's "ext4 Data Structures and Algorithms", Documentation/filesystems/ext4):
// the superblock is 1024 bytes at byte 1024 of the filesystem. Blocks are grouped; group g starts
// at block s_first_data_block + g·s_blocks_per_group and has a descriptor (32 bytes, or
// s_desc_size with the 64bit feature) in the group descriptor table (GDT), which follows the
// superblock (meta_bg: one GDT block at the start of groups 0, 1 and last of each meta group).
// A descriptor names its group's block bitmap (one bit per block, or per cluster with bigalloc;
// bit i least significant first), inode bitmap and inode table, which with flex_bg may lie in
// another group. A group flagged BLOCK_UNINIT has no bitmap on disk: its used blocks are exactly
// the metadata inside it (superblock and GDT backups, reserved GDT blocks, bitmaps and inode
// tables), which we compute. Bytes of the partition past the filesystem's last block are kept.
import { RangeBuilder, bitRuns, totalBytes } from './ranges.ts';
import { refuse, type PartReader } from './reader.ts';
import type { Allocation, AllocationOptions } from './types.ts';

export const EXT_MAGIC = 0xef53;
/**
 * More groups than this is captured raw: 2^20 groups is 128 TiB with 4 KiB blocks and the usual
 * 32768 blocks per group; the per-group tables then take about 30 MiB.
 */
export const EXT_MAX_GROUPS = 1 << 20;

const COMPAT_HAS_JOURNAL = 0x4;
const COMPAT_SPARSE_SUPER2 = 0x200;
const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_JOURNAL_DEV = 0x8;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_64BIT = 0x80;
// compression, filetype, recover, journal_dev, meta_bg, extents, 64bit, mmp, flex_bg, ea_inode,
// dirdata, csum_seed, largedir, inline_data, encrypt, casefold: none changes how blocks are mapped.
const INCOMPAT_KNOWN = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000;
const INCOMPAT_EXT3 = 0x2 | 0x4 | 0x10; // what ext3 knew: anything else makes it ext4
const RO_COMPAT_SPARSE_SUPER = 0x1;
const RO_COMPAT_GDT_CSUM = 0x10;
const RO_COMPAT_BIGALLOC = 0x200;
const RO_COMPAT_METADATA_CSUM = 0x400;
const RO_COMPAT_EXT3 = 0x1 | 0x2 | 0x4; // sparse_super, large_file, btree_dir
const STATE_VALID = 0x1;
const STATE_ERROR = 0x2;
const STATE_ORPHAN = 0x4;
const BG_BLOCK_UNINIT = 0x2;

export interface ExtSuper {
  blockSize: number;
  clusterBits: number;
  blocksCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  clustersPerGroup: number;
  inodesPerGroup: number;
  inodeSize: number;
  state: number;
  compat: number;
  incompat: number;
  roCompat: number;
  reservedGdt: number;
  descSize: number;
  firstMetaBg: number;
  backupBgs: [number, number];
  groups: number;
}

/** Decode and sanity-check the superblock (1024 bytes); refuses what it cannot map. */
export function decodeExtSuper(sb: Buffer, partSize: number): ExtSuper {
  if (sb.length < 1024) refuse('ext superblock truncated');
  if (sb.readUInt16LE(56) !== EXT_MAGIC) refuse('no ext superblock magic');
  const logBlock = sb.readUInt32LE(24);
  if (logBlock > 6) refuse(`ext block size 2^(10+${logBlock}) is not supported`);
  const blockSize = 1024 << logBlock;
  const compat = sb.readUInt32LE(92);
  const incompat = sb.readUInt32LE(96);
  const roCompat = sb.readUInt32LE(100);
  const is64 = (incompat & INCOMPAT_64BIT) !== 0;
  const bigalloc = (roCompat & RO_COMPAT_BIGALLOC) !== 0;
  const logCluster = sb.readUInt32LE(28);
  const clusterBits = bigalloc ? logCluster - logBlock : 0;
  if (clusterBits < 0 || clusterBits > 16) refuse(`ext cluster size 2^(10+${logCluster}) with block size ${blockSize} is not valid`);
  const blocksCount = sb.readUInt32LE(4) + (is64 ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
  const firstDataBlock = sb.readUInt32LE(20);
  const blocksPerGroup = sb.readUInt32LE(32);
  const clustersPerGroup = bigalloc ? sb.readUInt32LE(36) : blocksPerGroup;
  const inodesPerGroup = sb.readUInt32LE(40);
  const rev = sb.readUInt32LE(76);
  const inodeSize = rev === 0 ? 128 : sb.readUInt16LE(88);
  const descSize = is64 ? sb.readUInt16LE(254) : 32;
  const s: Omit<ExtSuper, 'groups'> = {
    blockSize, clusterBits, blocksCount, firstDataBlock, blocksPerGroup, clustersPerGroup, inodesPerGroup, inodeSize,
    state: sb.readUInt16LE(58), compat, incompat, roCompat, reservedGdt: sb.readUInt16LE(206), descSize,
    firstMetaBg: sb.readUInt32LE(260), backupBgs: [sb.readUInt32LE(0x24c), sb.readUInt32LE(0x250)],
  };
  if (incompat & INCOMPAT_JOURNAL_DEV) refuse('ext external journal device, not a filesystem');
  if (incompat & ~INCOMPAT_KNOWN) refuse(`ext incompatible features 0x${(incompat & ~INCOMPAT_KNOWN).toString(16)} are unknown`);
  if (blocksCount === 0 || blocksCount * blockSize > partSize) {
    refuse(`ext filesystem claims ${blocksCount} blocks of ${blockSize} bytes, more than its partition (${partSize} bytes)`);
  }
  if (firstDataBlock !== (blockSize === 1024 && !bigalloc ? 1 : 0)) refuse(`ext first data block ${firstDataBlock} is not valid for ${blockSize}-byte blocks`);
  if (blocksPerGroup < 256) refuse(`ext ${blocksPerGroup} blocks per group is below mke2fs's minimum of 256`);
  if (clustersPerGroup < 8 || clustersPerGroup % 8 !== 0 || clustersPerGroup > 8 * blockSize) refuse(`ext ${clustersPerGroup} clusters per group is not valid`);
  if (blocksPerGroup !== clustersPerGroup * 2 ** clusterBits) refuse(`ext ${blocksPerGroup} blocks per group disagrees with ${clustersPerGroup} clusters per group`);
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) refuse(`ext inode size ${inodeSize} is not valid`);
  if (inodesPerGroup === 0 || inodesPerGroup > 8 * blockSize) refuse(`ext ${inodesPerGroup} inodes per group is not valid`);
  if (is64 && (descSize < 64 || descSize > 1024 || (descSize & (descSize - 1)) !== 0)) refuse(`ext descriptor size ${descSize} is not valid`);
  const groups = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  if (groups < 1 || groups > EXT_MAX_GROUPS) refuse(`ext ${groups} block groups is out of range`);
  return { ...s, groups };
}

/** ext2/ext3/ext4, the way blkid tells them apart: by the features in use. */
export function extFlavour(s: Pick<ExtSuper, 'compat' | 'incompat' | 'roCompat'>): 'ext2' | 'ext3' | 'ext4' {
  if ((s.incompat & ~INCOMPAT_EXT3) !== 0 || (s.roCompat & ~RO_COMPAT_EXT3) !== 0) return 'ext4';
  return (s.compat & COMPAT_HAS_JOURNAL) !== 0 ? 'ext3' : 'ext2';
}

/** Why the allocation map of this filesystem cannot be trusted, or undefined when it is clean. */
export function extUnclean(s: Pick<ExtSuper, 'state' | 'incompat'>): string | undefined {
  const why: string[] = [];
  if ((s.state & STATE_VALID) === 0) why.push('not cleanly unmounted (in use, or crashed)');
  if (s.state & STATE_ERROR) why.push('marked as having errors');
  if (s.state & STATE_ORPHAN) why.push('orphan recovery in progress');
  if (s.incompat & INCOMPAT_RECOVER) why.push('its journal needs recovery');
  return why.length ? why.join(', ') : undefined;
}

function isPowerOf(n: number, b: number): boolean {
  let x = b;
  while (x < n) x *= b;
  return x === n;
}

/** Does group g hold a superblock backup (sparse_super, sparse_super2)? */
export function extHasSuper(s: ExtSuper, g: number): boolean {
  if (g === 0) return true;
  if (s.compat & COMPAT_SPARSE_SUPER2) return g === s.backupBgs[0] || g === s.backupBgs[1];
  if ((s.roCompat & RO_COMPAT_SPARSE_SUPER) === 0) return true;
  return g === 1 || isPowerOf(g, 3) || isPowerOf(g, 5) || isPowerOf(g, 7);
}

export async function extAllocation(r: PartReader, opts: AllocationOptions): Promise<Allocation> {
  const s = decodeExtSuper(Buffer.from(await r.at(1024, 1024, 'ext superblock')), r.size);
  const policy = extFlavour(s);
  const unclean = extUnclean(s);
  if (unclean !== undefined && !opts.force) {
    return { policy: 'raw', reason: `${policy} filesystem is ${unclean}: its block bitmaps cannot be trusted (force to use them anyway)`, usedBytes: r.size, ranges: [[r.start, r.start + r.size]] };
  }
  const { blockSize, blocksCount, firstDataBlock, blocksPerGroup, groups, descSize } = s;
  const metaBg = (s.incompat & INCOMPAT_META_BG) !== 0;
  const descPerBlock = blockSize / descSize;
  const descBlocks = Math.ceil(groups / descPerBlock);
  if (metaBg && s.firstMetaBg > descBlocks) refuse(`ext first meta group ${s.firstMetaBg} is past the ${descBlocks} descriptor blocks`);
  const groupStart = (g: number): number => firstDataBlock + g * blocksPerGroup;
  const inBounds = (b: number, n: number, what: string): void => {
    if (b < firstDataBlock || b + n > blocksCount) refuse(`ext ${what} at block ${b} lies outside the filesystem`);
  };
  const gdtBlock = (b: number): number => {
    if (!metaBg || b < s.firstMetaBg) return firstDataBlock + 1 + b;
    const g = b * descPerBlock;
    return groupStart(g) + (extHasSuper(s, g) ? 1 : 0);
  };

  // group descriptors, in typed arrays (up to EXT_MAX_GROUPS of them)
  const blockBitmap = new Float64Array(groups);
  const inodeBitmap = new Float64Array(groups);
  const inodeTable = new Float64Array(groups);
  const freeClusters = new Uint32Array(groups);
  const flags = new Uint16Array(groups);
  const is64 = descSize >= 64;
  for (let b = 0; b < descBlocks; b++) {
    const blk = gdtBlock(b);
    inBounds(blk, 1, `group descriptor block ${b}`);
    const buf = await r.at(blk * blockSize, blockSize, `group descriptor block ${b}`);
    for (let k = 0; k < descPerBlock; k++) {
      const g = b * descPerBlock + k;
      if (g >= groups) break;
      const o = k * descSize;
      const hi = (at: number): number => (is64 ? buf.readUInt32LE(o + at) * 2 ** 32 : 0);
      blockBitmap[g] = buf.readUInt32LE(o) + hi(0x20);
      inodeBitmap[g] = buf.readUInt32LE(o + 4) + hi(0x24);
      inodeTable[g] = buf.readUInt32LE(o + 8) + hi(0x28);
      freeClusters[g] = buf.readUInt16LE(o + 0x0c) + (is64 ? buf.readUInt16LE(o + 0x2c) * 65536 : 0);
      flags[g] = buf.readUInt16LE(o + 0x12);
    }
  }
  const inodeTableBlocks = Math.ceil((s.inodesPerGroup * s.inodeSize) / blockSize);
  for (let g = 0; g < groups; g++) {
    inBounds(blockBitmap[g] as number, 1, `group ${g}'s block bitmap`);
    inBounds(inodeBitmap[g] as number, 1, `group ${g}'s inode bitmap`);
    inBounds(inodeTable[g] as number, inodeTableBlocks, `group ${g}'s inode table`);
  }

  // BLOCK_UNINIT is only honoured with group descriptor checksums (as the kernel does).
  const uninitOk = (s.roCompat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM)) !== 0;
  const isUninit = (g: number): boolean => uninitOk && ((flags[g] as number) & BG_BLOCK_UNINIT) !== 0;
  let uninitCount = 0;
  for (let g = 0; g < groups; g++) if (isUninit(g)) uninitCount++;
  // A BLOCK_UNINIT group uses exactly the metadata extents that lie inside it (its own, and with
  // flex_bg possibly other groups'): walk every metadata extent once and file the pieces that
  // fall into uninitialised groups under their group, [start block, end block).
  const uninitMeta = new Map<number, [number, number][]>();
  if (uninitCount > 0) {
    const oldDescBlocks = metaBg ? s.firstMetaBg : descBlocks + s.reservedGdt;
    const file = (a: number, b: number): void => {
      const g0 = Math.floor((a - firstDataBlock) / blocksPerGroup);
      const g1 = Math.min(groups - 1, Math.floor((b - 1 - firstDataBlock) / blocksPerGroup));
      for (let g = Math.max(0, g0); g <= g1; g++) {
        if (!isUninit(g)) continue;
        const gs = groupStart(g);
        const piece: [number, number] = [Math.max(a, gs), Math.min(b, gs + blocksPerGroup)];
        const l = uninitMeta.get(g);
        if (l === undefined) uninitMeta.set(g, [piece]); else l.push(piece);
      }
    };
    for (let g = 0; g < groups; g++) {
      const gs = groupStart(g);
      const sup = extHasSuper(s, g);
      if (sup) file(gs, gs + 1 + oldDescBlocks);
      if (metaBg) {
        const idx = g % descPerBlock;
        if (Math.floor(g / descPerBlock) >= s.firstMetaBg && (idx === 0 || idx === 1 || idx === descPerBlock - 1)) {
          const b = gs + (sup ? 1 : 0);
          file(b, b + 1);
        }
      }
      const bb = blockBitmap[g] as number;
      const ib = inodeBitmap[g] as number;
      const it = inodeTable[g] as number;
      file(bb, bb + 1);
      file(ib, ib + 1);
      file(it, it + inodeTableBlocks);
    }
  }

  const out = new RangeBuilder();
  const fsEnd = blocksCount * blockSize;
  const blk = (b: number): number => r.start + Math.min(b * blockSize, fsEnd);
  if (firstDataBlock > 0) out.add(r.start, r.start + firstDataBlock * blockSize); // 1 KiB blocks: the boot block
  const cbits = s.clusterBits;
  const cluster = 2 ** cbits;
  let freeMismatch = '';
  for (let g = 0; g < groups; g++) {
    const gs = groupStart(g);
    const ge = Math.min(gs + blocksPerGroup, blocksCount);
    const nbits = Math.ceil((ge - gs) / cluster);
    if (isUninit(g)) {
      // no bitmap on disk: the group's metadata only, in whole clusters
      const pieces = (uninitMeta.get(g) ?? []).sort((x, y) => x[0] - y[0]);
      for (const [a, b] of pieces) {
        const cs = gs + Math.floor((a - gs) / cluster) * cluster;
        const ce = Math.min(ge, gs + Math.ceil((b - gs) / cluster) * cluster);
        out.add(blk(cs), blk(ce));
      }
      continue;
    }
    const bm = await r.at((blockBitmap[g] as number) * blockSize, Math.ceil(nbits / 8), `group ${g}'s block bitmap`);
    const set = bitRuns(bm, nbits, 0, (a, b) => out.add(blk(gs + a * cluster), blk(gs + b * cluster)));
    if (freeMismatch === '' && nbits - set !== freeClusters[g]) {
      freeMismatch = `group ${g}'s descriptor counts ${freeClusters[g]} free clusters, its bitmap ${nbits - set}`;
    }
  }
  if (freeMismatch !== '' && !opts.force) {
    return { policy: 'raw', reason: `${policy} filesystem is inconsistent (${freeMismatch}): its block bitmaps cannot be trusted (force to use them anyway)`, usedBytes: r.size, ranges: [[r.start, r.start + r.size]] };
  }
  if (fsEnd < r.size) out.add(r.start + fsEnd, r.start + r.size); // not described by the filesystem: kept
  const ranges = out.done();
  const notes = [`${blockSize}-byte blocks`, `${groups} groups`];
  if (cbits) notes.push(`bigalloc ${blockSize * cluster}-byte clusters`);
  if (uninitCount) notes.push(`${uninitCount} BLOCK_UNINIT`);
  if (unclean !== undefined) notes.push(`FORCED although ${unclean}`);
  if (freeMismatch !== '') notes.push(`FORCED although ${freeMismatch}`);
  return { policy, reason: `${policy} block bitmaps (${notes.join(', ')})`, usedBytes: totalBytes(ranges), ranges };
}
