// Disk geometry on restore (issue 7), on real disks made with sfdisk, mkfs.ext4, mkfs.vfat and
// mkntfs: `restore --grow` grows the last partition and its filesystem onto larger file and loop
// device targets (GPT ext4, MBR NTFS, an MBR logical ext4, a FAT last partition left as it is);
// `image fit` makes a variant for a smaller disk (ext4 and NTFS, 512 MiB disks with ~60 MiB
// used, fitted to 256 MiB) that restores fsck-clean with identical files, refuses a size below
// the filesystem's minimum saying the bytes needed, and leaves nothing behind when it fails.
// Partitions are checked through dd copies (not through the code under test).
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ImageStore, captureImage, restoreImage } from '../../services/image/index.ts';
import { fitImage } from '../../services/image/fit.ts';
import { isRackcastError, type RackcastError } from '../../services/errors.ts';
import { makeTree, makeGptDisk, prng, sh, hasTool, sha256File } from '../helpers/disks.ts';

const MiB = 1 << 20;
const missing = ['sfdisk', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'mkntfs', 'ntfscp', 'ntfscat', 'ntfsresize', 'ntfsfix', 'resize2fs', 'e2fsck', 'debugfs', 'losetup'].filter((t) => !hasTool(t));
const canLoop = missing.length === 0 && process.getuid?.() === 0 && (() => { try { sh('losetup', ['-f']); return true; } catch { return false; } })();
const d = canLoop ? describe : describe.skip;
if (!canLoop) console.warn(`disk-geometry tests skipped: need root, loop devices and ${missing.join(', ') || 'nothing else'}`);

interface Fs { start: number; size: number; fs: 'ext4' | 'vfat' | 'ntfs' }
let work: string;
let store: ImageStore;
let tree: string; // makeTree's ~7 MB
let bigTree: string; // the same and a 50 MiB file: ~60 MiB used
const loops: string[] = [];

/** A disk file: the sfdisk script's table, then each filesystem made in its own file and copied in sparsely. */
function buildDisk(name: string, size: number, script: string, fss: Fs[], from = tree): string {
  const path = join(work, `${name}.img`);
  rmSync(path, { force: true });
  sh('truncate', ['-s', String(size), path]);
  sh('sfdisk', ['-q', path], script);
  fss.forEach((f, i) => {
    const img = join(work, `${name}-p${i}.${f.fs}`);
    rmSync(img, { force: true });
    if (f.fs === 'ext4') {
      sh('mkfs.ext4', ['-q', '-F', '-E', 'root_owner=0:0', '-d', from, img, `${f.size / 1024}k`]);
    } else if (f.fs === 'vfat') {
      sh('mkfs.vfat', ['-F', '32', '-s', '1', '-C', img, String(f.size / 1024)]);
      sh('mcopy', ['-s', '-i', img, join(from, 'etc'), '::/']);
    } else {
      sh('truncate', ['-s', String(f.size), img]);
      sh('mkntfs', ['-q', '-F', '-f', '-p', String(f.start / 512), '-H', '255', '-S', '63', img]);
      for (const file of ntfsFiles(from)) sh('ntfscp', [img, join(from, file), file.replaceAll('/', '_')]);
    }
    sh('dd', [`if=${img}`, `of=${path}`, 'bs=1M', `seek=${f.start}`, 'oflag=seek_bytes', 'conv=notrunc,sparse', 'status=none']);
    rmSync(img);
  });
  return path;
}
const ntfsFiles = (from: string): string[] => ['etc/hostname', 'home/user/notes.txt', 'var/lib/data/blob0.bin', ...(from === bigTree ? ['big.bin'] : [])];

/** One partition's bytes copied out with dd (start and size in bytes). */
function part(disk: string, start: number, size: number, out: string): string {
  sh('dd', [`if=${disk}`, `of=${out}`, 'bs=1M', `skip=${start}`, `count=${size}`, 'iflag=skip_bytes,count_bytes', 'conv=sparse', 'status=none']);
  return out;
}

