// One place that talks to the zstd library. Each stored block is one independent zstd frame.
// zstd-napi was measured faster than node:zlib's built-in zstd on 1 MiB blocks (docs/decisions.md,
// scripts/bench/zstd.ts); its low-level contexts also let us compress and decompress into buffers we
// own, so a hostile frame that claims a huge content size can never make us allocate it.
import { createRequire } from 'node:module';
import { RackcastError } from '../errors.ts';

interface Ctx {
  compress(dst: Uint8Array, src: Uint8Array, level: number): number;
  decompress(dst: Uint8Array, src: Uint8Array): number;
}
interface Binding {
  CCtx: new () => Ctx;
  DCtx: new () => Ctx;
  compressBound(size: number): number;
  getFrameContentSize(frame: Uint8Array): number | null;
  versionString(): string;
}

const require = createRequire(import.meta.url);
const binding = require('zstd-napi/binding') as Binding;

export const ZSTD_VERSION = binding.versionString();
export const DEFAULT_LEVEL = 3;

export function compressBound(size: number): number {
  return binding.compressBound(size);
}

function describe(what: Record<string, unknown>): string {
  const chunk = typeof what.chunk === 'string' ? `chunk ${what.chunk}` : 'zstd frame';
  return typeof what.image === 'string' ? `${chunk} of image ${what.image}` : chunk;
}

/** A compressor/decompressor pair owned by one thread; contexts are reused across blocks. */
export class ZstdCodec {
  readonly level: number;
  #c = new binding.CCtx();
  #d = new binding.DCtx();

  constructor(level = DEFAULT_LEVEL) {
    this.level = level;
  }

  /** Compress src into dst (at least compressBound(src.length) long); returns bytes written. */
  compressInto(dst: Uint8Array, src: Uint8Array): number {
    return this.#c.compress(dst, src, this.level);
  }

  compress(src: Uint8Array): Buffer {
    const dst = Buffer.allocUnsafe(compressBound(src.length));
    return dst.subarray(0, this.compressInto(dst, src));
  }

  /**
   * Decompress one frame into dst, which must be exactly the expected content length. A frame
   * whose declared or actual content size differs is corrupt for our purposes.
   */
  decompressInto(dst: Uint8Array, frame: Uint8Array, what: Record<string, unknown> = {}): void {
    let n: number;
    try {
      const declared = binding.getFrameContentSize(frame);
      if (declared !== null && declared !== dst.length) throw new Error(`frame declares ${declared} bytes`);
      n = this.#d.decompress(dst, frame);
    } catch (e) {
      throw new RackcastError('RC_ERR_CHUNK_CORRUPT', `${describe(what)} does not decompress (${(e as Error).message})`, what);
    }
    if (n !== dst.length) {
      throw new RackcastError('RC_ERR_CHUNK_CORRUPT', `${describe(what)} holds ${n} bytes, expected ${dst.length}`, what);
    }
  }
}
