// GPT codec: the header (UEFI 2.x spec §5.3.2, table "GPT Header") and the partition entry array
// (§5.3.3, table "GPT Partition Entry"). All integers are little-endian; u64 fields stay bigint so
// a decode/encode round trip is exact and hostile values never lose precision. Placement checks
// that need the disk (MyLBA, AlternateLBA, where the array lies) belong to table.ts.
//
// Header                                     Entry (SizeOfPartitionEntry bytes, ≥ 128)
//   off  len  field                            off  len  field
//     0    8  Signature "EFI PART"               0   16  PartitionTypeGUID (all zero = unused)
//     8    4  Revision (1.0 = 0x00010000)       16   16  UniquePartitionGUID
//    12    4  HeaderSize (92..block size)       32    8  StartingLBA
//    16    4  HeaderCRC32 (over HeaderSize      40    8  EndingLBA (inclusive)
//             bytes, this field zeroed)         48    8  Attributes (bit 0 required, bit 2
//    20    4  Reserved, zero                                legacy BIOS bootable, 48..63 type-specific)
//    24    8  MyLBA                             56   72  PartitionName, UTF-16LE, NUL-padded
//    32    8  AlternateLBA                     128    …  Reserved
//    40    8  FirstUsableLBA
//    48    8  LastUsableLBA
//    56   16  DiskGUID
//    72    8  PartitionEntryLBA
//    80    4  NumberOfPartitionEntries
//    84    4  SizeOfPartitionEntry (128 × 2^n)
//    88    4  PartitionEntryArrayCRC32 (over NumberOfPartitionEntries × SizeOfPartitionEntry bytes)
//    92    …  Reserved, zero, to the end of the block

import { crc32 } from 'node:zlib';
import { RackcastError } from '../../errors.ts';

export const GPT_SIGNATURE = 'EFI PART';
export const GPT_REVISION_1_0 = 0x00010000;
export const GPT_HEADER_MIN_SIZE = 92;
export const GPT_ENTRY_MIN_SIZE = 128;
/** Bounds so a hostile header cannot make us allocate or read without limit. 16384 entries is
 *  far beyond any real table (the spec's minimum array is 128 entries of 128 bytes). */
export const GPT_MAX_ENTRY_COUNT = 16384;
export const GPT_MAX_ENTRY_SIZE = 4096;
export const GPT_MAX_ENTRY_ARRAY_BYTES = 4 * 1024 * 1024;
const NAME_OFFSET = 56;
const NAME_UNITS = 36;

export interface GptHeader {
  revision: number;
  headerSize: number;
  headerCrc32: number;
  myLba: bigint;
  alternateLba: bigint;
  firstUsableLba: bigint;
  lastUsableLba: bigint;
  diskGuid: string;
  entriesLba: bigint;
  entryCount: number;
  entrySize: number;
  entriesCrc32: number;
}

export interface GptEntry {
  /** 1-based slot in the array; Linux names the partition by it (sda<index>), gaps included. */
  index: number;
  typeGuid: string;
  uniqueGuid: string;
  firstLba: bigint;
  lastLba: bigint;
  attributes: bigint;
  name: string;
}

function fail(code: 'RC_ERR_DECODE_INVALID' | 'RC_ERR_DECODE_TRUNCATED' | 'RC_ERR_PT_BAD_CRC', message: string, fields: Record<string, unknown>): never {
  throw new RackcastError(code, message, fields);
}

function requireBytes(buf: Buffer, offset: number, needed: number, what: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0) fail('RC_ERR_DECODE_INVALID', `${what}: bad offset ${offset}`, { offset });
  const available = Math.max(0, buf.length - offset);
  if (available < needed) fail('RC_ERR_DECODE_TRUNCATED', `${what}: need ${needed} bytes at offset ${offset}, have ${available}`, { offset, needed, available });
}

/** GUIDs are stored mixed-endian: the first three groups little-endian, the last two as bytes. */
export function formatGuid(buf: Buffer, at: number): string {
  const h = (from: number, to: number, reverse: boolean): string => {
    const bytes = [...buf.subarray(at + from, at + to)];
    return Buffer.from(reverse ? bytes.reverse() : bytes).toString('hex');
  };
  return `${h(0, 4, true)}-${h(4, 6, true)}-${h(6, 8, true)}-${h(8, 10, false)}-${h(10, 16, false)}`;
}