function sfdisk(path: string): { lastlba: number; partitions: { node: string; start: number; size: number; type: string }[] } {
  return (JSON.parse(sh('sfdisk', ['--json', path])) as { partitiontable: never }).partitiontable;
}

/** sfdisk --verify without a word on stderr (it warns there about e.g. a PMBR size mismatch). */
function verifyTable(path: string): void {
  const r = spawnSync('sfdisk', ['--verify', path], { encoding: 'utf8' });
  expect([r.status, r.stderr]).toEqual([0, '']);
  expect(r.stdout).toMatch(/No errors detected/);
}

/** Every file of the tree is in the ext filesystem image, byte for byte. */
function sameExtFiles(fsImage: string, from = tree): void {
  const out = join(work, `rdump-${Math.random().toString(36).slice(2)}`);
  mkdirSync(out);
  sh('debugfs', ['-R', `rdump / ${out}`, fsImage]);
  sh('diff', ['-r', '-x', 'lost+found', from, out]);
  rmSync(out, { recursive: true, force: true });
}

function sameNtfsFiles(fsImage: string, from = tree): void {
  for (const file of ntfsFiles(from)) {
    // -f: ntfsresize leaves the volume marked for a chkdsk at the next Windows boot (on purpose)
    const got = execFileSync('ntfscat', ['-f', fsImage, file.replaceAll('/', '_')], { maxBuffer: 256 * MiB, stdio: ['ignore', 'pipe', 'pipe'] });
    expect([file, got.equals(execFileSync('cat', [join(from, file)], { maxBuffer: 256 * MiB }))]).toEqual([file, true]);
  }
}

/** An ext filesystem's size by `dumpe2fs -h`: block count × block size. */
function fsBytes(fsImage: string): number {
  const h = sh('dumpe2fs', ['-h', fsImage]);
  return Number(/^Block count:\s+(\d+)/m.exec(h)?.[1]) * Number(/^Block size:\s+(\d+)/m.exec(h)?.[1]);
}
/** resize2fs sizes a filesystem grown to its device in whole pages (4 KiB), so 1 KiB-block filesystems end up to 3 KiB short. */
const pageFloor = (n: number): number => Math.floor(n / 4096) * 4096;

function attach(file: string): string {
  const dev = sh('losetup', ['--find', '--show', file]).trim();
  loops.push(dev);
  return dev;
}

/** Loop devices still attached to files under our work directory (must be none). */
function ourLoops(): string[] {
  return sh('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE']).split('\n').filter((l) => l.includes(work));
}

async function refusal(p: Promise<unknown>): Promise<RackcastError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  if (!isRackcastError(e)) throw new Error(`expected a RackcastError, got ${String(e)}`);
  return e;
}

const target = (name: string, size: number): string => {
  const p = join(work, name);
  writeFileSync(p, Buffer.alloc(512, 0x5a)); // a disk that held something: not "fresh"
  truncateSync(p, size);
  return p;
};

