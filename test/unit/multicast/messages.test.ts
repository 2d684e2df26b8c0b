// Control-message payloads (services/multicast/messages.ts): round trips through decodeHeader and
// the payload decoder (also at an offset into a larger buffer), truncations, invalid enum values,
// and a seeded random-bytes loop. Decoders must return a value or throw a decode RackcastError.
import { describe, it, expect } from '@jest/globals';
import { isRackcastError, RackcastError, type ErrorCode } from '../../../services/errors.ts';
import {
  decodeAnnounce, decodeControl, decodeEnd, decodeNack, decodeStatus,
  encodeAnnounce, encodeControl, encodeEnd, encodeNack, encodeStatus,
  CONTROL, DELTA, MAX_NACK_ENTRIES, STATE,
  type Announce, type Control, type Nack, type Status,
} from '../../../services/multicast/messages.ts';
import { decodeHeader, HEADER_LENGTH, TYPE, type MessageType } from '../../../services/multicast/wire.ts';
import { prng, seededBytes } from '../../helpers/rng.ts';
import { caught, fails } from './helpers.ts';

const DECODE_CODES: ErrorCode[] = ['RC_ERR_DECODE_TRUNCATED', 'RC_ERR_DECODE_INVALID'];

/** fn must throw a decode RackcastError (truncated or invalid), nothing else. */
function decodeFails(fn: () => unknown): RackcastError {
  const err = caught(fn);
  expect(err).toBeInstanceOf(RackcastError);
  expect(DECODE_CODES).toContain((err as RackcastError).code);
  return err as RackcastError;
}

/**
 * Decode a whole datagram the way sender/receiver do: header first, then the payload decoder on
 * exactly the declared payload. Done both on the datagram itself and copied into a larger buffer
 * at an offset (so the payload view has a non-zero byteOffset).
 */
function both<T>(dgram: Buffer, type: MessageType, session: number, dec: (p: Uint8Array) => T): T {
  const results: T[] = [];
  for (const offset of [0, 13]) {
    const big = new Uint8Array(offset + dgram.length + 21).fill(0xa5);
    big.set(dgram, offset);
    const { value: h, bytes } = decodeHeader(big, offset);
    expect(h).toMatchObject({ type, session, index: 0, fragIndex: 0, fragCount: 0, fragSize: 0 });
    expect(bytes).toBe(dgram.length);
    results.push(dec(big.subarray(offset + HEADER_LENGTH, offset + bytes)));
  }
  expect(results[1]).toEqual(results[0]);
  return results[0] as T;
}

const payloadOf = (dgram: Buffer): Buffer => dgram.subarray(HEADER_LENGTH);

const digest = Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7 + 1));
const announces: Announce[] = [
  { digest, chunks: 1234, next: 17, rateKbit: 900_000, state: 1, url: 'http://10.0.0.1:9701/images/ubuntu-24.04' },
  { digest: Buffer.alloc(32), chunks: 0, next: 0, rateKbit: 0, state: 0, url: '' },
  { digest: Buffer.alloc(32, 0xff), chunks: 0xffffffff, next: 0xffffffff, rateKbit: 0xffffffff, state: 2, url: 'x'.repeat(255) },
  { digest, chunks: 3, next: 2, rateKbit: 1, state: 2, url: 'http://[fe80::1]/ímägé/文件' },
];

const entry = (i: number): { index: number; first: number; count: number } => ({ index: (i * 2654435761) >>> 0, first: i & 0xffff, count: (i * 7) & 0xffff });
const nacks: Nack[] = [
  { receiver: 0xabcdef01, entries: [], afterIdle: false },
  { receiver: 1, entries: [{ index: 5, first: 0, count: 0 }], afterIdle: true },
  { receiver: 0xffffffff, entries: Array.from({ length: MAX_NACK_ENTRIES }, (_, i) => entry(i)), afterIdle: false },
];

const statuses: Status[] = [
  { receiver: 42, state: STATE.RECEIVING, have: 10, total: 100, backlog: 3, drops: 0, written: 1 << 20 },
  { receiver: 0, state: STATE.DONE, have: 100, total: 100, backlog: 0, drops: 17, written: 0 },
  { receiver: 0xffffffff, state: STATE.FAILED, have: 0xffffffff, total: 0xffffffff, backlog: 0xffffffff, drops: 0xffffffff, written: Number.MAX_SAFE_INTEGER },
  { receiver: 7, state: STATE.UNICAST, have: 1, total: 2, backlog: 0, drops: 0, written: 2 ** 40 + 3 },
  { receiver: 8, state: STATE.RECEIVING, have: 0, total: 9, backlog: 0, drops: 0, written: 0, delta: DELTA.COMPARING },
  { receiver: 9, state: STATE.RECEIVING, have: 5, total: 9, backlog: 0, drops: 0, written: 0, delta: DELTA.COMPARED },
  { receiver: 10, state: STATE.RECEIVING, have: 5, total: 9, backlog: 0, drops: 0, written: 0, parity: true, received: 0xffffffff },
  { receiver: 11, state: STATE.RECEIVING, have: 5, total: 9, backlog: 0, drops: 0, written: 0, received: 0 },
];

