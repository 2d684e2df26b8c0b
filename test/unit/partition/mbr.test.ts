import { describe, it, expect } from '@jest/globals';
import { decodeEbr, decodeMbr, encodeMbr, MBR_SIZE } from '../../../services/image/partition/mbr.ts';
import { rcError } from './helpers.ts';

const sample = {
  diskSignature: 0x1234abcd,
  entries: [
    { slot: 1, bootable: true, type: 0x83, lbaStart: 2048, sectorCount: 20480 },
    { slot: 2, bootable: false, type: 0x05, lbaStart: 22528, sectorCount: 81920 },
    { slot: 4, bootable: false, type: 0x0c, lbaStart: 0xfffff000, sectorCount: 0xffffffff },
  ],
};

describe('MBR codec', () => {
  it('round-trips, skipping the empty slot and keeping slot numbers', () => {
    const buf = encodeMbr(sample);
    expect(buf.length).toBe(MBR_SIZE);
    expect(buf.subarray(510)).toEqual(Buffer.from([0x55, 0xaa]));
    const mbr = decodeMbr(buf);
    expect(mbr.bootSignatureValid).toBe(true);
    expect(mbr.statusValid).toBe(true);
    expect(mbr.diskSignature).toBe(0x1234abcd);
    expect(mbr.entries).toEqual(sample.entries.map((e) => ({ ...e, status: e.bootable ? 0x80 : 0 })));
    expect(encodeMbr(mbr)).toEqual(buf);
  });

  it('decodes at an offset into a larger buffer', () => {
    const big = Buffer.alloc(4096, 0xcc);
    encodeMbr(sample).copy(big, 1000);
    expect(decodeMbr(big, 1000)).toEqual(decodeMbr(encodeMbr(sample)));
  });

  it('reads the fixed offsets: disk signature at 440, entries at 446, 55AA at 510', () => {
    const buf = Buffer.alloc(512);
    buf.writeUInt32LE(0xdeadbeef, 440);
    buf[446 + 16] = 0x80; // slot 2 status
    buf[446 + 16 + 4] = 0x07;
    buf.writeUInt32LE(63, 446 + 16 + 8);
    buf.writeUInt32LE(1000, 446 + 16 + 12);
    const m = decodeMbr(buf);
    expect(m.bootSignatureValid).toBe(false);
    expect(m.diskSignature).toBe(0xdeadbeef);
    expect(m.entries).toEqual([{ slot: 2, status: 0x80, bootable: true, type: 7, lbaStart: 63, sectorCount: 1000 }]);
  });

  it('flags a status byte other than 0x00/0x80', () => {
    const buf = encodeMbr({ entries: [{ type: 0x83, bootable: false, status: 0x12, lbaStart: 1, sectorCount: 1 }] });
    expect(decodeMbr(buf).statusValid).toBe(false);
  });

  it('throws RC_ERR_DECODE_TRUNCATED at every short length, with the offset', async () => {
    const full = encodeMbr(sample);
    for (let len = 0; len < MBR_SIZE; len++) {
      const e = await rcError(() => decodeMbr(full.subarray(0, len)), 'RC_ERR_DECODE_TRUNCATED');
      expect(e.fields).toMatchObject({ offset: 0, needed: 512, available: len });
      await rcError(() => decodeEbr(full.subarray(0, len)), 'RC_ERR_DECODE_TRUNCATED');
    }
    await rcError(() => decodeMbr(Buffer.alloc(1024), 513), 'RC_ERR_DECODE_TRUNCATED');
    await rcError(() => decodeMbr(Buffer.alloc(1024), -1), 'RC_ERR_DECODE_INVALID');
  });

  it('rejects more than 4 entries or a bad slot when encoding', async () => {
    const e = { type: 0x83, bootable: false, lbaStart: 1, sectorCount: 1 };
    await rcError(() => encodeMbr({ entries: [e, e, e, e, e] }), 'RC_ERR_DECODE_INVALID');
    await rcError(() => encodeMbr({ entries: [{ ...e, slot: 5 }] }), 'RC_ERR_DECODE_INVALID');
  });
});

describe('EBR codec', () => {
  it('splits data entries from the link to the next EBR', () => {
    const buf = encodeMbr({ entries: [
      { type: 0x83, bootable: false, lbaStart: 2048, sectorCount: 10240 },
      { type: 0x05, bootable: false, lbaStart: 12288, sectorCount: 22528 },
    ] });
    const ebr = decodeEbr(buf);
    expect(ebr.bootSignatureValid).toBe(true);
    expect(ebr.data).toEqual([{ slot: 1, status: 0, bootable: false, type: 0x83, lbaStart: 2048, sectorCount: 10240 }]);
    expect(ebr.next).toEqual({ slot: 2, status: 0, bootable: false, type: 0x05, lbaStart: 12288, sectorCount: 22528 });
  });

  it('accepts the DR-DOS order (link first) and the last EBR with no link', () => {
    const drdos = decodeEbr(encodeMbr({ entries: [
      { type: 0x0f, bootable: false, lbaStart: 100, sectorCount: 50 },
      { type: 0x07, bootable: false, lbaStart: 1, sectorCount: 49 },
    ] }));
    expect(drdos.next?.type).toBe(0x0f);
    expect(drdos.data.map((d) => d.type)).toEqual([0x07]);
    const last = decodeEbr(encodeMbr({ entries: [{ type: 0x83, bootable: false, lbaStart: 1, sectorCount: 9 }] }), 0);
    expect(last.next).toBeUndefined();
  });

  it('drops entries with no sectors', () => {
    const ebr = decodeEbr(encodeMbr({ entries: [
      { type: 0x83, bootable: false, lbaStart: 1, sectorCount: 0 },
      { type: 0x05, bootable: false, lbaStart: 5, sectorCount: 0 },
    ] }));
    expect(ebr).toEqual({ bootSignatureValid: true, data: [] });
  });
});
