// NTFS allocation: boot sector → $MFT (record 0) → $Volume (record 3, the dirty flag) and
// $Bitmap (record 6), whose unnamed $DATA attribute is one bit per cluster (least significant
// bit first), 1 = in use.
//
// Layout (the NTFS documentation of the Linux-NTFS project / ntfs-3g's layout.h): the boot
// sector holds bytes per sector, sectors per cluster, the volume's sector count, the $MFT's first
// cluster and the MFT record size. An MFT record starts "FILE", is protected by an update
// sequence (the last two bytes of every 512-byte stride are saved in an array and replaced by a
// sequence number, which must match before the originals are put back), and holds attributes;
// a non-resident attribute maps virtual clusters to logical ones by "data runs" (a header byte
// with the sizes of a length and a signed, relative LCN delta; a delta of no bytes is sparse).
// Bytes of the partition past the last cluster (the backup boot sector lies there) are kept.
import { RangeBuilder, bitRuns, totalBytes } from './ranges.ts';
import { refuse, type PartReader } from './reader.ts';
import type { Allocation, AllocationOptions } from './types.ts';

export const NTFS_OEM = 'NTFS    ';
const AT_VOLUME_INFORMATION = 0x70;
const AT_DATA = 0x80;
const AT_END = 0xffffffff;
const VOLUME_IS_DIRTY = 0x0001;
const USA_STRIDE = 512;
/** runs in one attribute: far more than any real $MFT or $Bitmap has, few enough to bound work */
const MAX_RUNS = 1 << 16;
const BITMAP_SLICE = 1 << 20;

export interface NtfsBoot {
  bytesPerSector: number;
  clusterSize: number;
  totalSectors: number;
  clusters: number;
  mftLcn: number;
  recordSize: number;
}

export function decodeNtfsBoot(bs: Buffer, partSize: number): NtfsBoot {
  if (bs.length < 512) refuse('NTFS boot sector truncated');
  if (bs.toString('latin1', 3, 11) !== NTFS_OEM) refuse('no NTFS OEM id');
  if (bs.readUInt16LE(510) !== 0xaa55) refuse('NTFS boot sector lacks 55AA');
  const bytesPerSector = bs.readUInt16LE(0x0b);
  if (![256, 512, 1024, 2048, 4096].includes(bytesPerSector)) refuse(`NTFS ${bytesPerSector} bytes per sector`);
  const spcRaw = bs[0x0d] as number;
  const spc = spcRaw > 0x80 ? 2 ** (256 - spcRaw) : spcRaw;
  if (spc === 0 || (spc & (spc - 1)) !== 0 || spc * bytesPerSector > 2 * 1024 * 1024) refuse(`NTFS sectors per cluster byte 0x${spcRaw.toString(16)}`);
  const clusterSize = spc * bytesPerSector;
  const totalSectors = Number(bs.readBigUInt64LE(0x28));
  if (!Number.isSafeInteger(totalSectors) || totalSectors === 0 || totalSectors * bytesPerSector > partSize) {
    refuse(`NTFS volume claims ${bs.readBigUInt64LE(0x28)} sectors of ${bytesPerSector} bytes, more than its partition (${partSize} bytes)`);
  }
  const clusters = Math.floor(totalSectors / spc);
  const mftLcn = Number(bs.readBigUInt64LE(0x30));
  if (!Number.isSafeInteger(mftLcn) || mftLcn >= clusters) refuse(`NTFS $MFT cluster ${bs.readBigUInt64LE(0x30)} is outside the volume`);
  const cpr = bs.readInt8(0x40);
  const recordSize = cpr > 0 ? cpr * clusterSize : cpr > -31 ? 2 ** -cpr : 0;
  if (recordSize < USA_STRIDE || recordSize > 65536 || (recordSize & (recordSize - 1)) !== 0) refuse(`NTFS MFT record size ${recordSize}`);
  return { bytesPerSector, clusterSize, totalSectors, clusters, mftLcn, recordSize };
}

/** Apply the update sequence of a multi-sector record in place; refuses a torn or malformed one. */
export function applyFixups(rec: Buffer, what: string): void {
  const usaOfs = rec.readUInt16LE(4);
  const usaCount = rec.readUInt16LE(6);
  const strides = rec.length / USA_STRIDE;
  if (usaCount !== strides + 1 || usaOfs < 8 || usaOfs % 2 !== 0 || usaOfs + usaCount * 2 > USA_STRIDE - 2) {
    refuse(`${what}: update sequence (offset ${usaOfs}, ${usaCount} entries) does not fit a ${rec.length}-byte record`);
  }
  const usn = rec.readUInt16LE(usaOfs);
  for (let i = 1; i <= strides; i++) {
    const at = i * USA_STRIDE - 2;
    if (rec.readUInt16LE(at) !== usn) refuse(`${what}: update sequence mismatch in sector ${i - 1} (torn write)`);
    rec.writeUInt16LE(rec.readUInt16LE(usaOfs + 2 * i), at);
  }
}

