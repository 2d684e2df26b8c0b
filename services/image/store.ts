// The content-addressed image store on disk (docs/image-format.md):
//
//   <root>/keys/appliance.key, appliance.pub, trusted/*.pub   signing keys (signing.ts)
//   <root>/chunks/ab/abcd….zst                              one zstd frame per unique block
//   <root>/chunks/ab/abcd….seal                             SHA-256 of that frame, once verified
//   <root>/images/<name>/manifest.json, manifest.sig         a complete, signed image
//   <root>/tmp/                                              temp files, operation markers
//
// An image directory appears by one rename, after its chunks are on disk and synced: a capture or
// import that is interrupted never shows up as an image. Every read of a manifest checks its
// digest and signature; every chunk read checks its hash (chunk-worker.ts).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, openSync, fsyncSync, closeSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { RackcastError } from '../errors.ts';
import { IMAGE_NAME, decodeManifest, encodeManifest, manifestDigest, uniqueHashes, type Manifest } from './manifest.ts';
import { Signer, decodeSignatureFile, type SignatureFile } from './signing.ts';
import { chunkPath, sealPath, HASH_HEX } from './chunk-path.ts';

export const STORE_DEFAULTS = { blockSize: 4 << 20, level: 3, gcGraceMs: 60 * 60 * 1000 };

export interface OpenImage { manifest: Manifest; bytes: Buffer; sig: SignatureFile; digest: string }
export interface ImageSummary { name: string; digest: string; createdAt: string; diskSize: number; blocks: number; dataBlocks: number; uniqueChunks: number; storedBytes: number }
export interface GcResult { removedChunks: number; removedBytes: number; keptChunks: number; removedTemp: number }

export class ImageStore {
  readonly root: string;
  readonly signer: Signer;

  private constructor(root: string, signer: Signer) {
    this.root = root;
    this.signer = signer;
  }

  static open(root: string): ImageStore {
    for (const d of ['chunks', 'images', 'tmp']) mkdirSync(join(root, d), { recursive: true });
    return new ImageStore(root, Signer.open(join(root, 'keys')));
  }

  chunkPath(hash: string): string {
    return chunkPath(this.root, hash);
  }

  hasChunk(hash: string): boolean {
    return existsSync(this.chunkPath(hash));
  }

  static checkName(name: string): void {
    if (!IMAGE_NAME.test(name)) {
      throw new RackcastError('RC_ERR_IMAGE_NAME', `invalid image name "${name}": use letters, digits, ".", "_" and "-" (at most 128, starting with a letter or digit)`, { name });
    }
  }

