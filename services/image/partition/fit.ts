// Fit a restored GPT to a larger disk. An image taken from a 64 GiB disk and written onto a
// 128 GiB one leaves the backup GPT (header + entry array) in the middle of the new disk, where
// firmware and `sgdisk -v` call the table damaged, and the space after it unusable. UEFI 2.x §5.3.2
// wants the backup header in the disk's last LBA and its entry array right before it.
//
// What changes (nothing else is touched; partitions keep their places):
//   primary header   AlternateLBA = new last LBA; LastUsableLBA = new last LBA − array sectors − 1
//   backup array     written at new last LBA − array sectors (same bytes, so the same CRC)
//   backup header    MyLBA = last LBA, AlternateLBA = 1, PartitionEntryLBA = the backup array
//   old backup       its header sector and array (outside every partition by the GPT rules) zeroed
//   protective MBR   the 0xEE entry's size grown to cover the disk (capped at 2^32 − 1 sectors)
import type { FileHandle } from 'node:fs/promises';
import { RackcastError } from '../../errors.ts';
import { decodeGptHeader, decodeGptEntries, encodeGptHeader } from './gpt.ts';
import { MBR_ENTRIES_OFFSET, MBR_ENTRY_SIZE, MBR_TYPE_GPT_PROTECTIVE } from './mbr.ts';

export interface SectorIo {
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Buffer): Promise<void>;
}

/** Sector I/O on an open file or device (`path` names it in errors): a short read is an error, writes loop until done. */
export function handleIo(fh: FileHandle, path: string): SectorIo {
  return {
    read: async (offset, length) => {
      const b = Buffer.alloc(length);
      const { bytesRead } = await fh.read(b, 0, length, offset);
      if (bytesRead !== length) throw new RackcastError('RC_ERR_IO', `short read at ${offset} of ${path}`, { path, offset });
      return b;
    },
    write: async (offset, data) => {
      let done = 0;
      while (done < data.length) done += (await fh.write(data, done, data.length - done, offset + done)).bytesWritten;
    },
  };
}

export interface FitResult { moved: boolean; reason: string; oldLastLba?: bigint; newLastLba?: bigint; lastUsableLba?: bigint }

export async function fitGptToDisk(io: SectorIo, sectorSize: number, diskSize: number): Promise<FitResult> {
  const ss = BigInt(sectorSize);
  const last = BigInt(Math.floor(diskSize / sectorSize)) - 1n;
  const primaryBuf = await io.read(sectorSize, sectorSize);
  let primary;
  try {
    primary = decodeGptHeader(primaryBuf, 0, sectorSize);
  } catch (e) {
    return { moved: false, reason: `no valid primary GPT header (${(e as Error).message})` };
  }
  if (primary.myLba !== 1n) return { moved: false, reason: `primary GPT header says MyLBA ${primary.myLba}` };
  if (primary.alternateLba === last) return { moved: false, reason: 'the backup GPT is already at the end of the disk' };
  if (primary.alternateLba > last) {
    throw new RackcastError('RC_ERR_PT_INVALID', `the GPT's backup header is at LBA ${primary.alternateLba}, beyond this disk's last LBA ${last}`, { alternateLba: String(primary.alternateLba), lastLba: String(last) });
  }
  const arrayBytes = primary.entryCount * primary.entrySize;
  const arraySectors = BigInt(Math.ceil(arrayBytes / sectorSize));
  const entries = await io.read(Number(primary.entriesLba * ss), arrayBytes);
  decodeGptEntries(entries, 0, primary); // checks the array CRC: never move a table we cannot trust
  const oldBackup = primary.alternateLba;
  const oldBackupArray = oldBackup - arraySectors;
  const newArrayLba = last - arraySectors;
  const lastUsable = newArrayLba - 1n;
  if (lastUsable < primary.lastUsableLba) return { moved: false, reason: 'the disk is not large enough to gain anything' };
  // zero the old backup first: if we stop half-way the primary (unchanged yet) still names a
  // backup location, and tools rebuild the backup from the primary
  if (oldBackupArray > primary.lastUsableLba) await io.write(Number(oldBackupArray * ss), Buffer.alloc(Number(arraySectors * ss)));
  await io.write(Number(oldBackup * ss), Buffer.alloc(sectorSize));
  const pad = (b: Buffer): Buffer => { const s = Buffer.alloc(sectorSize); b.copy(s); return s; };
  await io.write(Number(newArrayLba * ss), entries);
  const common = { myLba: 1n, alternateLba: last, firstUsableLba: primary.firstUsableLba, lastUsableLba: lastUsable, diskGuid: primary.diskGuid, entriesLba: primary.entriesLba, entryCount: primary.entryCount, entrySize: primary.entrySize, entriesCrc32: primary.entriesCrc32, revision: primary.revision, headerSize: primary.headerSize };
  await io.write(Number(last * ss), pad(encodeGptHeader({ ...common, myLba: last, alternateLba: 1n, entriesLba: newArrayLba })));
  await io.write(sectorSize, pad(encodeGptHeader(common)));
  await fitProtectiveMbr(io, last);
  return { moved: true, reason: `backup GPT moved from LBA ${oldBackup} to ${last}`, oldLastLba: oldBackup, newLastLba: last, lastUsableLba: lastUsable };
}

/** Size the protective MBR's 0xEE entry (the kind that starts at LBA 1) to end at `last` (capped at 2^32 − 1 sectors). */
export async function fitProtectiveMbr(io: SectorIo, last: bigint): Promise<void> {
  const mbr = await io.read(0, 512);
  if (mbr[510] !== 0x55 || mbr[511] !== 0xaa) return;
  for (let k = 0; k < 4; k++) {
    const e = MBR_ENTRIES_OFFSET + k * MBR_ENTRY_SIZE;
    if (mbr[e + 4] !== MBR_TYPE_GPT_PROTECTIVE || mbr.readUInt32LE(e + 8) !== 1) continue;
    mbr.writeUInt32LE(Number(last > 0xffffffffn ? 0xffffffffn : last), e + 12);
    await io.write(0, mbr);
  }
}
