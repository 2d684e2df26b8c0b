// Reads a disk's partition table: the one entry point the rest of rackcast uses. It decides GPT
// vs MBR vs nothing, reports partitions in bytes numbered the way Linux numbers them, and keeps
// the table's raw sectors so a restore can write them back exactly as captured.
//
// The input is hostile (captured disks, user-supplied images): every read is bounded, every
// chain is bounded, and the only thing that escapes is a RackcastError. Oddities that still
// leave a usable table (a corrupt primary GPT, partitions past the end) become `warnings`.

import { RackcastError, isRackcastError } from '../../errors.ts';
import { decodeGptEntries, decodeGptHeader, type GptEntry, type GptHeader } from './gpt.ts';
import { decodeEbr, decodeMbr, MBR_EXTENDED_TYPES, MBR_SIZE, MBR_TYPE_GPT_PROTECTIVE, type MbrEntry } from './mbr.ts';

export interface Partition { index: number; start: number; size: number; type: string; name?: string; uuid?: string; bootable?: boolean; attributes?: string }
/** Bytes exactly as on disk, at an absolute byte offset. */
export interface RawRegion { offset: number; data: Buffer }
export interface PartitionTable { kind: 'gpt' | 'mbr' | 'none'; sectorSize: number; diskId?: string; partitions: Partition[]; raw: RawRegion[]; warnings: string[] }
/** May return fewer bytes than asked at the end of the disk. */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/** An EBR chain longer than this is treated as hostile (Linux gives up after 100 links). */
export const MAX_EBR_LINKS = 128;

interface Ctx { read: ReadAt; diskSize: number; ss: number; lastLba: bigint; warnings: string[]; raw: RawRegion[] }

async function readBytes(ctx: Ctx, offset: number, length: number): Promise<Buffer> {
  if (offset >= ctx.diskSize || length <= 0) return Buffer.alloc(0);
  const want = Math.min(length, ctx.diskSize - offset);
  let data: Buffer;
  try {
    data = await ctx.read(offset, want);
  } catch (e) {
    if (isRackcastError(e)) throw e;
    throw new RackcastError('RC_ERR_IO', `reading ${want} bytes at offset ${offset} failed`, { offset, length: want }, { cause: e });
  }
  if (!Buffer.isBuffer(data)) throw new RackcastError('RC_ERR_IO', `read at offset ${offset} returned no Buffer`, { offset });
  return data.length > want ? data.subarray(0, want) : data;
}

function hex(n: number | bigint, digits: number): string {
  return '0x' + n.toString(16).padStart(digits, '0');
}

/** Returns false, after a warning, for a partition that runs past the end of the disk. */
function checkExtent(ctx: Ctx, p: Partition): boolean {
  if (p.start + p.size <= ctx.diskSize) return true;
  ctx.warnings.push(`partition ${p.index} ends at byte ${p.start + p.size}, past the end of the disk (${ctx.diskSize} bytes)`);
  return false;
}

export async function readPartitionTable(read: ReadAt, diskSize: number, sectorSize: number): Promise<PartitionTable> {
  if (!Number.isSafeInteger(sectorSize) || sectorSize < 512 || sectorSize > 65536 || (sectorSize & (sectorSize - 1)) !== 0) {
    throw new RackcastError('RC_ERR_DECODE_INVALID', `sector size ${sectorSize} is not a power of two in 512..65536`, { sectorSize });
  }
  if (!Number.isSafeInteger(diskSize) || diskSize < 0) {
    throw new RackcastError('RC_ERR_DECODE_INVALID', `disk size ${diskSize} is not a byte count`, { diskSize });
  }
  const ctx: Ctx = { read, diskSize, ss: sectorSize, lastLba: BigInt(Math.floor(diskSize / sectorSize) - 1), warnings: [], raw: [] };
  const none = (warning?: string): PartitionTable => ({ kind: 'none', sectorSize, partitions: [], raw: [], warnings: warning === undefined ? [] : [warning] });

  const lba0 = await readBytes(ctx, 0, sectorSize);
  if (lba0.length < MBR_SIZE) return none(`disk holds ${lba0.length} bytes, less than one MBR`);
  const mbr = decodeMbr(lba0);
  if (!mbr.bootSignatureValid) return none();
  ctx.raw.push({ offset: 0, data: lba0 });

  // UEFI 2.x §5.2.3: a protective MBR (a 0xEE entry) means the real table is a GPT. Like Linux
  // we do not insist on the 0xEE entry being the only one (hybrid MBRs exist), but say so.
  const pmbr = mbr.entries.find((e) => e.type === MBR_TYPE_GPT_PROTECTIVE);
  if (pmbr !== undefined) {
    if (pmbr.lbaStart !== 1) ctx.warnings.push(`protective MBR entry starts at LBA ${pmbr.lbaStart}, not 1`);
    if (mbr.entries.length > 1) ctx.warnings.push('hybrid MBR: entries besides the protective one are ignored in favour of the GPT');
    return readGpt(ctx);
  }
  // Linux (block/partitions/msdos.c) rejects a 55AA sector whose boot indicators are not
  // 0x00/0x80: such a sector is typically the boot sector of a partitionless FAT volume.
  if (!mbr.statusValid) return none('sector 0 has 55AA but a boot indicator other than 0x00/0x80: not a partition table');
  return readMbr(ctx, mbr.entries, mbr.diskSignature);
}

