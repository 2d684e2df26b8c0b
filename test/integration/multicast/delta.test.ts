// Delta inside a multicast session, through the real CLI in a namespace lab: delta receivers
// compare their targets with the image, write only the blocks that differ and declare (WANT) what
// they still need; the sender's first pass sends only the union. Whatever happens to the
// declarations (lost, forged, never sent by a plain receiver), every target ends bit-exact.
import { describe, it, expect, beforeAll, afterAll, afterEach } from '@jest/globals';
import { closeSync, copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ImageStore, captureImage } from '../../../services/image/index.ts';
import { Lab, canMakeLab } from '../../../scripts/lab/netns.ts';
import { seededBytes } from '../../helpers/rng.ts';
import { send, receive } from './session.ts';

const ok = canMakeLab();
const d = ok ? describe : describe.skip;
if (!ok) console.warn('multicast delta tests skipped: they need root and network namespaces');

const BS = 1 << 20;
const DATA_BLOCKS = 20; // blocks 0-19: distinct random content, one chunk each; 20-23: holes
let work: string;
let store: string;
let src: string;
let disk: Buffer;
let lab: Lab | undefined;

beforeAll(async () => {
  if (!ok) return;
  work = mkdtempSync(join(tmpdir(), 'rc-test-mdelta-'));
  store = join(work, 'store');
  disk = Buffer.alloc(24 * BS);
  seededBytes(31, DATA_BLOCKS * BS).copy(disk, 0);
  src = join(work, 'disk.img');
  writeFileSync(src, disk);
  await captureImage({ store: ImageStore.open(store), source: src, name: 'rack', blockSize: BS, usedOnly: false });
});
afterEach(async () => { await lab?.destroy(); lab = undefined; });
afterAll(() => { if (work) rmSync(work, { recursive: true, force: true }); });

/** A target that holds the image except in these blocks (a few bytes changed in each). */
function staleCopy(name: string, blocks: number[]): string {
  const t = join(work, name);
  copyFileSync(src, t);
  const fd = openSync(t, 'r+');
  try { for (const b of blocks) writeSync(fd, Buffer.from(`changed since last night ${b}`), 0, 24, b * BS + 4000); } finally { closeSync(fd); }
  return t;
}

const same = (path: string): boolean => readFileSync(path).equals(disk);
const dropped = (l: Lab): number => Number(/packets (\d+)/.exec(l.exec(0, 'nft', ['list', 'table', 'inet', 'rcdelta']))?.[1] ?? -1);

interface SenderReceiver { address: string; state: string; delta?: string; skippedBytes?: number; neededChunks?: number }
const byAddress = (json: Record<string, unknown> | undefined, address: string): SenderReceiver | undefined =>
  (json?.receivers as SenderReceiver[]).find((r) => r.address === address);

