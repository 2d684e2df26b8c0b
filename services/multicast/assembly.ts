// Reassembly of one chunk's zstd frame from DATA fragments. The first fragment seen fixes the
// fragment count and size; later fragments that disagree are dropped (a forged or foreign
// fragment can delay a chunk, never corrupt it: the frame is hash-checked after decompression).
// Fragments are kept as they come and copied into one frame buffer only when all are there, so
// a flood of forged first fragments costs a small array each, not a frame-sized allocation.
export class Assembly {
  readonly index: number;
  readonly count: number;
  readonly fragSize: number;
  #frags: (Buffer | undefined)[];
  #have = 0;
  frameLength = -1;

  constructor(index: number, count: number, fragSize: number) {
    this.index = index;
    this.count = count;
    this.fragSize = fragSize;
    this.#frags = new Array<Buffer | undefined>(count);
  }

  /** Fragments that did not fit (another count or size): a forged first fragment shows up here. */
  mismatches = 0;

  /** Add a fragment: 'dup' for one already here, 'mismatch' for one that does not fit. */
  add(k: number, count: number, fragSize: number, payload: Uint8Array): 'ok' | 'dup' | 'mismatch' {
    const last = k === count - 1;
    if (count !== this.count || fragSize !== this.fragSize || k >= count || (last ? payload.length > fragSize : payload.length !== fragSize)) {
      this.mismatches++;
      return 'mismatch';
    }
    if (this.#frags[k]) return 'dup';
    // node:dgram hands every datagram its own buffer, so keeping a view of it costs no copy
    this.#frags[k] = payload as Buffer;
    this.#have++;
    if (last) this.frameLength = k * fragSize + payload.length;
    return 'ok';
  }

  /** The whole frame in one transferable buffer (call when complete). */
  assemble(): ArrayBuffer {
    const out = new ArrayBuffer(this.frameLength);
    const u = new Uint8Array(out);
    this.#frags.forEach((f, k) => { if (f) u.set(f, k * this.fragSize); });
    this.#frags = [];
    return out;
  }

  complete(): boolean {
    return this.#have === this.count && this.frameLength >= 0;
  }

  get have(): number {
    return this.#have;
  }

  /** Missing fragment ranges [first, count], at most `max`. */
  gaps(max: number): [number, number][] {
    const out: [number, number][] = [];
    let i = 0;
    while (i < this.count && out.length < max) {
      if (this.#frags[i]) { i++; continue; }
      const s = i;
      while (i < this.count && !this.#frags[i]) i++;
      out.push([s, i - s]);
    }
    return out;
  }
}