  #dir(name: string): string {
    ImageStore.checkName(name);
    return join(this.root, 'images', name);
  }

  has(name: string): boolean {
    return existsSync(join(this.#dir(name), 'manifest.json'));
  }

  names(): string[] {
    return readdirSync(join(this.root, 'images')).filter((n) => IMAGE_NAME.test(n) && existsSync(join(this.root, 'images', n, 'manifest.json'))).sort();
  }

  /** Read, verify (digest, signature, trusted signer) and decode one image's manifest. */
  open(name: string): OpenImage {
    const dir = this.#dir(name);
    const what = { image: name };
    let bytes: Buffer, sigBytes: Buffer;
    try {
      bytes = readFileSync(join(dir, 'manifest.json'));
      sigBytes = readFileSync(join(dir, 'manifest.sig'));
    } catch {
      throw new RackcastError('RC_ERR_IMAGE_NOT_FOUND', `no image named "${name}" in ${this.root}`, what);
    }
    const sig = decodeSignatureFile(sigBytes, what);
    this.signer.verify(bytes, sig, what);
    const manifest = decodeManifest(bytes);
    if (manifest.name !== name) {
      throw new RackcastError('RC_ERR_MANIFEST_INVALID', `manifest names image "${manifest.name}", stored as "${name}"`, what);
    }
    return { manifest, bytes, sig, digest: sig.digest };
  }

  /** Pass the already opened image to avoid reading and verifying it again. */
  summary(name: string, img: OpenImage = this.open(name)): ImageSummary {
    const { manifest: m, digest } = img;
    let storedBytes = 0;
    for (const h of uniqueHashes(m)) storedBytes += statSync(this.chunkPath(h), { throwIfNoEntry: false })?.size ?? 0;
    return { name, digest, createdAt: m.createdAt, diskSize: m.disk.size, blocks: m.stats.blocks, dataBlocks: m.stats.dataBlocks, uniqueChunks: m.stats.uniqueChunks, storedBytes };
  }

  /** Flush chunk data to stable storage before a manifest may refer to it (syncfs via coreutils). */
  syncChunks(): void {
    try {
      execFileSync('sync', ['-f', join(this.root, 'chunks')]); // -f = syncfs, in coreutils and busybox
    } catch (e) {
      throw new RackcastError('RC_ERR_IO', `sync of the store failed: ${(e as Error).message}`, { root: this.root });
    }
  }

  /**
   * Make an image visible: write manifest and signature into a temp directory, fsync, rename.
   * `sig` is given when importing (already checked); otherwise the manifest is signed here.
   */
  commit(manifest: Manifest, opts: { bytes?: Buffer; sig?: SignatureFile } = {}): OpenImage {
    const dir = this.#dir(manifest.name);
    if (existsSync(dir)) throw new RackcastError('RC_ERR_IMAGE_EXISTS', `an image named "${manifest.name}" already exists`, { image: manifest.name });
    const bytes = opts.bytes ?? encodeManifest(manifest);
    const sig = opts.sig ?? this.signer.sign(bytes);
    const tmp = join(this.root, 'tmp', `image-${manifest.name}-${randomBytes(4).toString('hex')}`);
    mkdirSync(tmp);
    for (const [f, data] of [['manifest.json', bytes], ['manifest.sig', Buffer.from(JSON.stringify(sig, null, 1) + '\n')]] as const) {
      const p = join(tmp, f);
      writeFileSync(p, data);
      const fd = openSync(p, 'r');
      fsyncSync(fd);
      closeSync(fd);
    }
    try {
      renameSync(tmp, dir);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      if (existsSync(dir)) throw new RackcastError('RC_ERR_IMAGE_EXISTS', `an image named "${manifest.name}" already exists`, { image: manifest.name });
      throw e;
    }
    const dfd = openSync(join(this.root, 'images'), 'r');
    fsyncSync(dfd);
    closeSync(dfd);
    return { manifest, bytes, sig, digest: manifestDigest(bytes) };
  }

  /** Remove an image (its chunks stay until gc). The rename first makes removal atomic. */
  remove(name: string): void {
    const dir = this.#dir(name);
    if (!existsSync(dir)) throw new RackcastError('RC_ERR_IMAGE_NOT_FOUND', `no image named "${name}" in ${this.root}`, { image: name });
    const trash = join(this.root, 'tmp', `deleted-${name}-${randomBytes(4).toString('hex')}`);
    renameSync(dir, trash);
    rmSync(trash, { recursive: true, force: true });
  }

  /**
   * Mark a writing operation (capture, import) as running, so gc does not collect the chunks it
   * has written but no manifest references yet. Markers of dead processes are ignored.
   */
  beginWrite(kind: string): { end(): void } {
    const marker = join(this.root, 'tmp', `op-${process.pid}-${kind}-${randomBytes(4).toString('hex')}.lock`);
    writeFileSync(marker, JSON.stringify({ pid: process.pid, kind, started: new Date().toISOString() }));
    let ended = false;
    return { end: () => { if (!ended) { ended = true; rmSync(marker, { force: true }); } } };
  }

  #liveWriters(): number[] {
    const pids: number[] = [];
    for (const f of readdirSync(join(this.root, 'tmp'))) {
      const m = /^op-(\d+)-/.exec(f);
      if (!m) continue;
      const pid = Number(m[1]);
      try { process.kill(pid, 0); pids.push(pid); } catch { rmSync(join(this.root, 'tmp', f), { force: true }); }
    }
    return pids;
  }

  /** Delete chunks no image references (older than graceMs) and leftovers of dead operations. */
  gc(opts: { graceMs?: number } = {}): GcResult {
    const grace = opts.graceMs ?? STORE_DEFAULTS.gcGraceMs;
    const writers = this.#liveWriters();
    if (writers.length) {
      throw new RackcastError('RC_ERR_STORE_BUSY', `a capture or import is running (pid ${writers.join(', ')}); run gc when it is done`, { pids: writers });
    }
    const live = new Set<string>();
    for (const n of this.names()) for (const h of uniqueHashes(this.open(n).manifest)) live.add(h);
    const res: GcResult = { removedChunks: 0, removedBytes: 0, keptChunks: 0, removedTemp: 0 };
    const cutoff = Date.now() - grace;
    const cdir = join(this.root, 'chunks');
    for (const sub of readdirSync(cdir)) {
      for (const f of readdirSync(join(cdir, sub))) {
        // a seal (chunk-path.ts) lives and dies with its chunk, and is not counted as one
        const seal = f.endsWith('.seal');
        const hash = f.replace(/\.(zst|seal)$/, '');
        const p = join(cdir, sub, f);
        if (HASH_HEX.test(hash) && live.has(hash)) { if (!seal) res.keptChunks++; continue; }
        const st = statSync(p, { throwIfNoEntry: false });
        if (seal) { if (st && !existsSync(chunkPath(this.root, hash))) unlinkSync(p); continue; }
        if (!st || st.mtimeMs > cutoff) { res.keptChunks++; continue; }
        unlinkSync(p);
        rmSync(sealPath(this.root, hash), { force: true });
        res.removedChunks++;
        res.removedBytes += st.size;
      }
    }
    for (const f of readdirSync(join(this.root, 'tmp'))) {
      const p = join(this.root, 'tmp', f);
      const st = statSync(p, { throwIfNoEntry: false });
      if (st && st.mtimeMs <= cutoff) { rmSync(p, { recursive: true, force: true }); res.removedTemp++; }
    }
    return res;
  }
}
