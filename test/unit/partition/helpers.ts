// Shared helpers for the partition tests: a sparse in-memory disk, a GPT disk builder made from
// the codecs under test, and a seeded PRNG so hostile-input loops are reproducible.

import { crc32 } from 'node:zlib';
import { expect } from '@jest/globals';
import { isRackcastError, type ErrorCode } from '../../../services/errors.ts';
import { encodeGptEntries, encodeGptHeader, type GptEntry } from '../../../services/image/partition/gpt.ts';
import { encodeMbr, type EncodeMbrInput } from '../../../services/image/partition/mbr.ts';
import type { RawRegion, ReadAt } from '../../../services/image/partition/table.ts';

/** A disk of `diskSize` zero bytes with `regions` written over it; reads stop at the end. */
export function memDisk(diskSize: number, regions: readonly RawRegion[]): ReadAt {
  return async (offset, length) => {
    const end = Math.min(diskSize, offset + length);
    const out = Buffer.alloc(Math.max(0, end - offset));
    for (const r of regions) {
      const from = Math.max(offset, r.offset);
      const to = Math.min(end, r.offset + r.data.length);
      if (from < to) r.data.copy(out, from - offset, from - r.offset, to - r.offset);
    }
    return out;
  };
}

/** Runs `fn` and returns the RackcastError it throws, failing the test for anything else. */
export async function rcError(fn: () => unknown, code?: ErrorCode): Promise<Error & { code: string; fields: Readonly<Record<string, unknown>> }> {
  try {
    await fn();
  } catch (e) {
    if (!isRackcastError(e)) throw e;
    if (code !== undefined) expect(e.code).toBe(code);
    return e;
  }
  throw new Error('expected a RackcastError, got a result');
}

export const LINUX_FS = '0fc63daf-8483-4772-8e79-3d69d8477de4';
export const ESP = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';

export interface GptDiskOptions {
  diskSize: number;
  sectorSize?: number;
  entries: GptEntry[];
  entryCount?: number;
  entrySize?: number;
  diskGuid?: string;
}

export interface GptDisk {
  diskSize: number;
  sectorSize: number;
  pmbr: RawRegion;
  primaryHeader: RawRegion;
  primaryArray: RawRegion;
  backupArray: RawRegion;
  backupHeader: RawRegion;
  regions: RawRegion[];
}

/** Lays out a standard GPT disk: pMBR, header at LBA 1, array at LBA 2, mirror at the end. */
export function buildGptDisk(o: GptDiskOptions): GptDisk {
  const ss = o.sectorSize ?? 512;
  const entryCount = o.entryCount ?? 128;
  const entrySize = o.entrySize ?? 128;
  const lastLba = o.diskSize / ss - 1;
  const array = encodeGptEntries(o.entries, entryCount, entrySize);
  const arraySectors = Math.ceil(array.length / ss);
  const arrayBuf = Buffer.alloc(arraySectors * ss);
  array.copy(arrayBuf);
  const common = {
    firstUsableLba: BigInt(2 + arraySectors),
    lastUsableLba: BigInt(lastLba - 1 - arraySectors),
    diskGuid: o.diskGuid ?? '01234567-89ab-cdef-0123-456789abcdef',
    entryCount,
    entrySize,
    entriesCrc32: crc32(array),
  };
  const sector = (h: Buffer): Buffer => Buffer.concat([h, Buffer.alloc(ss - h.length)]);
  const primary = sector(encodeGptHeader({ ...common, myLba: 1n, alternateLba: BigInt(lastLba), entriesLba: 2n }));
  const backupArrayLba = lastLba - arraySectors;
  const backup = sector(encodeGptHeader({ ...common, myLba: BigInt(lastLba), alternateLba: 1n, entriesLba: BigInt(backupArrayLba) }));
  const pmbrSector = Buffer.alloc(ss);
  encodeMbr({ entries: [{ type: 0xee, bootable: false, lbaStart: 1, sectorCount: Math.min(lastLba, 0xffffffff) }] }).copy(pmbrSector);
  const d = {
    diskSize: o.diskSize,
    sectorSize: ss,
    pmbr: { offset: 0, data: pmbrSector },
    primaryHeader: { offset: ss, data: primary },
    primaryArray: { offset: 2 * ss, data: arrayBuf },
    backupArray: { offset: backupArrayLba * ss, data: Buffer.from(arrayBuf) },
    backupHeader: { offset: lastLba * ss, data: backup },
  };
  return { ...d, regions: [d.pmbr, d.primaryHeader, d.primaryArray, d.backupArray, d.backupHeader] };
}

export function gptEntry(index: number, firstLba: number, lastLba: number, name = `part${index}`, typeGuid = LINUX_FS): GptEntry {
  const hex = index.toString(16).padStart(12, '0');
  return { index, typeGuid, uniqueGuid: `aaaaaaaa-bbbb-cccc-dddd-${hex}`, firstLba: BigInt(firstLba), lastLba: BigInt(lastLba), attributes: 0n, name };
}

/** Seeded PRNG (mulberry32), shared with the other suites. */
export { prng } from '../../helpers/rng.ts';

export const MiB = 1024 * 1024;
export const ent = (type: number, lbaStart: number, sectorCount: number, bootable = false): EncodeMbrInput['entries'][number] => ({ type, lbaStart, sectorCount, bootable });
/** An MBR/EBR sector at `lba`, padded to the sector size. */
export const at = (lba: number, ss: number, input: EncodeMbrInput): RawRegion => {
  const data = Buffer.alloc(ss);
  encodeMbr(input).copy(data);
  return { offset: lba * ss, data };
};

/** Bootable primary, extended partition at 1000 holding logicals in EBRs at 1000 and 3000. */
export function mbrDisk(ss: number): RawRegion[] {
  return [
    at(0, ss, { diskSignature: 0xcafe0001, entries: [ent(0x83, 100, 800, true), ent(0x05, 1000, 5000)] }),
    at(1000, ss, { entries: [ent(0x83, 10, 1990), ent(0x05, 2000, 2000)] }), // next EBR at 1000 + 2000
    at(3000, ss, { entries: [ent(0x82, 10, 1990)] }),
  ];
}

export const gptEntries: GptEntry[] = [
  { ...gptEntry(1, 2048, 4095, 'EFI System', ESP), attributes: 1n },
  gptEntry(2, 4096, 8191, 'root'),
  gptEntry(3, 8192, 8199, ''),
];

export function gptDisk(ss: number): GptDisk {
  return buildGptDisk({ diskSize: 16384 * ss, sectorSize: ss, entries: gptEntries });
}
