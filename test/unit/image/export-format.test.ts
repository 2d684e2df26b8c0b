import { describe, it, expect } from '@jest/globals';
import {
  decodeChunkHead, decodeHeader, decodeTrailer, encodeChunkHead, encodeHeader, encodeTrailer,
  CHUNK_HEAD_LENGTH, EXPORT_MAGIC, EXPORT_VERSION, HEADER_LENGTH, MAX_SIG_BYTES, TRAILER_LENGTH,
  type ChunkHead, type ExportHeader, type Trailer,
} from '../../../services/image/export-format.ts';
import { MAX_MANIFEST_BYTES } from '../../../services/image/manifest.ts';
import { compressBound } from '../../../services/image/zstd.ts';
import { seededBytes } from '../../helpers/rng.ts';
import { rcErrorSync, sha256hex } from './helpers.ts';

const MAX_M = MAX_MANIFEST_BYTES;
const BLOCK = 1 << 20;
const LIMITS = { maxLength: BLOCK, maxFrame: compressBound(BLOCK) };

const header: ExportHeader = { manifestLength: 12345, sigLength: 321, chunkCount: 77 };
const head: ChunkHead = { hash: sha256hex('a chunk'), length: BLOCK, frameLength: 4567 };
const trailer: Trailer = { chunkCount: 77, digest: Buffer.from(sha256hex('everything'), 'hex') };

/** `bytes` placed at `at` inside a larger buffer of junk (itself a view with a non-zero byteOffset). */
function embed(bytes: Uint8Array, at: number, after = 19): Buffer {
  const backing = seededBytes(at + bytes.length, 11 + at + bytes.length + after);
  const view = backing.subarray(11);
  view.set(bytes, at);
  return view;
}

function truncated(fn: () => unknown, offset: number): void {
  const e = rcErrorSync(fn, 'RC_ERR_DECODE_TRUNCATED');
  expect(e.fields.offset).toBe(offset);
}

function bad(fn: () => unknown, offset?: number): void {
  const e = rcErrorSync(fn, 'RC_ERR_EXPORT_INVALID');
  if (offset !== undefined) expect(e.fields.offset).toBe(offset);
}

