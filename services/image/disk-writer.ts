// Writes an image's blocks onto a target disk (block device or file) at their absolute offsets.
// Shared by `image restore` and the multicast receiver: both hand it blocks whose content hash a
// worker has already checked against the signed manifest; the writer checks that the hash it is
// given is the one the manifest wants at that index, so a block can never land at the wrong place.
//
// Target rules: a block device must not be mounted or held (we also open it O_EXCL, which the
// kernel refuses while anything uses it), must be at least the image's disk size and have the
// same logical sector size. A regular file is created (or, when empty, grown) to the disk size;
// an existing shorter file is refused like a small disk (`image fit` makes a smaller variant). On a
// larger target a GPT's backup moves to the end (fitTable) and, with the `grow` option, the last
// partition and its filesystem grow to fill it (growLast).
import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { RackcastError } from '../errors.ts';
import { inspectPath, usersOf, type DeviceInfo } from './device.ts';
import { blockHashes, blockLength, type Manifest } from './manifest.ts';
import { fitGptToDisk, handleIo, type FitResult, type SectorIo } from './partition/fit.ts';
import { growLastPartition, type GrowResult } from './geometry.ts';

export interface DiskWriterOptions {
  discard?: boolean;
  /** on a larger target, grow the last partition and its filesystem to fill it (geometry.ts) */
  grow?: boolean;
}

function gib(n: number): string {
  return `${n} bytes (${(n / 2 ** 30).toFixed(2)} GiB)`;
}

export class DiskWriter {
  readonly target: DeviceInfo;
  readonly manifest: Manifest;
  /** true when the target is a file we just created or grew from empty: holes are already zero */
  readonly fresh: boolean;
  #fh: FileHandle;
  readonly #hashes: (string | null)[];
  readonly #discard: boolean;
  readonly #grow: boolean;
  #closed = false;
  /** set when discarding holes failed and they were zeroed instead (why) */
  discardFallback?: string;

  private constructor(fh: FileHandle, target: DeviceInfo, manifest: Manifest, fresh: boolean, opts: DiskWriterOptions) {
    this.#fh = fh;
    this.target = target;
    this.manifest = manifest;
    this.fresh = fresh;
    this.#discard = opts.discard ?? false;
    this.#grow = opts.grow ?? false;
    this.#hashes = blockHashes(manifest);
  }