beforeAll(async () => {
  if (!canLoop) return;
  work = mkdtempSync(join(tmpdir(), 'rc-test-geometry-'));
  store = ImageStore.open(join(work, 'store'));
  tree = makeTree(join(work, 'tree'));
  bigTree = makeTree(join(work, 'big-tree'));
  writeFileSync(join(bigTree, 'big.bin'), prng(77, 50 * MiB));
  // GPT: FAT "esp", then ext4 "root" to the end of a 128 MiB disk
  const gptExt = buildDisk('gpt-ext', 128 * MiB, 'label: gpt\nstart=2048, size=81920, type=U, name=esp\nstart=83968, size=176128, type=L, name=root\n',
    [{ start: MiB, size: 40 * MiB, fs: 'vfat' }, { start: 41 * MiB, size: 86 * MiB, fs: 'ext4' }]);
  await captureImage({ store, source: gptExt, name: 'gpt-ext', workers: 2 });
  // MBR: NTFS primary, the last partition, ending 4 MiB before the end of a 96 MiB disk
  const mbrNtfs = buildDisk('mbr-ntfs', 96 * MiB, 'label: dos\nstart=2048, size=188416, type=7\n', [{ start: MiB, size: 92 * MiB, fs: 'ntfs' }]);
  await captureImage({ store, source: mbrNtfs, name: 'mbr-ntfs', workers: 2 });
  // MBR: ext4 primary, an extended partition with a FAT logical and an ext4 logical (the last)
  const mbrLog = buildDisk('mbr-logical', 128 * MiB, 'label: dos\nstart=2048, size=40960, type=83\nstart=43008, size=219136, type=5\nstart=45056, size=81920, type=c\nstart=129024, size=133120, type=83\n',
    [{ start: MiB, size: 20 * MiB, fs: 'ext4' }, { start: 22 * MiB, size: 40 * MiB, fs: 'vfat' }, { start: 63 * MiB, size: 65 * MiB, fs: 'ext4' }]);
  await captureImage({ store, source: mbrLog, name: 'mbr-logical', workers: 2 });
  // the reference GPT (ext4 root, then FAT "esp" last)
  await captureImage({ store, source: makeGptDisk(work, tree).path, name: 'gpt-fat-last', workers: 2 });
  // 512 MiB disks with one big filesystem and ~60 MiB used, for fit
  const ext512 = buildDisk('ext-512', 512 * MiB, 'label: gpt\nstart=2048, size=1044480, type=L\n', [{ start: MiB, size: 510 * MiB, fs: 'ext4' }], bigTree);
  await captureImage({ store, source: ext512, name: 'ext-512', workers: 2 });
  const ntfs512 = buildDisk('ntfs-512', 512 * MiB, 'label: dos\nstart=2048, size=1046528, type=7\n', [{ start: MiB, size: 511 * MiB, fs: 'ntfs' }], bigTree);
  await captureImage({ store, source: ntfs512, name: 'ntfs-512', workers: 2 });
}, 300_000);

afterAll(() => {
  for (const l of loops.reverse()) { try { sh('losetup', ['-d', l]); } catch { /* already gone */ } }
  if (work) rmSync(work, { recursive: true, force: true });
});

