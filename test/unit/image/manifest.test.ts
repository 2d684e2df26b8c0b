import { describe, it, expect } from '@jest/globals';
import {
  blockCount, blockHashes, blockLength, decodeManifest, encodeManifest, extentsFrom, manifestDigest, uniqueHashes,
  MANIFEST_FORMAT, MANIFEST_VERSION, MAX_MANIFEST_BYTES, type Manifest,
} from '../../../services/image/manifest.ts';
import { seededBytes } from '../../helpers/rng.ts';
import { clone, rcErrorSync, sha256hex } from './helpers.ts';

const A = sha256hex('block A');
const B = sha256hex('block B');
const C = sha256hex('block C');
const BS = 65536;
// 6 blocks, the last one short (4 KiB): A B _ A _ C
const PER_BLOCK: (string | null)[] = [A, B, null, A, null, C];

function validManifest(): Manifest {
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    name: 'web-01.base_v2',
    createdAt: '2025-01-02T03:04:05.678Z',
    source: { path: '/dev/sda', kind: 'block' },
    disk: { size: 5 * BS + 4096, sectorSize: 512 },
    blockSize: BS,
    compression: { algorithm: 'zstd', level: 3 },
    partitionTable: {
      kind: 'mbr',
      diskId: '0x1234abcd',
      partitions: [{ index: 1, start: 1 << 20, size: 2 << 20, type: '0x83', bootable: true }],
      raw: [{ offset: 0, data: Buffer.alloc(512, 7).toString('base64') }],
      warnings: ['a warning'],
    },
    extents: [{ start: 0, hashes: [A, B] }, { start: 3, hashes: [A] }, { start: 5, hashes: [C] }],
    stats: { blocks: 6, dataBlocks: 4, holeBlocks: 2, uniqueChunks: 3 },
  };
}

/** Encodes `m` after `mutate` edits a copy of it (loosely typed: hostile manifests break the type). */
function mutated(mutate: (m: Record<string, any>) => void): Buffer {
  const m = clone(validManifest()) as unknown as Record<string, any>;
  mutate(m);
  return Buffer.from(JSON.stringify(m));
}

function invalid(bytes: Uint8Array, path?: string): void {
  const e = rcErrorSync(() => decodeManifest(bytes), 'RC_ERR_MANIFEST_INVALID');
  if (path !== undefined) expect(e.fields.path).toBe(path);
}

describe('manifest round trip', () => {
  it('decodeManifest(encodeManifest(m)) gives m back', () => {
    const m = validManifest();
    const bytes = encodeManifest(m);
    expect(bytes.at(-1)).toBe(0x0a);
    expect(decodeManifest(bytes)).toEqual(m);
  });

  it('decodes a manifest that sits at an offset inside a larger buffer', () => {
    const bytes = encodeManifest(validManifest());
    const big = new Uint8Array(bytes.length + 1000);
    big.fill(0x7b); // '{' everywhere around it: any read outside the view breaks the JSON
    big.set(bytes, 333);
    const view = big.subarray(333, 333 + bytes.length);
    expect(decodeManifest(view)).toEqual(validManifest());
    // and as a Buffer over a shared ArrayBuffer with a non-zero byteOffset
    const buf = Buffer.from(big.buffer, 333, bytes.length);
    expect(decodeManifest(buf)).toEqual(validManifest());
  });

  it('accepts a manifest with no extents (an all-zero disk) and the documented limits', () => {
    for (const edit of [
      (m: Record<string, any>) => { m.extents = []; m.stats = { blocks: 6, dataBlocks: 0, holeBlocks: 6, uniqueChunks: 0 }; },
      (m: Record<string, any>) => { m.partitionTable = { kind: 'none', partitions: [], raw: [], warnings: [] }; },
      (m: Record<string, any>) => { m.disk = { size: 1, sectorSize: 4096 }; m.extents = [{ start: 0, hashes: [A] }]; m.stats = { blocks: 1, dataBlocks: 1, holeBlocks: 0, uniqueChunks: 1 }; },
      (m: Record<string, any>) => { m.blockSize = 64 << 20; m.disk.size = 64 << 20; m.extents = [{ start: 0, hashes: [A] }]; m.stats = { blocks: 1, dataBlocks: 1, holeBlocks: 0, uniqueChunks: 1 }; },
      (m: Record<string, any>) => { m.disk.sectorSize = 65536; },
      (m: Record<string, any>) => { m.compression.level = 22; },
      (m: Record<string, any>) => { m.name = 'x'.repeat(128); },
    ]) {
      expect(() => decodeManifest(mutated(edit))).not.toThrow();
    }
  });

  it('manifestDigest hashes the exact bytes', () => {
    const bytes = encodeManifest(validManifest());
    expect(manifestDigest(bytes)).toBe('sha256:' + sha256hex(bytes));
    const flipped = Buffer.from(bytes);
    flipped[10] = (flipped[10] as number) ^ 1;
    expect(manifestDigest(flipped)).not.toBe(manifestDigest(bytes));
  });
});

