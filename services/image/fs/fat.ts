// FAT12/16/32 allocation (Microsoft "FAT: General Overview of On-Disk Format", v1.03).
//
// The volume is: reserved sectors (boot sector, FSInfo, backup boot sector), BPB_NumFATs copies
// of the FAT, the fixed root directory (FAT12/16 only), then the data area of clusters numbered
// from 2. The type is decided by the count of data clusters alone (< 4085 FAT12, < 65525 FAT16,
// else FAT32), never by the BS_FilSysType string. Everything before the data area is used; a
// data cluster is used when its FAT entry is non-zero, except bad clusters (0xFF7 / 0xFFF7 /
// 0x0FFFFFF7), which are free for our purposes: nothing is stored in them, the FAT (which is
// copied) keeps them marked bad, and reading a bad sector from the source would only fail.
// The tail of the data area shorter than one cluster, and bytes of the partition past
// BPB_TotSec, are not described by the FAT and are kept.
import { RangeBuilder, totalBytes } from './ranges.ts';
import { refuse, type PartReader } from './reader.ts';
import type { Allocation, AllocationOptions } from './types.ts';

export interface FatBpb {
  type: 'fat12' | 'fat16' | 'fat32';
  bytesPerSector: number;
  sectorsPerCluster: number;
  reservedSectors: number;
  numFats: number;
  rootEntries: number;
  totalSectors: number;
  fatSectors: number;
  rootDirSectors: number;
  firstDataSector: number;
  clusters: number;
}

/**
 * Does this boot sector look like a FAT volume's? The checks a FAT driver makes before trusting
 * a BPB (jump instruction, powers of two, at least one FAT and one reserved sector, a media byte,
 * the 55AA signature). Returns the reason it is not, or undefined.
 */
export function fatBootSectorProblem(bs: Buffer): string | undefined {
  if (bs.length < 512) return 'boot sector truncated';
  if (bs.readUInt16LE(510) !== 0xaa55) return 'no 55AA signature';
  const j = bs[0] as number;
  if (!(j === 0xeb && bs[2] === 0x90) && j !== 0xe9) return 'no x86 jump instruction';
  const bps = bs.readUInt16LE(11);
  if (![512, 1024, 2048, 4096].includes(bps)) return `${bps} bytes per sector`;
  const spc = bs[13] as number;
  if (spc === 0 || (spc & (spc - 1)) !== 0) return `${spc} sectors per cluster`;
  if (bs.readUInt16LE(14) === 0) return 'no reserved sectors';
  if (bs[16] === 0) return 'no FATs';
  const media = bs[21] as number;
  if (media !== 0xf0 && media < 0xf8) return `media byte 0x${media.toString(16)}`;
  return undefined;
}

/** Decode the BPB of a boot sector that passed fatBootSectorProblem; refuses inconsistent ones. */
export function decodeFatBpb(bs: Buffer, partSize: number): FatBpb {
  const problem = fatBootSectorProblem(bs);
  if (problem !== undefined) refuse(`not a FAT boot sector: ${problem}`);
  const bytesPerSector = bs.readUInt16LE(11);
  const sectorsPerCluster = bs[13] as number;
  const reservedSectors = bs.readUInt16LE(14);
  const numFats = bs[16] as number;
  const rootEntries = bs.readUInt16LE(17);
  const tot16 = bs.readUInt16LE(19);
  const totalSectors = tot16 !== 0 ? tot16 : bs.readUInt32LE(32);
  const fat16 = bs.readUInt16LE(22);
  const fatSectors = fat16 !== 0 ? fat16 : bs.readUInt32LE(36);
  if (fatSectors === 0) refuse('FAT size is 0');
  if (totalSectors * bytesPerSector > partSize) refuse(`FAT volume claims ${totalSectors * bytesPerSector} bytes, more than its partition (${partSize} bytes)`);
  const rootDirSectors = Math.ceil((rootEntries * 32) / bytesPerSector);
  const firstDataSector = reservedSectors + numFats * fatSectors + rootDirSectors;
  if (firstDataSector >= totalSectors) refuse(`FAT system area (${firstDataSector} sectors) fills the whole volume (${totalSectors} sectors)`);
  const clusters = Math.floor((totalSectors - firstDataSector) / sectorsPerCluster);
  const type = clusters < 4085 ? 'fat12' : clusters < 65525 ? 'fat16' : 'fat32';
  if (type === 'fat32' && (rootEntries !== 0 || fat16 !== 0)) refuse('FAT32 volume with a fixed root directory or a 16-bit FAT size');
  if (type !== 'fat32' && rootEntries === 0) refuse(`${type} volume without a root directory`);
  // the FAT must hold an entry for every cluster (entries 0 and 1 are reserved)
  const fatBytes = fatSectors * bytesPerSector;
  const need = type === 'fat12' ? Math.ceil(((clusters + 2) * 3) / 2) : (clusters + 2) * (type === 'fat16' ? 2 : 4);
  if (fatBytes < need) refuse(`${type} FAT of ${fatBytes} bytes is too small for ${clusters} clusters`);
  return { type, bytesPerSector, sectorsPerCluster, reservedSectors, numFats, rootEntries, totalSectors, fatSectors, rootDirSectors, firstDataSector, clusters };
}

