// Bounded reads inside one partition for the filesystem allocation readers. Every read is checked
// against the partition's size; a read past it, a short read or a failing read becomes a
// FsRefusal, which allocationFor turns into the "raw" policy with the message as the reason.
// A small window cache makes the many small reads of a bitmap walk (group descriptors, bitmaps
// next to each other with flex_bg) cost one large read each.

export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/** "This filesystem cannot be read safely": the reason becomes the allocation's reason. */
export class FsRefusal extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'FsRefusal';
  }
}

export function refuse(reason: string): never {
  throw new FsRefusal(reason);
}

/** Reads smaller than this fetch this much (aligned), so neighbours come from memory. */
export const WINDOW = 64 * 1024;

export class PartReader {
  readonly start: number;
  readonly size: number;
  #read: ReadAt;
  #winOffset = -1;
  #win: Buffer = Buffer.alloc(0);
  /** bytes actually requested from the device (for tests and the benchmark) */
  bytesRead = 0;

  constructor(read: ReadAt, start: number, size: number) {
    this.#read = read;
    this.start = start;
    this.size = size;
  }

  async #fetch(offset: number, length: number): Promise<Buffer> {
    let b: unknown;
    try {
      b = await this.#read(this.start + offset, length);
    } catch (e) {
      refuse(`read of ${length} bytes at partition offset ${offset} failed: ${(e as Error).message}`);
    }
    if (!Buffer.isBuffer(b)) refuse(`read at partition offset ${offset} returned no data`);
    this.bytesRead += b.length;
    if (b.length < length) refuse(`short read at partition offset ${offset}: ${b.length} of ${length} bytes`);
    return b.length > length ? b.subarray(0, length) : b;
  }

  /**
   * `length` bytes at partition offset `offset`, which must lie inside the partition. The result
   * may share memory with the cache: copy it before keeping it across another read.
   */
  async at(offset: number, length: number, what: string): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      refuse(`${what} (${length} bytes at offset ${offset}) lies outside the partition (${this.size} bytes)`);
    }
    if (length === 0) return Buffer.alloc(0);
    if (this.#winOffset >= 0 && offset >= this.#winOffset && offset + length <= this.#winOffset + this.#win.length) {
      return this.#win.subarray(offset - this.#winOffset, offset - this.#winOffset + length);
    }
    if (length > WINDOW / 2) return this.#fetch(offset, length); // large reads are not cached
    const wStart = offset - (offset % 4096);
    const wLen = Math.min(WINDOW, this.size - wStart);
    this.#win = await this.#fetch(wStart, wLen);
    this.#winOffset = wStart;
    return this.#win.subarray(offset - wStart, offset - wStart + length);
  }
}
