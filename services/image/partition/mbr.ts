// MBR / EBR codec: the classic IBM PC partition sector.
//
// One 512-byte structure at the start of a sector. On 4Kn disks it still occupies the first 512
// bytes of LBA 0 (the rest of the sector is ignored) and its LBA fields count 4096-byte sectors.
//
//   offset  width  field
//   ------  -----  -----------------------------------------------------------------------------
//      0     440   bootstrap code (ignored)
//    440       4   disk signature, u32 LE (Windows "disk ID"; sfdisk prints it as label-id 0x…)
//    444       2   0x0000, or 0x5A5A when copy-protected (ignored)
//    446    4×16   partition entries, slot 1..4:
//                    +0   1  status: 0x80 = bootable ("active"), 0x00 = not; anything else means
//                            the sector is not a partition table (e.g. a FAT boot sector)
//                    +1   3  CHS of first sector (ignored: LBA fields are authoritative)
//                    +4   1  partition type (0x00 = unused slot)
//                    +5   3  CHS of last sector (ignored)
//                    +8   4  first sector, u32 LE (MBR: absolute LBA; EBR: see decodeEbr)
//                   +12   4  number of sectors, u32 LE
//    510       2   boot signature 0x55 0xAA
//
// An EBR (extended boot record) has the same layout; only the meaning of the LBA fields differs.
// Everything is little-endian. House rule: check the length before reading (RC_ERR_DECODE_TRUNCATED).

import { RackcastError } from '../../errors.ts';

export const MBR_SIZE = 512;
export const MBR_DISK_SIGNATURE_OFFSET = 440;
export const MBR_ENTRIES_OFFSET = 446;
export const MBR_ENTRY_SIZE = 16;
export const MBR_BOOT_SIGNATURE_OFFSET = 510;

/** Type of the UEFI protective-MBR entry that covers a GPT disk (UEFI 2.x §5.2.3). */
export const MBR_TYPE_GPT_PROTECTIVE = 0xee;
/** Types Linux treats as an extended-partition container (block/partitions/msdos.c). */
export const MBR_EXTENDED_TYPES: ReadonlySet<number> = new Set([0x05, 0x0f, 0x85]);

export interface MbrEntry {
  /** 1..4: position in the sector; Linux numbers primary partitions by slot, gaps included. */
  slot: number;
  /** Raw status byte; `bootable` is its only legal non-zero value (0x80). */
  status: number;
  bootable: boolean;
  type: number;
  lbaStart: number;
  sectorCount: number;
}

export interface Mbr {
  /** True when bytes 510..511 are 55 AA. Without it the sector is not a partition table. */
  bootSignatureValid: boolean;
  /** True when every slot's status byte is 0x00 or 0x80 (Linux rejects the table otherwise). */
  statusValid: boolean;
  diskSignature: number;
  /** Used entries only (type 0 slots are skipped), in slot order. */
  entries: MbrEntry[];
}

function requireBytes(buf: Buffer, offset: number, what: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RackcastError('RC_ERR_DECODE_INVALID', `${what}: bad offset ${offset}`, { offset });
  }
  if (buf.length - offset < MBR_SIZE) {
    throw new RackcastError('RC_ERR_DECODE_TRUNCATED', `${what}: need ${MBR_SIZE} bytes at offset ${offset}, have ${Math.max(0, buf.length - offset)}`,
      { offset, needed: MBR_SIZE, available: Math.max(0, buf.length - offset) });
  }
}

/** Decodes the MBR sector at `offset`. Never throws for content, only for a short buffer. */
export function decodeMbr(buf: Buffer, offset = 0): Mbr {
  requireBytes(buf, offset, 'MBR');
  const entries: MbrEntry[] = [];
  let statusValid = true;
  for (let i = 0; i < 4; i++) {
    const at = offset + MBR_ENTRIES_OFFSET + i * MBR_ENTRY_SIZE;
    const status = buf.readUInt8(at);
    if (status !== 0x00 && status !== 0x80) statusValid = false;
    const type = buf.readUInt8(at + 4);
    if (type === 0) continue;
    entries.push({
      slot: i + 1,
      status,
      bootable: status === 0x80,
      type,
      lbaStart: buf.readUInt32LE(at + 8),
      sectorCount: buf.readUInt32LE(at + 12),
    });
  }
  return {
    bootSignatureValid: buf.readUInt8(offset + MBR_BOOT_SIGNATURE_OFFSET) === 0x55 && buf.readUInt8(offset + MBR_BOOT_SIGNATURE_OFFSET + 1) === 0xaa,
    statusValid,
    diskSignature: buf.readUInt32LE(offset + MBR_DISK_SIGNATURE_OFFSET),
    entries,
  };
}

export interface EncodeMbrInput {
  diskSignature?: number;
  /** At most 4 entries; `slot` (1..4) places an entry, otherwise entries fill slots in order. */
  entries: Array<Omit<MbrEntry, 'slot' | 'status'> & { slot?: number; status?: number }>;
}

/** Encodes a 512-byte MBR/EBR sector with boot signature. CHS fields are left zero (LBA-only). */
export function encodeMbr(input: EncodeMbrInput): Buffer {
  if (input.entries.length > 4) {
    throw new RackcastError('RC_ERR_DECODE_INVALID', 'an MBR holds at most 4 entries', { count: input.entries.length });
  }
  const buf = Buffer.alloc(MBR_SIZE);
  buf.writeUInt32LE(input.diskSignature ?? 0, MBR_DISK_SIGNATURE_OFFSET);
  input.entries.forEach((e, i) => {
    const slot = e.slot ?? i + 1;
    if (!Number.isInteger(slot) || slot < 1 || slot > 4) {
      throw new RackcastError('RC_ERR_DECODE_INVALID', `MBR slot ${slot} is not 1..4`, { slot });
    }
    const at = MBR_ENTRIES_OFFSET + (slot - 1) * MBR_ENTRY_SIZE;
    buf.writeUInt8(e.status ?? (e.bootable ? 0x80 : 0x00), at);
    buf.writeUInt8(e.type, at + 4);
    buf.writeUInt32LE(e.lbaStart, at + 8);
    buf.writeUInt32LE(e.sectorCount, at + 12);
  });
  buf.writeUInt8(0x55, MBR_BOOT_SIGNATURE_OFFSET);
  buf.writeUInt8(0xaa, MBR_BOOT_SIGNATURE_OFFSET + 1);
  return buf;
}

export interface Ebr {
  bootSignatureValid: boolean;
  /** Logical partitions described by this EBR; `lbaStart` is relative to this EBR's own LBA. */
  data: MbrEntry[];
  /** Link to the next EBR, `lbaStart` relative to the start of the outermost extended partition. */
  next?: MbrEntry;
}

/**
 * Decodes an EBR. Usually entry 1 is the logical partition and entry 2 the link, but DR-DOS puts
 * the link first and OS/2 uses more entries, so like Linux (block/partitions/msdos.c,
 * parse_extended) every non-extended entry with sectors is data and the first extended one is
 * the link. Entries with a zero sector count carry nothing and are dropped.
 */
export function decodeEbr(buf: Buffer, offset = 0): Ebr {
  const mbr = decodeMbr(buf, offset);
  const used = mbr.entries.filter((e) => e.sectorCount > 0);
  const next = used.find((e) => MBR_EXTENDED_TYPES.has(e.type));
  const data = used.filter((e) => !MBR_EXTENDED_TYPES.has(e.type));
  return next === undefined ? { bootSignatureValid: mbr.bootSignatureValid, data } : { bootSignatureValid: mbr.bootSignatureValid, data, next };
}
