// Seeded pseudo-random numbers for tests, so a failing random case can be replayed exactly.

/** mulberry32: tiny seeded PRNG returning floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` pseudo-random bytes from a seed (same seed, same bytes). */
export function seededBytes(seed: number, n: number): Buffer {
  const next = prng(seed);
  const b = Buffer.allocUnsafe(n);
  let i = 0;
  for (; i + 4 <= n; i += 4) b.writeUInt32LE(Math.floor(next() * 4294967296), i);
  for (; i < n; i++) b[i] = Math.floor(next() * 256);
  return b;
}
