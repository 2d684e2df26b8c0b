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
// or gather list, which is most of what a send costs in JavaScript. The file is read (readv)
// straight into the payload slots between the headers: one buffer per segment, no copy.
import type { FileHandle } from 'node:fs/promises';
import { encodeDataHeader } from './packet.ts';

export class BlockReader {
  readonly blocks: number;
  readonly segmentBlocks: number;
  readonly #file: FileHandle;
  readonly #size: number;
  readonly #blksize: number;
  readonly #segments = new Map<number, Buffer[]>(); // segment → its DATA datagrams, in block order
  #low = 0; // segments below this one are released and never kept again
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
    return this.#segments.get(this.#segmentOf(n))?.[(n - 1) % this.segmentBlocks];
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
    // a segment ending exactly at EOF still owes the empty block
    const first = s * this.segmentBlocks + 1;
    const count = Math.min(this.segmentBlocks, this.blocks - first + 1);
    const offset = (first - 1) * this.#blksize;
    const length = Math.max(0, Math.min(count * this.#blksize, this.#size - offset));
    const out = Buffer.allocUnsafe(length + 4 * count);
    const packets: Buffer[] = [];
    const payloads: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const at = i * (this.#blksize + 4);
      const len = Math.min(this.#blksize, length - i * this.#blksize);
      encodeDataHeader(first + i, out, at);
      packets.push(out.subarray(at, at + 4 + len));
      payloads.push(out.subarray(at + 4, at + 4 + len));
    }
    for (let got = 0; got < length;) {
      const i = Math.floor(got / this.#blksize); // resume a short read where it stopped
      const rest = [payloads[i]!.subarray(got - i * this.#blksize), ...payloads.slice(i + 1)];
      const { bytesRead } = await this.#file.readv(rest, offset + got);
      if (bytesRead === 0) throw new Error(`file shrank during the transfer (short read at byte ${offset + got})`);
      got += bytesRead;
    }
    if (!this.#closed && s >= this.#low) this.#segments.set(s, packets);
  }

  /** Forget segments that end before block n: they will not be sent again. */
  release(n: number): void {
    const keepFrom = this.#segmentOf(n);
    if (keepFrom <= this.#low) return;
    this.#low = keepFrom;
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