describe('block helpers', () => {
  it('extentsFrom builds sorted, disjoint, non-adjacent runs', () => {
    expect(extentsFrom([])).toEqual([]);
    expect(extentsFrom([null, null])).toEqual([]);
    expect(extentsFrom(PER_BLOCK)).toEqual(validManifest().extents);
    expect(extentsFrom([A, A, A])).toEqual([{ start: 0, hashes: [A, A, A] }]);
    expect(extentsFrom([null, A, null, null, B, C])).toEqual([{ start: 1, hashes: [A] }, { start: 4, hashes: [B, C] }]);
  });

  it('blockHashes inverts extentsFrom', () => {
    expect(blockHashes(validManifest())).toEqual(PER_BLOCK);
    const m = { ...validManifest(), extents: extentsFrom([null, null, null, null, null, C]) };
    expect(blockHashes(m)).toEqual([null, null, null, null, null, C]);
    expect(blockHashes({ ...validManifest(), extents: [] })).toEqual(new Array(6).fill(null));
  });

  it('blockCount and blockLength (the last block is short)', () => {
    const m = validManifest();
    expect(blockCount(m)).toBe(6);
    for (let i = 0; i < 5; i++) expect(blockLength(m, i)).toBe(BS);
    expect(blockLength(m, 5)).toBe(4096);
    const exact = { disk: { size: 4 * BS, sectorSize: 512 }, blockSize: BS };
    expect(blockCount(exact)).toBe(4);
    expect(blockLength(exact, 3)).toBe(BS);
    const tiny = { disk: { size: 1, sectorSize: 512 }, blockSize: BS };
    expect(blockCount(tiny)).toBe(1);
    expect(blockLength(tiny, 0)).toBe(1);
  });

  it('uniqueHashes', () => {
    expect([...uniqueHashes(validManifest())].sort()).toEqual([A, B, C].sort());
  });
});

