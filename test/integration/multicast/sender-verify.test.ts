// The multicast sender checks every stored chunk before its first send: by the chunk's seal (the
// SHA-256 of the frame, checked on the sender's own thread) when it has a valid one, otherwise by
// decompressing it in worker threads started only then. A damaged chunk aborts the session before
// it is sent: receivers never get it, and never write a byte of it.
import { describe, it, expect, beforeAll, afterAll, afterEach } from '@jest/globals';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore, captureImage } from '../../../services/image/index.ts';
import { chunkTable } from '../../../services/image/manifest.ts';
import { chunkPath, sealPath } from '../../../services/image/chunk-path.ts';
import { Lab, canMakeLab } from '../../../scripts/lab/netns.ts';
import { prng } from '../../helpers/disks.ts';
import { send, receive } from './session.ts';

const ok = canMakeLab();
const d = ok ? describe : describe.skip;

let work: string;
let pristine: string; // the captured store; each test works on its own copy
let disk: Buffer;
let lab: Lab | undefined;

beforeAll(async () => {
  if (!ok) return;
  work = mkdtempSync(join(tmpdir(), 'rc-test-mverify-'));
  pristine = join(work, 'store');
  disk = Buffer.alloc(12 << 20);
  prng(5, 6 << 20).copy(disk, 1 << 20);
  Buffer.from('sealed or not\n'.repeat(200000)).copy(disk, 8 << 20);
  writeFileSync(join(work, 'disk.img'), disk);
  await captureImage({ store: ImageStore.open(pristine), source: join(work, 'disk.img'), name: 'img', blockSize: 1 << 20 });
});

afterEach(async () => { await lab?.destroy(); lab = undefined; });
afterAll(() => { if (work) rmSync(work, { recursive: true, force: true }); });

/** A copy of the store, and its chunks' hashes in pass order. */
function storeCopy(name: string): { store: string; hashes: string[] } {
  const store = join(work, name);
  cpSync(pristine, store, { recursive: true });
  return { store, hashes: chunkTable(ImageStore.open(store).open('img').manifest).map((c) => c.hash) };
}

d('multicast sender: verifying stored chunks', () => {
  it('sealed chunks are checked by their seals, no worker needed: the receiver is bit-exact', async () => {
    const { store, hashes } = storeCopy('sealed');
    lab = new Lab({ hosts: 2 });
    const s = send(lab, store, 'img');
    const r = receive(lab, 1, join(work, 'sealed.img'));
    const [sr, rr] = await Promise.all([s.done, r.done]);
    expect(sr.code).toBe(0);
    expect(sr.json?.sealedChunks).toBe(hashes.length);
    expect(rr.code).toBe(0);
    expect(readFileSync(join(work, 'sealed.img')).equals(disk)).toBe(true);
  });

  it('chunks without seals (a store from before seals) are decompressed and checked, then sealed', async () => {
    const { store, hashes } = storeCopy('unsealed');
    for (const h of hashes) rmSync(sealPath(store, h));
    lab = new Lab({ hosts: 2 });
    const s = send(lab, store, 'img');
    const r = receive(lab, 1, join(work, 'unsealed.img'));
    const [sr, rr] = await Promise.all([s.done, r.done]);
    expect(sr.code).toBe(0);
    expect(sr.json?.sealedChunks).toBe(0);
    expect(rr.code).toBe(0);
    expect(readFileSync(join(work, 'unsealed.img')).equals(disk)).toBe(true);
    for (const h of hashes) expect(existsSync(sealPath(store, h))).toBe(true); // checked the long way once
  });

  it.each([['with its seal left in place'], ['without a seal']])('a damaged chunk %s aborts the session before it is sent: RC_ERR_CHUNK_CORRUPT', async (how) => {
    const { store, hashes } = storeCopy(`damaged-${how.length}`);
    const bad = hashes[1] as string;
    const frame = readFileSync(chunkPath(store, bad));
    const mid = frame.length >> 1;
    frame[mid] = (frame[mid] as number) ^ 0x40; // one flipped bit: the seal no longer matches, the content hash neither
    writeFileSync(chunkPath(store, bad), frame);
    if (how === 'without a seal') rmSync(sealPath(store, bad));
    lab = new Lab({ hosts: 2 });
    const s = send(lab, store, 'img');
    const target = join(work, `damaged-${how.length}.img`);
    const r = receive(lab, 1, target, ['--fallback', '60']);
    const sr = await s.done;
    expect(sr.code).not.toBe(0);
    expect(sr.stderr).toContain('RC_ERR_CHUNK_CORRUPT');
    expect(sr.stderr).toContain(bad);
    r.child.kill('SIGKILL');
    const rr = await r.done;
    expect(rr.code).not.toBe(0); // it never completed
    // nothing of the damaged chunk's block reached the target: block 1 is still unwritten (zeros)
    if (existsSync(target)) {
      const t = readFileSync(target);
      const block = chunkTable(ImageStore.open(store).open('img').manifest)[1]?.blocks[0] as number;
      expect(t.subarray(block << 20, (block + 1) << 20).equals(Buffer.alloc(1 << 20))).toBe(true);
    }
  });
});
