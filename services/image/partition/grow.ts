// Move the end of a disk's last partition to where a disk of a given size ends. Two callers:
// `image restore --grow` (mode 'grow': a larger target, the last partition grows to fill it) and
// `image fit` (mode 'fit': a smaller disk, the last partition is cut to end inside it; its
// filesystem must already have been shrunk). Which partition, and whether it is safe, is decided
// here from the table alone; fs/resize.ts runs the filesystem tools.
//
// "Last" is the partition with the highest end, wherever it sits in the entry array. It is only
// moved when nothing else depends on the space after its start: no other partition may overlap or
// follow it, two partitions ending at the same LBA are ambiguous, an MBR with any warning (EBR
// chain oddities, entries past the disk) is left alone, and so is a logical partition that is not
// the last link of its EBR chain.
//
// What is written:
//   GPT  the entry's EndingLBA (only those 8 bytes of the array change), both entry arrays, both
//        headers (ArrayCRC32, LastUsableLBA, the backup at the disk's last LBA and its array
//        before it), the protective MBR's 0xEE entry; a stale backup inside the disk is zeroed.
//        Backup first, primary last: a write cut short leaves one consistent copy.
//   MBR  the primary entry's sector count, capped so the partition ends at or before sector
//        2^32 − 1; a logical partition: its EBR entry, its extended container in the MBR, and the
//        previous EBR's link entry when that link covered the logical partition to its end.
import { crc32 } from 'node:zlib';
import { decodeGptEntries, decodeGptHeader, encodeGptHeader, type GptHeader } from './gpt.ts';
import { decodeEbr, MBR_ENTRIES_OFFSET, MBR_ENTRY_SIZE, MBR_EXTENDED_TYPES } from './mbr.ts';
import { readPartitionTable } from './table.ts';
import { fitProtectiveMbr, type SectorIo } from './fit.ts';

export type ResizeMode = 'grow' | 'fit';

export interface LastPartitionPlan {
  kind: 'gpt' | 'mbr';
  index: number;
  /** partition type (GPT type GUID, or MBR type as 0x..) */
  type: string;
  /** bytes: where the partition starts, its size now and after `apply` */
  start: number;
  oldSize: number;
  newSize: number;
  /** bytes a disk needs after the last usable byte (GPT: backup array and header; MBR: none) */
  tailBytes: number;
  /** write the table for the new disk size (every write goes through `io`) */
  apply(io: SectorIo): Promise<void>;
}
export type PlanOutcome = { ok: true; plan: LastPartitionPlan } | { ok: false; reason: string };

/** A partition's extent in sectors, end exclusive. */
interface Span { index: number; start: bigint; end: bigint }

/** The highest-ending span, or why the last partition cannot be moved. `others` may include containers. */
function pickLast(spans: Span[], others: (last: Span) => Span[]): { last: Span } | { reason: string } {
  if (spans.length === 0) return { reason: 'the table has no partition' };
  const sorted = [...spans].sort((a, b) => (a.end === b.end ? 0 : a.end < b.end ? 1 : -1));
  const last = sorted[0] as Span;
  const tie = sorted[1];
  if (tie !== undefined && tie.end === last.end) return { reason: `partitions ${tie.index} and ${last.index} both end at sector ${last.end}: which one is last is ambiguous` };
  const blocking = others(last).find((o) => o.end > last.start);
  if (blocking !== undefined) return { reason: `partition ${blocking.index} (sectors ${blocking.start}..${blocking.end - 1n}) overlaps partition ${last.index}, the last one` };
  return { last };
}

function newEndFor(mode: ResizeMode, last: Span, limit: bigint): bigint | { reason: string } {
  if (mode === 'fit') return last.end < limit ? last.end : limit;
  if (limit <= last.end) return { reason: `partition ${last.index} already ends at sector ${last.end - 1n}, the end of the usable area` };
  return limit;
}

/**
 * Plan moving the last partition's end for a disk of `newDiskSize` bytes; the table is read from
 * a disk of `diskSize` bytes through `io`. Reads only.
 */
export async function planLastPartition(io: SectorIo, sectorSize: number, diskSize: number, newDiskSize: number, mode: ResizeMode): Promise<PlanOutcome> {
  const lba0 = await io.read(0, sectorSize);
  const isGpt = lba0.length >= 512 && [0, 1, 2, 3].some((k) => lba0[MBR_ENTRIES_OFFSET + k * MBR_ENTRY_SIZE + 4] === 0xee);
  return isGpt ? planGpt(io, sectorSize, newDiskSize, mode) : planMbr(io, sectorSize, diskSize, newDiskSize, mode);
}