// ---------------------------------------------------------------------------------------- MBR

function mbrPartition(index: number, e: MbrEntry, baseLba: number, ss: number): Partition {
  return { index, start: (baseLba + e.lbaStart) * ss, size: e.sectorCount * ss, type: hex(e.type, 2), bootable: e.bootable };
}

async function readMbr(ctx: Ctx, entries: MbrEntry[], diskSignature: number): Promise<PartitionTable> {
  const primaries: Partition[] = [];
  const logicals: Partition[] = [];
  const logical = { next: 5 }; // Linux numbers logical partitions from 5, across all chains
  for (const e of entries) {
    if (e.sectorCount === 0) continue; // Linux ignores slots without sectors
    primaries.push(mbrPartition(e.slot, e, 0, ctx.ss));
    if (MBR_EXTENDED_TYPES.has(e.type)) logicals.push(...await readEbrChain(ctx, e, logical));
  }
  const partitions = [...primaries, ...logicals]; // in index order, as Linux and sfdisk list them
  for (const p of partitions) checkExtent(ctx, p);
  return { kind: 'mbr', sectorSize: ctx.ss, diskId: hex(diskSignature, 8), partitions, raw: ctx.raw, warnings: ctx.warnings };
}

/**
 * Follows the linked list of EBRs inside extended partition `ext`. Each EBR's data entries are
 * relative to the EBR itself; its link entry is relative to the start of `ext` (the classic
 * layout; Linux parse_extended does the same). Revisiting an EBR or exceeding MAX_EBR_LINKS
 * is RC_ERR_PT_LOOP; an EBR that cannot be read or lacks 55AA ends the chain with a warning.
 */
async function readEbrChain(ctx: Ctx, ext: MbrEntry, logical: { next: number }): Promise<Partition[]> {
  const out: Partition[] = [];
  const extStart = ext.lbaStart;
  const extEnd = extStart + ext.sectorCount;
  const visited = new Set<number>();
  let ebrLba = extStart;
  let linkSize = ext.sectorCount;
  for (;;) {
    const loop = visited.has(ebrLba) ? `returns to LBA ${ebrLba}` : visited.size >= MAX_EBR_LINKS ? `is longer than ${MAX_EBR_LINKS} links` : '';
    if (loop !== '') throw new RackcastError('RC_ERR_PT_LOOP', `extended partition ${ext.slot}: EBR chain ${loop}`, { offset: ebrLba * ctx.ss, lba: ebrLba });
    visited.add(ebrLba);
    const offset = ebrLba * ctx.ss;
    const sector = await readBytes(ctx, offset, ctx.ss);
    if (sector.length < MBR_SIZE) {
      ctx.warnings.push(`EBR at LBA ${ebrLba} lies past the end of the disk; logical partitions after it are lost`);
      break;
    }
    const ebr = decodeEbr(sector);
    if (!ebr.bootSignatureValid) {
      ctx.warnings.push(`EBR at LBA ${ebrLba} lacks the 55AA signature; logical partitions after it are lost`);
      break;
    }
    ctx.raw.push({ offset, data: sector });
    for (const d of ebr.data) {
      // Entries 3 and 4 of an EBR sometimes hold garbage; Linux only accepts them when they lie
      // inside both this link's span and the extended partition.
      if (d.slot >= 3 && (d.lbaStart + d.sectorCount > linkSize || ebrLba + d.lbaStart + d.sectorCount > extEnd)) {
        ctx.warnings.push(`EBR at LBA ${ebrLba}: ignoring entry ${d.slot}, which lies outside its extended partition`);
        continue;
      }
      out.push(mbrPartition(logical.next++, d, ebrLba, ctx.ss));
    }
    if (ebr.next === undefined) break;
    ebrLba = extStart + ebr.next.lbaStart;
    linkSize = ebr.next.sectorCount;
  }
  return out;
}

