// Erasure-coded repairs (docs/wire-protocol.md, "PARITY"). With N receivers each losing ~1% of
// the datagrams independently, plain repairs must resend the union of their losses (~N%); a
// parity datagram instead repairs a different loss at every receiver. A chunk's fragments, all
// but its last (which may be short and is always repaired plainly), form FEC blocks of FEC_K
// source fragments; parity j of a block is Σ coefficient(j, i)·fragment_i over GF(2^8), a
// systematic Cauchy Reed–Solomon code: any e parities rebuild any e missing fragments of the
// block. So for a block the sender sends as many parities as the receiver that lacks the most
// fragments of it lacks, not one fragment per loss at any receiver (the NORM protocol, RFC 5740,
// repairs the same way). A forged parity rebuilds garbage that the chunk's hash check rejects.

/** Source fragments per FEC block. */
export const FEC_K = 64;
/** Parity ids per block: j ∈ [0, FEC_MAX_PARITY), evaluation points FEC_K + j ∈ [64, 256). */
export const FEC_MAX_PARITY = 256 - FEC_K;
/** Blocks a chunk may have coded (the block number travels in the fragment index's high byte). */
export const FEC_MAX_BLOCKS = 256;

const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d; // x^8 + x^4 + x^3 + x^2 + 1
  }
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255] as number;
}

export function gfMul(a: number, b: number): number {
  return a === 0 || b === 0 ? 0 : EXP[(LOG[a] as number) + (LOG[b] as number)] as number;
}

export function gfInv(a: number): number {
  if (a === 0) throw new Error('GF(256): zero has no inverse'); // a caller's bug, not bad input
  return EXP[255 - (LOG[a] as number)] as number;
}

/** MUL[c << 8 | v] = c·v: one table lookup per byte (64 KiB, built on first use). */
let MUL: Uint8Array | undefined;
function mulTable(): Uint8Array {
  if (!MUL) {
    MUL = new Uint8Array(65536);
    for (let c = 1; c < 256; c++) for (let v = 1; v < 256; v++) MUL[(c << 8) | v] = gfMul(c, v);
  }
  return MUL;
}

/** The Cauchy matrix entry of parity j and block-relative source i: 1 / (x_j + y_i), x_j = FEC_K + j, y_i = i. */
export function coefficient(j: number, i: number): number {
  return gfInv((FEC_K + j) ^ i);
}

/** A PARITY datagram's fragment index: block · 256 + parity id (docs/wire-protocol.md). */
export function parityFragIndex(block: number, j: number): number {
  return block * 256 + j;
}

/** [block, parity id] of a PARITY datagram's fragment index. */
export function parityOf(fragIndex: number): [number, number] {
  return [fragIndex >>> 8, fragIndex & 0xff];
}

/** Coded blocks of a chunk of `count` fragments (its last fragment is never coded). */
export function codedBlocks(count: number): number {
  return Math.min(FEC_MAX_BLOCKS, Math.ceil(Math.max(0, count - 1) / FEC_K));
}

/** Fragment indexes [first, end) of block b of a chunk of `count` fragments. */
export function blockRange(b: number, count: number): [number, number] {
  return [b * FEC_K, Math.min((b + 1) * FEC_K, count - 1)];
}

/** dst ^= c·src over the first dst.length bytes. */
function addScaled(dst: Uint8Array, src: Uint8Array, c: number): void {
  const n = dst.length;
  if (c === 1) { for (let x = 0; x < n; x++) dst[x] = (dst[x] as number) ^ (src[x] as number); return; }
  const T = mulTable();
  const base = c << 8;
  for (let x = 0; x < n; x++) dst[x] = (dst[x] as number) ^ (T[base | (src[x] as number)] as number);
}

/** Parity j of a block whose source fragments are `sources` (each out.length bytes), into out. */
export function encodeParity(j: number, sources: Uint8Array[], out: Uint8Array): Uint8Array {
  if (j < 0 || j >= FEC_MAX_PARITY || sources.length > FEC_K) throw new Error(`parity ${j} of a block of ${sources.length}`); // a caller's bug, not bad input
  out.fill(0);
  for (let i = 0; i < sources.length; i++) addScaled(out, sources[i] as Uint8Array, coefficient(j, i));
  return out;
}

/**
 * Rebuild the missing source fragments of a block: `sources` holds the block's fragments
 * (block-relative; undefined = missing, each present one `size` bytes), `parities` at least as many
 * parities as are missing. Returns the rebuilt fragments, in the order of the missing indexes.
 */
export function decodeBlock(size: number, sources: (Uint8Array | undefined)[], parities: { j: number; data: Uint8Array }[]): { index: number; data: Uint8Array }[] {
  const missing: number[] = [];
  for (let i = 0; i < sources.length; i++) if (!sources[i]) missing.push(i);
  const e = missing.length;
  if (e === 0) return [];
  if (parities.length < e) throw new Error(`${e} fragments missing, ${parities.length} parities`); // a caller's bug, not bad input
  const used = parities.slice(0, e);
  // each parity less the present fragments' share leaves Σ over missing m of coefficient(j, m)·x_m
  const rhs = used.map(({ j, data }) => {
    const r = Uint8Array.from(data.subarray(0, size));
    for (let i = 0; i < sources.length; i++) {
      const s = sources[i];
      if (s) addScaled(r, s, coefficient(j, i));
    }
    return r;
  });
  // A[r][c] = coefficient(j_r, missing_c): a Cauchy submatrix, always invertible
  const B = invert(used.map(({ j }) => missing.map((m) => coefficient(j, m))));
  return missing.map((m, c) => {
    const x = new Uint8Array(size);
    for (let r = 0; r < e; r++) addScaled(x, rhs[r] as Uint8Array, (B[c] as number[])[r] as number);
    return { index: m, data: x };
  });
}

/** Gauss–Jordan inverse over GF(256). */
export function invert(A: number[][]): number[][] {
  const n = A.length;
  const M = A.map((row, r) => [...row, ...Array.from({ length: n }, (_, c) => (c === r ? 1 : 0))]);
  for (let col = 0; col < n; col++) {
    let piv = col;
    while (piv < n && (M[piv] as number[])[col] === 0) piv++;
    if (piv === n) throw new Error('GF(256): singular matrix'); // a caller's bug, not bad input
    [M[col], M[piv]] = [M[piv] as number[], M[col] as number[]];
    const row = M[col] as number[];
    const inv = gfInv(row[col] as number);
    for (let k = 0; k < 2 * n; k++) row[k] = gfMul(row[k] as number, inv);
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const other = M[r] as number[];
      const f = other[col] as number;
      if (f === 0) continue;
      for (let k = 0; k < 2 * n; k++) other[k] = (other[k] as number) ^ gfMul(f, row[k] as number);
    }
  }
  return M.map((row) => row.slice(n));
}
