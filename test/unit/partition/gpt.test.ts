import { describe, it, expect } from '@jest/globals';
import { crc32 } from 'node:zlib';
import {
  decodeGptEntries, decodeGptHeader, encodeGptEntries, encodeGptHeader, formatGuid, parseGuid,
  type GptEntry, type GptHeaderInput,
} from '../../../services/image/partition/gpt.ts';
import { ESP, gptEntry, rcError } from './helpers.ts';

const entries: GptEntry[] = [
  { ...gptEntry(1, 2048, 10239, 'EFI System', ESP), attributes: (1n << 60n) | 5n },
  gptEntry(2, 10240, 30719, 'rootfs'),
  gptEntry(4, 30720, 34815, 'données swap 🙂'),
];
const array = encodeGptEntries(entries, 128);
const headerInput: GptHeaderInput = {
  myLba: 1n, alternateLba: 131071n, firstUsableLba: 34n, lastUsableLba: 131038n,
  diskGuid: '5c2f1e40-8a3b-4d6e-9f10-1a2b3c4d5e6f', entriesLba: 2n,
  entryCount: 128, entrySize: 128, entriesCrc32: crc32(array),
};

/** Re-seals a header after a test pokes a field, so the check under test is not the CRC. */
function reseal(h: Buffer): Buffer {
  const c = Buffer.from(h);
  c.writeUInt32LE(0, 16);
  c.writeUInt32LE(crc32(c.subarray(0, c.readUInt32LE(12))), 16);
  return c;
}

describe('GUID text form', () => {
  it('is mixed-endian and lowercase (EFI System Partition type, UEFI 2.x §5.3.3)', () => {
    const bytes = Buffer.from('28732ac11ff8d211ba4b00a0c93ec93b', 'hex');
    expect(formatGuid(bytes, 0)).toBe(ESP);
    expect(parseGuid(ESP.toUpperCase())).toEqual(bytes);
  });
  it('rejects malformed text', async () => {
    await rcError(() => parseGuid('c12a7328-f81f-11d2-ba4b'), 'RC_ERR_DECODE_INVALID');
  });
});

describe('GPT header codec', () => {
  it('round-trips and checks the CRC with the CRC field zeroed', () => {
    const buf = encodeGptHeader(headerInput);
    expect(buf.length).toBe(92);
    expect(buf.toString('latin1', 0, 8)).toBe('EFI PART');
    const h = decodeGptHeader(buf);
    expect(h).toEqual({ ...headerInput, revision: 0x00010000, headerSize: 92, headerCrc32: buf.readUInt32LE(16) });
    expect(encodeGptHeader(h)).toEqual(buf);
  });

  it('decodes at an offset into a larger buffer, and a larger header size on 4K sectors', async () => {
    const big = Buffer.alloc(8192, 0xee);
    const h4k = encodeGptHeader({ ...headerInput, headerSize: 512 });
    h4k.copy(big, 4096);
    expect(decodeGptHeader(big, 4096, 4096)).toMatchObject({ ...headerInput, headerSize: 512 });
    // HeaderSize may not exceed the logical block size (§5.3.2)
    await expectInvalid(() => decodeGptHeader(encodeGptHeader({ ...headerInput, headerSize: 513 }), 0, 512));
  });

  it('throws RC_ERR_DECODE_TRUNCATED at every short length', async () => {
    const full = encodeGptHeader({ ...headerInput, headerSize: 200 });
    for (let len = 0; len < 200; len++) {
      const e = await rcError(() => decodeGptHeader(full.subarray(0, len)), 'RC_ERR_DECODE_TRUNCATED');
      expect(e.fields).toMatchObject({ offset: 0, available: len });
    }
  });

  it('rejects a flipped bit anywhere in the header with RC_ERR_PT_BAD_CRC (or a field error)', async () => {
    const good = encodeGptHeader(headerInput);
    for (let i = 16; i < 92; i++) {
      const bad = Buffer.from(good);
      bad[i] = bad[i]! ^ 0x01;
      const e = await rcError(() => decodeGptHeader(bad));
      expect(e.code).toBe('RC_ERR_PT_BAD_CRC');
    }
  });

  it('checks signature, revision and header size before the CRC', async () => {
    const good = encodeGptHeader(headerInput);
    const sig = Buffer.from(good); sig.write('EFI PARX', 0, 'latin1');
    await expectInvalid(() => decodeGptHeader(sig));
    await expectInvalid(() => decodeGptHeader(encodeGptHeader({ ...headerInput, revision: 0x00020000 })));
    const small = Buffer.from(good); small.writeUInt32LE(91, 12);
    await expectInvalid(() => decodeGptHeader(small));
  });

  it('bounds entry count and size even when the CRC is right', async () => {
    const poke = (field: number, value: number): Buffer => { const b = encodeGptHeader(headerInput); b.writeUInt32LE(value, field); return reseal(b); };
    for (const count of [2 ** 31, 2 ** 32 - 1, 16385]) await expectInvalid(() => decodeGptHeader(poke(80, count)));
    for (const size of [0, 8, 127, 136, 192, 8192, 2 ** 31, 2 ** 32 - 1]) await expectInvalid(() => decodeGptHeader(poke(84, size)));
    expect(decodeGptHeader(poke(84, 256)).entrySize).toBe(256);
    await expectInvalid(() => decodeGptHeader(encodeGptHeader({ ...headerInput, entryCount: 16384, entrySize: 4096 })));
    await expectInvalid(() => decodeGptHeader(encodeGptHeader({ ...headerInput, firstUsableLba: 10n, lastUsableLba: 9n })));
  });
});

