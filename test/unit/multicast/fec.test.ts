import { describe, it, expect } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { FEC_K, FEC_MAX_PARITY, blockRange, codedBlocks, decodeBlock, encodeParity, gfInv, gfMul, invert } from '../../../services/multicast/fec.ts';

describe('GF(256)', () => {
  it('every non-zero element times its inverse is 1, and multiplication distributes over addition', () => {
    for (let a = 1; a < 256; a++) expect(gfMul(a, gfInv(a))).toBe(1);
    for (const [a, b, c] of [[3, 7, 200], [255, 254, 1], [17, 0, 99]] as const) expect(gfMul(a, b ^ c)).toBe(gfMul(a, b) ^ gfMul(a, c));
  });
  it('inverts a matrix and refuses a singular one', () => {
    const A = [[1, 2], [3, 4]];
    const B = invert(A);
    const prod = (r: number, c: number): number => gfMul(A[r]![0]!, B[0]![c]!) ^ gfMul(A[r]![1]!, B[1]![c]!);
    expect([[prod(0, 0), prod(0, 1)], [prod(1, 0), prod(1, 1)]]).toEqual([[1, 0], [0, 1]]);
    expect(() => invert([[2, 4], [1, 2]])).toThrow(/singular/);
  });
});

describe('FEC blocks', () => {
  it('leave the last fragment out and split the rest into blocks of FEC_K', () => {
    expect(codedBlocks(1)).toBe(0);
    expect(codedBlocks(FEC_K + 1)).toBe(1);
    expect(codedBlocks(FEC_K + 2)).toBe(2);
    expect(blockRange(1, FEC_K + 2)).toEqual([FEC_K, FEC_K + 1]);
    expect(blockRange(0, 10)).toEqual([0, 9]);
  });

  it.each([
    ['one of a full block', FEC_K, [5]],
    ['every fragment of a small block', 7, [0, 1, 2, 3, 4, 5, 6]],
    ['scattered losses', FEC_K, [0, 9, 10, 33, 63]],
    ['the first and the last', 40, [0, 39]],
  ])('rebuild %s from as many parities, whichever parities they are', (_name, k, lost) => {
    const size = 1448;
    const src = Array.from({ length: k }, () => new Uint8Array(randomBytes(size)));
    const ids = [3, 0, FEC_MAX_PARITY - 1, 17, 100, 42, 8].slice(0, lost.length);
    const parities = ids.map((j) => ({ j, data: encodeParity(j, src, new Uint8Array(size)) }));
    const have = src.map((s, i) => (lost.includes(i) ? undefined : s));
    const got = decodeBlock(size, have, parities);
    expect(got.map((g) => g.index)).toEqual(lost);
    for (const g of got) expect(Buffer.from(g.data).equals(Buffer.from(src[g.index]!))).toBe(true);
  });

  it('with too few parities it refuses instead of guessing', () => {
    const src = Array.from({ length: 4 }, () => new Uint8Array(randomBytes(16)));
    const p = [{ j: 0, data: encodeParity(0, src, new Uint8Array(16)) }];
    expect(() => decodeBlock(16, [undefined, src[1], undefined, src[3]], p)).toThrow(/2 fragments missing, 1 parities/);
  });

  it('a parity with a flipped byte rebuilds a wrong fragment (the chunk hash check then rejects the chunk)', () => {
    const src = Array.from({ length: 8 }, () => new Uint8Array(randomBytes(32)));
    const data = encodeParity(5, src, new Uint8Array(32));
    data[3] = (data[3] as number) ^ 0xff;
    const [g] = decodeBlock(32, src.map((s, i) => (i === 2 ? undefined : s)), [{ j: 5, data }]);
    expect(Buffer.from(g!.data).equals(Buffer.from(src[2]!))).toBe(false);
  });
});