export function parseGuid(text: string): Buffer {
  const m = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i.exec(text);
  if (m === null) fail('RC_ERR_DECODE_INVALID', `not a GUID: ${JSON.stringify(text)}`, { guid: text });
  const [, a = '', b = '', c = '', d = '', e = ''] = m;
  const le = (hex: string): Buffer => Buffer.from(hex, 'hex').reverse();
  return Buffer.concat([le(a), le(b), le(c), Buffer.from(d + e, 'hex')]);
}

export const GUID_ZERO = '00000000-0000-0000-0000-000000000000';

/** §5.3.2: SizeOfPartitionEntry "shall be set to a value of 128 x 2^n". Also bounds the array. */
function checkEntryGeometry(entryCount: number, entrySize: number, offset: number): void {
  if (entryCount > GPT_MAX_ENTRY_COUNT) {
    fail('RC_ERR_DECODE_INVALID', `GPT entry count ${entryCount} exceeds ${GPT_MAX_ENTRY_COUNT}`, { offset, entryCount });
  }
  const powerOfTwo = (entrySize & (entrySize - 1)) === 0;
  if (entrySize < GPT_ENTRY_MIN_SIZE || entrySize > GPT_MAX_ENTRY_SIZE || !powerOfTwo) {
    fail('RC_ERR_DECODE_INVALID', `GPT entry size ${entrySize} is not 128 × 2^n (≤ ${GPT_MAX_ENTRY_SIZE})`, { offset, entrySize });
  }
  if (entryCount * entrySize > GPT_MAX_ENTRY_ARRAY_BYTES) {
    fail('RC_ERR_DECODE_INVALID', `GPT entry array of ${entryCount} × ${entrySize} bytes is too large`, { offset, entryCount, entrySize });
  }
}

/** CRC32 of a header with its HeaderCRC32 field treated as zero (§5.3.2). */
function headerCrc(buf: Buffer, offset: number, headerSize: number): number {
  const copy = Buffer.from(buf.subarray(offset, offset + headerSize));
  copy.writeUInt32LE(0, 16);
  return crc32(copy);
}

/**
 * Decodes and validates the header at `offset`. Checks, in order: signature, revision 1.x,
 * HeaderSize within 92..sectorSize, HeaderCRC32, then the fields the CRC vouches for.
 */
export function decodeGptHeader(buf: Buffer, offset = 0, sectorSize = 512): GptHeader {
  requireBytes(buf, offset, GPT_HEADER_MIN_SIZE, 'GPT header');
  const signature = buf.toString('latin1', offset, offset + 8);
  if (signature !== GPT_SIGNATURE) fail('RC_ERR_DECODE_INVALID', `GPT header signature is ${JSON.stringify(signature)}, not "EFI PART"`, { offset });
  const revision = buf.readUInt32LE(offset + 8);
  if (revision >>> 16 !== 1) fail('RC_ERR_DECODE_INVALID', `GPT revision 0x${revision.toString(16)} is not 1.x`, { offset, revision });
  const headerSize = buf.readUInt32LE(offset + 12);
  if (headerSize < GPT_HEADER_MIN_SIZE || headerSize > sectorSize) {
    fail('RC_ERR_DECODE_INVALID', `GPT header size ${headerSize} is outside ${GPT_HEADER_MIN_SIZE}..${sectorSize}`, { offset, headerSize });
  }
  requireBytes(buf, offset, headerSize, 'GPT header');
  const headerCrc32 = buf.readUInt32LE(offset + 16);
  const actual = headerCrc(buf, offset, headerSize);
  if (actual !== headerCrc32) fail('RC_ERR_PT_BAD_CRC', `GPT header CRC32 0x${headerCrc32.toString(16)} != computed 0x${actual.toString(16)}`, { offset, expected: headerCrc32, actual });

  const header: GptHeader = {
    revision,
    headerSize,
    headerCrc32,
    myLba: buf.readBigUInt64LE(offset + 24),
    alternateLba: buf.readBigUInt64LE(offset + 32),
    firstUsableLba: buf.readBigUInt64LE(offset + 40),
    lastUsableLba: buf.readBigUInt64LE(offset + 48),
    diskGuid: formatGuid(buf, offset + 56),
    entriesLba: buf.readBigUInt64LE(offset + 72),
    entryCount: buf.readUInt32LE(offset + 80),
    entrySize: buf.readUInt32LE(offset + 84),
    entriesCrc32: buf.readUInt32LE(offset + 88),
  };
  checkEntryGeometry(header.entryCount, header.entrySize, offset);
  if (header.firstUsableLba > header.lastUsableLba) {
    fail('RC_ERR_DECODE_INVALID', `GPT first usable LBA ${header.firstUsableLba} > last usable LBA ${header.lastUsableLba}`, { offset });
  }
  return header;
}

