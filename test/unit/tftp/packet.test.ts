import { describe, it, expect } from '@jest/globals';
import { isRackcastError, type ErrorCode } from '../../../services/errors.ts';
import {
  decode, encode, encodeDataHeader, encodingLength, MAX_FILENAME, MAX_MESSAGE, MAX_OPTIONS, MAX_OPTION_VALUE, MAX_PAYLOAD,
  type TftpPacket,
} from '../../../services/tftp/packet.ts';
import { prng, seededBytes } from '../../helpers/rng.ts';

const opts = (o: Record<string, string>): Map<string, string> => new Map(Object.entries(o));

const samples: TftpPacket[] = [
  { type: 'rrq', filename: 'undionly.kpxe', mode: 'octet', options: opts({}) },
  { type: 'rrq', filename: 'efi/x64/ipxe.efi', mode: 'octet', options: opts({ tsize: '0', blksize: '1468', windowsize: '16', timeout: '3' }) },
  { type: 'wrq', filename: 'upload', mode: 'netascii', options: opts({}) },
  { type: 'rrq', filename: 'ünïcode/文件', mode: 'octet', options: opts({ blksize: '512' }) },
  { type: 'data', block: 1, data: Buffer.from('hello') },
  { type: 'data', block: 0, data: Buffer.alloc(0) },
  { type: 'data', block: 65535, data: seededBytes(1, 1468) },
  { type: 'data', block: 7, data: seededBytes(2, MAX_PAYLOAD) },
  { type: 'ack', block: 0 },
  { type: 'ack', block: 65535 },
  { type: 'error', code: 8, message: 'option negotiation refused' },
  { type: 'error', code: 0, message: '' },
  { type: 'oack', options: opts({ blksize: '1468', tsize: '3145728' }) },
  { type: 'oack', options: opts({}) },
];

/** Decoded values compare with Buffers normalised to plain bytes. */
const norm = (p: TftpPacket): unknown => (p.type === 'data' ? { ...p, data: Buffer.from(p.data) } : p);

function code(fn: () => unknown): ErrorCode | 'ok' {
  try { fn(); return 'ok'; } catch (e) {
    if (!isRackcastError(e)) throw e;
    return e.code;
  }
}
function fails(fn: () => unknown, c: ErrorCode, offset?: number): void {
  let err: unknown;
  try { fn(); } catch (e) { err = e; }
  expect(isRackcastError(err) ? err.code : err).toBe(c);
  if (offset !== undefined && isRackcastError(err)) expect(err.fields.offset).toBe(offset);
}

