// WANT, the delta receiver's declaration of the chunks it still needs (services/multicast/
// messages.ts): round trips (also at an offset into a larger buffer), a whole declaration split
// into parts that fit a 1500-byte MTU, and hostile input: truncations, impossible counts and
// ranges, reserved and padding bits, trailing bytes, and a seeded mutation loop.
import { describe, it, expect } from '@jest/globals';
import { isRackcastError } from '../../../services/errors.ts';
import { decodeWant, encodeWant, encodeWants, MAX_WANT_BITS, type Want } from '../../../services/multicast/messages.ts';
import { decodeHeader, HEADER_LENGTH, TYPE } from '../../../services/multicast/wire.ts';
import { prng } from '../../helpers/rng.ts';
import { caught, fails } from './helpers.ts';

const wants: Want[] = [
  { receiver: 1, chunks: 1, first: 0, count: 1, skipped: 0, needed: [] },
  { receiver: 0xffffffff, chunks: 1, first: 0, count: 1, skipped: Number.MAX_SAFE_INTEGER, needed: [0] },
  { receiver: 42, chunks: 100, first: 10, count: 13, skipped: 4 << 20, needed: [10, 17, 18, 22] },
  { receiver: 7, chunks: 0xffffffff, first: 0xffffffff - MAX_WANT_BITS, count: MAX_WANT_BITS, skipped: 2 ** 40, needed: [0xffffffff - MAX_WANT_BITS, 0xfffffffe] },
];

function payload(w: Want): Buffer {
  return encodeWant(9, w).subarray(HEADER_LENGTH);
}

describe('WANT', () => {
  it.each(wants.map((w, i) => [i, w] as const))('round-trips sample %i, also at an offset', (_i, w) => {
    const d = encodeWant(0x1234, w);
    expect(d.length).toBe(HEADER_LENGTH + 24 + Math.ceil(w.count / 8));
    for (const offset of [0, 5]) {
      const big = Buffer.alloc(offset + d.length + 9, 0xa5);
      d.copy(big, offset);
      const { value: h, bytes } = decodeHeader(big, offset);
      expect(h).toMatchObject({ type: TYPE.WANT, session: 0x1234 });
      expect(decodeWant(big.subarray(offset + HEADER_LENGTH, offset + bytes))).toEqual(w);
    }
  });

  it('a part of MAX_WANT_BITS fits a 1500-byte MTU datagram', () => {
    expect(encodeWant(1, wants[3] as Want).length + 28).toBeLessThanOrEqual(1500);
  });

  it.each([1, 9, MAX_WANT_BITS, MAX_WANT_BITS + 1, 3 * MAX_WANT_BITS + 5])('a declaration of %i chunks splits into parts that carry it exactly', (chunks) => {
    const need = (i: number): boolean => i % 7 === 3 || i === chunks - 1;
    const parts = encodeWants(77, 5, chunks, 123, need);
    expect(parts.length).toBe(Math.ceil(chunks / MAX_WANT_BITS));
    const got: number[] = [];
    let covered = 0;
    for (const p of parts) {
      const { value: h, bytes } = decodeHeader(p);
      expect([h.type, h.session, bytes]).toEqual([TYPE.WANT, 77, p.length]);
      const w = decodeWant(p.subarray(HEADER_LENGTH));
      expect([w.receiver, w.chunks, w.first, w.skipped]).toEqual([5, chunks, covered, 123]);
      covered += w.count;
      got.push(...w.needed);
    }
    expect(covered).toBe(chunks);
    expect(got).toEqual(Array.from({ length: chunks }, (_, i) => i).filter(need));
  });

  it('refuses to encode an impossible part', () => {
    const w = wants[2] as Want;
    for (const bad of [{ count: 0 }, { count: MAX_WANT_BITS + 1, chunks: 1e6 }, { first: 95 }, { needed: [9] }, { needed: [23] }, { needed: [10.5] }]) {
      expect(caught(() => encodeWant(1, { ...w, ...bad }))).toBeDefined();
    }
  });

  it('every truncation is a decode error', () => {
    for (const w of wants) {
      const p = payload(w);
      for (let n = 0; n < p.length; n++) expect(isRackcastError(caught(() => decodeWant(p.subarray(0, n))))).toBe(true);
    }
  });

  it('refuses a bit count of 0 or over MAX_WANT_BITS, even with the bytes present', () => {
    for (const count of [0, MAX_WANT_BITS + 1, 0xffff]) {
      const p = Buffer.alloc(24 + 8192);
      p.writeUInt32BE(0xffffffff, 4);
      p.writeUInt16BE(count, 12);
      fails(() => decodeWant(p), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH + 12);
    }
  });

  it('refuses a range beyond the image, reserved bits, bytes skipped beyond 2^53, trailing bytes and padding bits', () => {
    const base = payload(wants[2] as Want); // 13 bits: 2 bytes, 3 padding bits
    const mutate = (f: (p: Buffer) => Buffer | void): Buffer => { const p = Buffer.from(base); return f(p) ?? p; };
    fails(() => decodeWant(mutate((p) => { p.writeUInt32BE(22, 4); })), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH + 8);
    fails(() => decodeWant(mutate((p) => { p.writeUInt32BE(0xfffffff8, 8); })), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH + 8);
    fails(() => decodeWant(mutate((p) => { p.writeUInt16BE(1, 14); })), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH + 14);
    fails(() => decodeWant(mutate((p) => { p.writeBigUInt64BE(2n ** 53n, 16); })), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH + 16);
    fails(() => decodeWant(mutate((p) => Buffer.concat([p, Buffer.alloc(1)]))), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH + 26);
    fails(() => decodeWant(mutate((p) => { p[25] = (p[25] as number) | 0x01; })), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH + 25);
    expect(decodeWant(mutate((p) => { p[25] = (p[25] as number) | 0x08; })).needed).toContain(22); // the 13th bit is a real one
  });

  it('mutated valid parts (3000 iterations) only ever decode within their range or raise RC_ERR_DECODE_INVALID', () => {
    const next = prng(0x77a17);
    const tally = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const p = Buffer.from(payload(wants[Math.floor(next() * wants.length)] as Want));
      const flips = 1 + Math.floor(next() * 3);
      for (let f = 0; f < flips; f++) p[Math.floor(next() * Math.min(p.length, 40))] = Math.floor(next() * 256);
      const cut = next() < 0.2 ? Math.floor(next() * p.length) : p.length;
      let r = 'ok';
      try {
        const w = decodeWant(p.subarray(0, cut));
        expect(w.count).toBeGreaterThanOrEqual(1);
        expect(w.first + w.count).toBeLessThanOrEqual(w.chunks);
        for (const n of w.needed) expect(n >= w.first && n < w.first + w.count).toBe(true);
      } catch (e) {
        if (!isRackcastError(e)) throw e;
        r = e.code;
      }
      tally.set(r, (tally.get(r) ?? 0) + 1);
    }
    // a short payload is RC_ERR_DECODE_INVALID here (decodeHeader has already checked the datagram)
    expect([...tally.keys()].sort()).toEqual(['RC_ERR_DECODE_INVALID', 'ok']);
    expect(tally.get('ok')).toBeGreaterThan(100);
  });
});
