// Multicast wire header (services/multicast/wire.ts): round trips, a golden DATA datagram, and
// hostile inputs, which must fail with RC_ERR_DECODE_TRUNCATED / RC_ERR_DECODE_INVALID only.
import { describe, it, expect } from '@jest/globals';
import { isRackcastError, RackcastError, type ErrorCode } from '../../../services/errors.ts';
import {
  decodeHeader, decodeHeaderInto, encodeHeader, fragSizeFor, HEADER_LENGTH, MAGIC, TYPE, VERSION, type Header, type MessageType,
} from '../../../services/multicast/wire.ts';
import { prng, seededBytes } from '../../helpers/rng.ts';
import { caught, fails } from './helpers.ts';


/** A datagram (header + payload) for h, written at `offset` of a buffer with `tail` spare bytes. */
function datagram(h: Header, payload: Uint8Array, offset = 0, tail = 0): Buffer {
  const out = Buffer.alloc(offset + HEADER_LENGTH + payload.length + tail, 0xee);
  expect(encodeHeader(h, out, offset)).toBe(HEADER_LENGTH);
  out.set(payload, offset + HEADER_LENGTH);
  return out;
}

const dataHeader = (over: Partial<Header> = {}): Header => ({
  type: TYPE.DATA, session: 0xdeadbeef, index: 42, fragIndex: 0, fragCount: 3, payloadLength: 16, fragSize: 16, ...over,
});

/** One header per message type, DATA ones consistent with their payload. */
const samples: Header[] = [
  { type: TYPE.ANNOUNCE, session: 1, index: 0, fragIndex: 0, fragCount: 0, payloadLength: 60, fragSize: 0 },
  dataHeader(),
  dataHeader({ fragIndex: 2, payloadLength: 5 }), // short last fragment
  dataHeader({ session: 0xffffffff, index: 0xffffffff, fragIndex: 0xfffe, fragCount: 0xffff, fragSize: 0xffff, payloadLength: 0xffff }),
  dataHeader({ fragIndex: 0, fragCount: 1, fragSize: 1448, payloadLength: 1 }),
  { type: TYPE.NACK, session: 0x01020304, index: 0, fragIndex: 0, fragCount: 0, payloadLength: 8 + 8 * 3, fragSize: 0 },
  { type: TYPE.STATUS, session: 7, index: 0, fragIndex: 0, fragCount: 0, payloadLength: 32, fragSize: 0 },
  { type: TYPE.CONTROL, session: 0x80000000, index: 0, fragIndex: 0, fragCount: 0, payloadLength: 8, fragSize: 0 },
  { type: TYPE.END, session: 0, index: 0, fragIndex: 0, fragCount: 0, payloadLength: 1, fragSize: 0 },
  { type: TYPE.END, session: 3, index: 0, fragIndex: 0, fragCount: 0, payloadLength: 0, fragSize: 0 },
  { type: TYPE.PARITY, session: 9, index: 4, fragIndex: (1 << 8) | 7, fragCount: 130, payloadLength: 1448, fragSize: 1448 },
  { type: TYPE.WANT, session: 5, index: 0, fragIndex: 0, fragCount: 0, payloadLength: 24 + 2, fragSize: 0 },
];