describe('hostile manifests → RC_ERR_MANIFEST_INVALID', () => {
  it('not JSON, or JSON that is not an object', () => {
    for (const text of ['', ' ', 'not json', '{', '{"format":', 'null', '[]', '"rackcast.image"', '42', 'true', '{}}', '\u0000']) {
      invalid(Buffer.from(text, 'utf8'));
    }
    invalid(Buffer.from([0xff, 0xfe, 0x7b, 0x7d, 0x00]));
    invalid(seededBytes(1, 4096));
  });

  it('larger than MAX_MANIFEST_BYTES, refused before parsing', () => {
    // calloc'd and never touched: costs address space, not memory
    invalid(new Uint8Array(MAX_MANIFEST_BYTES + 1), '$');
  });

  it('wrong format or version', () => {
    invalid(mutated((m) => { m.format = 'rackcast.imag'; }), 'format');
    invalid(mutated((m) => { delete m.format; }), 'format');
    invalid(mutated((m) => { m.version = 2; }), 'version');
    invalid(mutated((m) => { m.version = 0; }), 'version');
    invalid(mutated((m) => { m.version = '1'; }), 'version');
    invalid(mutated((m) => { delete m.version; }), 'version');
  });

  it('name that is not an image name (path separators, .., empty, too long)', () => {
    for (const name of ['a/b', '/abs', '..', '../etc', 'x/../y', '.hidden', '-dash', '', 'a b', 'a\u0000b', 'é', 'x'.repeat(129), 'a\\b']) {
      invalid(mutated((m) => { m.name = name; }), 'name');
    }
    invalid(mutated((m) => { m.name = 7; }), 'name');
    invalid(mutated((m) => { delete m.name; }), 'name');
  });

  it('createdAt and source', () => {
    invalid(mutated((m) => { m.createdAt = 5; }), 'createdAt');
    invalid(mutated((m) => { m.createdAt = 'x'.repeat(65); }), 'createdAt');
    invalid(mutated((m) => { m.source = 'sda'; }), 'source');
    invalid(mutated((m) => { m.source.path = null; }), 'source.path');
    invalid(mutated((m) => { m.source.kind = 'net'; }), 'source.kind');
  });

  it('disk.size 0, negative, non-integer, unsafe (2^60) or not a number', () => {
    for (const size of [0, -1, -65536, 1.5, 65536.25, 2 ** 60, Number.MAX_SAFE_INTEGER + 1, '331776', null, true, [393216], {}]) {
      invalid(mutated((m) => { m.disk.size = size; }), 'disk.size');
    }
    // 1e400 is Infinity in JSON.parse; a huge exponent literal must not sneak past int()
    const text = mutated(() => {}).toString();
    const size = `"size":${5 * BS + 4096}`;
    expect(text).toContain(size);
    invalid(Buffer.from(text.replace(size, '"size":1e400')), 'disk.size');
  });

  it('disk.sectorSize out of range or not a power of two', () => {
    for (const s of [0, 256, 511, 513, 1000, 3072, 131072, 512.5]) {
      invalid(mutated((m) => { m.disk.sectorSize = s; }), 'disk.sectorSize');
    }
  });

  it('blockSize not a power of two, out of range, or not a multiple of the sector size', () => {
    for (const bs of [65536 + 512, 3 * 65536, 65536 * 1.5, 100000]) {
      invalid(mutated((m) => { m.blockSize = bs; }), 'blockSize');
    }
    // a multiple of a 4 KiB sector but not a power of two
    invalid(mutated((m) => { m.disk.sectorSize = 4096; m.blockSize = 65536 + 4096; }), 'blockSize');
    for (const bs of [0, -65536, 32768, 4096, 128 << 20, 2 ** 40]) {
      invalid(mutated((m) => { m.blockSize = bs; }), 'blockSize');
    }
  });

  it('compression', () => {
    invalid(mutated((m) => { m.compression.algorithm = 'gzip'; }), 'compression.algorithm');
    invalid(mutated((m) => { m.compression.level = 0; }), 'compression.level');
    invalid(mutated((m) => { m.compression.level = 23; }), 'compression.level');
    invalid(mutated((m) => { m.compression = null; }), 'compression');
  });

  it('partition table', () => {
    invalid(mutated((m) => { m.partitionTable.kind = 'apm'; }), 'partitionTable.kind');
    invalid(mutated((m) => { m.partitionTable.partitions = {}; }), 'partitionTable.partitions');
    invalid(mutated((m) => { m.partitionTable.partitions[0].index = 0; }), 'partitionTable.partitions[0].index');
    invalid(mutated((m) => { m.partitionTable.partitions[0].start = -1; }), 'partitionTable.partitions[0].start');
    invalid(mutated((m) => { m.partitionTable.partitions[0].type = 'x'.repeat(65); }), 'partitionTable.partitions[0].type');
    invalid(mutated((m) => { m.partitionTable.raw[0].offset = 5 * BS + 4097; }), 'partitionTable.raw[0].offset');
    invalid(mutated((m) => { m.partitionTable.raw[0].data = 12; }), 'partitionTable.raw[0].data');
    invalid(mutated((m) => { m.partitionTable.warnings = [1]; }), 'partitionTable.warnings[0]');
  });

  it('extents overlapping, unsorted, adjacent, past the end or empty', () => {
    const cases: [string, unknown, string][] = [
      ['overlapping', [{ start: 0, hashes: [A, B] }, { start: 1, hashes: [C] }], 'extents[1].start'],
      ['duplicate start', [{ start: 0, hashes: [A] }, { start: 0, hashes: [B] }], 'extents[1].start'],
      ['unsorted', [{ start: 3, hashes: [A] }, { start: 0, hashes: [A, B] }], 'extents[1].start'],
      ['adjacent', [{ start: 0, hashes: [A, B] }, { start: 2, hashes: [A] }], 'extents[1].start'],
      ['start past the last block', [{ start: 6, hashes: [A] }], 'extents[0].start'],
      ['runs past the end', [{ start: 4, hashes: [A, B, C] }], 'extents[0]'],
      ['far past the end', [{ start: 0, hashes: new Array(7).fill(A) }], 'extents[0]'],
      ['empty', [{ start: 0, hashes: [] }], 'extents[0]'],
      ['negative start', [{ start: -1, hashes: [A] }], 'extents[0].start'],
      ['fractional start', [{ start: 0.5, hashes: [A] }], 'extents[0].start'],
      ['not an array', { start: 0, hashes: [A] }, 'extents'],
      ['extent not an object', [[0, [A]]], 'extents[0]'],
      ['hashes not an array', [{ start: 0, hashes: A }], 'extents[0].hashes'],
    ];
    for (const [what, extents, path] of cases) {
      try {
        invalid(mutated((m) => { m.extents = extents; }), path);
      } catch (e) {
        throw new Error(`${what}: ${(e as Error).message}`, { cause: e });
      }
    }
  });

  it('hash not 64 lowercase hex', () => {
    for (const h of [A.toUpperCase(), A.slice(1), A + '0', 'g' + A.slice(1), ` ${A.slice(1)}`, 'sha256:' + A, '', 5, null]) {
      invalid(mutated((m) => { m.extents[0].hashes[1] = h; }), 'extents[0].hashes[1]');
    }
  });

  it('stats that do not match the extents', () => {
    for (const edit of [
      (m: Record<string, any>) => { m.stats.blocks = 7; },
      (m: Record<string, any>) => { m.stats.dataBlocks = 3; },
      (m: Record<string, any>) => { m.stats.holeBlocks = 1; },
      (m: Record<string, any>) => { m.stats.uniqueChunks = 4; },
      (m: Record<string, any>) => { m.stats.blocks = '6'; },
      (m: Record<string, any>) => { delete m.stats.uniqueChunks; },
    ]) {
      invalid(mutated(edit), 'stats');
    }
    invalid(mutated((m) => { m.stats = []; }), 'stats');
  });

  it('a 2-level nested junk object, in place of the manifest or of a field', () => {
    invalid(Buffer.from(JSON.stringify({ junk: { junk: { a: 1 } } })), 'format');
    invalid(mutated((m) => { m.disk = { size: { a: { b: 1 } }, sectorSize: 512 }; }), 'disk.size');
    invalid(mutated((m) => { m.source.path = { a: { b: 'x' } }; }), 'source.path');
    invalid(mutated((m) => { m.extents = [{ start: { a: { b: 0 } }, hashes: [A] }]; }), 'extents[0].start');
    invalid(mutated((m) => { m.extents[0].hashes = [{ a: { b: A } }, B]; }), 'extents[0].hashes[0]');
    invalid(mutated((m) => { m.stats = { blocks: { a: { b: 6 } } }; }), 'stats');
  });

  it('very deep nesting does not overflow the stack', () => {
    const n = 100_000;
    invalid(Buffer.from('['.repeat(n) + ']'.repeat(n)), '$');
    invalid(Buffer.from('{"a":'.repeat(n) + '1' + '}'.repeat(n)), 'format');
    const text = mutated(() => {}).toString();
    const field = '"createdAt":"2025-01-02T03:04:05.678Z"';
    expect(text).toContain(field);
    invalid(Buffer.from(text.replace(field, `"createdAt":${'['.repeat(n)}${']'.repeat(n)}`)), 'createdAt');
  });

  it('every truncation of the encoded bytes', () => {
    const bytes = encodeManifest(validManifest());
    const end = bytes.lastIndexOf('}'); // the trailing newline is whitespace: dropping it is fine
    expect(end).toBe(bytes.length - 2);
    for (let n = 0; n <= end; n++) {
      try {
        invalid(bytes.subarray(0, n));
      } catch (e) {
        throw new Error(`prefix of ${n} of ${bytes.length} bytes: ${(e as Error).message}`, { cause: e });
      }
    }
    expect(decodeManifest(bytes.subarray(0, end + 1))).toEqual(validManifest());
  });
});
