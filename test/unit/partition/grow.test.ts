// partition/grow.ts on synthetic tables: which partition is "last", what is rewritten for a larger
// (grow) or smaller (fit) disk, and the tables it refuses to touch (overlaps, ties, a logical that
// is not the end of its chain, MBR oddities). Every rewritten table is read back with
// readPartitionTable, which checks both GPT copies and their CRCs.
import { describe, it, expect } from '@jest/globals';
import { journaled, planLastPartition, type LastPartitionPlan } from '../../../services/image/partition/grow.ts';
import { readPartitionTable, type RawRegion } from '../../../services/image/partition/table.ts';
import type { SectorIo } from '../../../services/image/partition/fit.ts';
import { at, buildGptDisk, ent, gptEntry, mbrDisk, memDisk, MiB } from './helpers.ts';

/** A sparse disk: the regions, then every write on top of them (later wins). Counts writes. */
function sparseDisk(diskSize: number, regions: readonly RawRegion[]): SectorIo & { writes: number; size: number; snapshot(): RawRegion[] } {
  const layers: RawRegion[] = regions.map((r) => ({ offset: r.offset, data: Buffer.from(r.data) }));
  const d = {
    writes: 0,
    size: diskSize,
    read: async (offset: number, length: number) => {
      const b = await memDisk(d.size, layers)(offset, length);
      return b.length === length ? b : Buffer.concat([b, Buffer.alloc(length - b.length)]);
    },
    write: async (offset: number, data: Buffer) => {
      if (offset + data.length > d.size) throw new Error(`write at ${offset} past the disk's end`);
      d.writes++;
      layers.push({ offset, data: Buffer.from(data) });
    },
    snapshot: () => layers.map((r) => ({ offset: r.offset, data: Buffer.from(r.data) })),
  };
  return d;
}

async function plan(disk: ReturnType<typeof sparseDisk>, ss: number, tableSize: number, newSize: number, mode: 'grow' | 'fit'): Promise<LastPartitionPlan> {
  const o = await planLastPartition(disk, ss, tableSize, newSize, mode);
  if (!o.ok) throw new Error(`expected a plan, got: ${o.reason}`);
  return o.plan;
}

async function reason(disk: SectorIo, ss: number, tableSize: number, newSize: number, mode: 'grow' | 'fit'): Promise<string> {
  const o = await planLastPartition(disk, ss, tableSize, newSize, mode);
  if (o.ok) throw new Error(`expected a refusal, got partition ${o.plan.index}`);
  return o.reason;
}

const readBack = (d: ReturnType<typeof sparseDisk>, ss: number) => readPartitionTable((o, l) => d.read(o, l), d.size, ss);

