import { describe, it, expect } from '@jest/globals';
import { readPartitionTable, type RawRegion } from '../../../services/image/partition/table.ts';
import { at, ent, mbrDisk, memDisk, MiB, rcError } from './helpers.ts';

describe('readPartitionTable: no table', () => {
  it('returns kind none without 55AA, for an empty disk and for a disk smaller than a sector', async () => {
    expect(await readPartitionTable(memDisk(MiB, []), MiB, 512)).toEqual({ kind: 'none', sectorSize: 512, partitions: [], raw: [], warnings: [] });
    expect((await readPartitionTable(memDisk(0, []), 0, 512)).kind).toBe('none');
    const tiny = await readPartitionTable(memDisk(300, []), 300, 512);
    expect(tiny.kind).toBe('none');
    expect(tiny.warnings).toHaveLength(1);
  });

  it('treats a 55AA sector with an invalid boot indicator as no table (FAT boot sector)', async () => {
    const t = await readPartitionTable(memDisk(MiB, [at(0, 512, { entries: [{ ...ent(0x83, 1, 10), status: 0x29 }] })]), MiB, 512);
    expect(t.kind).toBe('none');
    expect(t.warnings[0]).toMatch(/boot indicator other than/);
  });

  it('rejects an impossible sector size or disk size', async () => {
    await rcError(() => readPartitionTable(memDisk(MiB, []), MiB, 1000), 'RC_ERR_DECODE_INVALID');
    await rcError(() => readPartitionTable(memDisk(MiB, []), -1, 512), 'RC_ERR_DECODE_INVALID');
  });

  it('wraps a failing read in RC_ERR_IO', async () => {
    const e = await rcError(() => readPartitionTable(async () => { throw new Error('EIO'); }, MiB, 512), 'RC_ERR_IO');
    expect(e.fields).toMatchObject({ offset: 0 });
  });
});

describe('readPartitionTable: MBR', () => {
  for (const ss of [512, 4096]) {
    it(`numbers primaries by slot and logicals from 5, in bytes (${ss}-byte sectors)`, async () => {
      const regions = mbrDisk(ss);
      const t = await readPartitionTable(memDisk(8000 * ss, regions), 8000 * ss, ss);
      expect(t).toMatchObject({ kind: 'mbr', sectorSize: ss, diskId: '0xcafe0001', warnings: [] });
      expect(t.partitions).toEqual([
        { index: 1, start: 100 * ss, size: 800 * ss, type: '0x83', bootable: true },
        { index: 2, start: 1000 * ss, size: 5000 * ss, type: '0x05', bootable: false },
        { index: 5, start: 1010 * ss, size: 1990 * ss, type: '0x83', bootable: false },
        { index: 6, start: 3010 * ss, size: 1990 * ss, type: '0x82', bootable: false },
      ]);
      expect(t.raw).toEqual(regions);
    });
  }

  it('keeps slot numbers across empty slots and skips zero-length entries', async () => {
    const t = await readPartitionTable(memDisk(MiB, [at(0, 512, { entries: [{ ...ent(0x83, 1, 0), slot: 1 }, { ...ent(0x07, 64, 100), slot: 3 }] })]), MiB, 512);
    expect(t.partitions.map((p) => [p.index, p.type])).toEqual([[3, '0x07']]);
  });

  it('warns about partitions past the end of the disk', async () => {
    const t = await readPartitionTable(memDisk(MiB, [at(0, 512, { entries: [ent(0x83, 2048, 0xffffffff)] })]), MiB, 512);
    expect(t.partitions).toHaveLength(1);
    expect(t.warnings.join()).toMatch(/partition 1 .*past the end of the disk/);
  });

  it('detects an EBR that links to itself', async () => {
    const regions = [at(0, 512, { entries: [ent(0x05, 100, 1000)] }), at(100, 512, { entries: [ent(0x83, 1, 10), ent(0x05, 0, 1000)] })];
    const e = await rcError(() => readPartitionTable(memDisk(MiB, regions), MiB, 512), 'RC_ERR_PT_LOOP');
    expect(e.fields).toMatchObject({ offset: 100 * 512 });
  });

  it('detects a cycle through two EBRs', async () => {
    const regions = [
      at(0, 512, { entries: [ent(0x0f, 100, 1000)] }),
      at(100, 512, { entries: [ent(0x83, 1, 10), ent(0x05, 50, 100)] }),
      at(150, 512, { entries: [ent(0x83, 1, 10), ent(0x05, 0, 100)] }),
    ];
    await rcError(() => readPartitionTable(memDisk(MiB, regions), MiB, 512), 'RC_ERR_PT_LOOP');
  });

  it('accepts a 128-link chain and rejects a 129-link one', async () => {
    const chain = (links: number): RawRegion[] => {
      const r = [at(0, 512, { entries: [ent(0x05, 1000, 10 * links)] })];
      for (let i = 0; i < links; i++) {
        const next = i + 1 < links ? [ent(0x05, 10 * (i + 1), 10)] : [];
        r.push(at(1000 + 10 * i, 512, { entries: [ent(0x83, 1, 9), ...next] }));
      }
      return r;
    };
    const size = 4 * MiB;
    const ok = await readPartitionTable(memDisk(size, chain(128)), size, 512);
    expect(ok.partitions.at(-1)?.index).toBe(5 + 127);
    expect(ok.raw).toHaveLength(129);
    await rcError(() => readPartitionTable(memDisk(size, chain(129)), size, 512), 'RC_ERR_PT_LOOP');
  });

  it('ends the chain with a warning at an EBR past the disk or without 55AA', async () => {
    const past = [at(0, 512, { entries: [ent(0x05, 100, 1000)] }), at(100, 512, { entries: [ent(0x83, 1, 10), ent(0x05, 0xfffff000, 10)] })];
    const t1 = await readPartitionTable(memDisk(MiB, past), MiB, 512);
    expect(t1.partitions.map((p) => p.index)).toEqual([1, 5]);
    expect(t1.warnings.join()).toMatch(/EBR at LBA 4294963300 lies past the end/);
    const t2 = await readPartitionTable(memDisk(MiB, past.slice(0, 1)), MiB, 512);
    expect(t2.partitions.map((p) => p.index)).toEqual([1]);
    expect(t2.warnings.join()).toMatch(/lacks the 55AA/);
  });

  it('ignores EBR entries 3/4 that lie outside the extended partition', async () => {
    const regions = [at(0, 512, { entries: [ent(0x05, 100, 100)] }), at(100, 512, { entries: [ent(0x83, 1, 10), { ...ent(0x83, 50, 500), slot: 3 }] })];
    const t = await readPartitionTable(memDisk(MiB, regions), MiB, 512);
    expect(t.partitions.map((p) => p.index)).toEqual([1, 5]);
    expect(t.warnings.join()).toMatch(/ignoring entry 3/);
  });
});
