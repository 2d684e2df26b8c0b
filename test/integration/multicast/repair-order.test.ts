// The sender's repair scheduling: a repair that is due goes out as soon as it is due, in the
// middle of the chunk the first pass is sending, and the pass then resumes where it stopped
// (every fragment of that chunk once, in order). Before, a repair waited for the whole chunk: at
// 30 Mbit/s a 4 MiB chunk's frame takes ~0.3 s, and with eight receivers the repairs of the
// last-but-one chunk came only after the entire last chunk.
// Tail repairs: a NACK sent on hearing the sender idle (afterIdle) is re-sent at once, even when
// the fragment went out moments ago; a plain NACK that soon is taken for one that crossed the
// repair on its way, and held (repairHoldMs).
import { describe, it, expect, beforeAll, afterAll, afterEach } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ImageStore, captureImage } from '../../../services/image/index.ts';
import { Lab, canMakeLab } from '../../../scripts/lab/netns.ts';
import { prng } from '../../helpers/disks.ts';
import { send } from './session.ts';

const ok = canMakeLab();
const d = ok ? describe : describe.skip;

let work: string;
let store: string;
let lab: Lab | undefined;

beforeAll(async () => {
  if (!ok) return;
  work = mkdtempSync(join(tmpdir(), 'rc-test-mrepair-'));
  store = join(work, 'store');
  // incompressible 1 MiB blocks: every chunk's frame is ~1 MiB, ~720 fragments at MTU 1500
  const disk = prng(11, 4 << 20);
  writeFileSync(join(work, 'disk.img'), disk);
  await captureImage({ store: ImageStore.open(store), source: join(work, 'disk.img'), name: 'img', blockSize: 1 << 20 });
});

afterEach(async () => { await lab?.destroy(); lab = undefined; });
afterAll(() => { if (work) rmSync(work, { recursive: true, force: true }); });

d('multicast sender: repair scheduling', () => {
  it('a NACK for an earlier chunk is repaired in the middle of the chunk being sent, and the pass resumes where it stopped', async () => {
    lab = new Lab({ hosts: 2 });
    const peer = lab.spawn(1, process.execPath, [resolve('test/integration/multicast/nack-peer.ts'), lab.host(1).ip, '239.255.77.1', '9700', '40']);
    let out = '';
    peer.stdout?.on('data', (b: Buffer) => { out += b.toString(); });
    const peerExit = new Promise<number | null>((res) => peer.once('exit', res));
    // 20 Mbit/s: one chunk's ~720 fragments take ~0.45 s, so the NACK (sent at its fragment 50)
    // is due long before the chunk ends
    const s = send(lab, store, 'img', ['--min-receivers', '1', '--rate', '20m']);
    const code = await peerExit;
    const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { index?: number; count?: number; before?: number; order?: number[]; error?: string };
    expect(r.error).toBeUndefined();
    expect(code).toBe(0);
    const count = r.count as number;
    expect(count).toBeGreaterThanOrEqual(400);
    // the repair came while the pass was still sending the chunk (without preemption: after all of it)
    expect(r.before).toBeGreaterThanOrEqual(50);
    expect(r.before).toBeLessThan(count - 100);
    // the pass resumed where it stopped: every fragment once, in order
    expect(r.order).toEqual(Array.from({ length: count }, (_, k) => k));
    await s.done;
  }, 90_000);

  it.each([['idle', 1], ['plain', 0]] as const)('a NACK (%s) for a tail repair sent moments ago: re-sent %i more time(s)', async (mode, again) => {
    lab = new Lab({ hosts: 2 });
    const peer = lab.spawn(1, process.execPath, [resolve('test/integration/multicast/tail-peer.ts'), lab.host(1).ip, '239.255.77.1', '9700', '40', mode]);
    let out = '';
    peer.stdout?.on('data', (b: Buffer) => { out += b.toString(); });
    const peerExit = new Promise<number | null>((res) => peer.once('exit', res));
    const s = send(lab, store, 'img', ['--min-receivers', '1']);
    const code = await peerExit;
    const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { copies?: number[]; error?: string };
    expect(r.error).toBeUndefined();
    expect(code).toBe(0);
    expect(r.copies).toEqual([1, again]);
    await s.done;
  }, 90_000);
});
