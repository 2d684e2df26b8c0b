// NTFS allocation: boot sector → $MFT (record 0) → $Volume (record 3, the dirty flag), $LogFile
// (record 2, whether Windows left work in its journal: see checkLogFile) and $Bitmap (record 6),
// whose unnamed $DATA attribute is one bit per cluster (least significant bit first), 1 = in use.
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

/**
 * Check the update sequence of a multi-sector record (an MFT "FILE" record, a $LogFile "RSTR"
 * page: the layout is the same) and, when it holds, put the saved words back in place. Returns
 * why it does not hold, leaving the buffer untouched; nothing is restored from a torn record.
 */
export function fixupProblem(rec: Buffer): string | undefined {
  if (rec.length < USA_STRIDE || rec.length % USA_STRIDE !== 0) return `a ${rec.length}-byte record is not whole ${USA_STRIDE}-byte sectors`;
  const usaOfs = rec.readUInt16LE(4);
  const usaCount = rec.readUInt16LE(6);
  const strides = rec.length / USA_STRIDE;
  if (usaCount !== strides + 1 || usaOfs < 8 || usaOfs % 2 !== 0 || usaOfs + usaCount * 2 > USA_STRIDE - 2) {
    return `update sequence (offset ${usaOfs}, ${usaCount} entries) does not fit a ${rec.length}-byte record`;
  }
  const usn = rec.readUInt16LE(usaOfs);
  for (let i = 1; i <= strides; i++) {
    if (rec.readUInt16LE(i * USA_STRIDE - 2) !== usn) return `update sequence mismatch in sector ${i - 1} (torn write)`;
  }
  for (let i = 1; i <= strides; i++) rec.writeUInt16LE(rec.readUInt16LE(usaOfs + 2 * i), i * USA_STRIDE - 2);
  return undefined;
}

