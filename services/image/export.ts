// Export an image with its chunks into one file, and import such a file into a store.
// Export verifies every chunk first (a corrupt store never leaks into an export) and writes to
// FILE.partial, renamed at the end. Import checks the header, manifest and its own signature,
// then every chunk (decompressed and hashed in workers) before storing it, then the trailer's
// digest over the whole file; only then is the image committed, re-signed by this appliance with
// the original signer recorded. An interrupted or damaged import never shows up as an image.
import { createHash } from 'node:crypto';
import { open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { RackcastError } from '../errors.ts';
import { decodeChunkHead, decodeHeader, decodeTrailer, encodeChunkHead, encodeHeader, encodeTrailer, CHUNK_HEAD_LENGTH, HEADER_LENGTH, TRAILER_LENGTH } from './export-format.ts';
import { chunkTable, decodeManifest, encodeManifest, MAX_MANIFEST_BYTES, type Manifest } from './manifest.ts';
import { decodeSignatureFile, verifySignature } from './signing.ts';
import { ImageStore, type OpenImage } from './store.ts';
import { problemError, verifyChunks } from './restore.ts';
import { WorkerPool } from './worker-pool.ts';
import { compressBound } from './zstd.ts';

export interface TransferProgress { done: number; total: number }

async function writeAll(fh: FileHandle, b: Uint8Array): Promise<void> {
  let o = 0;
  while (o < b.length) o += (await fh.write(b, o, b.length - o)).bytesWritten;
}

export async function exportImage(store: ImageStore, name: string, file: string, onProgress?: (p: TransferProgress) => void): Promise<{ bytes: number; chunks: number }> {
  const img = store.open(name);
  const v = await verifyChunks(store, img);
  if (v.problems.length) throw problemError(v);
  const sigBytes = Buffer.from(JSON.stringify(img.sig) + '\n');
  const chunks = chunkTable(img.manifest);
  const toStdout = file === '-';
  const tmp = toStdout ? '/dev/stdout' : `${file}.partial`;
  const fh = await open(tmp, toStdout ? 'w' : 'wx');
  const digest = createHash('sha256');
  let bytes = 0;
  const put = async (b: Uint8Array): Promise<void> => { digest.update(b); await writeAll(fh, b); bytes += b.length; };
  try {
    await put(encodeHeader({ manifestLength: img.bytes.length, sigLength: sigBytes.length, chunkCount: chunks.length }));
    await put(img.bytes);
    await put(sigBytes);
    let done = 0;
    for (const { hash, length } of chunks) {
      const frame = await readFile(store.chunkPath(hash));
      await put(encodeChunkHead({ hash, length, frameLength: frame.length }));
      await put(frame);
      onProgress?.({ done: ++done, total: chunks.length });
    }
    await writeAll(fh, encodeTrailer({ chunkCount: chunks.length, digest: digest.digest() }));
    bytes += TRAILER_LENGTH;
    if (!toStdout) await fh.sync();
  } catch (e) {
    await fh.close();
    if (!toStdout) await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  if (!toStdout) await rename(tmp, file);
  return { bytes, chunks: chunks.length };
}

/** Sequential reader over a file or stdin, hashing everything it hands out. */
class Reader {
  readonly digest = createHash('sha256');
  offset = 0;
  readonly #fh: FileHandle;
  constructor(fh: FileHandle) { this.#fh = fh; }
  async read(n: number, what: string, hash = true): Promise<Buffer> {
    const b = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await this.#fh.read(b, got, n - got, null);
      if (bytesRead === 0) throw new RackcastError('RC_ERR_EXPORT_INVALID', `export file ends inside the ${what} at offset ${this.offset + got} (truncated?)`, { offset: this.offset + got });
      got += bytesRead;
    }
    if (hash) this.digest.update(b);
    this.offset += n;
    return b;
  }
}

export interface ImportOptions {
  /** refuse an export whose original signer is not this appliance or one in keys/trusted/ */
  trustedOnly?: boolean;
  name?: string; onProgress?: (p: TransferProgress) => void; workers?: number }

/** Re-throw a decoder error with the offset in the file rather than in the record's buffer. */
function at<T>(base: number, decode: () => T): T {
  try {
    return decode();
  } catch (e) {
    if (e instanceof RackcastError && typeof e.fields.offset === 'number') {
      const offset = base + e.fields.offset;
      throw new RackcastError(e.code, e.message.replace(/offset \d+/, `offset ${offset}`) + (/offset \d+/.test(e.message) ? '' : ` (at offset ${offset})`), { ...e.fields, offset });
    }
    throw e;
  }
}

export async function importImage(store: ImageStore, file: string, o: ImportOptions = {}): Promise<OpenImage> {
  let fh: FileHandle;
  try {
    fh = await open(file === '-' ? '/dev/stdin' : file, 'r');
  } catch (e) {
    throw new RackcastError('RC_ERR_IO', `cannot open ${file}: ${(e as Error).message}`, { file });
  }
  const op = store.beginWrite('import');
  const pool = new WorkerPool({ root: store.root, level: 3 }, o.workers ? { workers: o.workers } : {});
  try {
    const r = new Reader(fh);
    const header = decodeHeader(await r.read(HEADER_LENGTH, 'header'), 0, MAX_MANIFEST_BYTES).value;
    const mbytes = await r.read(header.manifestLength, 'manifest');
    const sbytes = await r.read(header.sigLength, 'signature');
    const what = { file };
    const sig = decodeSignatureFile(sbytes, what);
    verifySignature(mbytes, sig, what); // the export is what its signer made; trust is re-established below
    if (o.trustedOnly && !store.signer.trusts(sig.keyId)) {
      throw new RackcastError('RC_ERR_SIGNATURE_UNTRUSTED', `export signed by key ${sig.keyId}, which this appliance does not trust (put its appliance.pub in keys/trusted/)`, { ...what, keyId: sig.keyId });
    }
    const original = decodeManifest(mbytes);
    const lengths = new Map(chunkTable(original).map((c) => [c.hash, c.length]));
    if (header.chunkCount > lengths.size) throw new RackcastError('RC_ERR_EXPORT_INVALID', `export file declares ${header.chunkCount} chunks, the image has ${lengths.size}`, what);
    const name = o.name ?? original.name;
    ImageStore.checkName(name);
    if (store.has(name)) throw new RackcastError('RC_ERR_IMAGE_EXISTS', `an image named "${name}" already exists (import with --name NEW)`, { image: name });
    const limits = { maxLength: original.blockSize, maxFrame: compressBound(original.blockSize) };
    const seen = new Set<string>();
    let failure: unknown;
    const inflight = new Set<Promise<void>>();
    for (let k = 0; k < header.chunkCount && !failure; k++) {
      const recordAt = r.offset;
      const headBytes = await r.read(CHUNK_HEAD_LENGTH, 'chunk record');
      const head = at(recordAt, () => decodeChunkHead(headBytes, 0, limits).value);
      if (lengths.get(head.hash) !== head.length || seen.has(head.hash)) {
        throw new RackcastError('RC_ERR_EXPORT_INVALID', `chunk record at offset ${recordAt} is not one the manifest needs (or is repeated)`, { offset: recordAt, chunk: head.hash });
      }
      seen.add(head.hash);
      const frame = await r.read(head.frameLength, 'chunk frame');
      const ab = frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.length) as ArrayBuffer;
      await pool.ready();
      const p: Promise<void> = pool.run({ op: 'put', hash: head.hash, length: head.length, frame: ab, frameLength: frame.length, image: original.name }, [ab])
        .then(() => { o.onProgress?.({ done: seen.size, total: header.chunkCount }); }, (e: unknown) => { failure ??= e; })
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await Promise.all(inflight);
    if (failure) throw failure;
    const expected = r.digest.digest();
    const trailerAt = r.offset;
    const trailerBytes = await r.read(TRAILER_LENGTH, 'trailer', false);
    const trailer = at(trailerAt, () => decodeTrailer(trailerBytes, 0).value);
    if (trailer.chunkCount !== header.chunkCount || !trailer.digest.equals(expected)) {
      throw new RackcastError('RC_ERR_EXPORT_INVALID', 'export file fails its checksum (damaged in transit?)', what);
    }
    const missing = [...lengths.keys()].filter((h) => !store.hasChunk(h));
    if (missing.length) {
      throw new RackcastError('RC_ERR_CHUNK_MISSING', `export file lacks ${missing.length} chunks the image needs and the store does not have (first: ${missing[0]})`, { ...what, chunk: missing[0] });
    }
    store.syncChunks();
    // Keep the signed bytes unchanged when the name is unchanged: the digest is the image's identity.
    const manifest: Manifest = name === original.name ? original : { ...original, name };
    const bytes = name === original.name ? mbytes : encodeManifest(manifest);
    const localSig = { ...store.signer.sign(bytes), importedFrom: { keyId: sig.keyId } };
    return store.commit(manifest, { bytes, sig: localSig });
  } finally {
    await pool.close();
    await fh.close();
    op.end();
  }
}
