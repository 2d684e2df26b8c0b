// Worker thread for chunk work: hashing, zstd, and chunk file I/O, so the main thread only reads
// the source and writes the target. One job at a time per worker; buffers move by transfer.
//
// Jobs (see worker-pool.ts):
//   store  raw block → hole? else SHA-256, and if the store lacks it: compress, temp file, rename
//   put    a frame from outside (import) → decompress → hash must equal → stored if missing
//   hash   raw block → hole? else SHA-256 (network capture: ask the appliance before compressing)
//   compress  raw block → one zstd frame, handed back in a new buffer (nothing stored)
//   checkFrame  a frame read by the caller → decompress → hash must equal → the frame is handed back;
//          with `sealed`, a frame whose SHA-256 equals the chunk's seal counts as checked without
//          decompressing, and a frame checked the long way gets its seal (chunk-path.ts)
//   unpack a frame from outside (multicast, HTTP) → decompress into a block buffer → hash must
//          equal → block returned (nothing stored). Frame and block may be SharedArrayBuffers
//          the caller reuses (the multicast receiver's pools): those are not sent back.
import { parentPort, workerData, threadId } from 'node:worker_threads';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ZstdCodec, compressBound } from './zstd.ts';
import { RackcastError, isRackcastError } from '../errors.ts';
import { chunkPath, frameSealed, sealPath } from './chunk-path.ts';

export interface WorkerInit { root: string; level: number }
export type Job =
  | { op: 'store'; buf: ArrayBuffer; length: number }
  | { op: 'hash'; buf: ArrayBuffer; length: number }
  | { op: 'compress'; buf: ArrayBuffer; length: number }
  | { op: 'put'; hash: string; length: number; frame: ArrayBuffer; frameLength: number; image: string }
  | { op: 'unpack'; hash: string; length: number; frame: ArrayBuffer | SharedArrayBuffer; frameLength: number; buf: ArrayBuffer | SharedArrayBuffer; image: string }
  | { op: 'checkFrame'; hash: string; length: number; frame: ArrayBuffer; frameLength: number; image: string; sealed?: boolean };
export type Reply =
  | { ok: true; hole?: boolean; hash?: string; stored?: number; existed?: boolean; buf?: ArrayBuffer; frame?: ArrayBuffer; bySeal?: boolean }
  | { ok: false; code: string; message: string; fields: Record<string, unknown>; buf?: ArrayBuffer };

const init = workerData as WorkerInit;
const codec = new ZstdCodec(init.level);
const madeDirs = new Set<string>();
let scratch = Buffer.allocUnsafe(0);
let checkBuf = Buffer.allocUnsafe(0);

const ZERO = Buffer.alloc(1 << 20);

/** All-zero test with memcmp against a zero buffer (much faster than a JS loop). */
function isZero(b: Buffer): boolean {
  for (let o = 0; o < b.length; o += ZERO.length) {
    const n = Math.min(ZERO.length, b.length - o);
    if (!b.subarray(o, o + n).equals(ZERO.subarray(0, n))) return false;
  }
  return true;
}

function store(buf: ArrayBuffer, length: number): Reply {
  const b = Buffer.from(buf, 0, length);
  if (isZero(b)) return { ok: true, hole: true, buf };
  const hash = createHash('sha256').update(b).digest('hex');
  const path = chunkPath(init.root, hash);
  if (existsSync(path)) {
    // Reused chunk: refresh its mtime so a gc running right now keeps it (gc's grace period).
    const now = new Date();
    utimesSync(path, now, now);
    return { ok: true, hash, existed: true, stored: statSync(path).size, buf };
  }
  const bound = compressBound(length);
  if (scratch.length < bound) scratch = Buffer.allocUnsafe(bound);
  const n = codec.compressInto(scratch, b);
  writeChunk(hash, scratch.subarray(0, n));
  return { ok: true, hash, stored: n, existed: false, buf };
}

function verifyFrame(hash: string, frame: Buffer, out: Buffer, image: string): void {
  const what = { chunk: hash, image };
  codec.decompressInto(out, frame, what);
  const got = createHash('sha256').update(out).digest('hex');
  if (got !== hash) {
    throw new RackcastError('RC_ERR_CHUNK_CORRUPT', `chunk ${hash} of image ${image} is corrupt (content hashes to ${got.slice(0, 16)}…)`, what);
  }
}

