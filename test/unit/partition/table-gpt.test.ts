import { describe, it, expect } from '@jest/globals';
import { crc32 } from 'node:zlib';
import { readPartitionTable, type RawRegion } from '../../../services/image/partition/table.ts';
import { buildGptDisk, ESP, gptDisk, gptEntries, gptEntry, memDisk, rcError, type GptDisk } from './helpers.ts';

const corrupt = (r: RawRegion, at = 40): RawRegion => {
  const data = Buffer.from(r.data);
  data[at] = data[at]! ^ 0xff;
  return { offset: r.offset, data };
};
const replace = (d: GptDisk, from: RawRegion, to: RawRegion): RawRegion[] => d.regions.map((r) => (r === from ? to : r));
/** Header sector with a field changed and the CRC recomputed, so only the field check can object. */
function resealed(r: RawRegion, edit: (b: Buffer) => void): RawRegion {
  const data = Buffer.from(r.data);
  edit(data);
  data.writeUInt32LE(0, 16);
  data.writeUInt32LE(crc32(data.subarray(0, 92)), 16);
  return { offset: r.offset, data };
}

describe('readPartitionTable: GPT', () => {
  for (const ss of [512, 4096]) {
    it(`reads partitions in bytes and the five raw regions (${ss}-byte sectors)`, async () => {
      const d = gptDisk(ss);
      const t = await readPartitionTable(memDisk(d.diskSize, d.regions), d.diskSize, ss);
      expect(t).toMatchObject({ kind: 'gpt', sectorSize: ss, diskId: '01234567-89ab-cdef-0123-456789abcdef', warnings: [] });
      expect(t.partitions).toEqual([
        { index: 1, start: 2048 * ss, size: 2048 * ss, type: ESP, uuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000001', name: 'EFI System', attributes: '0x0000000000000001' },
        { index: 2, start: 4096 * ss, size: 4096 * ss, type: gptEntries[1]!.typeGuid, uuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000002', name: 'root', attributes: '0x0000000000000000' },
        { index: 3, start: 8192 * ss, size: 8 * ss, type: gptEntries[1]!.typeGuid, uuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000003', attributes: '0x0000000000000000' },
      ]);
      expect(t.raw).toEqual(d.regions);
    });
  }

  it('falls back to the backup, with a warning, when the primary header CRC is bad', async () => {
    const d = gptDisk(512);
    const t = await readPartitionTable(memDisk(d.diskSize, replace(d, d.primaryHeader, corrupt(d.primaryHeader))), d.diskSize, 512);
    expect(t.partitions).toHaveLength(3);
    expect(t.warnings.join()).toMatch(/primary GPT unusable .*CRC32.*using the backup at LBA 16383/);
    expect(t.raw.map((r) => r.offset)).toEqual([0, 512, d.backupArray.offset, d.backupHeader.offset]);
  });

  it('falls back to the backup when the primary entry array CRC is bad', async () => {
    const d = gptDisk(512);
    const t = await readPartitionTable(memDisk(d.diskSize, replace(d, d.primaryArray, corrupt(d.primaryArray, 300))), d.diskSize, 512);
    expect(t.partitions).toHaveLength(3);
    expect(t.warnings.join()).toMatch(/primary GPT unusable .*entry array CRC32/);
  });

  it('uses the primary and warns when only the backup is bad', async () => {
    const d = gptDisk(512);
    const t = await readPartitionTable(memDisk(d.diskSize, replace(d, d.backupHeader, corrupt(d.backupHeader))), d.diskSize, 512);
    expect(t.partitions).toHaveLength(3);
    expect(t.warnings).toEqual([expect.stringMatching(/^backup GPT unusable/)]);
  });

  it('throws RC_ERR_PT_BAD_CRC when both copies are corrupt', async () => {
    const d = gptDisk(512);
    const regions = replace(d, d.primaryHeader, corrupt(d.primaryHeader)).map((r) => (r === d.backupArray ? corrupt(r, 5) : r));
    await rcError(() => readPartitionTable(memDisk(d.diskSize, regions), d.diskSize, 512), 'RC_ERR_PT_BAD_CRC');
  });

  it('throws RC_ERR_PT_INVALID for a protective MBR with no GPT at all', async () => {
    const d = gptDisk(512);
    await rcError(() => readPartitionTable(memDisk(d.diskSize, [d.pmbr]), d.diskSize, 512), 'RC_ERR_PT_INVALID');
  });

  it('rejects entry count 2^31 and entry size 0 / huge in the primary, using the backup', async () => {
    const d = gptDisk(512);
    for (const [field, value] of [[80, 2 ** 31], [84, 0], [84, 2 ** 31], [84, 0xffffffff]] as const) {
      const bad = resealed(d.primaryHeader, (b) => b.writeUInt32LE(value, field));
      const t = await readPartitionTable(memDisk(d.diskSize, replace(d, d.primaryHeader, bad)), d.diskSize, 512);
      expect(t.partitions).toHaveLength(3);
      expect(t.warnings.join()).toMatch(/primary GPT unusable .*GPT entry (count|size)/);
      const both = replace(d, d.primaryHeader, bad).map((r) => (r === d.backupHeader ? resealed(r, (b) => b.writeUInt32LE(value, field)) : r));
      await rcError(() => readPartitionTable(memDisk(d.diskSize, both), d.diskSize, 512), 'RC_ERR_PT_INVALID');
    }
  });

  it('rejects a header whose MyLBA, usable range or array lies wrong', async () => {
    const d = gptDisk(512);
    const edits: Array<(b: Buffer) => void> = [
      (b) => b.writeBigUInt64LE(7n, 24), // MyLBA
      (b) => b.writeBigUInt64LE(1n, 40), // usable range covers the header
      (b) => b.writeBigUInt64LE(16380n, 72), // array runs off the end
      (b) => b.writeBigUInt64LE(1n, 72), // array overlaps the header
      (b) => b.writeBigUInt64LE(100n, 72), // array inside the usable range
    ];
    for (const edit of edits) {
      const t = await readPartitionTable(memDisk(d.diskSize, replace(d, d.primaryHeader, resealed(d.primaryHeader, edit))), d.diskSize, 512);
      expect(t.warnings.join()).toMatch(/primary GPT unusable/);
      expect(t.partitions).toHaveLength(3);
    }
  });

  it('keeps a header whose usable range runs past the disk, with warnings', async () => {
    const d = gptDisk(512);
    const t = await readPartitionTable(memDisk(d.diskSize, replace(d, d.primaryHeader, resealed(d.primaryHeader, (b) => b.writeBigUInt64LE(1n << 40n, 48)))), d.diskSize, 512);
    expect(t.partitions).toHaveLength(3);
    expect(t.warnings).toEqual([
      'primary and backup GPT disagree; using the primary',
      expect.stringMatching(/^GPT last usable LBA 1099511627776 is past the end of the disk \(last LBA 16383\)/),
    ]);
  });

  it('looks at the last LBA when the primary names a backup outside the disk', async () => {
    const d = gptDisk(512);
    const bad = resealed(d.primaryHeader, (b) => b.writeBigUInt64LE(1n << 62n, 32));
    const t = await readPartitionTable(memDisk(d.diskSize, replace(d, d.primaryHeader, bad)), d.diskSize, 512);
    expect(t.warnings).toEqual([expect.stringMatching(/not inside the disk; looking at the last LBA/)]);
    expect(t.raw).toHaveLength(5);
  });

  it('warns about entries past the end of the disk or outside the usable range, and skips impossible ones', async () => {
    const entries = [
      gptEntry(1, 2048, 4095), gptEntry(2, 10000, 20000), gptEntry(3, 20, 25),
      gptEntry(4, 5000, 4999), gptEntry(5, 0, 2 ** 53),
      { ...gptEntry(6, 0, 0), firstLba: 1n << 63n, lastLba: (1n << 64n) - 1n },
    ];
    const d = buildGptDisk({ diskSize: 16384 * 512, entries });
    const t = await readPartitionTable(memDisk(d.diskSize, d.regions), d.diskSize, 512);
    expect(t.partitions.map((p) => p.index)).toEqual([1, 2, 3]);
    const w = t.warnings.join('\n');
    expect(w).toMatch(/partition 2 ends at byte 10240512, past the end of the disk \(8388608 bytes\)/);
    expect(w).toMatch(/partition 3: LBA 20..25 is outside the usable range/);
    expect(w).toMatch(/partition 4: first LBA 5000 > last LBA 4999; ignored/);
    expect(w).toMatch(/partition 5: .*beyond any disk; ignored/);
    expect(w).toMatch(/partition 6: .*beyond any disk; ignored/);
  });

  it('reads a disk whose backup is not at the last LBA (image enlarged after capture)', async () => {
    const d = gptDisk(512);
    const bigger = d.diskSize + 100 * 512;
    const t = await readPartitionTable(memDisk(bigger, d.regions), bigger, 512);
    expect(t.partitions).toHaveLength(3);
    expect(t.warnings).toEqual([expect.stringMatching(/backup GPT header is at LBA 16383, not the last LBA 16483/)]);
  });
});