const controls: Control[] = [
  { receiver: 9, command: CONTROL.DONE_ACK },
  { receiver: 0xffffffff, command: CONTROL.UNICAST },
  { receiver: 3, command: CONTROL.WANT_ACK },
];

describe('ANNOUNCE', () => {
  it.each(announces.map((a, i) => [i, a] as const))('round-trips sample %i', (i, a) => {
    const d = encodeAnnounce(0x1000 + i, a);
    expect(d.length).toBe(HEADER_LENGTH + 48 + Buffer.byteLength(a.url));
    expect(both(d, TYPE.ANNOUNCE, 0x1000 + i, decodeAnnounce)).toEqual(a);
  });

  it('decodes a digest that does not alias the datagram buffer', () => {
    const d = encodeAnnounce(1, announces[0] as Announce);
    const a = decodeAnnounce(payloadOf(d));
    d.fill(0);
    expect(a.digest.equals(digest)).toBe(true);
  });

  it('caps the rate at 0xffffffff kbit/s', () => {
    const a = { ...(announces[0] as Announce), rateKbit: 2 ** 40 };
    expect(decodeAnnounce(payloadOf(encodeAnnounce(1, a))).rateKbit).toBe(0xffffffff);
  });

  it('refuses to encode a URL over 255 bytes or a digest that is not 32 bytes', () => {
    const a = announces[0] as Announce;
    expect(caught(() => encodeAnnounce(1, { ...a, url: 'x'.repeat(256) }))).toBeInstanceOf(RackcastError);
    expect(caught(() => encodeAnnounce(1, { ...a, url: 'é'.repeat(128) }))).toBeInstanceOf(RackcastError); // 256 UTF-8 bytes
    expect(caught(() => encodeAnnounce(1, { ...a, digest: Buffer.alloc(31) }))).toBeInstanceOf(RackcastError);
    expect(caught(() => encodeAnnounce(1, { ...a, digest: Buffer.alloc(33) }))).toBeInstanceOf(RackcastError);
  });

  it('every truncation of the payload is a decode error', () => {
    for (const a of announces) {
      const p = payloadOf(encodeAnnounce(1, a));
      for (let n = 0; n < p.length; n++) decodeFails(() => decodeAnnounce(p.subarray(0, n)));
    }
  });

  it('a URL length beyond the payload is a decode error', () => {
    const p = Buffer.from(payloadOf(encodeAnnounce(1, announces[1] as Announce)));
    for (const ulen of [1, 200, 255]) {
      p[45] = ulen;
      decodeFails(() => decodeAnnounce(p));
    }
  });

  it.each([3, 4, 255])('state %i is RC_ERR_DECODE_INVALID', (state) => {
    const p = Buffer.from(payloadOf(encodeAnnounce(1, announces[0] as Announce)));
    p[44] = state;
    fails(() => decodeAnnounce(p), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH + 44);
  });
});

describe('NACK', () => {
  it.each(nacks.map((n) => [n.entries.length, n] as const))('round-trips %i entries', (count, n) => {
    const d = encodeNack(0x55, n);
    expect(d.length).toBe(HEADER_LENGTH + 8 + 8 * count);
    expect(both(d, TYPE.NACK, 0x55, decodeNack)).toEqual(n);
  });

  it('afterIdle is bit 0 of byte 6; absent means false; the other bits are ignored', () => {
    const d = encodeNack(0x55, { receiver: 3, entries: [{ index: 1, first: 2, count: 3 }], afterIdle: true });
    const p = d.subarray(HEADER_LENGTH);
    expect(p[6]).toBe(1);
    expect(encodeNack(0x55, { receiver: 3, entries: [] }).subarray(HEADER_LENGTH)[6]).toBe(0);
    const q = Buffer.from(p);
    q[6] = 0xfe; // an older or newer peer's other bits: not afterIdle, not malformed
    expect(decodeNack(q).afterIdle).toBe(false);
    q[6] = 0xff;
    expect(decodeNack(q).afterIdle).toBe(true);
  });

  it('MAX_NACK_ENTRIES fits a 1500-byte MTU datagram', () => {
    expect(encodeNack(1, nacks[2] as Nack).length + 28).toBeLessThanOrEqual(1500);
  });

  it('refuses MAX_NACK_ENTRIES + 1 entries on encode', () => {
    const n = { receiver: 1, entries: Array.from({ length: MAX_NACK_ENTRIES + 1 }, (_, i) => entry(i)) };
    expect(caught(() => encodeNack(1, n))).toBeInstanceOf(RackcastError);
  });

  it.each([MAX_NACK_ENTRIES + 1, 0xffff])('refuses %i entries on decode, even with the bytes present', (count) => {
    const p = Buffer.alloc(8 + 8 * count);
    p.writeUInt16BE(count, 4);
    fails(() => decodeNack(p), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH + 4);
  });

  it('every truncation of the payload is a decode error', () => {
    for (const n of nacks) {
      const p = payloadOf(encodeNack(1, n));
      for (let k = 0; k < p.length; k++) decodeFails(() => decodeNack(p.subarray(0, k)));
    }
  });
});