function writeChunk(hash: string, frame: Uint8Array): void {
  const path = chunkPath(init.root, hash);
  const dir = path.slice(0, path.lastIndexOf('/'));
  if (!madeDirs.has(dir)) { mkdirSync(dir, { recursive: true }); madeDirs.add(dir); }
  // Temp file + rename: a reader never sees a half-written chunk, and two writers of the same
  // content both end with one complete file.
  const tmp = join(init.root, 'tmp', `chunk-${hash.slice(0, 16)}-${threadId}-${randomBytes(4).toString('hex')}`);
  writeFileSync(tmp, frame);
  renameSync(tmp, path);
  writeSeal(hash, frame);
}

/** The SHA-256 of a frame that decompresses to its hash, beside the chunk (temp file + rename). */
function writeSeal(hash: string, frame: Uint8Array): void {
  const tmp = join(init.root, 'tmp', `seal-${hash.slice(0, 16)}-${threadId}-${randomBytes(4).toString('hex')}`);
  writeFileSync(tmp, `${createHash('sha256').update(frame).digest('hex')}\n`);
  renameSync(tmp, sealPath(init.root, hash));
}

const sealed = (hash: string, frame: Buffer): boolean => frameSealed(init.root, hash, frame);

function handle(job: Job): { reply: Reply; transfer: ArrayBuffer[] } {
  const give = (buf?: ArrayBuffer | SharedArrayBuffer): ArrayBuffer[] => (buf instanceof ArrayBuffer ? [buf] : []); // shared ones stay with the caller
  try {
    if (job.op === 'store') {
      const reply = store(job.buf, job.length);
      return { reply, transfer: give(job.buf) };
    }
    if (job.op === 'hash') {
      const b = Buffer.from(job.buf, 0, job.length);
      const reply: Reply = isZero(b) ? { ok: true, hole: true, buf: job.buf } : { ok: true, hash: createHash('sha256').update(b).digest('hex'), buf: job.buf };
      return { reply, transfer: [job.buf] };
    }
    if (job.op === 'compress') {
      const bound = compressBound(job.length);
      if (scratch.length < bound) scratch = Buffer.allocUnsafe(bound);
      const n = codec.compressInto(scratch, Buffer.from(job.buf, 0, job.length));
      const frame = new ArrayBuffer(n);
      scratch.copy(new Uint8Array(frame), 0, 0, n);
      return { reply: { ok: true, stored: n, buf: job.buf, frame }, transfer: [job.buf, frame] };
    }
    if (job.op === 'unpack') {
      verifyFrame(job.hash, Buffer.from(job.frame, 0, job.frameLength), Buffer.from(job.buf, 0, job.length), job.image);
      return { reply: { ok: true, hash: job.hash, ...(job.buf instanceof ArrayBuffer ? { buf: job.buf } : {}) }, transfer: give(job.buf) };
    }
    if (checkBuf.length < job.length) checkBuf = Buffer.allocUnsafe(job.length);
    if (job.op === 'checkFrame') {
      const frame = Buffer.from(job.frame, 0, job.frameLength);
      if (job.sealed && sealed(job.hash, frame)) return { reply: { ok: true, hash: job.hash, buf: job.frame, bySeal: true }, transfer: [job.frame] };
      verifyFrame(job.hash, frame, checkBuf.subarray(0, job.length), job.image);
      if (job.sealed) { try { writeSeal(job.hash, frame); } catch { /* a read-only store: checked the long way next time too */ } }
      return { reply: { ok: true, hash: job.hash, buf: job.frame }, transfer: [job.frame] };
    }
    const frame = Buffer.from(job.frame, 0, job.frameLength); // put
    verifyFrame(job.hash, frame, checkBuf.subarray(0, job.length), job.image);
    const existed = existsSync(chunkPath(init.root, job.hash));
    if (!existed) writeChunk(job.hash, frame);
    return { reply: { ok: true, hash: job.hash, existed, stored: job.frameLength }, transfer: [] };
  } catch (e) {
    const err = e as Error;
    const code = isRackcastError(err) ? err.code : 'RC_ERR_IO';
    const fields = isRackcastError(err) ? { ...err.fields } : {};
    const buf = 'buf' in job ? job.buf : undefined;
    return { reply: { ok: false, code, message: err.message, fields, ...(buf instanceof ArrayBuffer ? { buf } : {}) }, transfer: give(buf) };
  }
}

parentPort?.on('message', (job: Job) => {
  const { reply, transfer } = handle(job);
  parentPort?.postMessage(reply, transfer);
});