  static async #exclusive(path: string): Promise<FileHandle> {
    try {
      return await open(path, constants.O_RDWR | constants.O_EXCL);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EBUSY') throw new RackcastError('RC_ERR_TARGET_MOUNTED', `${path} is in use (the kernel refused exclusive access)`, { path });
      throw e;
    }
  }

  /** Check the target against the image and open it for writing; throws before touching it. */
  static async open(path: string, manifest: Manifest, opts: DiskWriterOptions = {}): Promise<DiskWriter> {
    const info = DiskWriter.check(path, manifest);
    if (info.kind === 'block') return new DiskWriter(await DiskWriter.#exclusive(path), info, manifest, false, opts);
    const fresh = info.kind === 'missing' || info.size === 0;
    const fh = await open(path, info.kind === 'missing' ? 'wx' : 'r+');
    if (fresh) await fh.truncate(manifest.disk.size);
    return new DiskWriter(fh, { ...info, kind: 'file', size: fresh ? manifest.disk.size : info.size }, manifest, fresh, opts);
  }

  /** The refusals, without opening anything (also used for a dry run). */
  static check(path: string, m: Manifest): DeviceInfo {
    const info = inspectPath(path);
    if (info.kind !== 'missing') {
      const users = usersOf(info);
      if (users.length) throw new RackcastError('RC_ERR_TARGET_MOUNTED', `refusing ${path}: ${users.join('; ')}`, { path, users });
    }
    const empty = info.kind === 'missing' || (info.kind === 'file' && info.size === 0);
    if (!empty && info.size < m.disk.size) {
      throw new RackcastError('RC_ERR_TARGET_TOO_SMALL', `${path} holds ${gib(info.size)}, the image needs ${gib(m.disk.size)} (\`rackcast image fit ${m.name} --size ${info.size}\` makes a variant for this disk, if its data fits)`, { path, size: info.size, needed: m.disk.size });
    }
    if (info.kind === 'block' && info.sectorSize !== m.disk.sectorSize) {
      throw new RackcastError('RC_ERR_TARGET_SECTOR_SIZE', `${path} has ${info.sectorSize}-byte logical sectors, the image ${m.disk.sectorSize}-byte`, { path, sectorSize: info.sectorSize, needed: m.disk.sectorSize });
    }
    return info;
  }

  hashAt(index: number): string | null {
    return this.#hashes[index] ?? null;
  }

  /** Write one verified block. `hash` is what the worker computed over `data`. */
  async writeBlock(index: number, data: Uint8Array, hash: string): Promise<void> {
    const want = this.#hashes[index];
    if (want === undefined || want === null || want !== hash || data.length !== blockLength(this.manifest, index)) {
      throw new RackcastError('RC_ERR_CHUNK_CORRUPT', `block ${index} does not belong at this index of image ${this.manifest.name}`, { index, image: this.manifest.name });
    }
    const off = index * this.manifest.blockSize;
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.#fh.write(data, done, data.length - done, off + done);
      done += bytesWritten;
    }
  }

  /** Zero (or discard) every hole. A fresh file needs nothing: its holes read as zero already. */
  async finishHoles(onBytes?: (n: number) => void, alreadyZero?: (block: number) => boolean): Promise<void> {
    if (this.fresh) return;
    const m = this.manifest;
    const ranges: [number, number][] = [];
    this.#hashes.forEach((h, i) => {
      if (h !== null || alreadyZero?.(i)) return;
      const off = i * m.blockSize;
      const len = blockLength(m, i);
      const last = ranges.at(-1);
      if (last && last[0] + last[1] === off) last[1] += len; else ranges.push([off, len]);
    });
    let rest = ranges;
    // blkdiscard (util-linux ≥ 2.36) opens the device O_EXCL itself, which our own exclusive open
    // would refuse ("busy"): every block is written, so sync, let go for the discards (blkdiscard
    // then holds the device), and take it back exclusively afterwards.
    const release = this.#discard && ranges.length > 0 && this.target.kind === 'block';
    if (release) { await this.#fh.sync(); await this.#fh.close(); }
    try {
    if (this.#discard) {
      for (const [k, [off, len]] of ranges.entries()) {
        // short options: util-linux and busybox (the boot environment) both accept them
        const args = this.target.kind === 'block'
          ? ['blkdiscard', ['-o', String(off), '-l', String(len), this.target.path]]
          : ['fallocate', ['-p', '-o', String(off), '-l', String(len), this.target.path]];
        try {
          // blkdiscard needs the device, which we hold O_EXCL; it opens it without O_EXCL itself.
          execFileSync(args[0] as string, args[1] as string[], { stdio: ['ignore', 'ignore', 'pipe'] });
        } catch (e) {
          // a device without discard support (or no blkdiscard): zero the rest instead
          const err = e as { stderr?: Buffer; message: string };
          this.discardFallback = `discard failed (${(err.stderr?.toString().trim() || err.message).split('\n')[0]}): holes zeroed instead`;
          rest = ranges.slice(k);
          break;
        }
        onBytes?.(len);
        rest = ranges.slice(k + 1);
      }
    }
    } finally {
      if (release) this.#fh = await DiskWriter.#exclusive(this.target.path);
    }
    const zero = Buffer.alloc(Math.min(m.blockSize, 8 << 20));
    for (const [off, len] of rest) {
      for (let p = 0; p < len; p += zero.length) {
        const n = Math.min(zero.length, len - p);
        await this.#fh.write(zero, 0, n, off + p);
        onBytes?.(n);
      }
    }
  }

  /**
   * On a target larger than the image's disk, move a GPT's backup to the target's end
   * (partition/fit.ts). Call after every block and hole is written.
   */
  async fitTable(): Promise<FitResult | undefined> {
    if (this.manifest.partitionTable.kind !== 'gpt' || this.target.size <= this.manifest.disk.size) return undefined;
    return await fitGptToDisk(this.#io(), this.manifest.disk.sectorSize, this.target.size);
  }

  /**
   * With the `grow` option, on a target larger than the image's disk: grow the last partition and
   * its filesystem to fill the target (geometry.ts). Call after fitTable().
   */
  async growLast(signal?: AbortSignal): Promise<GrowResult | undefined> {
    if (!this.#grow || this.target.size <= this.manifest.disk.size) return undefined;
    await this.#fh.sync(); // the filesystem tools read the partition through a loop device
    return await growLastPartition(this.#io(), this.target.path, this.manifest.disk.sectorSize, this.target.size, signal);
  }

  /** Sector reads and writes on the open target (partition table work). */
  #io(): SectorIo {
    return handleIo(this.#fh, this.target.path);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try { await this.#fh.sync(); } finally { await this.#fh.close(); }
  }
}