d('restore --grow', () => {
  it('GPT, ext4 last: the partition fills the disk, the filesystem fills the partition, files identical', async () => {
    const t = target('grow-gpt.img', 256 * MiB);
    const r = await restoreImage({ store, name: 'gpt-ext', target: t, grow: true });
    expect(r.table).toMatch(/backup GPT moved/);
    expect(r.grow).toMatchObject({ grown: true, partition: 2, filesystem: 'ext4', oldSize: 86 * MiB });
    const lastUsable = 256 * MiB / 512 - 34;
    expect(r.grow?.newSize).toBe((lastUsable + 1) * 512 - 41 * MiB);
    expect(r.grow?.tools?.join('\n')).toMatch(/e2fsck[\s\S]*resize2fs: .*is now \d+/);
    verifyTable(t);
    const pt = sfdisk(t);
    expect(pt.lastlba).toBe(lastUsable);
    expect(pt.partitions.map((p) => [p.start, p.start + p.size - 1])).toEqual([[2048, 83967], [83968, lastUsable]]);
    const root = part(t, 41 * MiB, r.grow?.newSize as number, join(work, 'grow-root.ext4'));
    sh('e2fsck', ['-fn', root]);
    expect(fsBytes(root)).toBe(pageFloor(r.grow?.newSize as number));
    sameExtFiles(root);
    sh('fsck.vfat', ['-n', part(t, MiB, 40 * MiB, join(work, 'grow-esp.vfat'))]);
  }, 120_000);

  it('onto a loop device: the same, and nothing is left attached', async () => {
    const backing = target('grow-loop-backing.img', 200 * MiB);
    const dev = attach(backing);
    const r = await restoreImage({ store, name: 'gpt-ext', target: dev, grow: true });
    expect(r.grow).toMatchObject({ grown: true, partition: 2 });
    sh('losetup', ['-d', dev]);
    loops.pop();
    verifyTable(backing);
    expect(sfdisk(backing).partitions[1]?.size).toBe(r.grow?.newSize as number / 512);
    const root = part(backing, 41 * MiB, r.grow?.newSize as number, join(work, 'loop-root.ext4'));
    sh('e2fsck', ['-fn', root]);
    expect(fsBytes(root)).toBe(pageFloor(r.grow?.newSize as number));
    sameExtFiles(root);
    expect(ourLoops()).toEqual([]);
  }, 120_000);

  it('MBR, NTFS last: the primary and the volume grow to the end of the disk', async () => {
    const t = target('grow-ntfs.img', 160 * MiB);
    const r = await restoreImage({ store, name: 'mbr-ntfs', target: t, grow: true });
    expect(r.table).toBeUndefined();
    expect(r.grow).toMatchObject({ grown: true, partition: 1, filesystem: 'ntfs', oldSize: 92 * MiB, newSize: 159 * MiB });
    verifyTable(t);
    expect(sfdisk(t).partitions).toEqual([expect.objectContaining({ start: 2048, size: 159 * MiB / 512 })]);
    const vol = part(t, MiB, 159 * MiB, join(work, 'grow.ntfs'));
    sh('ntfsfix', ['-n', vol]);
    // NTFS keeps its last sector for the backup boot sector: the volume is the partition less one sector
    const clusters = Number(/Volume Size in Clusters:\s*(\d+)/.exec(sh('ntfsinfo', ['-m', '-f', vol]))?.[1]);
    expect(clusters).toBe(Math.floor((159 * MiB - 512) / 4096));
    sameNtfsFiles(vol);
  }, 120_000);

  it('MBR, logical ext4 last: the extended container and the logical grow, the table stays valid', async () => {
    const t = target('grow-logical.img', 192 * MiB);
    const r = await restoreImage({ store, name: 'mbr-logical', target: t, grow: true });
    expect(r.grow).toMatchObject({ grown: true, partition: 6, filesystem: 'ext4', oldSize: 65 * MiB, newSize: 129 * MiB });
    verifyTable(t);
    const pt = sfdisk(t).partitions;
    expect(pt.map((p) => [p.type, p.start, p.start + p.size])).toEqual([['83', 2048, 43008], ['5', 43008, 192 * 2048], ['c', 45056, 126976], ['83', 129024, 192 * 2048]]);
    const root = part(t, 63 * MiB, 129 * MiB, join(work, 'grow-logical.ext4'));
    sh('e2fsck', ['-fn', root]);
    expect(fsBytes(root)).toBe(129 * MiB);
    sameExtFiles(root);
  }, 120_000);

  it('FAT last: left as it is, saying why; without --grow nothing is grown; a same-size disk is not grown', async () => {
    const t = target('grow-fat.img', 192 * MiB);
    const r = await restoreImage({ store, name: 'gpt-fat-last', target: t, grow: true });
    expect(r.grow).toMatchObject({ grown: false, partition: 2, filesystem: 'fat32' });
    expect(r.grow?.reason).toMatch(/partition 2 left as it is: fat32: rackcast does not resize FAT/);
    expect(sfdisk(t).partitions[1]).toMatchObject({ start: 56 * 2048, size: 40 * 2048 });
    verifyTable(t);
    const plain = await restoreImage({ store, name: 'gpt-ext', target: target('nogrow.img', 256 * MiB) });
    expect(plain.grow).toBeUndefined();
    expect(sfdisk(join(work, 'nogrow.img')).partitions[1]?.size).toBe(86 * 2048);
    const same = await restoreImage({ store, name: 'gpt-ext', target: join(work, 'same.img'), grow: true });
    expect(same.grow).toBeUndefined();
    expect(sha256File(join(work, 'same.img'))).toBe(sha256File(join(work, 'gpt-ext.img')));
  }, 120_000);
});

