// Grow over multicast, through the real CLI in a namespace lab: `rackcast mcast receive --grow`
// (what a deploy task with grow runs in the boot environment) writes an image of a 96 MiB GPT disk
// (ESP, then an ext4 root last) onto a 160 MiB target, moves the GPT backup to the end, grows the
// root partition to the last usable sector and its filesystem with e2fsck + resize2fs. Checked
// with sfdisk, e2fsck and debugfs on a dd copy of the partition, not through our code.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore, captureImage } from '../../../services/image/index.ts';
import { Lab, canMakeLab } from '../../../scripts/lab/netns.ts';
import { MiB, hasTool, makeRootLastGptDisk, makeTree, sh } from '../../helpers/disks.ts';
import { send, receive } from './session.ts';

const tools = ['sfdisk', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'e2fsck', 'resize2fs', 'dumpe2fs', 'debugfs', 'losetup'];
const ok = canMakeLab() && tools.every(hasTool);
const d = ok ? describe : describe.skip;
if (!ok) console.warn(`multicast grow test skipped: needs root, network namespaces and ${tools.join(', ')}`);

const TARGET = 160 * MiB;
let work: string;
let store: string;
let lab: Lab | undefined;

beforeAll(async () => {
  if (!ok) return;
  work = mkdtempSync(join(tmpdir(), 'rc-test-mgrow-'));
  store = join(work, 'store');
  const disk = makeRootLastGptDisk(work, makeTree(join(work, 'tree')));
  await captureImage({ store: ImageStore.open(store), source: disk.path, name: 'rack', blockSize: MiB });
});
afterAll(async () => {
  await lab?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

interface SfdiskJson { partitiontable: { lastlba: number; sectorsize?: number; partitions: { node: string; start: number; size: number }[] } }

d('multicast receive --grow', () => {
  it('fills a larger disk: GPT spans it, the ext4 root grows and stays clean with its files', async () => {
    lab = new Lab({ hosts: 2 });
    const target = join(work, 'big.img');
    writeFileSync(target, '');
    truncateSync(target, TARGET);
    const s = send(lab, store, 'rack', ['--min-receivers', '1']);
    const r = receive(lab, 1, target, ['--grow']);
    const [sr, rr] = await Promise.all([s.done, r.done]);
    expect([sr.code, rr.code, rr.stderr]).toEqual([0, 0, '']);
    expect(rr.json?.grow).toMatchObject({ grown: true });

    // the table: valid, backup at the end, root (last) up to the last usable sector
    expect(sh('sfdisk', ['--verify', target])).toMatch(/No errors detected/);
    const t = (JSON.parse(sh('sfdisk', ['-J', target])) as SfdiskJson).partitiontable;
    const root = t.partitions[1]!;
    expect(t.lastlba).toBe(TARGET / 512 - 34);
    expect(root.start + root.size - 1).toBe(t.lastlba);

    // the filesystem: clean, as large as its partition, the files still there
    const p = join(work, 'root.ext4');
    sh('dd', [`if=${target}`, `of=${p}`, 'bs=1M', `skip=${root.start * 512}`, `count=${root.size * 512}`, 'iflag=skip_bytes,count_bytes', 'status=none']);
    sh('e2fsck', ['-fn', p]);
    const sb = sh('dumpe2fs', ['-h', p]);
    const blocks = Number(/Block count:\s+(\d+)/.exec(sb)?.[1]);
    const bs = Number(/Block size:\s+(\d+)/.exec(sb)?.[1]);
    expect(blocks * bs).toBe(Math.floor((root.size * 512) / 4096) * 4096); // resize2fs rounds to 4 KiB pages
    expect(blocks * bs).toBeGreaterThan(100 * MiB); // was 48 MiB
    expect(sh('debugfs', ['-R', 'cat /etc/hostname', p])).toBe('rack-node-01\n');
  }, 120_000);
});