describe('STATUS', () => {
  it.each(statuses.map((s, i) => [i, s] as const))('round-trips sample %i', (i, s) => {
    const d = encodeStatus(0x77 + i, s);
    expect(d.length).toBe(HEADER_LENGTH + (s.received === undefined ? 32 : 36));
    expect(both(d, TYPE.STATUS, 0x77 + i, decodeStatus)).toEqual(s);
  });

  it('caps backlog and drops at 0xffffffff', () => {
    const s = { ...(statuses[0] as Status), backlog: 2 ** 40, drops: 2 ** 33 };
    expect(decodeStatus(payloadOf(encodeStatus(1, s)))).toMatchObject({ backlog: 0xffffffff, drops: 0xffffffff });
  });

  it.each([2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n])('bytes written %s (above MAX_SAFE_INTEGER) is RC_ERR_DECODE_INVALID', (w) => {
    const p = Buffer.from(payloadOf(encodeStatus(1, statuses[0] as Status)));
    p.writeBigUInt64BE(w, 24);
    fails(() => decodeStatus(p), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH + 24);
  });

  it.each([0, 5, 255])('state %i is RC_ERR_DECODE_INVALID', (state) => {
    const p = Buffer.from(payloadOf(encodeStatus(1, statuses[0] as Status)));
    p[4] = state;
    fails(() => decodeStatus(p), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH + 4);
  });

  it.each([3, 128, 255])('delta state %i is RC_ERR_DECODE_INVALID', (delta) => {
    const p = Buffer.from(payloadOf(encodeStatus(1, statuses[0] as Status)));
    p[5] = delta;
    fails(() => decodeStatus(p), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH + 5);
  });

  it('every truncation of the payload is a decode error, but for the 32 bytes of a STATUS without a count', () => {
    const p = payloadOf(encodeStatus(1, statuses[6] as Status));
    expect(p.length).toBe(36);
    for (let k = 0; k < p.length; k++) if (k !== 32) decodeFails(() => decodeStatus(p.subarray(0, k)));
    expect(decodeStatus(p.subarray(0, 32))).toEqual({ ...statuses[6], received: undefined, parity: true });
  });

  it('the received count wraps modulo 2^32', () => {
    expect(decodeStatus(payloadOf(encodeStatus(1, { ...(statuses[7] as Status), received: 2 ** 32 + 5 }))).received).toBe(5);
  });
});

describe('CONTROL', () => {
  it.each(controls.map((c) => [c.command, c] as const))('round-trips command %i', (_cmd, c) => {
    const d = encodeControl(0x99, c);
    expect(d.length).toBe(HEADER_LENGTH + 8);
    expect(both(d, TYPE.CONTROL, 0x99, decodeControl)).toEqual(c);
  });

  it.each([0, 4, 255])('command %i is RC_ERR_DECODE_INVALID', (command) => {
    const p = Buffer.from(payloadOf(encodeControl(1, controls[0] as Control)));
    p[4] = command;
    fails(() => decodeControl(p), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH + 4);
  });

  it('every truncation of the payload is a decode error', () => {
    const p = payloadOf(encodeControl(1, controls[1] as Control));
    for (let k = 0; k < p.length; k++) decodeFails(() => decodeControl(p.subarray(0, k)));
  });
});

describe('END', () => {
  it.each([0, 1, 2] as const)('round-trips reason %i', (reason) => {
    const d = encodeEnd(0xabc, reason);
    expect(d.length).toBe(HEADER_LENGTH + 1);
    expect(both(d, TYPE.END, 0xabc, decodeEnd)).toBe(reason);
  });

  it.each([3, 128, 255])('reason %i is RC_ERR_DECODE_INVALID', (reason) => {
    fails(() => decodeEnd(Buffer.from([reason])), 'RC_ERR_DECODE_INVALID', HEADER_LENGTH);
  });

  it('an empty payload is a decode error', () => {
    decodeFails(() => decodeEnd(new Uint8Array(0)));
    const d = encodeEnd(1, 0);
    decodeFails(() => decodeEnd(d.subarray(HEADER_LENGTH, HEADER_LENGTH)));
  });
});