export interface NtfsAttr { type: number; nonResident: boolean; nameLength: number; offset: number; length: number }

/** The attributes of an MFT record (after fixups), bounds-checked. */
export function recordAttributes(rec: Buffer, what: string): NtfsAttr[] {
  if (rec.toString('latin1', 0, 4) !== 'FILE') refuse(`${what}: not an MFT record (no FILE magic)`);
  const first = rec.readUInt16LE(0x14);
  const inUse = Math.min(rec.readUInt32LE(0x18), rec.length);
  if ((rec.readUInt16LE(0x16) & 1) === 0) refuse(`${what}: MFT record not in use`);
  const out: NtfsAttr[] = [];
  let off = first;
  for (let n = 0; n < rec.length / 16; n++) {
    if (off + 4 > inUse) refuse(`${what}: attributes run past the record's used size`);
    const type = rec.readUInt32LE(off);
    if (type === AT_END) return out;
    if (off + 16 > inUse) refuse(`${what}: attribute header at ${off} truncated`);
    const length = rec.readUInt32LE(off + 4);
    if (length < 16 || length % 8 !== 0 || off + length > inUse) refuse(`${what}: attribute at ${off} has length ${length}`);
    out.push({ type, nonResident: rec[off + 8] === 1, nameLength: rec[off + 9] as number, offset: off, length });
    off += length;
  }
  refuse(`${what}: too many attributes`);
}

function uintLE(b: Buffer, at: number, n: number): number {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + (b[at + i] as number);
  return v;
}

/** A run of `length` clusters starting at virtual cluster `vcn`, at logical cluster `lcn` (null: sparse). */
export interface Run { vcn: number; lcn: number | null; length: number }

/** Decode the mapping pairs of a non-resident attribute; every run checked against the volume. */
export function decodeRuns(rec: Buffer, a: NtfsAttr, clusters: number, what: string): { runs: Run[]; dataSize: number; startVcn: number } {
  if (!a.nonResident || a.length < 0x40) refuse(`${what}: expected a non-resident attribute`);
  const o = a.offset;
  const startVcn = Number(rec.readBigUInt64LE(o + 0x10));
  const lastVcn = rec.readBigInt64LE(o + 0x18);
  const runsAt = o + rec.readUInt16LE(o + 0x20);
  const dataSize = Number(rec.readBigUInt64LE(o + 0x30));
  const end = o + a.length;
  if (!Number.isSafeInteger(dataSize) || !Number.isSafeInteger(startVcn) || runsAt < o + 0x40 || runsAt > end) refuse(`${what}: non-resident header out of range`);
  const runs: Run[] = [];
  let p = runsAt;
  let vcn = startVcn;
  let lcn = 0;
  while (p < end) {
    const h = rec[p] as number;
    if (h === 0) break;
    const ls = h & 0x0f;
    const os = h >> 4;
    if (ls === 0 || ls > 7 || os > 7 || p + 1 + ls + os > end) refuse(`${what}: malformed data run at ${p}`);
    const length = uintLE(rec, p + 1, ls);
    if (length === 0) refuse(`${what}: data run of zero clusters`);
    let next: number | null = null;
    if (os > 0) {
      let d = uintLE(rec, p + 1 + ls, os);
      if (((rec[p + ls + os] as number) & 0x80) !== 0) d -= 2 ** (8 * os); // sign
      lcn += d;
      if (lcn < 0 || lcn + length > clusters) refuse(`${what}: data run LCN ${lcn}+${length} outside the volume (${clusters} clusters)`);
      next = lcn;
    }
    runs.push({ vcn, lcn: next, length });
    if (runs.length > MAX_RUNS) refuse(`${what}: more than ${MAX_RUNS} data runs`);
    vcn += length;
    p += 1 + ls + os;
  }
  if (BigInt(vcn - 1) !== lastVcn) refuse(`${what}: data runs end at VCN ${vcn - 1}, header says ${lastVcn}`);
  return { runs, dataSize, startVcn };
}

/** Read `length` bytes at byte `offset` of a non-resident attribute's content. */
async function readVirtual(r: PartReader, runs: readonly Run[], clusterSize: number, offset: number, length: number, what: string): Promise<Buffer> {
  const out = Buffer.alloc(length);
  let done = 0;
  let i = 0;
  while (done < length) {
    const vcn = Math.floor((offset + done) / clusterSize);
    while (i < runs.length && (runs[i] as Run).vcn + (runs[i] as Run).length <= vcn) i++;
    const run = runs[i];
    if (run === undefined || run.vcn > vcn) refuse(`${what}: byte ${offset + done} is not mapped by its data runs`);
    if (run.lcn === null) refuse(`${what}: sparse where data is expected`);
    const inRun = offset + done - run.vcn * clusterSize;
    const n = Math.min(length - done, run.length * clusterSize - inRun);
    (await r.at(run.lcn * clusterSize + inRun, n, what)).copy(out, done);
    done += n;
  }
  return out;
}