describe('multicast wire header', () => {
  it('has a sample for every TYPE', () => {
    expect(new Set(samples.map((h) => h.type))).toEqual(new Set(Object.values(TYPE)));
  });

  it.each(samples.map((h, i) => [i, h] as const))('round-trips sample %i', (_i, h) => {
    const payload = seededBytes(100 + _i, h.payloadLength);
    const buf = datagram(h, payload);
    expect(buf.length).toBe(HEADER_LENGTH + h.payloadLength);
    expect(decodeHeader(buf)).toEqual({ value: h, bytes: HEADER_LENGTH + h.payloadLength });
    // the header bytes themselves
    expect(buf.readUInt32BE(0)).toBe(MAGIC);
    expect(buf[4]).toBe(VERSION);
    expect(buf[5]).toBe(h.type);
    expect(buf.readUInt16BE(6)).toBe(0);
  });

  it.each(samples.map((h, i) => [i, h] as const))('round-trips sample %i at an offset into a larger buffer', (_i, h) => {
    const payload = seededBytes(200 + _i, h.payloadLength);
    for (const offset of [1, 7, 24, 333]) {
      const buf = datagram(h, payload, offset, 19);
      expect(decodeHeader(buf, offset)).toEqual({ value: h, bytes: HEADER_LENGTH + h.payloadLength });
      // bytes before the datagram are untouched by encode
      expect([...buf.subarray(0, offset)].every((b) => b === 0xee)).toBe(true);
      // also through a subarray view with a non-zero byteOffset
      const sub = new Uint8Array(buf.buffer, buf.byteOffset + offset, HEADER_LENGTH + h.payloadLength);
      expect(decodeHeader(sub).value).toEqual(h);
    }
  });

  it('encodes unsigned 32-bit session and index modulo 2^32', () => {
    const buf = datagram({ ...dataHeader(), session: -1, index: 2 ** 32 + 5 }, Buffer.alloc(16));
    expect(decodeHeader(buf).value).toMatchObject({ session: 0xffffffff, index: 5 });
  });

  it('refuses to encode into a buffer too small for a header', () => {
    for (const [len, off] of [[0, 0], [23, 0], [30, 7], [24, -1], [24, 25]] as const) {
      const e = caught(() => encodeHeader(dataHeader(), Buffer.alloc(len), off));
      expect(isRackcastError(e, 'RC_ERR_DECODE_TRUNCATED')).toBe(true);
    }
  });

  describe('golden DATA datagram', () => {
    // session 0x01020304, chunk 5, fragment 2 of 3, fragment size 4, payload "abcd"
    const golden = Buffer.from([
      0x52, 0x43, 0x4d, 0x43, // "RCMC"
      0x01, // version
      0x02, // type DATA
      0x00, 0x00, // flags
      0x01, 0x02, 0x03, 0x04, // session
      0x00, 0x00, 0x00, 0x05, // index
      0x00, 0x02, // fragment index
      0x00, 0x03, // fragment count
      0x00, 0x04, // payload length
      0x00, 0x04, // fragment size
      0x61, 0x62, 0x63, 0x64, // "abcd"
    ]);
    const h: Header = { type: TYPE.DATA, session: 0x01020304, index: 5, fragIndex: 2, fragCount: 3, payloadLength: 4, fragSize: 4 };

    it('is what encode produces', () => {
      expect(golden.length).toBe(HEADER_LENGTH + 4);
      expect(datagram(h, Buffer.from('abcd')).equals(golden)).toBe(true);
    });

    it('is what decode reads', () => {
      const { value, bytes } = decodeHeader(golden);
      expect(value).toEqual(h);
      expect(bytes).toBe(28);
      expect(golden.subarray(HEADER_LENGTH, bytes).toString('latin1')).toBe('abcd');
    });
  });

  describe('truncation', () => {
    it('of the header, at every length, is RC_ERR_DECODE_TRUNCATED at the header offset', () => {
      for (const offset of [0, 5]) {
        const full = datagram(dataHeader(), seededBytes(1, 16), offset);
        for (let n = offset; n < offset + HEADER_LENGTH; n++) {
          const e = fails(() => decodeHeader(full.subarray(0, n), offset), 'RC_ERR_DECODE_TRUNCATED', offset);
          expect(e.fields.what).toBe('header');
        }
      }
    });

    it('of the payload, at every length, is RC_ERR_DECODE_TRUNCATED at the payload offset', () => {
      for (const h of samples.filter((s) => s.payloadLength > 0 && s.payloadLength < 1000)) {
        for (const offset of [0, 9]) {
          const full = datagram(h, seededBytes(2, h.payloadLength), offset);
          for (let n = offset + HEADER_LENGTH; n < full.length; n++) {
            const e = fails(() => decodeHeader(full.subarray(0, n), offset), 'RC_ERR_DECODE_TRUNCATED', offset + HEADER_LENGTH);
            expect(e.fields.what).toBe('payload');
          }
          expect(decodeHeader(full, offset).value).toEqual(h);
        }
      }
    });

    it('with a declared payload length far beyond the buffer (0xffff) is RC_ERR_DECODE_TRUNCATED', () => {
      const buf = datagram({ type: TYPE.NACK, session: 1, index: 0, fragIndex: 0, fragCount: 0, payloadLength: 8, fragSize: 0 }, Buffer.alloc(8));
      buf.writeUInt16BE(0xffff, 20);
      fails(() => decodeHeader(buf), 'RC_ERR_DECODE_TRUNCATED', HEADER_LENGTH);
    });

    it('offsets outside the buffer are RC_ERR_DECODE_TRUNCATED, not a RangeError', () => {
      const buf = datagram(dataHeader(), Buffer.alloc(16));
      for (const off of [-1, -24, buf.length, buf.length + 1, 1e9]) fails(() => decodeHeader(buf, off), 'RC_ERR_DECODE_TRUNCATED', off);
      fails(() => decodeHeader(new Uint8Array(0)), 'RC_ERR_DECODE_TRUNCATED', 0);
    });
  });

  // The native receive ring (batch-io.ts) hands the receiver a datagram as (ring, offset, length):
  // the buffer goes on past the datagram with whatever other slots hold, so decodeHeaderInto's
  // `end` must bound the payload, not buf.length.
  describe('end bound (a datagram inside a larger buffer, as in a receive-ring slot)', () => {
    const blank = (): Header => ({ type: TYPE.END, session: 0, index: 0, fragIndex: 0, fragCount: 0, payloadLength: 0, fragSize: 0 });

    it('a valid DATA datagram at an offset decodes with end = offset + its length', () => {
      for (const [h, offset] of [[dataHeader(), 0], [dataHeader({ fragIndex: 2, payloadLength: 5 }), 13], [dataHeader({ fragCount: 1, fragSize: 1448, payloadLength: 1448 }), 65536]] as const) {
        const len = HEADER_LENGTH + h.payloadLength;
        const buf = datagram(h, seededBytes(5, h.payloadLength), offset, 4096); // a slot's worth of stale bytes after it
        const out = blank();
        expect(decodeHeaderInto(buf, offset, out, offset + len)).toBe(len);
        expect(out).toEqual(h);
      }
    });

    it('a payload longer than end - offset - 24 is RC_ERR_DECODE_TRUNCATED although the buffer goes on', () => {
      const offset = 40;
      const h = dataHeader({ fragCount: 1, fragSize: 100, payloadLength: 100 });
      const buf = datagram(h, seededBytes(6, 100), offset, 1000);
      for (const received of [HEADER_LENGTH + 99, HEADER_LENGTH + 50, HEADER_LENGTH + 1, HEADER_LENGTH]) {
        const e = fails(() => decodeHeaderInto(buf, offset, blank(), offset + received), 'RC_ERR_DECODE_TRUNCATED', offset + HEADER_LENGTH);
        expect(e.fields.what).toBe('payload');
        // the same bytes without the bound decode: the bound alone refused them
        expect(decodeHeaderInto(buf, offset, blank())).toBe(HEADER_LENGTH + 100);
      }
      // the header itself cut by end
      for (const received of [0, 1, HEADER_LENGTH - 1]) {
        const e = fails(() => decodeHeaderInto(buf, offset, blank(), offset + received), 'RC_ERR_DECODE_TRUNCATED', offset);
        expect(e.fields.what).toBe('header');
      }
      // a NACK's declared 0xffff bytes with a whole 64 KiB slot of bytes after it
      const slot = Buffer.alloc(2 * 65536, 0xee);
      const nack = datagram({ type: TYPE.NACK, session: 1, index: 0, fragIndex: 0, fragCount: 0, payloadLength: 8, fragSize: 0 }, Buffer.alloc(8));
      nack.writeUInt16BE(0xffff, 20);
      nack.copy(slot, 0);
      fails(() => decodeHeaderInto(slot, 0, blank(), nack.length), 'RC_ERR_DECODE_TRUNCATED', HEADER_LENGTH);
      expect(decodeHeaderInto(slot, 0, blank())).toBe(HEADER_LENGTH + 0xffff); // unbounded, it reads into the next slot
    });

    it('end beyond buf.length is clamped to it', () => {
      const h = dataHeader();
      const buf = datagram(h, seededBytes(7, 16), 3);
      const out = blank();
      for (const end of [buf.length + 1, buf.length + 65536, 2 ** 31, Infinity]) {
        expect(decodeHeaderInto(buf, 3, out, end)).toBe(HEADER_LENGTH + 16);
        expect(out).toEqual(h);
        // a payload running past the buffer is still truncated, at any end
        fails(() => decodeHeaderInto(buf.subarray(0, buf.length - 1), 3, blank(), end), 'RC_ERR_DECODE_TRUNCATED', 3 + HEADER_LENGTH);
      }
      // through a view with a non-zero byteOffset: clamped to the view, not to its ArrayBuffer
      const big = datagram(h, seededBytes(8, 16), 0, 100);
      const view = big.subarray(0, HEADER_LENGTH + 15);
      fails(() => decodeHeaderInto(view, 0, blank(), big.length), 'RC_ERR_DECODE_TRUNCATED', HEADER_LENGTH);
    });
  });

  it('ignores bytes after the declared payload (bytes says where the datagram ends)', () => {
    const buf = datagram(dataHeader(), seededBytes(3, 16), 0, 50);
    expect(decodeHeader(buf)).toEqual({ value: dataHeader(), bytes: HEADER_LENGTH + 16 });
  });

  describe('invalid header fields are RC_ERR_DECODE_INVALID', () => {
    const good = (offset = 0): Buffer => datagram({ type: TYPE.END, session: 9, index: 0, fragIndex: 0, fragCount: 0, payloadLength: 1, fragSize: 0 }, Buffer.from([0]), offset);

    it.each([0, 4])('bad magic (at offset %i)', (offset) => {
      for (let i = 0; i < 4; i++) {
        const b = good(offset);
        b[offset + i] = (b[offset + i] as number) ^ 0x20; // "rCMC", "RcMC" …
        fails(() => decodeHeader(b, offset), 'RC_ERR_DECODE_INVALID', offset);
      }
    });

    it.each([0, 2, 255])('version %i', (version) => {
      for (const offset of [0, 3]) {
        const b = good(offset);
        b[offset + 4] = version;
        fails(() => decodeHeader(b, offset), 'RC_ERR_DECODE_INVALID', offset + 4);
      }
    });

    it.each([0, 9, 10, 128, 255])('unknown type %i', (type) => {
      for (const offset of [0, 3]) {
        const b = good(offset);
        b[offset + 5] = type;
        fails(() => decodeHeader(b, offset), 'RC_ERR_DECODE_INVALID', offset + 5);
      }
    });

    it.each([0x0001, 0x0100, 0x8000, 0xffff].map((f) => [f.toString(16).padStart(4, '0'), f] as const))('reserved flags 0x%s set', (_hex, flags) => {
      for (const offset of [0, 3]) {
        const b = good(offset);
        b.writeUInt16BE(flags, offset + 6);
        fails(() => decodeHeader(b, offset), 'RC_ERR_DECODE_INVALID', offset + 6);
      }
    });

    it('header checks come before the payload-length check (a bad magic with a missing payload is invalid)', () => {
      const b = good().subarray(0, HEADER_LENGTH);
      b[0] = 0;
      fails(() => decodeHeader(b), 'RC_ERR_DECODE_INVALID', 0);
    });
  });

  describe('DATA consistency checks are RC_ERR_DECODE_INVALID', () => {
    const bad: [string, Partial<Header>][] = [
      ['fragment count 0', { fragIndex: 0, fragCount: 0 }],
      ['fragment index = count', { fragIndex: 3, fragCount: 3 }],
      ['fragment index > count', { fragIndex: 0xffff, fragCount: 3 }],
      ['fragment size 0', { fragSize: 0, payloadLength: 16 }],
      ['fragment size 0 with an empty payload', { fragSize: 0, payloadLength: 0 }],
      ['empty payload (last fragment)', { fragIndex: 2, payloadLength: 0 }],
      ['empty payload (single fragment)', { fragIndex: 0, fragCount: 1, payloadLength: 0 }],
      ['non-last fragment shorter than the fragment size', { fragIndex: 0, payloadLength: 15 }],
      ['non-last fragment longer than the fragment size', { fragIndex: 1, payloadLength: 17 }],
      ['last fragment longer than the fragment size', { fragIndex: 2, payloadLength: 17 }],
      ['single fragment longer than the fragment size', { fragIndex: 0, fragCount: 1, payloadLength: 17 }],
    ];
    it.each(bad)('%s', (_name, over) => {
      const h = dataHeader(over);
      for (const offset of [0, 11]) {
        const buf = datagram(h, seededBytes(4, h.payloadLength), offset);
        const e = fails(() => decodeHeader(buf, offset), 'RC_ERR_DECODE_INVALID');
        expect(e.fields.offset).toBeGreaterThanOrEqual(offset + 16);
        expect(e.fields.offset).toBeLessThan(offset + HEADER_LENGTH);
      }
    });

    it('accepts a last fragment of 1 … fragSize bytes', () => {
      for (const len of [1, 8, 16]) expect(decodeHeader(datagram(dataHeader({ fragIndex: 2, payloadLength: len }), Buffer.alloc(len))).value.payloadLength).toBe(len);
    });

    it('does not apply DATA checks to other types', () => {
      for (const type of [TYPE.ANNOUNCE, TYPE.NACK, TYPE.STATUS, TYPE.CONTROL, TYPE.END, TYPE.WANT] as MessageType[]) {
        const h: Header = { type, session: 1, index: 9, fragIndex: 5, fragCount: 0, payloadLength: 0, fragSize: 0 };
        expect(decodeHeader(datagram(h, Buffer.alloc(0))).value).toEqual(h);
      }
    });
  });

  describe('PARITY consistency checks are RC_ERR_DECODE_INVALID', () => {
    // a chunk of 200 fragments of 16 bytes: blocks 0–3 (the last fragment is never coded)
    const parity = (over: Partial<Header> = {}): Header => ({ type: TYPE.PARITY, session: 7, index: 2, fragIndex: (3 << 8) | 191, fragCount: 200, payloadLength: 16, fragSize: 16, ...over });
    it('accepts block 3, parity 191 of a 200-fragment chunk', () => {
      expect(decodeHeader(datagram(parity(), Buffer.alloc(16))).value).toEqual(parity());
    });
    it.each([
      ['a block past the coded fragments', { fragIndex: 4 << 8 }],
      ['parity id 192', { fragIndex: 192 }],
      ['a chunk of one fragment (nothing coded)', { fragIndex: 0, fragCount: 1 }],
      ['a short parity', { payloadLength: 15 }],
      ['fragment size 0', { fragSize: 0, payloadLength: 0 }],
    ] as [string, Partial<Header>][])('%s', (_name, over) => {
      const h = parity(over);
      const e = fails(() => decodeHeader(datagram(h, Buffer.alloc(h.payloadLength))), 'RC_ERR_DECODE_INVALID');
      expect(e.fields.offset).toBeGreaterThanOrEqual(16);
    });
  });

  it('seeded random bytes only ever decode or raise a decode RackcastError', () => {
    const next = prng(0x5eed);
    const codes = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const len = Math.floor(next() * 80);
      const buf = seededBytes(i + 1, len);
      // most of the time make the fixed fields plausible so deeper checks are reached
      if (len >= 8 && next() < 0.7) {
        buf.writeUInt32BE(MAGIC, 0);
        if (next() < 0.9) buf[4] = VERSION;
        if (next() < 0.9) buf[5] = 1 + Math.floor(next() * 6);
        if (next() < 0.9) buf.writeUInt16BE(0, 6);
        if (len >= 24 && next() < 0.8) buf.writeUInt16BE(Math.floor(next() * (len - 23)), 20);
      }
      const offset = next() < 0.2 ? Math.floor(next() * 10) : 0;
      try {
        const { value, bytes } = decodeHeader(buf, offset);
        expect(offset + bytes).toBeLessThanOrEqual(buf.length);
        expect(bytes).toBe(HEADER_LENGTH + value.payloadLength);
        codes.set('ok', (codes.get('ok') ?? 0) + 1);
      } catch (e) {
        if (!isRackcastError(e)) throw e;
        expect(['RC_ERR_DECODE_TRUNCATED', 'RC_ERR_DECODE_INVALID']).toContain(e.code);
        expect(typeof e.fields.offset).toBe('number');
        codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
      }
    }
    // the loop exercised every outcome
    expect([...codes.keys()].sort()).toEqual(['RC_ERR_DECODE_INVALID', 'RC_ERR_DECODE_TRUNCATED', 'ok']);
  });
});

