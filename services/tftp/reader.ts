// Positional read-ahead for one transfer. The file is read in segments of whole blocks with
// FileHandle.read at an absolute offset (pread: never the whole file, no shared file position),
// so that DATA for an ACK is sent from memory without waiting for the disk, and a retransmission
// (RFC 1350 timeout, RFC 7440 window restart) finds its blocks again. Segments wholly below the
// first unacknowledged block are dropped; at most a few segments per transfer are held.
//
// Blocks are numbered as in TFTP, from 1; block n covers bytes [(n−1)·blksize, n·blksize). A file
// of `size` bytes has floor(size / blksize) + 1 blocks: the last is short, possibly empty, and
// that short block is what tells the client the transfer is over (RFC 1350 §6).
//
// Segments are kept as ready-made DATA datagrams, each block behind its 4-byte header (opcode 3,
// wire block number n mod 65536), so a send is one contiguous buffer: no per-packet allocation
// or gather list, which is most of what a send costs in JavaScript.
import type { FileHandle } from 'node:fs/promises';
import { encodeDataHeader } from './packet.ts';

export class BlockReader {
  readonly blocks: number;
  readonly segmentBlocks: number;
  readonly #file: FileHandle;
  readonly #size: number;
  readonly #blksize: number;
  readonly #segments = new Map<number, Buffer>();
  readonly #loading = new Map<number, Promise<void>>();
  #closed = false;

  /** `readAheadBytes` is rounded to whole blocks, at least `minBlocks` (one window). */
  constructor(file: FileHandle, size: number, blksize: number, readAheadBytes: number, minBlocks: number) {
    this.#file = file;
    this.#size = size;
    this.#blksize = blksize;
    this.blocks = Math.floor(size / blksize) + 1;
    this.segmentBlocks = Math.max(minBlocks, Math.floor(readAheadBytes / blksize), 1);
  }

  #segmentOf(n: number): number {
    return Math.floor((n - 1) / this.segmentBlocks);
  }

  /** The DATA datagram (header + payload) of block n (1..blocks) if in memory; valid until release(). */
  packet(n: number): Buffer | undefined {
    const seg = this.#segments.get(this.#segmentOf(n));
    if (seg === undefined) return undefined;
    const start = ((n - 1) % this.segmentBlocks) * (this.#blksize + 4);
    return seg.subarray(start, Math.min(start + this.#blksize + 4, seg.length));
  }

  /** True when blocks from..to are all in memory. */
  ready(from: number, to: number): boolean {
    for (let s = this.#segmentOf(from); s <= this.#segmentOf(to); s++) if (!this.#segments.has(s)) return false;
    return true;
  }

  /** Reads the segments holding blocks from..to (clamped to the file); concurrent calls share reads. */
  load(from: number, to: number): Promise<void> {
    const last = this.#segmentOf(Math.min(to, this.blocks));
    const reads: Promise<void>[] = [];
    for (let s = this.#segmentOf(Math.max(from, 1)); s <= last; s++) {
      if (this.#segments.has(s)) continue;
      let p = this.#loading.get(s);
      if (p === undefined) {
        p = this.#read(s).finally(() => this.#loading.delete(s));
        this.#loading.set(s, p);
      }
      reads.push(p);
    }
    return Promise.all(reads).then(() => undefined);
  }

  /** Starts reading the segment holding block n unless it is in memory or on its way; never throws. */
  prefetch(n: number): void {
    const s = this.#segmentOf(Math.min(n, this.blocks));
    if (!this.#segments.has(s) && !this.#loading.has(s)) this.load(n, n).catch(() => {});
  }

  async #read(s: number): Promise<void> {
    const offset = s * this.segmentBlocks * this.#blksize;
    const length = Math.max(0, Math.min(this.segmentBlocks * this.#blksize, this.#size - offset));
    const raw = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.#file.read(raw, got, length - got, offset + got);
      if (bytesRead === 0) throw new Error(`file shrank during the transfer (short read at byte ${offset + got})`);
      got += bytesRead;
    }
    // lay the blocks out as datagrams; a segment ending exactly at EOF still owes the empty block
    const first = s * this.segmentBlocks + 1;
    const count = Math.min(this.segmentBlocks, this.blocks - first + 1);
    const out = Buffer.allocUnsafe(length + 4 * count);
    for (let i = 0; i < count; i++) {
      const at = i * (this.#blksize + 4);
      encodeDataHeader(first + i).copy(out, at);
      raw.copy(out, at + 4, i * this.#blksize, Math.min((i + 1) * this.#blksize, length));
    }
    if (!this.#closed) this.#segments.set(s, out);
  }

  /** Forget segments that end before block n: they will not be sent again. */
  release(n: number): void {
    const keepFrom = this.#segmentOf(n);
    for (const s of this.#segments.keys()) if (s < keepFrom) this.#segments.delete(s);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#segments.clear();
    await Promise.allSettled([...this.#loading.values()]);
    await this.#file.close();
  }
}