describe('TFTP packet codec', () => {
  it('round trips every packet type, with encodingLength exact', () => {
    for (const p of samples) {
      const b = encode(p);
      expect(b.length).toBe(encodingLength(p));
      const d = decode(b);
      expect(norm(d.value)).toEqual(norm(p));
      expect(d.bytes).toBe(b.length);
    }
  });

  it('round trips at an offset inside a larger buffer, junk before and after', () => {
    for (const p of samples) {
      const b = encode(p);
      for (const at of [1, 13, 600]) {
        const big = seededBytes(at, at + b.length + 17);
        b.copy(big, at);
        const d = decode(big, at, at + b.length);
        expect(norm(d.value)).toEqual(norm(p));
      }
    }
  });

  it('decodes real requests captured from curl 7.88, atftp 0.8 and tftp-hpa 5.2 (golden)', () => {
    const curl = Buffer.from('\0\x01foo\0octet\0tsize\x000\0blksize\x00512\0timeout\x001\0', 'latin1');
    expect(decode(curl).value).toEqual({ type: 'rrq', filename: 'foo', mode: 'octet', options: opts({ tsize: '0', blksize: '512', timeout: '1' }) });
    const atftp = Buffer.from('\0\x01foo\0octet\0tsize\x000\0timeout\x003\0blksize\x001468\0windowsize\x0016\0', 'latin1');
    expect(decode(atftp).value).toEqual({ type: 'rrq', filename: 'foo', mode: 'octet', options: opts({ tsize: '0', timeout: '3', blksize: '1468', windowsize: '16' }) });
    const hpa = Buffer.from('\0\x01foo\0octet\0', 'latin1');
    expect(decode(hpa)).toEqual({ value: { type: 'rrq', filename: 'foo', mode: 'octet', options: opts({}) }, bytes: 12 });
    // and what we send back is byte-for-byte what RFC 1350/2347 say
    expect(encode({ type: 'oack', options: opts({ tsize: '3', blksize: '1468' }) }).toString('latin1')).toBe('\0\x06tsize\x003\0blksize\x001468\0');
    expect(encode({ type: 'error', code: 2, message: 'no' }).toString('hex')).toBe('000500026e6f00');
    expect(Buffer.concat([encodeDataHeader(65536 + 3), Buffer.from('x')]).toString('hex')).toBe('0003000378');
  });

  it('option names and mode are case-insensitive (RFC 2347 §2); NUL padding after options is ignored', () => {
    const b = Buffer.from('\0\x01Boot.EFI\0OcTeT\0BLKSIZE\x001468\0TSize\x000\0\0\0\0', 'latin1');
    expect(decode(b).value).toEqual({ type: 'rrq', filename: 'Boot.EFI', mode: 'octet', options: opts({ blksize: '1468', tsize: '0' }) });
  });

  it('ERROR without its final NUL is accepted (some firmware omits it)', () => {
    expect(decode(Buffer.from('\0\x05\0\x08abort', 'latin1')).value).toEqual({ type: 'error', code: 8, message: 'abort' });
  });

  it('every truncation of a request gives RC_ERR_DECODE_TRUNCATED (with the offset) or a shorter valid request', () => {
    const b = encode(samples[1]!);
    for (let n = 0; n < b.length; n++) {
      const c = code(() => decode(b, 0, n));
      expect(c === 'ok' || c === 'RC_ERR_DECODE_TRUNCATED').toBe(true);
    }
    fails(() => decode(b, 0, 1), 'RC_ERR_DECODE_TRUNCATED', 0);
    fails(() => decode(b, 0, 2), 'RC_ERR_DECODE_TRUNCATED', 2);
    fails(() => decode(b, 0, 8), 'RC_ERR_DECODE_TRUNCATED', 2); // filename without its NUL
    fails(() => decode(Buffer.from('\0\x01a\0octet\0blksize\0', 'latin1')), 'RC_ERR_DECODE_TRUNCATED', 18); // value missing
    fails(() => decode(Buffer.from('\0\x04\0', 'latin1')), 'RC_ERR_DECODE_TRUNCATED', 2);
    fails(() => decode(Buffer.from('\0\x03\0', 'latin1')), 'RC_ERR_DECODE_TRUNCATED', 2);
    const big = Buffer.concat([Buffer.alloc(50), Buffer.from('\0\x04\0')]);
    fails(() => decode(big, 50), 'RC_ERR_DECODE_TRUNCATED', 52);
  });

  it('oversize fields are RC_ERR_DECODE_INVALID', () => {
    const rrq = (name: string, mode = 'octet', tail = ''): Buffer => Buffer.from(`\0\x01${name}\0${mode}\0${tail}`, 'latin1');
    expect(code(() => decode(rrq('a'.repeat(MAX_FILENAME))))).toBe('ok');
    fails(() => decode(rrq('a'.repeat(MAX_FILENAME + 1))), 'RC_ERR_DECODE_INVALID', 2);
    fails(() => decode(rrq('a', 'o'.repeat(40))), 'RC_ERR_DECODE_INVALID', 4);
    fails(() => decode(rrq('a', 'octet', `blksize\0${'9'.repeat(MAX_OPTION_VALUE + 1)}\0`)), 'RC_ERR_DECODE_INVALID');
    const many = Array.from({ length: MAX_OPTIONS + 1 }, (_, i) => `o${i}\x001\0`).join('');
    fails(() => decode(rrq('a', 'octet', many)), 'RC_ERR_DECODE_INVALID');
    fails(() => decode(Buffer.concat([encodeDataHeader(1), Buffer.alloc(MAX_PAYLOAD + 1)])), 'RC_ERR_DECODE_INVALID', 4);
    fails(() => decode(Buffer.from(`\0\x05\0\x01${'m'.repeat(MAX_MESSAGE + 1)}`, 'latin1')), 'RC_ERR_DECODE_INVALID', 4);
  });

  it('hostile requests are RC_ERR_DECODE_INVALID', () => {
    const bad = [
      '\0\x00a\0octet\0', '\0\x07a\0octet\0', '\xff\xffa\0octet\0', // unknown opcodes
      '\0\x01\0octet\0', // empty filename
      '\0\x01a\0\0', // empty mode
      '\0\x01a\0octet\0blksize\x00512\0BLKSIZE\x001024\0', // repeated option
      '\0\x01a\0octet\0\0\x00512\0x\0', // empty option name followed by more
      '\0\x01a\0octet\0bl\x01ksize\x00512\0', // control character in a name
      '\0\x01a\0oc tet\0', // space in mode
      '\0\x01\xff\xfe\0octet\0', // filename not UTF-8
    ];
    for (const s of bad) fails(() => decode(Buffer.from(s, 'latin1')), 'RC_ERR_DECODE_INVALID');
    for (const [o, e] of [[-1, 3], [0, 99], [4, 3], [0.5, 3]] as const) fails(() => decode(Buffer.from('\0\x04\0\x01'), o, e), 'RC_ERR_DECODE_INVALID');
  });

  it('encode refuses what decode would refuse', () => {
    const bad: TftpPacket[] = [
      { type: 'ack', block: 65536 }, { type: 'ack', block: -1 }, { type: 'data', block: 1.5, data: Buffer.alloc(1) },
      { type: 'data', block: 1, data: Buffer.alloc(MAX_PAYLOAD + 1) },
      { type: 'rrq', filename: '', mode: 'octet', options: opts({}) },
      { type: 'rrq', filename: 'a\0b', mode: 'octet', options: opts({}) },
      { type: 'rrq', filename: 'x'.repeat(MAX_FILENAME + 1), mode: 'octet', options: opts({}) },
      { type: 'rrq', filename: 'a', mode: 'oc\0tet', options: opts({}) },
      { type: 'oack', options: opts({ '': '1' }) },
      { type: 'oack', options: opts({ blksize: 'x\0' }) },
      { type: 'error', code: 70000, message: 'x' },
      { type: 'error', code: 1, message: 'snow ☃' },
    ];
    for (const p of bad) fails(() => encode(p), 'RC_ERR_DECODE_INVALID');
  });

  it('10 000 random and mutated datagrams give a value or a RackcastError, never anything else', () => {
    const rnd = prng(0x7f7f);
    const seen = new Map<string, number>();
    const valid = samples.map((p) => encode(p)).filter((b) => b.length < 2000);
    for (let i = 0; i < 10_000; i++) {
      let b: Buffer;
      if (i % 2 === 0) {
        b = seededBytes(i, Math.floor(rnd() * 300));
        if (b.length >= 2 && rnd() < 0.8) b.writeUInt16BE(1 + Math.floor(rnd() * 6), 0);
      } else {
        b = Buffer.from(valid[i % valid.length]!);
        for (let k = 1 + Math.floor(rnd() * 4); k > 0 && b.length > 0; k--) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
        if (rnd() < 0.3) b = b.subarray(0, Math.floor(rnd() * b.length));
      }
      let outcome: string;
      try {
        const d = decode(b);
        expect(d.bytes).toBeLessThanOrEqual(b.length);
        outcome = d.value.type;
      } catch (e) {
        if (!isRackcastError(e)) throw e;
        outcome = e.code;
      }
      seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
    }
    expect([...seen.keys()]).toEqual(expect.arrayContaining(['RC_ERR_DECODE_TRUNCATED', 'RC_ERR_DECODE_INVALID', 'rrq', 'data', 'ack', 'error', 'oack']));
  });
});
