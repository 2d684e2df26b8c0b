// The single-file export format (docs/image-format.md): one image with its chunks, streamable in
// both directions (written and read strictly front to back, so `-` works for stdout/stdin).
// Integers are big-endian.
//
//   header (32 bytes)
//   off  len  field
//   0    8    magic "RCIMGEX1"
//   8    4    format version (1)
//   12   4    flags (0; readers refuse unknown bits)
//   16   8    manifest length M (≤ MAX_MANIFEST_BYTES)
//   24   4    signature-file length S (≤ 64 KiB)
//   28   4    chunk count C
//   32   M    manifest bytes, exactly as signed
//   32+M S    signature file (JSON)
//   chunk record, C times (44-byte head + frame)
//   0    4    magic "RCCK"
//   4    32   SHA-256 of the uncompressed content (raw)
//   36   4    uncompressed length
//   40   4    frame length L (≤ compressBound(block size))
//   44   L    one zstd frame
//   trailer (40 bytes)
//   0    4    magic "RCND"
//   4    4    chunk count C again
//   8    32   SHA-256 of every byte before the trailer
import { RackcastError } from '../errors.ts';

export const EXPORT_MAGIC = Buffer.from('RCIMGEX1', 'ascii');
export const EXPORT_VERSION = 1;
export const HEADER_LENGTH = 32;
export const CHUNK_HEAD_LENGTH = 44;
export const TRAILER_LENGTH = 40;
export const MAX_SIG_BYTES = 64 * 1024;
const CHUNK_MAGIC = 0x5243434b; // "RCCK"
const END_MAGIC = 0x52434e44; // "RCND"

export interface ExportHeader { manifestLength: number; sigLength: number; chunkCount: number }
export interface ChunkHead { hash: string; length: number; frameLength: number }
export interface Trailer { chunkCount: number; digest: Buffer }

function need(buf: Uint8Array, offset: number, n: number, what: string): void {
  if (offset < 0 || buf.length - offset < n) {
    throw new RackcastError('RC_ERR_DECODE_TRUNCATED', `export file: ${what} needs ${n} bytes at offset ${offset}`, { offset, what });
  }
}
function invalid(msg: string, offset: number): never {
  throw new RackcastError('RC_ERR_EXPORT_INVALID', `export file: ${msg}`, { offset });
}

export function encodeHeader(h: ExportHeader): Buffer {
  const b = Buffer.alloc(HEADER_LENGTH);
  EXPORT_MAGIC.copy(b, 0);
  b.writeUInt32BE(EXPORT_VERSION, 8);
  b.writeUInt32BE(0, 12);
  b.writeBigUInt64BE(BigInt(h.manifestLength), 16);
  b.writeUInt32BE(h.sigLength, 24);
  b.writeUInt32BE(h.chunkCount, 28);
  return b;
}

export function decodeHeader(buf: Uint8Array, offset = 0, maxManifest: number): { value: ExportHeader; bytes: number } {
  need(buf, offset, HEADER_LENGTH, 'header');
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  if (!b.subarray(offset, offset + 8).equals(EXPORT_MAGIC)) invalid('not a rackcast export (bad magic)', offset);
  const version = b.readUInt32BE(offset + 8);
  if (version !== EXPORT_VERSION) invalid(`unsupported version ${version}`, offset + 8);
  if (b.readUInt32BE(offset + 12) !== 0) invalid('unknown flags set', offset + 12);
  const m = b.readBigUInt64BE(offset + 16);
  if (m === 0n || m > BigInt(maxManifest)) invalid(`manifest length ${m} out of range`, offset + 16);
  const sigLength = b.readUInt32BE(offset + 24);
  if (sigLength === 0 || sigLength > MAX_SIG_BYTES) invalid(`signature length ${sigLength} out of range`, offset + 24);
  return { value: { manifestLength: Number(m), sigLength, chunkCount: b.readUInt32BE(offset + 28) }, bytes: HEADER_LENGTH };
}

export function encodeChunkHead(h: ChunkHead): Buffer {
  const b = Buffer.alloc(CHUNK_HEAD_LENGTH);
  b.writeUInt32BE(CHUNK_MAGIC, 0);
  Buffer.from(h.hash, 'hex').copy(b, 4);
  b.writeUInt32BE(h.length, 36);
  b.writeUInt32BE(h.frameLength, 40);
  return b;
}

export function decodeChunkHead(buf: Uint8Array, offset: number, limits: { maxLength: number; maxFrame: number }): { value: ChunkHead; bytes: number } {
  need(buf, offset, CHUNK_HEAD_LENGTH, 'chunk record');
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  if (b.readUInt32BE(offset) !== CHUNK_MAGIC) invalid('chunk record expected (bad magic)', offset);
  const length = b.readUInt32BE(offset + 36);
  const frameLength = b.readUInt32BE(offset + 40);
  if (length === 0 || length > limits.maxLength) invalid(`chunk length ${length} out of range`, offset + 36);
  if (frameLength === 0 || frameLength > limits.maxFrame) invalid(`frame length ${frameLength} out of range`, offset + 40);
  return { value: { hash: b.toString('hex', offset + 4, offset + 36), length, frameLength }, bytes: CHUNK_HEAD_LENGTH };
}

export function encodeTrailer(t: Trailer): Buffer {
  const b = Buffer.alloc(TRAILER_LENGTH);
  b.writeUInt32BE(END_MAGIC, 0);
  b.writeUInt32BE(t.chunkCount, 4);
  t.digest.copy(b, 8);
  return b;
}

export function decodeTrailer(buf: Uint8Array, offset = 0): { value: Trailer; bytes: number } {
  need(buf, offset, TRAILER_LENGTH, 'trailer');
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  if (b.readUInt32BE(offset) !== END_MAGIC) invalid('trailer expected (bad magic)', offset);
  return { value: { chunkCount: b.readUInt32BE(offset + 4), digest: Buffer.from(b.subarray(offset + 8, offset + 40)) }, bytes: TRAILER_LENGTH };
}