/** Largest piece of the FAT read at once. */
const FAT_SLICE = 1 << 20;

export async function fatAllocation(r: PartReader, opts: AllocationOptions): Promise<Allocation> {
  const bpb = decodeFatBpb(Buffer.from(await r.at(0, 512, 'FAT boot sector')), r.size);
  const { type, bytesPerSector: bps, clusters } = bpb;
  const clusterBytes = bpb.sectorsPerCluster * bps;
  const dataStart = bpb.firstDataSector * bps;
  const out = new RangeBuilder();
  out.add(r.start, r.start + dataStart); // reserved sectors, every FAT, the FAT12/16 root directory
  let bad = 0;
  // Walk the first FAT (the one the driver uses unless FAT32's BPB_ExtFlags says mirroring is
  // off and another is active; all copies are kept anyway, so the active one is what counts).
  let active = 0;
  if (type === 'fat32') {
    const ext = (await r.at(40, 2, 'FAT32 extended flags')).readUInt16LE(0);
    if (ext & 0x80) active = ext & 0x0f;
    if (active >= bpb.numFats) refuse(`FAT32 active FAT ${active} does not exist (${bpb.numFats} FATs)`);
  }
  const fatOffset = (bpb.reservedSectors + active * bpb.fatSectors) * bps;
  // Dirty: the boot sector's BS_Reserved1 bit 0 (Linux sets it while mounted read-write) or the
  // clean-shutdown / no-hard-error bits of FAT[1] cleared (Windows, FAT16/32 only).
  const unclean: string[] = [];
  const state = (await r.at(type === 'fat32' ? 0x41 : 0x25, 1, 'FAT state byte'))[0] as number;
  if (state & 1) unclean.push('marked dirty in its boot sector (mounted, or not cleanly unmounted)');
  if (type !== 'fat12') {
    const head = await r.at(fatOffset, 8, 'FAT');
    const f1 = type === 'fat16' ? head.readUInt16LE(2) : head.readUInt32LE(4);
    const [cleanBit, errBit] = type === 'fat16' ? [0x8000, 0x4000] : [0x08000000, 0x04000000];
    if ((f1 & cleanBit) === 0) unclean.push('not cleanly shut down (FAT[1])');
    if ((f1 & errBit) === 0) unclean.push('marked as having disk errors (FAT[1])');
  }
  if (unclean.length && !opts.force) {
    return { policy: 'raw', reason: `${type} volume is ${unclean.join(', ')}: its allocation table cannot be trusted (force to use it anyway)`, usedBytes: r.size, ranges: [[r.start, r.start + r.size]] };
  }
  const entryBits = type === 'fat12' ? 12 : type === 'fat16' ? 16 : 32;
  const badMark = type === 'fat12' ? 0xff7 : type === 'fat16' ? 0xfff7 : 0x0ffffff7;
  const clusterAt = (c: number): number => r.start + dataStart + (c - 2) * clusterBytes;
  // read entries [2, clusters + 2) in slices; FAT12 slices hold whole pairs of entries (3 bytes)
  const perSlice = type === 'fat12' ? 2 * Math.floor(FAT_SLICE / 3) : FAT_SLICE / (entryBits / 8); // even for FAT12
  for (let first = 0; first < clusters + 2; first += perSlice) {
    const last = Math.min(clusters + 2, first + perSlice); // exclusive
    const byteFrom = type === 'fat12' ? (first / 2) * 3 : first * (entryBits / 8);
    const byteTo = type === 'fat12' ? Math.ceil((last * 3) / 2) : last * (entryBits / 8);
    const buf = Buffer.from(await r.at(fatOffset + byteFrom, byteTo - byteFrom, 'FAT'));
    for (let c = Math.max(first, 2); c < last; c++) {
      let v: number;
      if (type === 'fat12') {
        const o = Math.floor((c * 3) / 2) - byteFrom;
        const w = buf.readUInt16LE(o);
        v = c & 1 ? w >> 4 : w & 0x0fff;
      } else if (type === 'fat16') v = buf.readUInt16LE(c * 2 - byteFrom);
      else v = buf.readUInt32LE(c * 4 - byteFrom) & 0x0fffffff;
      if (v === 0) continue;
      if (v === badMark) { bad++; continue; }
      out.add(clusterAt(c), clusterAt(c + 1));
    }
  }
  const described = dataStart + clusters * clusterBytes;
  if (described < r.size) out.add(r.start + described, r.start + r.size); // not described by the FAT: kept
  const ranges = out.done();
  const notes = [`${clusters} clusters of ${clusterBytes} bytes`];
  if (bad) notes.push(`${bad} bad clusters skipped`);
  if (unclean.length) notes.push(`FORCED although ${unclean.join(', ')}`);
  return { policy: type, reason: `${type} allocation table (${notes.join(', ')})`, usedBytes: totalBytes(ranges), ranges };
}
