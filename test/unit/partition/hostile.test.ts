import { describe, it, expect } from '@jest/globals';
import { crc32 } from 'node:zlib';
import { isRackcastError } from '../../../services/errors.ts';
import { decodeGptHeader, encodeGptHeader } from '../../../services/image/partition/gpt.ts';
import { readPartitionTable } from '../../../services/image/partition/table.ts';
import { buildGptDisk, gptDisk, gptEntries, mbrDisk, memDisk, prng } from './helpers.ts';

describe('readPartitionTable: hostile input', () => {
  /** Parses; returns the kind or the error code. Anything but a RackcastError fails the test. */
  async function survive(read: ReturnType<typeof memDisk>, size: number, ss: number): Promise<string> {
    try {
      const t = await readPartitionTable(read, size, ss);
      for (const p of t.partitions) expect(Number.isSafeInteger(p.start) && Number.isSafeInteger(p.size)).toBe(true);
      return t.kind;
    } catch (e) {
      if (!isRackcastError(e)) throw e;
      return e.code;
    }
  }

  it('2000 random sector-0/LBA-1 buffers only ever give a result or a RackcastError', async () => {
    const rnd = prng(0x5eed);
    const u32 = (): number => Math.floor(rnd() * 2 ** 32);
    const seen = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      const ss = i % 4 === 0 ? 4096 : 512;
      const sectors = Math.floor(rnd() * 64);
      const size = sectors * ss + Math.floor(rnd() * 2) * 7;
      // Random bytes, then nudged towards structure so the parser gets past its first checks.
      const head = Buffer.alloc(2 * ss);
      for (let b = 0; b < head.length; b += 4) head.writeUInt32LE(u32(), b);
      if (rnd() < 0.8) { head[510] = 0x55; head[511] = 0xaa; }
      for (let s = 0; s < 4 && rnd() < 0.8; s++) {
        const e = 446 + 16 * s;
        head[e] = rnd() < 0.5 ? 0 : 0x80;
        if (rnd() < 0.5) head[e + 4] = [0xee, 0x05, 0x0f, 0x85, 0x83, 0][Math.floor(rnd() * 6)]!;
        if (rnd() < 0.7) { head.writeUInt32LE(Math.floor(rnd() * sectors), e + 8); head.writeUInt32LE(Math.floor(rnd() * sectors), e + 12); }
      }
      if (rnd() < 0.5) {
        head.write('EFI PART', ss, 'latin1');
        head.writeUInt32LE(0x00010000, ss + 8);
        head.writeUInt32LE(92, ss + 12);
        if (rnd() < 0.5) head.writeUInt32LE(crc32(Buffer.concat([head.subarray(ss, ss + 16), Buffer.alloc(4), head.subarray(ss + 20, ss + 92)])), ss + 16);
      }
      const kind = await survive(memDisk(size, [{ offset: 0, data: head }]), size, ss);
      seen.set(kind, (seen.get(kind) ?? 0) + 1);
    }
    // The generator must actually reach every outcome, or the loop proves little.
    expect([...seen.keys()].sort()).toEqual(expect.arrayContaining(['RC_ERR_PT_BAD_CRC', 'RC_ERR_PT_INVALID', 'mbr', 'none']));
  });

  it('2000 mutated real tables (header CRC re-sealed half the time) only ever give a result or a RackcastError', async () => {
    const rnd = prng(42);
    const gpt = buildGptDisk({ diskSize: 2048 * 512, entries: gptEntries.map((e) => ({ ...e, firstLba: e.firstLba / 8n, lastLba: e.lastLba / 8n })) });
    const mbr = mbrDisk(512);
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const useGpt = i % 2 === 0;
      const regions = (useGpt ? gpt.regions : mbr).map((r) => ({ offset: r.offset, data: Buffer.from(r.data) }));
      for (let t = rnd() < 0.5 ? 1 : 2; t > 0; t--) { // two damaged regions can take out both GPT copies
        const target = regions[Math.floor(rnd() * regions.length)]!;
        const window = target.data.length === 512 ? 512 : 1024; // headers/MBRs whole, arrays' first entries
        for (let k = 1 + Math.floor(rnd() * 4); k > 0; k--) target.data[Math.floor(rnd() * window)] = Math.floor(rnd() * 256);
      }
      if (useGpt && rnd() < 0.5) {
        for (const r of regions) {
          const size = r.data.readUInt32LE(12);
          if (r.data.toString('latin1', 0, 8) !== 'EFI PART' || size < 92 || size > 512) continue;
          r.data.writeUInt32LE(0, 16);
          r.data.writeUInt32LE(crc32(r.data.subarray(0, size)), 16);
        }
      }
      const size = useGpt ? gpt.diskSize : 8000 * 512;
      seen.add(await survive(memDisk(size, regions), size, 512));
    }
    expect([...seen]).toEqual(expect.arrayContaining(['gpt', 'mbr', 'none', 'RC_ERR_PT_BAD_CRC', 'RC_ERR_PT_INVALID']));
  });

  it('a real GPT or MBR disk cut short at every sector (and odd byte) count gives a result or a RackcastError', async () => {
    const gpt = gptDisk(512);
    const mbr = mbrDisk(512);
    const outcomes = new Set<string>();
    for (const regions of [gpt.regions, mbr]) {
      for (let sectors = 0; sectors <= 40; sectors++) {
        for (const extra of [0, 1, 511]) {
          const size = sectors * 512 + extra;
          outcomes.add(await survive(memDisk(size, regions), size, 512));
        }
      }
    }
    // A GPT disk cut to 34+ sectors keeps its primary but loses the backup and its partitions: warnings, not errors.
    const cut = 40 * 512;
    const t = await readPartitionTable(memDisk(cut, gpt.regions), cut, 512);
    expect(t.kind).toBe('gpt');
    expect(t.warnings).toEqual([
      'primary GPT names backup LBA 16383, which is not inside the disk; looking at the last LBA 39',
      expect.stringMatching(/^backup GPT unusable/),
      expect.stringMatching(/^GPT last usable LBA 16350 is past the end of the disk \(last LBA 39\)/),
      expect.stringMatching(/^partition 1 ends at byte 2097152, past the end of the disk/),
      expect.stringMatching(/^partition 2 ends/),
      expect.stringMatching(/^partition 3 ends/),
    ]);
    expect(outcomes).toEqual(new Set(['none', 'gpt', 'mbr', 'RC_ERR_PT_INVALID']));
  });

  it('the GPT builder used above writes what encodeGptHeader encodes', () => {
    const d = gptDisk(512);
    const h = decodeGptHeader(d.primaryHeader.data, 0, 512);
    expect(encodeGptHeader(h)).toEqual(d.primaryHeader.data.subarray(0, 92));
  });
});