/** Apply the update sequence of a multi-sector record in place; refuses a torn or malformed one. */
export function applyFixups(rec: Buffer, what: string): void {
  const problem = fixupProblem(rec);
  if (problem !== undefined) refuse(`${what}: ${problem}`);
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

// $LogFile (MFT record 2): whether Windows left the volume with work still in its journal. Windows
// 8+ "fast startup" (a hybrid shutdown), hibernation and crashes leave metadata in Windows' cache
// with the $Volume dirty flag clear, so the on-disk $Bitmap may be stale. The decision follows
// ntfs-3g (logfile.c ntfs_check_logfile / ntfs_is_logfile_clean, volume.c
// ntfs_volume_check_logfile), which refuses to mount such a volume ("The disk contains an unclean
// file system (0, 0). Metadata kept in Windows cache, refused to mount."):
//  - a log whose blocks at 0, 512, 1024, 2048, … are blank (all 0xff) was emptied: clean;
//  - otherwise the restart pages ("RSTR", or "CHKD" after chkdsk) at 0 and at system_page_size
//    are checked (header, restart area, update sequence, client lists) and the valid one with
//    the higher LSN is current; none valid: unreadable;
//  - the current page is clean when it is an "RSTR" 1.1 page whose restart area has no client in
//    use or has RESTART_VOLUME_IS_CLEAN. Version 2.0 is what Windows 8+ writes while it keeps
//    metadata cached (ntfs-3g refuses it whatever the flags); "CHKD" (chkdsk rewrote it) and a
//    torn current page are not vouched for either.
// Restart page header: magic, usa_ofs u16 @4, usa_count u16 @6, chkdsk_lsn s64 @8,
// system_page_size u32 @0x10, log_page_size u32 @0x14, restart_area_offset u16 @0x18,
// minor_ver s16 @0x1a, major_ver s16 @0x1c (30 bytes). Restart area: current_lsn s64 @0,
// log_clients u16 @8, client_free_list u16 @10, client_in_use_list u16 @12, flags u16 @14,
// seq_number_bits u32 @16, restart_area_length u16 @20, client_array_offset u16 @22, file_size
// s64 @24, log_record_header_length u16 @36, log_page_data_offset u16 @38. Log client records
// are 160 bytes: prev_client u16 @16, next_client u16 @18.
const NTFS_BLOCK = 512;
const RESTART_HEADER_SIZE = 30;
const RA_FILE_SIZE_OFS = 24;
const LOG_CLIENT_SIZE = 160;
const LOGFILE_NO_CLIENT = 0xffff;
const RESTART_VOLUME_IS_CLEAN = 0x0002;
const DEFAULT_LOG_PAGE = 4096;
const MIN_LOG_RECORD_PAGES = 48;
const MAX_LOG_FILE_SIZE = 2 ** 32;
/** restart pages larger than this are not believed (Windows uses 4 KiB; ntfs-3g has no bound) */
const MAX_SYSTEM_PAGE = 64 * 1024;

export type LogVerdict = 'empty' | 'clean' | 'unclean' | 'cached' | 'chkdsk' | 'torn' | 'unreadable';

export interface LogState {
  verdict: LogVerdict;
  /** facts for the reason: what was found */
  detail: string;
}

/** A restart page has an update sequence, except a "CHKD" one whose usa_count is 0. */
function hasUsa(b: Buffer): boolean {
  return !(b.toString('latin1', 0, 4) === 'CHKD' && b.readUInt16LE(6) === 0);
}

interface RestartPage { pos: number; chkd: boolean; lsn: bigint; torn: boolean; major: number; minor: number; inUse: number; flags: number }

const pow2 = (x: number): boolean => x > 0 && (x & (x - 1)) === 0;

/** ntfs_check_restart_page_header + ntfs_check_restart_area on a page's first 512 bytes: why it is invalid. */
function restartPageProblem(b: Buffer, pos: number): string | undefined {
  const sps = b.readUInt32LE(0x10);
  const lps = b.readUInt32LE(0x14);
  if (sps < NTFS_BLOCK || lps < NTFS_BLOCK || !pow2(sps) || !pow2(lps)) return `page sizes ${sps}/${lps} unsupported`;
  if (sps > MAX_SYSTEM_PAGE) return `system page size ${sps} larger than ${MAX_SYSTEM_PAGE}`;
  if (pos !== 0 && pos !== sps) return `found at ${pos}, not at 0 or the system page size ${sps}`;
  const minor = b.readInt16LE(0x1a);
  const major = b.readInt16LE(0x1c);
  if (!((major === 1 && minor === 1) || (major === 2 && minor === 0))) return `version ${major}.${minor} unsupported`;
  const chkd = b.toString('latin1', 0, 4) === 'CHKD';
  const usaCount = b.readUInt16LE(6);
  let usaEnd = RESTART_HEADER_SIZE;
  if (hasUsa(b)) {
    if (usaCount !== 1 + sps / NTFS_BLOCK) return `update sequence of ${usaCount} entries for a ${sps}-byte page`;
    const usaOfs = b.readUInt16LE(4);
    usaEnd = usaOfs + usaCount * 2;
    if (usaOfs < RESTART_HEADER_SIZE || usaEnd > NTFS_BLOCK - 2) return `update sequence offset ${usaOfs}`;
  }
  const raOfs = b.readUInt16LE(0x18);
  if (raOfs % 8 !== 0 || raOfs < usaEnd || raOfs > sps) return `restart area offset ${raOfs}`;
  if (!chkd && b.readBigInt64LE(8) !== 0n) return 'chkdsk LSN set on a page chkdsk did not write';
  // the restart area up to file_size must lie in the first sector, before its fixup word
  if (raOfs + RA_FILE_SIZE_OFS > NTFS_BLOCK - 2) return `restart area offset ${raOfs} leaves no room in the first sector`;
  const caOfs = b.readUInt16LE(raOfs + 22);
  if (caOfs % 8 !== 0 || raOfs + caOfs > NTFS_BLOCK - 2) return `client array offset ${caOfs}`;
  const clients = b.readUInt16LE(raOfs + 8);
  const raLength = b.readUInt16LE(raOfs + 20);
  const raLen = caOfs + clients * LOG_CLIENT_SIZE;
  if (raOfs + raLen > sps || raOfs + raLength > sps || raLen > raLength) return `restart area of ${raLength} bytes (${clients} clients) does not fit the ${sps}-byte page`;
  const free = b.readUInt16LE(raOfs + 10);
  const inUse = b.readUInt16LE(raOfs + 12);
  if ((free !== LOGFILE_NO_CLIENT && free >= clients) || (inUse !== LOGFILE_NO_CLIENT && inUse >= clients)) return `client lists (${free}, ${inUse}) past ${clients} clients`;
  const fileSize = b.readBigUInt64LE(raOfs + RA_FILE_SIZE_OFS);
  const fileSizeBits = fileSize === 0n ? 0 : fileSize.toString(2).length;
  if (b.readUInt32LE(raOfs + 16) !== 67 - fileSizeBits) return 'sequence number bits disagree with the file size';
  if (b.readUInt16LE(raOfs + 36) % 8 !== 0 || b.readUInt16LE(raOfs + 38) % 8 !== 0) return 'log record header length or page data offset not a multiple of 8';
  return undefined;
}

/** ntfs_check_log_client_array on a deprotected page: both lists within the array, no loops. */
function clientListsValid(p: Buffer): boolean {
  const raOfs = p.readUInt16LE(0x18);
  const ca = raOfs + p.readUInt16LE(raOfs + 22);
  const clients = p.readUInt16LE(raOfs + 8);
  let left = clients;
  for (const head of [p.readUInt16LE(raOfs + 10), p.readUInt16LE(raOfs + 12)]) {
    let first = true;
    for (let idx = head; idx !== LOGFILE_NO_CLIENT; left--) {
      if (left === 0 || idx >= clients) return false;
      const cr = ca + idx * LOG_CLIENT_SIZE;
      if (first && p.readUInt16LE(cr + 16) !== LOGFILE_NO_CLIENT) return false;
      first = false;
      idx = p.readUInt16LE(cr + 18);
    }
  }
  return true;
}

/**
 * The state of an NTFS journal, given a reader of its content (`size` bytes: the $DATA's data
 * size). Reads at most about 24 blocks of 512 bytes and two restart pages of ≤ 64 KiB.
 */
export async function checkLogFile(read: (pos: number, length: number) => Promise<Buffer>, dataSize: number): Promise<LogState> {
  let size = Math.min(dataSize, MAX_LOG_FILE_SIZE);
  size -= size % DEFAULT_LOG_PAGE;
  if (size < DEFAULT_LOG_PAGE * 2 || (size - DEFAULT_LOG_PAGE * 2) / DEFAULT_LOG_PAGE < MIN_LOG_RECORD_PAGES) {
    return { verdict: 'unreadable', detail: `$LogFile of ${dataSize} bytes is too small to hold a journal` };
  }
  let empty = true;
  const pages: RestartPage[] = [];
  const invalid: string[] = [];
  for (let pos = 0; pos < size; pos = pos === 0 ? NTFS_BLOCK : pos * 2) {
    const b = Buffer.from(await read(pos, NTFS_BLOCK));
    const blank = b.every((x) => x === 0xff);
    if (!blank) empty = false;
    else if (!empty) break;
    const magic = b.toString('latin1', 0, 4);
    if (magic === 'RCRD') break; // a log record page: no restart page after it
    if (magic !== 'RSTR' && magic !== 'CHKD') continue;
    const problem = restartPageProblem(b, pos);
    if (problem !== undefined) {
      invalid.push(`${magic} page at ${pos}: ${problem}`);
      continue;
    }
    const sps = b.readUInt32LE(0x10);
    if (pos + sps > dataSize) return { verdict: 'unreadable', detail: `restart page at ${pos} (${sps} bytes) runs past the end of $LogFile (${dataSize} bytes)` };
    const page = Buffer.from(await read(pos, sps));
    const chkd = magic === 'CHKD';
    const raOfs = b.readUInt16LE(0x18);
    let torn = false;
    if (hasUsa(b)) {
      const fix = fixupProblem(page);
      if (fix !== undefined) {
        // like ntfs-3g: fatal only when the restart area reaches past the first sector's fixup
        if (raOfs + b.readUInt16LE(raOfs + 20) > NTFS_BLOCK - 2) {
          invalid.push(`${magic} page at ${pos}: ${fix}`);
          continue;
        }
        torn = true;
      }
    }
    const inUse = b.readUInt16LE(raOfs + 12);
    if (!chkd && !torn && inUse !== LOGFILE_NO_CLIENT && !clientListsValid(page)) {
      invalid.push(`${magic} page at ${pos}: log client array is corrupt`);
      continue;
    }
    pages.push({
      pos, chkd, torn, inUse,
      lsn: chkd ? b.readBigInt64LE(8) : b.readBigInt64LE(raOfs),
      major: b.readInt16LE(0x1c), minor: b.readInt16LE(0x1a), flags: b.readUInt16LE(raOfs + 14),
    });
    if (pos !== 0) break; // the second restart page: done
  }
  if (empty) return { verdict: 'empty', detail: '$LogFile is empty' };
  const cur = pages.length === 2 && (pages[1] as RestartPage).lsn > (pages[0] as RestartPage).lsn ? pages[1] : pages[0];
  if (cur === undefined) {
    return { verdict: 'unreadable', detail: `no valid restart page in $LogFile${invalid.length ? ` (${invalid.join('; ')})` : ''}` };
  }
  const at = `restart page at ${cur.pos}, LSN ${cur.lsn}`;
  if (cur.torn) return { verdict: 'torn', detail: `the current ${at} is torn (update sequence mismatch)` };
  if (cur.chkd) return { verdict: 'chkdsk', detail: `the current ${at} was rewritten by chkdsk (CHKD)` };
  const state = `version ${cur.major}.${cur.minor}, client_in_use_list ${cur.inUse === LOGFILE_NO_CLIENT ? 'none' : cur.inUse}, flags 0x${cur.flags.toString(16)}`;
  if (cur.major === 2) return { verdict: 'cached', detail: `${at}: ${state}` };
  if (cur.inUse !== LOGFILE_NO_CLIENT && (cur.flags & RESTART_VOLUME_IS_CLEAN) === 0) return { verdict: 'unclean', detail: `${at}: ${state}` };
  return { verdict: 'clean', detail: `${at}: ${state}` };
}

/** The raw-capture reason for a journal that is not clean (it is followed by " (force to use it anyway)"). */
function journalReason(s: LogState): string {
  switch (s.verdict) {
    case 'unreadable':
      return `ntfs $LogFile cannot be read (${s.detail}): whether Windows left metadata in its cache cannot be told, so the cluster bitmap cannot be trusted`;
    case 'chkdsk':
      return `ntfs $LogFile is not clean (${s.detail}): let Windows finish chkdsk and shut down fully, then capture again; until then the cluster bitmap cannot be trusted`;
    default:
      return `ntfs $LogFile is unclean (${s.detail}): Windows fast startup (hybrid shutdown), hibernation or a crash left metadata in Windows' cache, so the cluster bitmap cannot be trusted; shut Windows down fully (shutdown /s /f /t 0, or turn fast startup off) and capture again`;
  }
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

  // $LogFile: an unclean journal (fast startup, hibernation, a crash) leaves the $Bitmap stale too
  const logRec = await record(2, '$LogFile');
  const logAttr = unnamedData(recordAttributes(logRec, '$LogFile'));
  if (logAttr === undefined) refuse('$LogFile has no $DATA attribute');
  let journal: LogState;
  if (!logAttr.nonResident) {
    journal = { verdict: 'unreadable', detail: '$LogFile $DATA is resident' };
  } else {
    const log = decodeRuns(logRec, logAttr, clusters, '$LogFile $DATA');
    if (log.startVcn !== 0) refuse('$LogFile $DATA does not start at VCN 0 (attribute lists are not supported)');
    const initialized = Number(logRec.readBigUInt64LE(logAttr.offset + 0x38));
    if (!Number.isSafeInteger(initialized)) refuse('$LogFile $DATA initialized size out of range');
    journal = await checkLogFile(async (pos, length) => {
      // past the initialized size the content reads as zeros
      const out = Buffer.alloc(length);
      const n = Math.max(0, Math.min(length, initialized - pos));
      if (n > 0) (await readVirtual(r, log.runs, clusterSize, pos, n, '$LogFile')).copy(out);
      return out;
    }, log.dataSize);
  }
  const journalClean = journal.verdict === 'empty' || journal.verdict === 'clean';
  if (!journalClean && !opts.force) {
    return { policy: 'raw', reason: `${journalReason(journal)} (force to use it anyway)`, usedBytes: r.size, ranges: [[r.start, r.start + r.size]] };
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
  if (!journalClean) notes.push(`FORCED although its $LogFile is ${journal.verdict === 'unreadable' ? 'unreadable' : 'unclean'} (${journal.detail})`);
  return { policy: 'ntfs', reason: `ntfs $Bitmap (${notes.join(', ')})`, usedBytes: totalBytes(ranges), ranges };
}