d('multicast delta', () => {
  it('a stale target gets only its differing blocks, an empty one everything; both bit-exact', async () => {
    lab = new Lab({ hosts: 3 });
    const stale = staleCopy('stale-1.img', [2, 11, 21]); // 21 is a hole: garbage there is zeroed
    const s = send(lab, store, 'rack', ['--min-receivers', '2']);
    const r1 = receive(lab, 1, stale, ['--delta']);
    const r2 = receive(lab, 2, join(work, 'empty-1.img'), ['--delta']);
    const [sr, a, b] = await Promise.all([s.done, r1.done, r2.done]);
    expect([sr.code, a.code, b.code]).toEqual([0, 0, 0]);
    expect(same(stale)).toBe(true);
    expect(same(join(work, 'empty-1.img'))).toBe(true);
    expect(a.json?.bytesWritten).toBe(2 * BS); // data blocks 2 and 11; the hole is zeroed apart
    expect(a.json?.skippedBytes).toBe(21 * BS); // 18 data blocks and 3 clean holes were right
    expect(b.json?.bytesWritten).toBe(DATA_BLOCKS * BS);
    expect(b.json?.skippedBytes).toBe(0); // a fresh file: nothing to compare
    // the empty receiver never declared, so it needed everything
    expect([sr.json?.passChunks, sr.json?.skippedChunks]).toEqual([DATA_BLOCKS, 0]);
    expect(byAddress(sr.json, '10.77.0.2')).toMatchObject({ delta: 'declared', skippedBytes: 21 * BS, neededChunks: 2 });
    expect(byAddress(sr.json, '10.77.0.3')?.delta).toBeUndefined();
  });

  it('with only delta receivers, the first pass sends just the union of what they need', async () => {
    lab = new Lab({ hosts: 3 });
    const t1 = staleCopy('stale-2a.img', [2, 11]);
    const t2 = staleCopy('stale-2b.img', [11, 15]);
    const s = send(lab, store, 'rack', ['--min-receivers', '2']);
    const [sr, a, b] = await Promise.all([s.done, receive(lab, 1, t1, ['--delta']).done, receive(lab, 2, t2, ['--delta']).done]);
    expect([sr.code, a.code, b.code]).toEqual([0, 0, 0]);
    expect(same(t1) && same(t2)).toBe(true);
    expect([a.json?.bytesWritten, b.json?.bytesWritten]).toEqual([2 * BS, 2 * BS]);
    // chunks 2, 11 and 15; the 17 others were not sent in the first pass
    expect([sr.json?.passChunks, sr.json?.skippedChunks]).toEqual([3, DATA_BLOCKS - 3]);
    expect(Number(sr.json?.skippedBytes)).toBeGreaterThan(17 * BS); // random data: frames barely compress
    expect(Number(sr.json?.bytesSent)).toBeLessThan(6 * BS);
    for (const ip of ['10.77.0.2', '10.77.0.3']) expect(byAddress(sr.json, ip)).toMatchObject({ state: 'done', delta: 'declared', neededChunks: 2 });
  });

  it('a target that already holds the image needs nothing: nothing is sent or written', async () => {
    lab = new Lab({ hosts: 2 });
    const t = staleCopy('current.img', []);
    const s = send(lab, store, 'rack', ['--min-receivers', '1']);
    const [sr, r] = await Promise.all([s.done, receive(lab, 1, t, ['--delta']).done]);
    expect([sr.code, r.code]).toEqual([0, 0]);
    expect(same(t)).toBe(true);
    expect([r.json?.bytesWritten, r.json?.skippedBytes, r.json?.dataPackets]).toEqual([0, 24 * BS, 0]);
    // (the session may end before its first pass even starts: its only receiver is done)
    expect(sr.json?.passChunks).toBe(0);
  });

  it('a receiver whose declaration never arrives still finishes bit-exact, writing only what differs', async () => {
    lab = new Lab({ hosts: 2 });
    // drop every WANT (header byte 5 = 7, i.e. UDP payload bit 40) from the receiver at the sender
    lab.exec(0, 'nft', ['-f', '-'], 'table inet rcdelta {\n chain pre {\n  type filter hook prerouting priority -300; policy accept;\n  ip saddr 10.77.0.2 udp dport 9700 @th,104,8 7 counter drop\n }\n}\n');
    const t = staleCopy('stale-3.img', [4, 5]);
    const s = send(lab, store, 'rack', ['--min-receivers', '1', '--delta-wait', '2']);
    const [sr, r] = await Promise.all([s.done, receive(lab, 1, t, ['--delta']).done]);
    expect([sr.code, r.code]).toEqual([0, 0]);
    expect(same(t)).toBe(true);
    expect(r.json?.bytesWritten).toBe(2 * BS);
    expect(Number(r.json?.wantsSent)).toBeGreaterThan(0);
    expect(dropped(lab)).toBe(Number(r.json?.wantsSent));
    // undeclared counts as needing everything: after the bounded wait the pass skipped nothing,
    // and it went on at least until chunk 5 (the session ends once its only receiver is done)
    expect(sr.json?.skippedChunks).toBe(0);
    expect(Number(sr.json?.passChunks)).toBeGreaterThanOrEqual(6);
    expect(byAddress(sr.json, '10.77.0.2')?.delta).toBe('comparing');
  });

  it('1% loss everywhere (declarations too): bit-exact, and the delta receiver writes only what differs', async () => {
    lab = new Lab({ hosts: 3 });
    for (const h of [0, 1, 2]) lab.loss(h, 10);
    const stale = staleCopy('stale-4.img', [0, 7, 19, 22]);
    const s = send(lab, store, 'rack', ['--min-receivers', '2', '--delta-wait', '5']);
    const r1 = receive(lab, 1, stale, ['--delta']);
    const r2 = receive(lab, 2, join(work, 'empty-4.img'));
    const [sr, a, b] = await Promise.all([s.done, r1.done, r2.done]);
    expect([sr.code, a.code, b.code]).toEqual([0, 0, 0]);
    expect(same(stale)).toBe(true);
    expect(same(join(work, 'empty-4.img'))).toBe(true);
    expect(a.json?.bytesWritten).toBe(3 * BS);
    expect(a.json?.skippedBytes).toBe(20 * BS);
    expect(b.json?.bytesWritten).toBe(DATA_BLOCKS * BS);
  });

  it('malformed declarations are dropped and counted; the session is unharmed', async () => {
    lab = new Lab({ hosts: 3 });
    const s = send(lab, store, 'rack', ['--min-receivers', '1']);
    const injector = lab.spawn(2, process.execPath, [resolve('test/integration/multicast/inject-want.ts'), '10.77.0.3', '239.255.77.1', '9700', '10.77.0.1', '20', '20']);
    let out = '';
    injector.stdout?.on('data', (b: Buffer) => { out += b.toString(); });
    await new Promise((res) => injector.once('exit', res));
    const injected = JSON.parse(out.trim()) as { sent: number };
    expect(injected.sent).toBe(20 * 9);
    const t = staleCopy('stale-5.img', [3]);
    const [sr, r] = await Promise.all([s.done, receive(lab, 1, t, ['--delta']).done]);
    expect([sr.code, r.code]).toEqual([0, 0]);
    expect(same(t)).toBe(true);
    expect(sr.json?.malformed).toBe(injected.sent);
    expect([sr.json?.passChunks, r.json?.bytesWritten]).toEqual([1, BS]);
  });
});