describe('fragSizeFor', () => {
  it('is 1448 for a 1500-byte MTU and 8948 for a 9000-byte jumbo MTU', () => {
    expect(fragSizeFor(1500)).toBe(1448);
    expect(fragSizeFor(9000)).toBe(8948);
    expect(fragSizeFor(1500) + HEADER_LENGTH + 8 + 20).toBe(1500);
  });

  it('accepts the documented range 576 … 65535', () => {
    expect(fragSizeFor(576)).toBe(576 - 52);
    expect(fragSizeFor(65535)).toBe(65535 - 52); // 65483: also fits the u16 fragment-size field
  });

  it.each([0, -1, 100, 115, 65536, 70000, 2 ** 32, Infinity, -Infinity])('refuses MTU %p with RC_ERR_USAGE', (mtu) => {
    fails(() => fragSizeFor(mtu), 'RC_ERR_USAGE');
  });

  // Regression: NaN and fractional MTUs once gave NaN / fractional fragment sizes.
  it.each([NaN, 1500.5])('never returns a non-integer fragment size (MTU %p)', (mtu) => {
    let r: unknown;
    try { r = fragSizeFor(mtu); } catch (e) { if (isRackcastError(e, 'RC_ERR_USAGE')) return; throw e; }
    expect(Number.isInteger(r)).toBe(true);
  });
});