describe('whole datagrams', () => {
  const all: Buffer[] = [
    ...announces.map((a) => encodeAnnounce(1, a)),
    ...nacks.map((n) => encodeNack(2, n)),
    ...statuses.map((s) => encodeStatus(3, s)),
    ...controls.map((c) => encodeControl(4, c)),
    encodeEnd(5, 1),
  ];

  it('every truncation of every encoded message is RC_ERR_DECODE_TRUNCATED in decodeHeader', () => {
    for (const d of all) {
      for (let n = 0; n < d.length; n++) {
        const e = fails(() => decodeHeader(d.subarray(0, n)), 'RC_ERR_DECODE_TRUNCATED');
        expect(e.fields.offset).toBe(n < HEADER_LENGTH ? 0 : HEADER_LENGTH);
      }
    }
  });
});

/** Every decoder the receiver or sender applies to network input. */
const decoders: [string, (p: Uint8Array) => unknown][] = [
  ['announce', decodeAnnounce], ['nack', decodeNack], ['status', decodeStatus], ['control', decodeControl], ['end', decodeEnd],
];
const payloadDecoder: Record<number, (p: Uint8Array) => unknown> = {
  [TYPE.ANNOUNCE]: decodeAnnounce, [TYPE.NACK]: decodeNack, [TYPE.STATUS]: decodeStatus, [TYPE.CONTROL]: decodeControl, [TYPE.END]: decodeEnd,
};

describe('seeded random input', () => {
  function outcome(fn: () => unknown): string {
    try { fn(); return 'ok'; } catch (e) {
      if (!isRackcastError(e)) throw e;
      expect(DECODE_CODES).toContain(e.code);
      return e.code;
    }
  }

  it('random payloads (2000 iterations) only ever decode or raise a decode RackcastError', () => {
    const next = prng(20240611);
    const seen = new Map<string, Set<string>>(decoders.map(([n]) => [n, new Set<string>()]));
    const t0 = performance.now();
    for (let i = 0; i < 2000; i++) {
      const len = Math.floor(next() * (next() < 0.5 ? 64 : 1500));
      const p = seededBytes(0x10000 + i, len);
      // bias small enum and count fields so the loop also reaches the success paths
      if (len > 5 && next() < 0.5) { p[4] = Math.floor(next() * 6); p[5] = Math.floor(next() * 3); p[44 % len] = Math.floor(next() * 4); }
      if (len > 5 && next() < 0.3) p.writeUInt16BE(Math.floor(next() * 200), 4);
      if (len > 45 && next() < 0.5) p[45] = Math.floor(next() * (len - 47));
      if (len > 31 && next() < 0.5) p[24] = 0; // a safe bytes-written count
      if (len > 0 && next() < 0.3) p[0] = Math.floor(next() * 4); // END reason
      const off = Math.floor(next() * 4);
      const view = new Uint8Array(p.buffer, p.byteOffset + Math.min(off, len), len - Math.min(off, len));
      for (const [name, dec] of decoders) (seen.get(name) as Set<string>).add(outcome(() => dec(view)));
    }
    expect(performance.now() - t0).toBeLessThan(20_000);
    // each decoder both accepted and refused something
    for (const [name, s] of seen) expect([name, s.has('ok'), s.size >= 2]).toEqual([name, true, true]);
  });

  it('mutated valid datagrams (2000 iterations) only ever decode or raise a decode RackcastError', () => {
    const samples: Buffer[] = [
      ...announces.map((a) => encodeAnnounce(1, a)),
      ...nacks.map((n) => encodeNack(2, n)),
      ...statuses.map((s) => encodeStatus(3, s)),
      ...controls.map((c) => encodeControl(4, c)),
      encodeEnd(5, 0), encodeEnd(5, 2),
    ];
    const next = prng(0xc0ffee);
    const tally = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      const src = samples[Math.floor(next() * samples.length)] as Buffer;
      const d = Buffer.from(src);
      const flips = 1 + Math.floor(next() * 4);
      for (let f = 0; f < flips; f++) d[Math.floor(next() * d.length)] = Math.floor(next() * 256);
      const cut = next() < 0.3 ? Math.floor(next() * d.length) : d.length;
      const dg = d.subarray(0, cut);
      const r = outcome(() => {
        const { value: h, bytes } = decodeHeader(dg);
        const dec = payloadDecoder[h.type];
        if (dec) dec(dg.subarray(HEADER_LENGTH, bytes));
      });
      tally.set(r, (tally.get(r) ?? 0) + 1);
    }
    expect([...tally.keys()].sort()).toEqual(['RC_ERR_DECODE_INVALID', 'RC_ERR_DECODE_TRUNCATED', 'ok']);
  });
});
