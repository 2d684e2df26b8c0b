import { describe, it, expect } from '@jest/globals';
import { isRackcastError } from '../../../services/errors.ts';
import {
  BOOTREPLY, FLAG_BROADCAST, MAGIC_COOKIE, MIN_MESSAGE_LENGTH, OPTIONS_OFFSET, decode, emptyMessage, encode, encodingLength, type DhcpMessage,
} from '../../../services/dhcp/packet.ts';
import { prng } from '../../helpers/rng.ts';

function sample(): DhcpMessage {
  return emptyMessage({
    op: BOOTREPLY, hops: 1, xid: 0xdeadbeef, secs: 7, flags: FLAG_BROADCAST,
    ciaddr: '10.0.0.5', yiaddr: '10.77.0.100', siaddr: '10.77.0.1', giaddr: '10.0.0.254',
    chaddr: Buffer.from('525400123456', 'hex'), sname: 'rackcast', file: 'undionly.kpxe',
    options: new Map([[53, Buffer.from([2])], [54, Buffer.from([10, 77, 0, 1])], [60, Buffer.from('PXEClient')], [12, Buffer.alloc(0)]]),
  });
}

function codeOf(f: () => unknown): string {
  try { f(); return 'ok'; } catch (e) { if (isRackcastError(e)) return e.code; throw e; }
}

describe('DHCP packet codec', () => {
  it('round-trips every header field and option, padded to the BOOTP minimum', () => {
    const m = sample();
    const buf = encode(m);
    expect(buf.length).toBe(encodingLength(m));
    expect(buf.length).toBe(MIN_MESSAGE_LENGTH);
    expect(buf.readUInt32BE(236)).toBe(MAGIC_COOKIE);
    const { value, bytes } = decode(buf);
    expect(bytes).toBe(buf.length);
    expect(value).toEqual(m);
  });

  it('round-trips at an offset inside a larger buffer, and bytes stops at the message end', () => {
    const m = sample();
    const len = encodingLength(m);
    const big = Buffer.alloc(len + 50, 0xee);
    encode(m, big, 17);
    expect(big[16]).toBe(0xee);
    expect(big[17 + len]).toBe(0xee); // nothing written past the message
    const { value, bytes } = decode(big, 17);
    expect(bytes).toBe(len);
    expect(value).toEqual(m);
  });

  it('splits options longer than 255 bytes into RFC 3396 instances and joins them again', () => {
    const m = emptyMessage();
    const long = Buffer.from(Array.from({ length: 600 }, (_, i) => i & 0xff));
    m.options.set(43, long);
    m.options.set(53, Buffer.from([1]));
    const buf = encode(m);
    expect(buf.length).toBe(OPTIONS_OFFSET + 600 + 3 * 2 + 3 + 1);
    expect([buf[OPTIONS_OFFSET], buf[OPTIONS_OFFSET + 1], buf[OPTIONS_OFFSET + 257], buf[OPTIONS_OFFSET + 258]]).toEqual([43, 255, 43, 255]);
    expect(decode(buf).value.options.get(43)).toEqual(long);
  });

  it('reads options overloaded into file and sname (option 52) in RFC 2131 order', () => {
    const m = emptyMessage();
    m.options.set(53, Buffer.from([1]));
    m.options.set(52, Buffer.from([3]));
    m.options.set(12, Buffer.from('ab'));
    const buf = encode(m);
    // file field (108): 12 "cd", 67 "boot"; sname field (44): 12 "ef", 66 "srv"
    Buffer.from([12, 2, 0x63, 0x64, 67, 4, ...Buffer.from('boot'), 255]).copy(buf, 108);
    Buffer.from([12, 2, 0x65, 0x66, 66, 3, ...Buffer.from('srv'), 52, 1, 1, 255]).copy(buf, 44);
    const v = decode(buf).value;
    expect(v.options.get(12)?.toString()).toBe('abcdef');
    expect(v.options.get(67)?.toString()).toBe('boot');
    expect(v.options.get(66)?.toString()).toBe('srv');
    expect(v.options.get(52)).toEqual(Buffer.from([3])); // the nested 52 is not followed again
    expect(v.file).toBe('');
    expect(v.sname).toBe('');
  });

  it('reads NUL-terminated sname/file and tolerates a missing END option', () => {
    const m = sample();
    const buf = encode(m);
    const end = buf.indexOf(255, OPTIONS_OFFSET + 3 + 6 + 11 + 2);
    const cut = buf.subarray(0, end); // END and padding removed
    const v = decode(cut);
    expect(v.value.options).toEqual(m.options);
    expect(v.bytes).toBe(cut.length);
    expect(v.value.file).toBe('undionly.kpxe');
  });

  it('rejects what it cannot encode', () => {
    expect(codeOf(() => encode(emptyMessage({ file: 'x'.repeat(128) })))).toBe('RC_ERR_DECODE_INVALID');
    expect(codeOf(() => encode(emptyMessage({ yiaddr: '10.0.0.256' })))).toBe('RC_ERR_DECODE_INVALID');
    expect(codeOf(() => encode(emptyMessage(), Buffer.alloc(100)))).toBe('RC_ERR_DECODE_INVALID');
    expect(codeOf(() => encode(emptyMessage({ options: new Map([[256, Buffer.alloc(1)]]) })))).toBe('RC_ERR_DECODE_INVALID');
  });
});