// ---------------------------------------------------------------------------------------- GPT

async function planGpt(io: SectorIo, sectorSize: number, newDiskSize: number, mode: ResizeMode): Promise<PlanOutcome> {
  const ss = BigInt(sectorSize);
  let h: GptHeader;
  let array: Buffer;
  let entries;
  try {
    h = decodeGptHeader(await io.read(sectorSize, sectorSize), 0, sectorSize);
    if (h.myLba !== 1n) return { ok: false, reason: `the primary GPT header says MyLBA ${h.myLba}` };
    array = await io.read(Number(h.entriesLba * ss), h.entryCount * h.entrySize);
    entries = decodeGptEntries(array, 0, h);
  } catch (e) {
    return { ok: false, reason: `no usable primary GPT (${(e as Error).message})` };
  }
  const arraySectors = BigInt(Math.ceil((h.entryCount * h.entrySize) / sectorSize));
  const newLast = BigInt(Math.floor(newDiskSize / sectorSize)) - 1n;
  const newBackupArray = newLast - arraySectors;
  const newLastUsable = newBackupArray - 1n;
  if (newLastUsable < h.firstUsableLba) return { ok: false, reason: `a disk of ${newDiskSize} bytes has no room for this GPT` };
  const spans = entries.filter((e) => e.firstLba <= e.lastLba).map((e) => ({ index: e.index, start: e.firstLba, end: e.lastLba + 1n }));
  const picked = pickLast(spans, (last) => spans.filter((s) => s !== last));
  if ('reason' in picked) return { ok: false, reason: picked.reason };
  const { last } = picked;
  const end = newEndFor(mode, last, newLastUsable + 1n);
  if (typeof end !== 'bigint') return { ok: false, reason: end.reason };
  const entry = entries.find((e) => e.index === last.index)!;
  const apply = async (w: SectorIo): Promise<void> => {
    const arr = Buffer.from(array);
    arr.writeBigUInt64LE(end - 1n, (last.index - 1) * h.entrySize + 40);
    const entriesCrc32 = crc32(arr);
    const pad = (b: Buffer): Buffer => { const s = Buffer.alloc(sectorSize); b.copy(s); return s; };
    // a stale backup inside the new disk and outside the usable range (not where the new one goes)
    const oldArray = h.alternateLba - arraySectors;
    const from = oldArray > newLastUsable ? oldArray : newLastUsable + 1n;
    const to = h.alternateLba < newBackupArray ? h.alternateLba : newBackupArray - 1n;
    if (from <= to) await w.write(Number(from * ss), Buffer.alloc(Number((to - from + 1n) * ss)));
    const common = { ...h, myLba: 1n, alternateLba: newLast, lastUsableLba: newLastUsable, entriesCrc32 };
    await w.write(Number(newBackupArray * ss), arr);
    await w.write(Number(newLast * ss), pad(encodeGptHeader({ ...common, myLba: newLast, alternateLba: 1n, entriesLba: newBackupArray })));
    await w.write(Number(h.entriesLba * ss), arr);
    await w.write(sectorSize, pad(encodeGptHeader(common)));
    await fitProtectiveMbr(w, newLast);
  };
  return {
    ok: true,
    plan: {
      kind: 'gpt', index: last.index, type: entry.typeGuid, start: Number(last.start * ss), oldSize: Number((last.end - last.start) * ss),
      newSize: end > last.start ? Number((end - last.start) * ss) : 0, tailBytes: Number((arraySectors + 1n) * ss), apply,
    },
  };
}

// ---------------------------------------------------------------------------------------- MBR

/** An MBR partition's last sector can be at most 2^32 − 2 (start and count are both 32-bit). */
const MBR_MAX_END = 0xffffffffn;

function setCount(sector: Buffer, slot: number, count: bigint): void {
  sector.writeUInt32LE(Number(count), MBR_ENTRIES_OFFSET + (slot - 1) * MBR_ENTRY_SIZE + 12);
}

