// Byte ranges and bitmap runs: the small shared vocabulary of the filesystem allocation readers.
// A range is [start, end) in bytes (end exclusive). Lists handed out are sorted, disjoint and
// merged (no two ranges touch).

export type Range = [number, number];

/**
 * Collects ranges. Appending in ascending order (what every bitmap walk does) merges in place in
 * O(1); anything else is fixed by `done()`, which sorts and merges.
 */
export class RangeBuilder {
  #r: Range[] = [];
  #sorted = true;

  add(start: number, end: number): void {
    if (!(end > start)) return;
    const last = this.#r[this.#r.length - 1];
    if (last !== undefined) {
      if (start >= last[0] && start <= last[1]) { if (end > last[1]) last[1] = end; return; }
      if (start < last[0]) this.#sorted = false;
    }
    this.#r.push([start, end]);
  }

  get length(): number { return this.#r.length; }

  done(): Range[] {
    return this.#sorted ? this.#r : normalize(this.#r);
  }
}

/** Sorted, merged copy of any list of ranges (empty and inverted ranges dropped). */
export function normalize(ranges: readonly Range[]): Range[] {
  const s = ranges.filter(([a, b]) => b > a).map(([a, b]): Range => [a, b]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  const out: Range[] = [];
  for (const [a, b] of s) {
    const last = out[out.length - 1];
    if (last !== undefined && a <= last[1]) { if (b > last[1]) last[1] = b; } else out.push([a, b]);
  }
  return out;
}

export function totalBytes(ranges: readonly Range[]): number {
  let n = 0;
  for (const [a, b] of ranges) n += b - a;
  return n;
}

/** Ranges of `a` not covered by `b` (both sorted and merged). */
export function subtract(a: readonly Range[], b: readonly Range[]): Range[] {
  const out: Range[] = [];
  let j = 0;
  for (const [s0, e] of a) {
    let s = s0;
    while (j < b.length && (b[j] as Range)[1] <= s) j++;
    let k = j;
    while (s < e && k < b.length && (b[k] as Range)[0] < e) {
      const [bs, be] = b[k] as Range;
      if (bs > s) out.push([s, bs]);
      s = Math.max(s, be);
      k++;
    }
    if (s < e) out.push([s, e]);
  }
  return out;
}

/**
 * Ranges clipped to [lo, hi). `ranges` must be sorted and disjoint (as normalize returns them):
 * a binary search finds the first one, so capture can ask block by block of a disk with many
 * thousands of ranges without walking them all each time.
 */
export function clip(ranges: readonly Range[], lo: number, hi: number): Range[] {
  let l = 0;
  let h = ranges.length;
  while (l < h) { // first range whose end is past lo
    const mid = (l + h) >>> 1;
    if ((ranges[mid] as Range)[1] <= lo) l = mid + 1; else h = mid;
  }
  const out: Range[] = [];
  for (let k = l; k < ranges.length; k++) {
    const [a, b] = ranges[k] as Range;
    if (a >= hi) break;
    const s = Math.max(a, lo);
    const e = Math.min(b, hi);
    if (e > s) out.push([s, e]);
  }
  return out;
}

/**
 * Calls `emit(first, endExclusive)` for every run of set bits among bits [0, nbits) of `buf`
 * (least significant bit first in each byte, the order ext2/3/4 and NTFS bitmaps use), with bit
 * numbers offset by `base`. Whole 0x00 / 0xff bytes are skipped without looking at their bits.
 * Returns the number of set bits.
 */
export function bitRuns(buf: Uint8Array, nbits: number, base: number, emit: (first: number, end: number) => void): number {
  const n = Math.min(nbits, buf.length * 8);
  let count = 0;
  let runStart = -1;
  let i = 0;
  while (i < n) {
    if ((i & 7) === 0 && i + 8 <= n) {
      const byte = buf[i >> 3] as number;
      if (byte === 0) {
        if (runStart >= 0) { emit(base + runStart, base + i); runStart = -1; }
        i += 8;
        continue;
      }
      if (byte === 0xff) {
        if (runStart < 0) runStart = i;
        count += 8;
        i += 8;
        continue;
      }
    }
    const set = (((buf[i >> 3] as number) >> (i & 7)) & 1) === 1;
    if (set) { count++; if (runStart < 0) runStart = i; } else if (runStart >= 0) { emit(base + runStart, base + i); runStart = -1; }
    i++;
  }
  if (runStart >= 0) emit(base + runStart, base + n);
  return count;
}