describe('header', () => {
  it('round trip, layout as documented', () => {
    const b = encodeHeader(header);
    expect(b.length).toBe(HEADER_LENGTH);
    expect(b.subarray(0, 8).equals(EXPORT_MAGIC)).toBe(true);
    expect(b.toString('ascii', 0, 8)).toBe('RCIMGEX1');
    expect(b.readUInt32BE(8)).toBe(EXPORT_VERSION);
    expect(b.readUInt32BE(12)).toBe(0);
    expect(b.readBigUInt64BE(16)).toBe(12345n);
    expect(b.readUInt32BE(24)).toBe(321);
    expect(b.readUInt32BE(28)).toBe(77);
    expect(decodeHeader(b, 0, MAX_M)).toEqual({ value: header, bytes: HEADER_LENGTH });
  });

  it('round trip at the limits', () => {
    for (const h of [
      { manifestLength: 1, sigLength: 1, chunkCount: 0 },
      { manifestLength: MAX_M, sigLength: MAX_SIG_BYTES, chunkCount: 0xffffffff },
    ]) {
      expect(decodeHeader(encodeHeader(h), 0, MAX_M).value).toEqual(h);
    }
  });

  it('round trip at an offset inside a larger buffer', () => {
    for (const at of [1, 7, 32, 1000]) {
      const buf = embed(encodeHeader(header), at);
      expect(decodeHeader(buf, at, MAX_M)).toEqual({ value: header, bytes: HEADER_LENGTH });
    }
  });

  it('every truncation → RC_ERR_DECODE_TRUNCATED with the offset', () => {
    const b = encodeHeader(header);
    for (let n = 0; n < HEADER_LENGTH; n++) {
      truncated(() => decodeHeader(b.subarray(0, n), 0, MAX_M), 0);
      const at = 13;
      truncated(() => decodeHeader(embed(b.subarray(0, n), at, 0), at, MAX_M), at);
    }
    truncated(() => decodeHeader(b, 1, MAX_M), 1);
    truncated(() => decodeHeader(b, HEADER_LENGTH + 5, MAX_M), HEADER_LENGTH + 5);
    truncated(() => decodeHeader(b, -1, MAX_M), -1);
  });

  it('bad magic', () => {
    const b = encodeHeader(header);
    for (let i = 0; i < 8; i++) {
      const c = Buffer.from(b);
      c[i] = (c[i] as number) ^ 0x20;
      bad(() => decodeHeader(c, 0, MAX_M), 0);
      bad(() => decodeHeader(embed(c, 5), 5, MAX_M), 5);
    }
    bad(() => decodeHeader(Buffer.alloc(HEADER_LENGTH), 0, MAX_M), 0);
  });

  it('unknown version', () => {
    for (const v of [0, 2, 0x01000000, 0xffffffff]) {
      const c = encodeHeader(header);
      c.writeUInt32BE(v, 8);
      bad(() => decodeHeader(c, 0, MAX_M), 8);
      bad(() => decodeHeader(embed(c, 3), 3, MAX_M), 11);
    }
  });

  it('unknown flags', () => {
    for (let bit = 0; bit < 32; bit++) {
      const c = encodeHeader(header);
      c.writeUInt32BE((1 << bit) >>> 0, 12);
      bad(() => decodeHeader(c, 0, MAX_M), 12);
    }
  });

  it('manifest length 0 or above the maximum', () => {
    for (const m of [0n, BigInt(MAX_M) + 1n, 1n << 53n, (1n << 64n) - 1n]) {
      const c = encodeHeader(header);
      c.writeBigUInt64BE(m, 16);
      bad(() => decodeHeader(c, 0, MAX_M), 16);
    }
    // the caller's maximum is the one applied
    const c = encodeHeader({ ...header, manifestLength: 1001 });
    bad(() => decodeHeader(c, 0, 1000), 16);
    expect(decodeHeader(c, 0, 1001).value.manifestLength).toBe(1001);
  });

  it('signature length 0 or above 64 KiB', () => {
    for (const s of [0, MAX_SIG_BYTES + 1, 0x7fffffff, 0xffffffff]) {
      const c = encodeHeader(header);
      c.writeUInt32BE(s, 24);
      bad(() => decodeHeader(c, 0, MAX_M), 24);
    }
  });

  it('random junk never escapes as anything but a RackcastError', () => {
    for (let seed = 0; seed < 500; seed++) {
      const junk = seededBytes(seed, seed % (HEADER_LENGTH + 8));
      if (seed % 3 === 0 && junk.length >= 8) EXPORT_MAGIC.copy(junk, 0);
      rcErrorSync(() => decodeHeader(junk, 0, MAX_M));
    }
  });
});

