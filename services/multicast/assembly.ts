// Reassembly of one chunk's zstd frame from DATA fragments. The first fragment seen fixes the
// fragment count and size; later fragments that disagree are dropped (a forged or foreign
// fragment can delay a chunk, never corrupt it: the frame is hash-checked after decompression).
// Each fragment is copied into the frame buffer as it arrives (count × size bytes, taken at the
// first fragment from a pool of reused buffers), so the datagram it came in dies young and a chunk
// allocates nothing: see BufferPool. The receiver bounds how many bytes its assemblies may reserve.
// PARITY datagrams (fec.ts) are kept per FEC block while it lacks fragments; once a block has as
// many parities as it lacks fragments, they are rebuilt into the frame.
import { FEC_K, blockRange, decodeBlock } from './fec.ts';

export class Assembly {
  readonly index: number;
  readonly count: number;
  readonly fragSize: number;
  readonly #pool: BufferPool | undefined;
  #frame: Uint8Array | undefined;
  #got: Uint8Array; // 1 per fragment present
  #have = 0;
  #parity: Map<number, { j: number; data: Uint8Array }[]> | undefined; // per FEC block, not used yet
  frameLength = -1;
  /** fragments rebuilt from parities */
  rebuilt = 0;

  /** Without a pool (or if the pool's buffers are too small) the frame gets a buffer of its own. */
  constructor(index: number, count: number, fragSize: number, pool?: BufferPool) {
    this.index = index;
    this.count = count;
    this.fragSize = fragSize;
    this.#got = new Uint8Array(count);
    this.#pool = pool && pool.size >= count * fragSize ? pool : undefined;
  }

  /** Bytes this assembly holds for its frame (count × fragment size). */
  get reserved(): number {
    return this.count * this.fragSize;
  }

  /** Fragments that did not fit (another count or size): a forged first fragment shows up here. */
  mismatches = 0;

  /**
   * Add fragment k, whose payload is src[start, start + length): 'dup' for one already here,
   * 'mismatch' for one that does not fit. The bytes are copied; src may be reused afterwards.
   */
  add(k: number, count: number, fragSize: number, src: Uint8Array, start = 0, length = src.length - start): 'ok' | 'dup' | 'mismatch' {
    const last = k === count - 1;
    if (count !== this.count || fragSize !== this.fragSize || k >= count || (last ? length > fragSize : length !== fragSize)) {
      this.mismatches++;
      return 'mismatch';
    }
    if (this.#got[k]) return 'dup';
    // not zero-filled: every byte of the frame is written before it is used (complete())
    this.#frame ??= this.#pool ? new Uint8Array(this.#pool.take(), 0, this.reserved) : Buffer.allocUnsafeSlow(this.reserved);
    copyBytes.call(src, this.#frame, k * fragSize, start, start + length);
    this.#got[k] = 1;
    this.#have++;
    if (last) this.frameLength = k * fragSize + length;
    else if (this.#parity?.size) this.#decode(Math.floor(k / FEC_K));
    return 'ok';
  }

  /**
   * Add parity j of FEC block b (payload src[start, start + length)): kept while the block lacks
   * fragments, used as soon as it has as many parities as missing fragments. 'useless' when the
   * block lacks nothing, or nothing of the chunk is here yet (it is NACKed whole then).
   */
  addParity(b: number, j: number, count: number, fragSize: number, src: Uint8Array, start = 0, length = src.length - start): 'ok' | 'dup' | 'mismatch' | 'useless' {
    const [first, end] = blockRange(b, count);
    if (count !== this.count || fragSize !== this.fragSize || length !== fragSize || first >= end) {
      this.mismatches++;
      return 'mismatch';
    }
    if (!this.#frame) return 'useless';
    let missing = 0;
    for (let k = first; k < end; k++) if (!this.#got[k]) missing++;
    if (missing === 0) return 'useless';
    this.#parity ??= new Map();
    const list = this.#parity.get(b) ?? [];
    if (list.some((p) => p.j === j)) return 'dup';
    list.push({ j, data: Uint8Array.from(src.subarray(start, start + length)) });
    this.#parity.set(b, list);
    this.#decode(b);
    return 'ok';
  }

  /** Rebuild block b's missing fragments if enough parities are here. */
  #decode(b: number): void {
    const list = this.#parity?.get(b);
    const frame = this.#frame;
    if (!list || !frame) return;
    const [first, end] = blockRange(b, this.count);
    let missing = 0;
    for (let k = first; k < end; k++) if (!this.#got[k]) missing++;
    if (missing > 0 && list.length < missing) return; // (called for every fragment added to the block meanwhile)
    this.#parity?.delete(b);
    const fs = this.fragSize;
    const sources: (Uint8Array | undefined)[] = [];
    for (let k = first; k < end; k++) sources.push(this.#got[k] ? frame.subarray(k * fs, (k + 1) * fs) : undefined);
    for (const { index, data } of decodeBlock(fs, sources, list)) {
      frame.set(data, (first + index) * fs);
      this.#got[first + index] = 1;
      this.#have++;
      this.rebuilt++;
    }
  }

  /**
   * The whole frame: its first frameLength bytes of a buffer the caller now owns (call when
   * complete); a pool's shared buffer goes back with pool.give() once the frame has been used.
   */
  assemble(): ArrayBuffer | SharedArrayBuffer {
    const f = this.#frame as Uint8Array;
    this.#frame = undefined;
    return f.buffer;
  }

  /** An assembly given up (restarted, or its chunk came another way): its buffer goes back. */
  discard(): void {
    if (this.#frame && this.#pool) this.#pool.give(this.#frame.buffer as SharedArrayBuffer);
    this.#frame = undefined;
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
      if (this.#got[i]) { i++; continue; }
      const s = i;
      while (i < this.count && !this.#got[i]) i++;
      out.push([s, i - s]);
    }
    return out;
  }
}

/** Buffer#copy, applied to any Uint8Array source (a datagram Buffer or a test's view): one memcpy. */
const copyBytes = Buffer.prototype.copy as (this: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number) => number;

/**
 * Reusable SharedArrayBuffers of one size (frames, blocks), handed to the chunk workers by
 * reference instead of being transferred, so receiving a chunk allocates nothing. Every new or
 * transferred-in ArrayBuffer counts as external memory to V8, and ~10 MB of them per chunk made a
 * receiver run a full GC several times a second (docs/decisions.md, "Multicast vs udpcast").
 * Keeps at most `keep` free buffers; more in use at once are allocated and left to the GC.
 */
export class BufferPool {
  readonly size: number;
  readonly #keep: number;
  readonly #free: SharedArrayBuffer[] = [];

  constructor(size: number, keep = 8) {
    this.size = size;
    this.#keep = keep;
  }

  take(): SharedArrayBuffer {
    return this.#free.pop() ?? new SharedArrayBuffer(this.size);
  }

  give(b: SharedArrayBuffer): void {
    if (b.byteLength === this.size && this.#free.length < this.#keep && !this.#free.includes(b)) this.#free.push(b);
  }
}