export type GptHeaderInput = Omit<GptHeader, 'headerCrc32' | 'revision' | 'headerSize'> & { revision?: number; headerSize?: number };

/** Encodes a header of `headerSize` bytes (default 92) with HeaderCRC32 computed. */
export function encodeGptHeader(h: GptHeaderInput): Buffer {
  const headerSize = h.headerSize ?? GPT_HEADER_MIN_SIZE;
  if (headerSize < GPT_HEADER_MIN_SIZE) fail('RC_ERR_DECODE_INVALID', `GPT header size ${headerSize} < 92`, { headerSize });
  const buf = Buffer.alloc(headerSize);
  buf.write(GPT_SIGNATURE, 0, 'latin1');
  buf.writeUInt32LE(h.revision ?? GPT_REVISION_1_0, 8);
  buf.writeUInt32LE(headerSize, 12);
  buf.writeBigUInt64LE(h.myLba, 24);
  buf.writeBigUInt64LE(h.alternateLba, 32);
  buf.writeBigUInt64LE(h.firstUsableLba, 40);
  buf.writeBigUInt64LE(h.lastUsableLba, 48);
  parseGuid(h.diskGuid).copy(buf, 56);
  buf.writeBigUInt64LE(h.entriesLba, 72);
  buf.writeUInt32LE(h.entryCount, 80);
  buf.writeUInt32LE(h.entrySize, 84);
  buf.writeUInt32LE(h.entriesCrc32, 88);
  buf.writeUInt32LE(headerCrc(buf, 0, headerSize), 16);
  return buf;
}

/**
 * Decodes the entry array at `offset` after checking its CRC32 against the header's. Returns the
 * used entries only (type GUID not all zero), each with its 1-based slot index.
 */
export function decodeGptEntries(buf: Buffer, offset: number, h: Pick<GptHeader, 'entryCount' | 'entrySize' | 'entriesCrc32'>): GptEntry[] {
  checkEntryGeometry(h.entryCount, h.entrySize, offset);
  const total = h.entryCount * h.entrySize;
  requireBytes(buf, offset, total, 'GPT entry array');
  const actual = crc32(buf.subarray(offset, offset + total));
  if (actual !== h.entriesCrc32) fail('RC_ERR_PT_BAD_CRC', `GPT entry array CRC32 0x${h.entriesCrc32.toString(16)} != computed 0x${actual.toString(16)}`, { offset, expected: h.entriesCrc32, actual });
  const entries: GptEntry[] = [];
  for (let i = 0; i < h.entryCount; i++) {
    const at = offset + i * h.entrySize;
    const typeGuid = formatGuid(buf, at);
    if (typeGuid === GUID_ZERO) continue;
    const name = buf.toString('utf16le', at + NAME_OFFSET, at + NAME_OFFSET + NAME_UNITS * 2);
    const nul = name.indexOf('\0');
    entries.push({
      index: i + 1,
      typeGuid,
      uniqueGuid: formatGuid(buf, at + 16),
      firstLba: buf.readBigUInt64LE(at + 32),
      lastLba: buf.readBigUInt64LE(at + 40),
      attributes: buf.readBigUInt64LE(at + 48),
      name: nul === -1 ? name : name.slice(0, nul),
    });
  }
  return entries;
}

/** Encodes `entryCount` × `entrySize` bytes; entries go to their `index` slot (1-based). */
export function encodeGptEntries(entries: readonly GptEntry[], entryCount: number, entrySize = GPT_ENTRY_MIN_SIZE): Buffer {
  checkEntryGeometry(entryCount, entrySize, 0);
  const buf = Buffer.alloc(entryCount * entrySize);
  for (const e of entries) {
    if (!Number.isInteger(e.index) || e.index < 1 || e.index > entryCount) fail('RC_ERR_DECODE_INVALID', `GPT entry index ${e.index} is not 1..${entryCount}`, { index: e.index });
    const name = Buffer.from(e.name, 'utf16le');
    if (name.length > NAME_UNITS * 2) fail('RC_ERR_DECODE_INVALID', `GPT partition name longer than ${NAME_UNITS} UTF-16 units`, { name: e.name });
    const at = (e.index - 1) * entrySize;
    parseGuid(e.typeGuid).copy(buf, at);
    parseGuid(e.uniqueGuid).copy(buf, at + 16);
    buf.writeBigUInt64LE(e.firstLba, at + 32);
    buf.writeBigUInt64LE(e.lastLba, at + 40);
    buf.writeBigUInt64LE(e.attributes, at + 48);
    name.copy(buf, at + NAME_OFFSET);
  }
  return buf;
}
