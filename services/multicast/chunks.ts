// Bitsets for a multicast session (fragments of a chunk, chunks of an image). The chunk table
// itself is services/image/manifest.ts chunkTable().
export { chunkTable, type ChunkEntry } from '../image/manifest.ts';

/** A fixed-size bitset (fragments of a chunk, chunks of an image). */
export class Bits {
  readonly size: number;
  readonly #w: Uint32Array;
  count = 0;

  constructor(size: number) {
    this.size = size;
    this.#w = new Uint32Array(Math.ceil(size / 32));
  }

  has(i: number): boolean {
    return ((this.#w[i >>> 5] as number) >>> (i & 31) & 1) === 1;
  }

  set(i: number): boolean {
    if (i < 0 || i >= this.size || this.has(i)) return false;
    this.#w[i >>> 5] = (this.#w[i >>> 5] as number) | (1 << (i & 31));
    this.count++;
    return true;
  }

  clear(i: number): boolean {
    if (i < 0 || i >= this.size || !this.has(i)) return false;
    this.#w[i >>> 5] = (this.#w[i >>> 5] as number) & ~(1 << (i & 31));
    this.count--;
    return true;
  }

  setAll(): void {
    for (let i = 0; i < this.size; i++) this.set(i);
  }

  full(): boolean {
    return this.count === this.size;
  }

  /** Ranges [first, count] of clear bits, in order, at most `max` of them. */
  gaps(max: number): [number, number][] {
    const out: [number, number][] = [];
    let i = 0;
    while (i < this.size && out.length < max) {
      if (this.has(i)) { i++; continue; }
      const s = i;
      while (i < this.size && !this.has(i)) i++;
      out.push([s, i - s]);
    }
    return out;
  }
}