// ---------------------------------------------------------------------------------------- GPT

interface GptCopy { lba: bigint; header?: GptHeader; entries?: GptEntry[]; error?: RackcastError }

/**
 * Reads one copy (header + entry array) and applies the UEFI 2.x §5.3.2 validity tests that
 * need the disk: MyLBA is where we found it, and the usable range and entry array lie inside
 * the disk without overlapping the header or each other. The sectors read go into ctx.raw.
 */
async function readGptCopy(ctx: Ctx, lba: bigint): Promise<GptCopy> {
  const { lastLba } = ctx;
  const invalid = (message: string): RackcastError =>
    new RackcastError('RC_ERR_PT_INVALID', `GPT header at LBA ${lba}: ${message}`, { offset: Number(lba) * ctx.ss });
  if (lba < 1n || lba > lastLba) return { lba, error: invalid(`outside the disk (last LBA ${lastLba})`) };
  let found: GptHeader | undefined; // kept when only the array is bad: its AlternateLBA still helps
  try {
    const offset = Number(lba) * ctx.ss;
    const sector = await readBytes(ctx, offset, ctx.ss);
    ctx.raw.push({ offset, data: sector });
    const header = decodeGptHeader(sector, 0, ctx.ss);
    if (header.myLba !== lba) throw invalid(`MyLBA is ${header.myLba}`);
    found = header;
    if (lba >= header.firstUsableLba && lba <= header.lastUsableLba) throw invalid('the header lies inside the usable range');
    const arrayBytes = header.entryCount * header.entrySize;
    const arraySectors = BigInt(Math.ceil(arrayBytes / ctx.ss));
    const arrayEnd = header.entriesLba + arraySectors - 1n; // inclusive
    if (arraySectors > 0n) {
      if (header.entriesLba < 1n || arrayEnd > lastLba) throw invalid(`entry array LBA ${header.entriesLba}..${arrayEnd} is outside the disk`);
      if (lba >= header.entriesLba && lba <= arrayEnd) throw invalid('the entry array overlaps the header');
      if (header.entriesLba <= header.lastUsableLba && arrayEnd >= header.firstUsableLba) throw invalid('the entry array overlaps the usable range');
    }
    const arrayOffset = Number(header.entriesLba) * ctx.ss;
    const array = await readBytes(ctx, arrayOffset, Number(arraySectors) * ctx.ss);
    if (array.length > 0) ctx.raw.push({ offset: arrayOffset, data: array });
    return { lba, header, entries: decodeGptEntries(array, 0, header) };
  } catch (e) {
    if (!isRackcastError(e) || e.code === 'RC_ERR_IO') throw e;
    return found === undefined ? { lba, error: e } : { lba, header: found, error: e };
  }
}