async function planMbr(io: SectorIo, sectorSize: number, diskSize: number, newDiskSize: number, mode: ResizeMode): Promise<PlanOutcome> {
  const ss = BigInt(sectorSize);
  let table;
  try {
    table = await readPartitionTable((o, l) => io.read(o, l), diskSize, sectorSize);
  } catch (e) {
    return { ok: false, reason: `the partition table cannot be read (${(e as Error).message})` };
  }
  if (table.kind !== 'mbr') return { ok: false, reason: table.kind === 'none' ? 'the disk has no partition table' : `a ${table.kind} table is not an MBR` };
  if (table.warnings.length) return { ok: false, reason: `the MBR is left alone because it has oddities: ${table.warnings.join('; ')}` };
  const span = (p: { index: number; start: number; size: number }): Span => ({ index: p.index, start: BigInt(p.start) / ss, end: BigInt(p.start + p.size) / ss });
  const isContainer = (p: { type: string }): boolean => MBR_EXTENDED_TYPES.has(Number(p.type));
  const containers = table.partitions.filter(isContainer);
  const data = table.partitions.filter((p) => !isContainer(p)).map(span);
  const all = table.partitions.map(span);
  const containerOf = (s: Span): Span | undefined => containers.map(span).find((c) => c.start <= s.start && s.end <= c.end && s.index > 4);
  // EBRs: every raw region after LBA 0, in chain order (table.ts reads them so)
  const ebrs = table.raw.filter((r) => r.offset > 0).map((r) => ({ lba: BigInt(r.offset) / ss, sector: r.data, ebr: decodeEbr(r.data) }));
  const picked = pickLast(data, (last) => all.filter((s) => s.index !== last.index && s.index !== containerOf(last)?.index));
  if ('reason' in picked) return { ok: false, reason: picked.reason };
  const { last } = picked;
  const limit = BigInt(Math.floor(newDiskSize / sectorSize)) < MBR_MAX_END ? BigInt(Math.floor(newDiskSize / sectorSize)) : MBR_MAX_END;
  const end = newEndFor(mode, last, limit);
  if (typeof end !== 'bigint') return { ok: false, reason: end.reason };
  const mbr = Buffer.from(table.raw.find((r) => r.offset === 0)!.data);
  const writes: { lba: bigint; sector: Buffer }[] = [];
  if (last.index <= 4) {
    setCount(mbr, last.index, end - last.start);
  } else {
    const container = containerOf(last);
    if (container === undefined || containers.length !== 1) return { ok: false, reason: `logical partition ${last.index}: ${containers.length} extended partitions; only one is handled` };
    const k = ebrs.findIndex((e) => e.ebr.data.some((d) => e.lba + BigInt(d.lbaStart) === last.start));
    const own = ebrs[k];
    if (own === undefined || k !== ebrs.length - 1 || own.ebr.next !== undefined) return { ok: false, reason: `logical partition ${last.index} is not the last link of its EBR chain` };
    const d = own.ebr.data.find((x) => own.lba + BigInt(x.lbaStart) === last.start)!;
    const ebr = Buffer.from(own.sector);
    setCount(ebr, d.slot, end - last.start);
    writes.push({ lba: own.lba, sector: ebr });
    const prev = ebrs[k - 1];
    const link = prev?.ebr.next;
    if (prev !== undefined && link !== undefined && container.start + BigInt(link.lbaStart + link.sectorCount) === last.end) {
      const p = Buffer.from(prev.sector);
      setCount(p, link.slot, end - container.start - BigInt(link.lbaStart));
      writes.push({ lba: prev.lba, sector: p });
    }
    const containerEnd = mode === 'grow' ? limit : container.end < limit ? container.end : limit;
    setCount(mbr, container.index, containerEnd - container.start);
  }
  writes.push({ lba: 0n, sector: mbr }); // the MBR last: logical entries first, then what contains them
  return {
    ok: true,
    plan: {
      kind: 'mbr', index: last.index, type: table.partitions.find((p) => p.index === last.index)!.type, start: Number(last.start * ss),
      oldSize: Number((last.end - last.start) * ss), newSize: end > last.start ? Number((end - last.start) * ss) : 0,
      tailBytes: 0,
      apply: async (w) => { for (const x of writes) await w.write(Number(x.lba * ss), x.sector); },
    },
  };
}

/** An io that remembers what each write replaced, so `undo` can put it back (newest first). */
export function journaled(io: SectorIo): SectorIo & { undo(): Promise<void> } {
  const saved: { offset: number; data: Buffer }[] = [];
  return {
    read: (o, l) => io.read(o, l),
    write: async (o, d) => { saved.push({ offset: o, data: Buffer.from(await io.read(o, d.length)) }); await io.write(o, d); },
    undo: async () => { for (const s of saved.reverse()) await io.write(s.offset, s.data); saved.length = 0; },
  };
}