function unnamedData(attrs: NtfsAttr[]): NtfsAttr | undefined {
  return attrs.find((a) => a.type === AT_DATA && a.nameLength === 0);
}

export async function ntfsAllocation(r: PartReader, opts: AllocationOptions): Promise<Allocation> {
  const boot = decodeNtfsBoot(Buffer.from(await r.at(0, 512, 'NTFS boot sector')), r.size);
  const { clusterSize, clusters, recordSize } = boot;
  // $MFT: record 0 at the boot sector's LCN; its unnamed $DATA maps the rest of the MFT
  const rec0 = Buffer.from(await r.at(boot.mftLcn * clusterSize, recordSize, '$MFT record 0'));
  applyFixups(rec0, '$MFT record 0');
  const mftData = unnamedData(recordAttributes(rec0, '$MFT record 0'));
  if (mftData === undefined) refuse('$MFT record 0 has no $DATA attribute');
  const mft = decodeRuns(rec0, mftData, clusters, '$MFT $DATA');
  if (mft.startVcn !== 0) refuse('$MFT $DATA does not start at VCN 0');
  const record = async (n: number, name: string): Promise<Buffer> => {
    if ((n + 1) * recordSize > mft.dataSize) refuse(`$MFT is too small to hold record ${n} (${name})`);
    const rec = await readVirtual(r, mft.runs, clusterSize, n * recordSize, recordSize, `MFT record ${n} (${name})`);
    applyFixups(rec, `MFT record ${n} (${name})`);
    return rec;
  };

  // $Volume: the dirty flag (set by Windows while mounted, and by chkdsk requests)
  const vol = await record(3, '$Volume');
  const vi = recordAttributes(vol, '$Volume').find((a) => a.type === AT_VOLUME_INFORMATION && !a.nonResident);
  if (vi === undefined) refuse('$Volume has no resident $VOLUME_INFORMATION');
  const vlen = vol.readUInt32LE(vi.offset + 0x10);
  const vat = vi.offset + vol.readUInt16LE(vi.offset + 0x14);
  if (vlen < 12 || vat + 12 > vi.offset + vi.length) refuse('$VOLUME_INFORMATION truncated');
  const version = `${vol[vat + 8] as number}.${vol[vat + 9] as number}`;
  const dirty = (vol.readUInt16LE(vat + 10) & VOLUME_IS_DIRTY) !== 0;
  if (dirty && !opts.force) {
    return { policy: 'raw', reason: 'ntfs volume is marked dirty (in use, or needs chkdsk): its cluster bitmap cannot be trusted (force to use it anyway)', usedBytes: r.size, ranges: [[r.start, r.start + r.size]] };
  }

  // $Bitmap
  const bmRec = await record(6, '$Bitmap');
  const bmAttr = unnamedData(recordAttributes(bmRec, '$Bitmap'));
  if (bmAttr === undefined) refuse('$Bitmap has no $DATA attribute');
  const need = Math.ceil(clusters / 8);
  const out = new RangeBuilder();
  const cl = (c: number): number => r.start + c * clusterSize;
  const emit = (a: number, b: number): void => out.add(cl(a), cl(b));
  if (!bmAttr.nonResident) {
    const len = bmRec.readUInt32LE(bmAttr.offset + 0x10);
    const at = bmAttr.offset + bmRec.readUInt16LE(bmAttr.offset + 0x14);
    if (len < need || at + len > bmAttr.offset + bmAttr.length) refuse(`$Bitmap holds ${len} bytes, ${need} needed`);
    bitRuns(bmRec.subarray(at, at + need), clusters, 0, emit);
  } else {
    const bm = decodeRuns(bmRec, bmAttr, clusters, '$Bitmap $DATA');
    if (bm.startVcn !== 0) refuse('$Bitmap $DATA does not start at VCN 0 (attribute lists are not supported)');
    if (bm.dataSize < need) refuse(`$Bitmap holds ${bm.dataSize} bytes, ${need} needed for ${clusters} clusters`);
    for (let off = 0; off < need; off += BITMAP_SLICE) {
      const n = Math.min(BITMAP_SLICE, need - off);
      const slice = await readVirtual(r, bm.runs, clusterSize, off, n, '$Bitmap');
      bitRuns(slice, Math.min(n * 8, clusters - off * 8), off * 8, emit);
    }
  }
  const described = clusters * clusterSize;
  if (described < r.size) out.add(r.start + described, r.start + r.size); // backup boot sector and anything else past the last cluster: kept
  const ranges = out.done();
  const notes = [`NTFS ${version}`, `${clusters} clusters of ${clusterSize} bytes`, `${recordSize}-byte MFT records`];
  if (dirty) notes.push('FORCED although marked dirty');
  return { policy: 'ntfs', reason: `ntfs $Bitmap (${notes.join(', ')})`, usedBytes: totalBytes(ranges), ranges };
}