async function readGpt(ctx: Ctx): Promise<PartitionTable> {
  const { lastLba } = ctx;
  const primary = await readGptCopy(ctx, 1n);
  // §5.3.2: the backup header is at the primary's AlternateLBA, normally the last LBA. Trust the
  // pointer only inside the disk; otherwise (or with no usable primary) look at the last LBA.
  let backupLba = lastLba;
  const alt = primary.header?.alternateLba;
  if (alt !== undefined && alt !== lastLba) {
    const inside = alt > 1n && alt < lastLba;
    if (inside) backupLba = alt;
    ctx.warnings.push(inside ? `backup GPT header is at LBA ${alt}, not the last LBA ${lastLba} (was the disk enlarged?)`
      : `primary GPT names backup LBA ${alt}, which is not inside the disk; looking at the last LBA ${lastLba}`);
  }
  const backup = await readGptCopy(ctx, backupLba > 1n ? backupLba : -1n); // -1: no room for a backup

  // §5.3.2: a valid primary wins; a corrupt primary with a valid backup is usable (the spec
  // says to restore the primary from it, which a read-only reader leaves to the caller).
  let used: { header: GptHeader; entries: GptEntry[] };
  if (primary.error === undefined && primary.header !== undefined && primary.entries !== undefined) {
    used = { header: primary.header, entries: primary.entries };
    const [a, b] = [primary.header, backup.header];
    if (backup.error !== undefined) ctx.warnings.push(`backup GPT unusable: ${backup.error.message}`);
    else if (b !== undefined && (a.diskGuid !== b.diskGuid || a.firstUsableLba !== b.firstUsableLba || a.lastUsableLba !== b.lastUsableLba
      || a.entriesCrc32 !== b.entriesCrc32 || a.entryCount !== b.entryCount || a.entrySize !== b.entrySize || b.alternateLba !== 1n)) {
      ctx.warnings.push('primary and backup GPT disagree; using the primary');
    }
  } else if (backup.error === undefined && backup.header !== undefined && backup.entries !== undefined) {
    used = { header: backup.header, entries: backup.entries };
    ctx.warnings.push(`primary GPT unusable (${primary.error?.message ?? 'unknown'}); using the backup at LBA ${backup.lba}`);
  } else {
    const code = [primary.error, backup.error].some((e) => e?.code === 'RC_ERR_PT_BAD_CRC') ? 'RC_ERR_PT_BAD_CRC' : 'RC_ERR_PT_INVALID';
    throw new RackcastError(code, `no usable GPT: primary: ${primary.error?.message}; backup: ${backup.error?.message}`,
      { offset: ctx.ss, primary: primary.error?.message, backup: backup.error?.message, backupLba: Number(backup.lba) }, { cause: primary.error });
  }

  const { header } = used;
  // Linux rejects such a header; we keep it so a truncated image or a smaller target still shows
  // its table, and let the per-partition warnings below say what is missing.
  if (header.lastUsableLba > lastLba) {
    ctx.warnings.push(`GPT last usable LBA ${header.lastUsableLba} is past the end of the disk (last LBA ${lastLba}): the disk is smaller than the table expects`);
  }
  const partitions: Partition[] = [];
  for (const e of used.entries) {
    const end = (e.lastLba + 1n) * BigInt(ctx.ss);
    const why = e.firstLba > e.lastLba ? `first LBA ${e.firstLba} > last LBA ${e.lastLba}`
      : end > BigInt(Number.MAX_SAFE_INTEGER) ? `ends at LBA ${e.lastLba}, beyond any disk` : undefined;
    if (why !== undefined) {
      ctx.warnings.push(`partition ${e.index}: ${why}; ignored`);
      continue;
    }
    const p: Partition = { index: e.index, start: Number(e.firstLba) * ctx.ss, size: Number(end) - Number(e.firstLba) * ctx.ss, type: e.typeGuid, uuid: e.uniqueGuid, attributes: hex(e.attributes, 16) };
    if (e.name !== '') p.name = e.name;
    partitions.push(p);
    if (checkExtent(ctx, p) && (e.firstLba < header.firstUsableLba || e.lastLba > header.lastUsableLba)) {
      ctx.warnings.push(`partition ${e.index}: LBA ${e.firstLba}..${e.lastLba} is outside the usable range ${header.firstUsableLba}..${header.lastUsableLba}`);
    }
  }
  // Raw regions in disk order, each once (LBA 0, primary header, primary array, backup array, backup header).
  const seen = new Set<number>();
  const raw = ctx.raw.filter((r) => r.data.length > 0 && !seen.has(r.offset) && seen.add(r.offset)).sort((x, y) => x.offset - y.offset);
  return { kind: 'gpt', sectorSize: ctx.ss, diskId: header.diskGuid, partitions, raw, warnings: ctx.warnings };
}