d('image fit', () => {
  it('ext4: a 512 MiB image fitted to 256 MiB restores onto a 256 MiB disk, fsck-clean, files identical', async () => {
    const r = await fitImage({ store, name: 'ext-512', size: 256 * MiB, workers: 2 });
    const m = r.image.manifest;
    expect(m.name).toBe('ext-512-fit-256m');
    expect(m.disk.size).toBe(256 * MiB);
    expect(m.derivedFrom).toMatchObject({ image: 'ext-512', digest: store.open('ext-512').digest });
    expect(m.derivedFrom?.note).toMatch(/partition 1 \(ext4\) shrunk from 534773760 to \d+ bytes/);
    expect(r.minimum).toBeGreaterThan(55 * MiB);
    expect(r.minimum).toBeLessThan(r.newSize);
    expect(readdirSync(join(store.root, 'tmp')).filter((f) => f.startsWith('fit-'))).toEqual([]);
    const t = target('fit-ext.img', 256 * MiB);
    await restoreImage({ store, name: m.name, target: t });
    verifyTable(t);
    const pt = sfdisk(t);
    expect(pt.lastlba).toBe(256 * 2048 - 34);
    expect(pt.partitions).toEqual([expect.objectContaining({ start: 2048, size: 256 * 2048 - 34 - 2048 + 1 })]);
    const root = part(t, MiB, r.newSize, join(work, 'fit-root.ext4'));
    sh('e2fsck', ['-fn', root]);
    sameExtFiles(root, bigTree);
    // and the fitted image grows again onto a larger disk
    const big = target('fit-ext-big.img', 384 * MiB);
    expect((await restoreImage({ store, name: m.name, target: big, grow: true })).grow).toMatchObject({ grown: true, partition: 1 });
    sh('e2fsck', ['-fn', part(big, MiB, 383 * MiB - 33 * 512, join(work, 'fit-big.ext4'))]);
    expect(ourLoops()).toEqual([]);
  }, 240_000);

  it('NTFS: the same on an MBR disk', async () => {
    const r = await fitImage({ store, name: 'ntfs-512', size: 256 * MiB, as: 'ntfs-small', workers: 2 });
    expect(r.image.manifest.disk.size).toBe(256 * MiB);
    expect(r).toMatchObject({ partition: 1, filesystem: 'ntfs', oldSize: 511 * MiB, newSize: 255 * MiB });
    const t = target('fit-ntfs.img', 256 * MiB);
    await restoreImage({ store, name: 'ntfs-small', target: t });
    verifyTable(t);
    expect(sfdisk(t).partitions).toEqual([expect.objectContaining({ start: 2048, size: 255 * 2048 })]);
    const vol = part(t, MiB, 255 * MiB, join(work, 'fit.ntfs'));
    sh('ntfsfix', ['-n', vol]);
    sameNtfsFiles(vol, bigTree);
  }, 240_000);

  it('a size below the minimum is refused with the bytes needed; no image, no temp file, no loop device', async () => {
    const e = await refusal(fitImage({ store, name: 'ext-512', size: 48 * MiB, workers: 2 }));
    expect(e.code).toBe('RC_ERR_TARGET_TOO_SMALL');
    const needed = e.fields.needed as number;
    expect(needed).toBeGreaterThan(56 * MiB);
    expect(needed).toBeLessThan(256 * MiB); // resize2fs -P's estimate is generous: ~130 MiB for ~60 MiB of files
    expect(e.message).toContain(`needs at least ${needed} bytes`);
    expect(store.has('ext-512-fit-48m')).toBe(false);
    expect(readdirSync(join(store.root, 'tmp')).filter((f) => f.startsWith('fit-'))).toEqual([]);
    expect(ourLoops()).toEqual([]);
    // the figure is right: that many bytes (rounded up to a MiB) work
    const ok = await fitImage({ store, name: 'ext-512', size: Math.ceil(needed / MiB) * MiB, as: 'ext-512-at-minimum', workers: 2 });
    expect(ok.image.manifest.disk.size).toBe(Math.ceil(needed / MiB) * MiB);
    // a FAT last partition that must shrink cannot: refused with the bytes it needs as it is
    const fat = await refusal(fitImage({ store, name: 'gpt-fat-last', size: 64 * MiB }));
    expect(fat.code).toBe('RC_ERR_TARGET_TOO_SMALL');
    expect(fat.message).toMatch(/partition 2, the last, cannot shrink \(fat32/);
    expect(fat.fields.needed).toBe(96 * MiB + 33 * 512);
    // …but with room after it the table alone is rewritten
    const room = await fitImage({ store, name: 'gpt-fat-last', size: 100 * MiB, workers: 2 });
    expect(room.newSize).toBe(room.oldSize);
    const t = target('fat-room.img', 100 * MiB);
    await restoreImage({ store, name: room.image.manifest.name, target: t });
    verifyTable(t);
    sh('fsck.vfat', ['-n', part(t, 56 * MiB, 40 * MiB, join(work, 'room.vfat'))]);
  }, 240_000);

  it('a fit interrupted while writing or shrinking leaves no image, no temp file, no loop device', async () => {
    for (const at of ['write', 'shrink', 'capture']) {
      const ac = new AbortController();
      let seen = false;
      const e = await refusal(fitImage({
        store, name: 'ext-512', size: 300 * MiB, workers: 2, signal: ac.signal,
        onProgress: (p) => { if (p.phase === at && p.done > 0) { seen = true; ac.abort(); } },
      }));
      expect([at, seen, e.code, e.message]).toEqual([at, true, 'RC_ERR_IO', expect.stringMatching(/interrupted|aborted/)]);
      expect(store.has('ext-512-fit-300m')).toBe(false);
      expect(readdirSync(join(store.root, 'tmp')).filter((f) => f.startsWith('fit-'))).toEqual([]);
      expect(ourLoops()).toEqual([]);
    }
  }, 300_000);

  it('the CLI: image fit --size 300M --as, info shows where it came from, restore --grow prints what grew', () => {
    const rc = (...args: string[]): { code: number; out: string; err: string } => {
      const r = spawnSync(process.execPath, [resolve('bin/rackcast.js'), ...args], { encoding: 'utf8', env: { ...process.env, RACKCAST_DATA_DIR: store.root } });
      return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
    };
    const fit = rc('image', 'fit', 'ext-512', '--size', '300M', '--as', 'cli-fit');
    expect([fit.code, fit.err]).toEqual([0, expect.any(String)]);
    expect(fit.out).toMatch(/resize2fs: The filesystem on \/dev\/loop\d+ is now \d+/);
    expect(fit.out).toMatch(/fitted ext-512 to 300\.0 MiB as cli-fit: partition 1 510\.0 MiB → 299\.0 MiB \(ext4 minimum [\d.]+ MiB\)/);
    expect(rc('image', 'info', 'cli-fit').out).toMatch(/derived +from ext-512 \(sha256:[0-9a-f]{12}\): fitted to 314572800 bytes: partition 1 \(ext4\) shrunk/);
    const t = target('cli-grow.img', 400 * MiB);
    const grow = rc('image', 'restore', 'cli-fit', t, '--grow');
    expect(grow.code).toBe(0);
    expect(grow.out).toMatch(/grow: partition 1 \(ext4\) grown from \d+ to \d+ bytes \(e2fsck: .*; resize2fs: .*\)/);
    const small = rc('image', 'fit', 'ext-512', '--size', '16M');
    expect(small.code).toBe(1);
    expect(small.err).toMatch(/^rackcast: image ext-512 cannot be fitted to 16777216 bytes .* it needs at least \d+ bytes .*\[RC_ERR_TARGET_TOO_SMALL\]\n$/);
  }, 240_000);

  it('refuses a size the image already fits, and the restore refusal names image fit', async () => {
    expect((await refusal(fitImage({ store, name: 'ext-512', size: 600 * MiB }))).code).toBe('RC_ERR_USAGE');
    const small = target('too-small.img', 256 * MiB);
    const e = await refusal(restoreImage({ store, name: 'ext-512', target: small }));
    expect(e.code).toBe('RC_ERR_TARGET_TOO_SMALL');
    expect(e.message).toContain(`rackcast image fit ext-512 --size ${256 * MiB}`);
  });
});