describe('GPT entry array codec', () => {
  it('round-trips used entries with their slot index, names trimmed at NUL', () => {
    const got = decodeGptEntries(array, 0, headerInput);
    expect(got).toEqual(entries);
    expect(encodeGptEntries(got, 128)).toEqual(array);
  });

  it('decodes at an offset, with 256-byte entries', () => {
    const a256 = encodeGptEntries(entries, 64, 256);
    const big = Buffer.concat([Buffer.alloc(777, 1), a256, Buffer.alloc(100, 2)]);
    expect(decodeGptEntries(big, 777, { entryCount: 64, entrySize: 256, entriesCrc32: crc32(a256) })).toEqual(entries);
  });

  it('keeps a full 36-unit name and rejects a longer one', async () => {
    const name = 'x'.repeat(36);
    const a = encodeGptEntries([gptEntry(1, 34, 40, name)], 4);
    expect(decodeGptEntries(a, 0, { entryCount: 4, entrySize: 128, entriesCrc32: crc32(a) })[0]?.name).toBe(name);
    await expectInvalid(() => encodeGptEntries([gptEntry(1, 34, 40, name + 'y')], 4));
    await expectInvalid(() => encodeGptEntries([gptEntry(5, 34, 40)], 4));
  });

  it('detects a corrupted array and truncation at every length', async () => {
    const bad = Buffer.from(array); bad[200] = bad[200]! ^ 0x80;
    await rcError(() => decodeGptEntries(bad, 0, headerInput), 'RC_ERR_PT_BAD_CRC');
    for (let len = 0; len < array.length; len += 97) {
      await rcError(() => decodeGptEntries(array.subarray(0, len), 0, headerInput), 'RC_ERR_DECODE_TRUNCATED');
    }
  });

  it('refuses absurd geometry without allocating', async () => {
    await expectInvalid(() => decodeGptEntries(array, 0, { entryCount: 2 ** 31, entrySize: 128, entriesCrc32: 0 }));
    await expectInvalid(() => decodeGptEntries(array, 0, { entryCount: 1, entrySize: 0, entriesCrc32: 0 }));
  });

  it('accepts an empty array (CRC32 of nothing is 0)', () => {
    expect(decodeGptEntries(Buffer.alloc(0), 0, { entryCount: 0, entrySize: 128, entriesCrc32: 0 })).toEqual([]);
  });
});

async function expectInvalid(fn: () => unknown): Promise<void> {
  await rcError(fn, 'RC_ERR_DECODE_INVALID');
}