describe('GPT', () => {
  it('grows the highest-ending partition even when it is not last in the array; both copies valid', async () => {
    // slot 1 is the partition at the end of the disk, slot 2 the one before it
    const g = buildGptDisk({ diskSize: 64 * MiB, entries: [gptEntry(1, 40960, 81919), gptEntry(2, 2048, 40959)] });
    const disk = sparseDisk(128 * MiB, g.regions);
    const p = await plan(disk, 512, 128 * MiB, 128 * MiB, 'grow');
    const lastUsable = 128 * MiB / 512 - 34;
    expect(p).toMatchObject({ kind: 'gpt', index: 1, start: 40960 * 512, oldSize: 40960 * 512, newSize: (lastUsable + 1 - 40960) * 512, tailBytes: 33 * 512 });
    await p.apply(disk);
    const t = await readBack(disk, 512);
    expect(t.warnings).toEqual([]);
    expect(t.partitions.map((x) => [x.index, x.start / 512, (x.start + x.size) / 512 - 1])).toEqual([[1, 40960, lastUsable], [2, 2048, 40959]]);
    // the old backup (inside the new usable area) is left to the grown partition; the protective MBR covers the disk
    expect((await disk.read(0, 512)).readUInt32LE(446 + 12)).toBe(128 * MiB / 512 - 1);
  });

  it('4K sectors: the array is 4 sectors, the last usable LBA 5 before the last', async () => {
    const g = buildGptDisk({ diskSize: 64 * MiB, sectorSize: 4096, entries: [gptEntry(1, 256, 8191), gptEntry(2, 8192, 12287)] });
    const disk = sparseDisk(96 * MiB, g.regions);
    const p = await plan(disk, 4096, 96 * MiB, 96 * MiB, 'grow');
    const last = 96 * MiB / 4096 - 1;
    expect(p).toMatchObject({ index: 2, newSize: (last - 5 + 1 - 8192) * 4096, tailBytes: 5 * 4096 });
    await p.apply(disk);
    const t = await readBack(disk, 4096);
    expect(t.warnings).toEqual([]);
    expect((t.partitions[1]!.start + t.partitions[1]!.size) / 4096 - 1).toBe(last - 5);
  });

  it('fit: cuts the last partition at the new usable end and puts the backup at the new end', async () => {
    const g = buildGptDisk({ diskSize: 64 * MiB, entries: [gptEntry(1, 2048, 10239), gptEntry(2, 10240, 131038)] });
    const disk = sparseDisk(64 * MiB, g.regions);
    const p = await plan(disk, 512, 64 * MiB, 32 * MiB, 'fit');
    expect(p).toMatchObject({ index: 2, oldSize: (131039 - 10240) * 512, newSize: (65536 - 34 - 10240 + 1) * 512 });
    disk.size = 32 * MiB; // truncated: every write must land inside
    await p.apply(disk);
    const t = await readBack(disk, 512);
    expect(t.warnings).toEqual([]);
    expect((t.partitions[1]!.start + t.partitions[1]!.size) / 512 - 1).toBe(65536 - 34);
    // a partition ending inside the new disk already is left where it is
    const g2 = buildGptDisk({ diskSize: 64 * MiB, entries: [gptEntry(1, 2048, 10239)] });
    expect(await plan(sparseDisk(64 * MiB, g2.regions), 512, 64 * MiB, 32 * MiB, 'fit')).toMatchObject({ newSize: 8192 * 512, oldSize: 8192 * 512 });
    // one starting beyond it has nothing left (the caller refuses, saying the bytes needed)
    const g3 = buildGptDisk({ diskSize: 64 * MiB, entries: [gptEntry(1, 2048, 10239), gptEntry(2, 70000, 131038)] });
    expect((await plan(sparseDisk(64 * MiB, g3.regions), 512, 64 * MiB, 32 * MiB, 'fit')).newSize).toBe(0);
  });

  it('refuses overlapping entries, two partitions ending together, a damaged array, and a disk not larger; writes nothing', async () => {
    const overlap = sparseDisk(128 * MiB, buildGptDisk({ diskSize: 64 * MiB, entries: [gptEntry(1, 2048, 81919), gptEntry(2, 40960, 61439)] }).regions);
    expect(await reason(overlap, 512, 128 * MiB, 128 * MiB, 'grow')).toMatch(/partition 2 \(sectors 40960\.\.61439\) overlaps partition 1, the last one/);
    const tie = sparseDisk(128 * MiB, buildGptDisk({ diskSize: 64 * MiB, entries: [gptEntry(1, 2048, 81919), gptEntry(3, 40960, 81919)] }).regions);
    expect(await reason(tie, 512, 128 * MiB, 128 * MiB, 'grow')).toMatch(/partitions 3 and 1 both end at sector 81920|partitions 1 and 3 both end/);
    const g = buildGptDisk({ diskSize: 64 * MiB, entries: [gptEntry(1, 2048, 81919)] });
    g.primaryArray.data.writeUInt8(g.primaryArray.data.readUInt8(40) ^ 0xff, 40);
    expect(await reason(sparseDisk(128 * MiB, g.regions), 512, 128 * MiB, 128 * MiB, 'grow')).toMatch(/no usable primary GPT \(.*CRC/);
    const full = buildGptDisk({ diskSize: 64 * MiB, entries: [gptEntry(1, 2048, 64 * MiB / 512 - 34)] });
    expect(await reason(sparseDisk(64 * MiB, full.regions), 512, 64 * MiB, 64 * MiB, 'grow')).toMatch(/already ends at sector 131038/);
    expect(overlap.writes + tie.writes).toBe(0);
  });

  it('journaled: undo puts back every byte the plan wrote', async () => {
    const g = buildGptDisk({ diskSize: 64 * MiB, entries: [gptEntry(1, 2048, 81919)] });
    const disk = sparseDisk(128 * MiB, g.regions);
    const before = await disk.read(0, 128 * MiB);
    const j = journaled(disk);
    await (await plan(disk, 512, 128 * MiB, 128 * MiB, 'grow')).apply(j);
    expect((await disk.read(0, 128 * MiB)).equals(before)).toBe(false);
    await j.undo();
    expect((await disk.read(0, 128 * MiB)).equals(before)).toBe(true);
  });
});

describe('MBR', () => {
  it('grows the last primary, capped so it ends at sector 2^32 − 2 on a 3 TiB disk', async () => {
    const disk = sparseDisk(3 * 2 ** 40, [at(0, 512, { diskSignature: 7, entries: [ent(0x83, 2048, 2 ** 21), ent(0x07, 2048 + 2 ** 21, 2 ** 22)] })]);
    const p = await plan(disk, 512, 3 * 2 ** 40, 3 * 2 ** 40, 'grow');
    expect(p).toMatchObject({ kind: 'mbr', index: 2, type: '0x07', newSize: (0xffffffff - 2048 - 2 ** 21) * 512, tailBytes: 0 });
    await p.apply(disk);
    const t = await readBack(disk, 512);
    expect(t.warnings).toEqual([]);
    expect(t.partitions.map((x) => [x.index, (x.start + x.size) / 512])).toEqual([[1, 2048 + 2 ** 21], [2, 0xffffffff]]);
  });

  it('a logical last: grows it, its extended container and the link pointing at its EBR', async () => {
    for (const ss of [512, 4096]) {
      const disk = sparseDisk(12000 * ss, mbrDisk(ss)); // logical 6 ends at 5000, the container at 6000
      const p = await plan(disk, ss, 6000 * ss, 12000 * ss, 'grow');
      expect(p).toMatchObject({ index: 6, start: 3010 * ss, oldSize: 1990 * ss, newSize: (12000 - 3010) * ss });
      await p.apply(disk);
      const t = await readBack(disk, ss);
      expect(t.warnings).toEqual([]);
      expect(t.partitions.map((x) => [x.index, x.start / ss, (x.start + x.size) / ss])).toEqual([[1, 100, 900], [2, 1000, 12000], [5, 1010, 3000], [6, 3010, 12000]]);
      const link = (await disk.read(1000 * ss, 512)).readUInt32LE(446 + 16 + 12);
      expect(link).toBe(12000 - 3000);
    }
  });

  it('fit: the logical and its container end at the new end', async () => {
    const disk = sparseDisk(6000 * 512, mbrDisk(512));
    const p = await plan(disk, 512, 6000 * 512, 4000 * 512, 'fit');
    expect(p).toMatchObject({ index: 6, newSize: (4000 - 3010) * 512 });
    disk.size = 4000 * 512;
    await p.apply(disk);
    const t = await readBack(disk, 512);
    expect(t.warnings).toEqual([]);
    expect(t.partitions.map((x) => [x.index, (x.start + x.size) / 512])).toEqual([[1, 900], [2, 4000], [5, 3000], [6, 4000]]);
  });

  it('refuses a logical that is not the end of its chain, overlapping primaries, and an MBR with oddities', async () => {
    // the chain's first logical lies after the second one's
    const unordered = sparseDisk(12000 * 512, [
      at(0, 512, { entries: [ent(0x05, 1000, 5000)] }),
      at(1000, 512, { entries: [ent(0x83, 3010, 1990), ent(0x05, 1000, 1000)] }),
      at(2000, 512, { entries: [ent(0x83, 10, 990)] }),
    ]);
    expect(await reason(unordered, 512, 6000 * 512, 12000 * 512, 'grow')).toMatch(/logical partition 5 is not the last link of its EBR chain/);
    const overlapping = sparseDisk(12000 * 512, [at(0, 512, { entries: [ent(0x83, 100, 5000), ent(0x83, 2000, 1000)] })]);
    expect(await reason(overlapping, 512, 6000 * 512, 12000 * 512, 'grow')).toMatch(/partition 2 .* overlaps partition 1/);
    const past = sparseDisk(6000 * 512, [at(0, 512, { entries: [ent(0x83, 100, 9000)] })]);
    expect(await reason(past, 512, 6000 * 512, 12000 * 512, 'grow')).toMatch(/oddities: partition 1 ends at byte .* past the end of the disk/);
    expect(await reason(sparseDisk(6000 * 512, []), 512, 6000 * 512, 12000 * 512, 'grow')).toMatch(/no partition table/);
    expect(unordered.writes + overlapping.writes + past.writes).toBe(0);
  });
});