describe('chunk head', () => {
  it('round trip, layout as documented', () => {
    const b = encodeChunkHead(head);
    expect(b.length).toBe(CHUNK_HEAD_LENGTH);
    expect(b.toString('ascii', 0, 4)).toBe('RCCK');
    expect(b.toString('hex', 4, 36)).toBe(head.hash);
    expect(b.readUInt32BE(36)).toBe(head.length);
    expect(b.readUInt32BE(40)).toBe(head.frameLength);
    expect(decodeChunkHead(b, 0, LIMITS)).toEqual({ value: head, bytes: CHUNK_HEAD_LENGTH });
  });

  it('round trip at the limits and at an offset inside a larger buffer', () => {
    const edge = { hash: 'f'.repeat(64), length: LIMITS.maxLength, frameLength: LIMITS.maxFrame };
    expect(decodeChunkHead(encodeChunkHead(edge), 0, LIMITS).value).toEqual(edge);
    const one = { hash: '0'.repeat(64), length: 1, frameLength: 1 };
    expect(decodeChunkHead(encodeChunkHead(one), 0, LIMITS).value).toEqual(one);
    for (const at of [1, 44, 999]) {
      expect(decodeChunkHead(embed(encodeChunkHead(head), at), at, LIMITS)).toEqual({ value: head, bytes: CHUNK_HEAD_LENGTH });
    }
  });

  it('several records back to back', () => {
    const heads = [head, { ...head, hash: sha256hex('b'), length: 4096 }, { ...head, hash: sha256hex('c'), frameLength: 1 }];
    const frames = heads.map((h) => Buffer.alloc(h.frameLength, 0xee));
    const buf = Buffer.concat(heads.flatMap((h, i) => [encodeChunkHead(h), frames[i] as Buffer]));
    let off = 0;
    for (const h of heads) {
      const d = decodeChunkHead(buf, off, LIMITS);
      expect(d.value).toEqual(h);
      off += d.bytes + d.value.frameLength;
    }
    expect(off).toBe(buf.length);
  });

  it('every truncation → RC_ERR_DECODE_TRUNCATED with the offset', () => {
    const b = encodeChunkHead(head);
    for (let n = 0; n < CHUNK_HEAD_LENGTH; n++) {
      truncated(() => decodeChunkHead(b.subarray(0, n), 0, LIMITS), 0);
      truncated(() => decodeChunkHead(embed(b.subarray(0, n), 100, 0), 100, LIMITS), 100);
    }
    truncated(() => decodeChunkHead(b, 1, LIMITS), 1);
    truncated(() => decodeChunkHead(b, -1, LIMITS), -1);
  });

  it('bad magic', () => {
    for (let i = 0; i < 4; i++) {
      const c = encodeChunkHead(head);
      c[i] = (c[i] as number) ^ 0x01;
      bad(() => decodeChunkHead(c, 0, LIMITS), 0);
      bad(() => decodeChunkHead(embed(c, 9), 9, LIMITS), 9);
    }
    // a trailer where a chunk record was expected
    bad(() => decodeChunkHead(Buffer.concat([encodeTrailer(trailer), Buffer.alloc(8)]), 0, LIMITS), 0);
  });

  it('chunk length 0 or above the block size', () => {
    for (const length of [0, LIMITS.maxLength + 1, 0xffffffff]) {
      bad(() => decodeChunkHead(encodeChunkHead({ ...head, length }), 0, LIMITS), 36);
      bad(() => decodeChunkHead(embed(encodeChunkHead({ ...head, length }), 4), 4, LIMITS), 40);
    }
    bad(() => decodeChunkHead(encodeChunkHead({ ...head, length: 65537 }), 0, { maxLength: 65536, maxFrame: LIMITS.maxFrame }), 36);
  });

  it('frame length 0 or above the compress bound', () => {
    for (const frameLength of [0, LIMITS.maxFrame + 1, 0xffffffff]) {
      bad(() => decodeChunkHead(encodeChunkHead({ ...head, frameLength }), 0, LIMITS), 40);
    }
  });

  it('random junk never escapes as anything but a RackcastError', () => {
    for (let seed = 0; seed < 500; seed++) {
      const junk = seededBytes(seed, seed % (CHUNK_HEAD_LENGTH + 8));
      if (seed % 2 === 0 && junk.length >= 4) junk.write('RCCK', 0, 'ascii');
      rcErrorSync(() => decodeChunkHead(junk, 0, LIMITS));
    }
  });
});

describe('trailer', () => {
  it('round trip, layout as documented', () => {
    const b = encodeTrailer(trailer);
    expect(b.length).toBe(TRAILER_LENGTH);
    expect(b.toString('ascii', 0, 4)).toBe('RCND');
    expect(b.readUInt32BE(4)).toBe(77);
    expect(b.subarray(8).equals(trailer.digest)).toBe(true);
    expect(decodeTrailer(b)).toEqual({ value: trailer, bytes: TRAILER_LENGTH });
  });

  it('round trip at an offset inside a larger buffer; the digest is a copy', () => {
    for (const at of [1, 40, 513]) {
      const buf = embed(encodeTrailer(trailer), at);
      const d = decodeTrailer(buf, at);
      expect(d).toEqual({ value: trailer, bytes: TRAILER_LENGTH });
      buf.fill(0);
      expect(d.value.digest.equals(trailer.digest)).toBe(true);
    }
  });

  it('every truncation → RC_ERR_DECODE_TRUNCATED with the offset', () => {
    const b = encodeTrailer(trailer);
    for (let n = 0; n < TRAILER_LENGTH; n++) {
      truncated(() => decodeTrailer(b.subarray(0, n)), 0);
      truncated(() => decodeTrailer(embed(b.subarray(0, n), 64, 0), 64), 64);
    }
    truncated(() => decodeTrailer(b, 1), 1);
  });

  it('bad magic', () => {
    for (let i = 0; i < 4; i++) {
      const c = encodeTrailer(trailer);
      c[i] = (c[i] as number) ^ 0x80;
      bad(() => decodeTrailer(c), 0);
    }
    bad(() => decodeTrailer(encodeChunkHead(head)), 0);
  });
});