describe('DHCP packet codec: hostile input', () => {
  const good = encode(sample());

  it('a message cut at every length gives a value or RC_ERR_DECODE_TRUNCATED, never anything else', () => {
    const seen = new Set<string>();
    for (let n = 0; n <= good.length; n++) {
      const c = codeOf(() => decode(good.subarray(0, n)));
      seen.add(c);
      if (n < OPTIONS_OFFSET) expect(c).toBe('RC_ERR_DECODE_TRUNCATED');
    }
    expect([...seen].sort()).toEqual(['RC_ERR_DECODE_TRUNCATED', 'ok']);
  });

  it('errors carry the offset where decoding failed', () => {
    const b = Buffer.from(good.subarray(0, OPTIONS_OFFSET + 2));
    b[OPTIONS_OFFSET] = 60; b[OPTIONS_OFFSET + 1] = 200; // declares 200 bytes, none follow
    try { decode(b); throw new Error('no throw'); } catch (e) {
      expect(isRackcastError(e, 'RC_ERR_DECODE_TRUNCATED')).toBe(true);
      expect((e as { fields: { offset: number } }).fields.offset).toBe(OPTIONS_OFFSET + 2);
    }
    const code = Buffer.from(good.subarray(0, OPTIONS_OFFSET + 1));
    code[OPTIONS_OFFSET] = 60; // option code with no length byte
    expect(codeOf(() => decode(code))).toBe('RC_ERR_DECODE_TRUNCATED');
  });

  it('rejects bad cookies, oversize hlen, absurd sizes, bad overload values and bad offsets', () => {
    const noCookie = Buffer.from(good); noCookie[236] = 0;
    expect(codeOf(() => decode(noCookie))).toBe('RC_ERR_DECODE_INVALID');
    const hlen = Buffer.from(good); hlen[2] = 17;
    expect(codeOf(() => decode(hlen))).toBe('RC_ERR_DECODE_INVALID');
    expect(codeOf(() => decode(Buffer.alloc(70_000)))).toBe('RC_ERR_DECODE_INVALID');
    const ov = Buffer.concat([good.subarray(0, OPTIONS_OFFSET), Buffer.from([52, 1, 9, 255])]);
    expect(codeOf(() => decode(ov))).toBe('RC_ERR_DECODE_INVALID');
    expect(codeOf(() => decode(good, -1))).toBe('RC_ERR_DECODE_INVALID');
    expect(codeOf(() => decode(good, good.length + 1))).toBe('RC_ERR_DECODE_INVALID');
  });

  it('a datagram full of PAD, or overloaded fields full of PAD, ends quickly', () => {
    const pads = Buffer.concat([good.subarray(0, OPTIONS_OFFSET), Buffer.alloc(65_000)]);
    const t0 = performance.now();
    expect(decode(pads).value.options.size).toBe(0);
    const ov = Buffer.concat([good.subarray(0, OPTIONS_OFFSET), Buffer.from([52, 1, 3])]);
    ov.fill(0, 44, 236);
    expect(decode(ov).value.options.get(52)).toEqual(Buffer.from([3]));
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('2000 seeded random and mutated buffers give only a value or a RackcastError', () => {
    const rnd = prng(0xd4c9);
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      let b: Buffer;
      if (i % 2 === 0) { // pure noise, with the cookie planted half the time so options get parsed
        b = Buffer.alloc(Math.floor(rnd() * 700));
        for (let k = 0; k < b.length; k++) b[k] = Math.floor(rnd() * 256);
        if (b.length >= 240 && rnd() < 0.5) b.writeUInt32BE(MAGIC_COOKIE, 236);
        if (b.length >= 3 && rnd() < 0.7) b[2] = 6;
      } else { // a real message with a few bytes changed and maybe cut
        b = Buffer.from(good);
        for (let k = 1 + Math.floor(rnd() * 6); k > 0; k--) b[OPTIONS_OFFSET - 10 + Math.floor(rnd() * (b.length - OPTIONS_OFFSET + 10))] = Math.floor(rnd() * 256);
        if (rnd() < 0.3) b = b.subarray(0, Math.floor(rnd() * b.length));
      }
      const c = codeOf(() => decode(b));
      outcomes.set(c, (outcomes.get(c) ?? 0) + 1);
    }
    expect([...outcomes.keys()].sort()).toEqual(['RC_ERR_DECODE_INVALID', 'RC_ERR_DECODE_TRUNCATED', 'ok']);
  });
});
