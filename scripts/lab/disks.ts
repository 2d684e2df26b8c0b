// Real disks for tests, the demo and benchmarks: sparse files with a real partition table (sfdisk) and real filesystems
// (mkfs.ext4 -d, mkfs.vfat + mtools), populated with a tree of files. Nothing is mounted.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readSync, symlinkSync, writeFileSync, writeSync, statSync, rmSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export const MiB = 1 << 20;

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 << 20, ...(input !== undefined ? { input } : {}) });
}

export function hasTool(cmd: string): boolean {
  try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); return true; } catch { return false; }
}

/** Deterministic pseudo-random bytes (xorshift), so trees are the same in every run. */
export function prng(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** A tree with text, incompressible binaries, a zero-filled file, nested dirs and a symlink. */
export function makeTree(dir: string): string {
  mkdirSync(join(dir, 'etc', 'app'), { recursive: true });
  mkdirSync(join(dir, 'var', 'lib', 'data'), { recursive: true });
  mkdirSync(join(dir, 'home', 'user'), { recursive: true });
  writeFileSync(join(dir, 'etc', 'hostname'), 'rack-node-01\n');
  writeFileSync(join(dir, 'etc', 'app', 'config.ini'), Array.from({ length: 4000 }, (_, i) => `key${i} = value ${i * 7}`).join('\n'));
  for (let i = 0; i < 6; i++) writeFileSync(join(dir, 'var', 'lib', 'data', `blob${i}.bin`), prng(1000 + i, 700 * 1024 + i * 4099));
  writeFileSync(join(dir, 'var', 'lib', 'zeros.img'), Buffer.alloc(3 * MiB));
  writeFileSync(join(dir, 'home', 'user', 'notes.txt'), 'rackcast test tree\n'.repeat(2000));
  symlinkSync('../etc/hostname', join(dir, 'home', 'hostname-link'));
  return dir;
}

export interface PartSpec { start: number; size: number; fs: 'ext4' | 'vfat' }
export interface TestDisk { path: string; size: number; parts: PartSpec[] }

function copyInto(src: string, dst: string, offset: number): void {
  const from = openSync(src, 'r');
  const to = openSync(dst, 'r+');
  const buf = Buffer.alloc(4 * MiB);
  let pos = 0;
  for (;;) {
    const n = readSync(from, buf, 0, buf.length, pos);
    if (n === 0) break;
    // keep the disk sparse where the filesystem image is
    if (buf.subarray(0, n).some((b) => b !== 0)) writeSync(to, buf, 0, n, offset + pos);
    pos += n;
  }
  closeSync(from);
  closeSync(to);
}

function makeFs(work: string, p: PartSpec, tree: string, idx: number): string {
  const img = join(work, `part${idx}.${p.fs}`);
  rmSync(img, { force: true });
  if (p.fs === 'ext4') {
    sh('mkfs.ext4', ['-q', '-F', '-E', 'root_owner=0:0', '-d', tree, img, `${p.size / 1024}k`]);
  } else {
    sh('mkfs.vfat', ['-F', '32', '-s', '1', '-C', img, String(p.size / 1024)]);
    const top = readdirSync(tree).filter((n) => n !== 'home').map((n) => join(tree, n)); // vfat: no symlinks
    sh('mcopy', ['-s', '-i', img, ...top, '::/']);
  }
  return img;
}

/** GPT disk: ext4 "root" + FAT32 "esp", with free space between and after. */
export function makeGptDisk(work: string, tree: string, size = 128 * MiB): TestDisk {
  const path = join(work, 'gpt.img');
  sh('truncate', ['-s', String(size), path]);
  const parts: PartSpec[] = [{ start: 1 * MiB, size: 48 * MiB, fs: 'ext4' }, { start: 56 * MiB, size: 40 * MiB, fs: 'vfat' }];
  sh('sfdisk', ['-q', path], `label: gpt\nlabel-id: 4E2A1C3B-0D5F-4A7E-9B12-3C4D5E6F7A8B\n` +
    `start=${parts[0]!.start / 512}, size=${parts[0]!.size / 512}, type=L, name=root\n` +
    `start=${parts[1]!.start / 512}, size=${parts[1]!.size / 512}, type=U, name=esp\n`);
  parts.forEach((p, i) => copyInto(makeFs(work, p, tree, i), path, p.start));
  return { path, size, parts };
}

/** GPT disk the way installers lay it out: FAT32 "esp" first, ext4 "root" last (a disk to grow). */
export function makeRootLastGptDisk(work: string, tree: string, size = 96 * MiB): TestDisk {
  const path = join(work, 'gpt-root-last.img');
  sh('truncate', ['-s', String(size), path]);
  const parts: PartSpec[] = [{ start: 1 * MiB, size: 33 * MiB, fs: 'vfat' }, { start: 34 * MiB, size: 48 * MiB, fs: 'ext4' }];
  sh('sfdisk', ['-q', path], `label: gpt\n` +
    `start=${parts[0]!.start / 512}, size=${parts[0]!.size / 512}, type=U, name=esp\n` +
    `start=${parts[1]!.start / 512}, size=${parts[1]!.size / 512}, type=L, name=root\n`);
  parts.forEach((p, i) => copyInto(makeFs(work, p, tree, i), path, p.start));
  return { path, size, parts };
}

/** MBR disk: bootable ext4 primary, and an extended partition holding one FAT32 logical. */
export function makeMbrDisk(work: string, tree: string, size = 112 * MiB): TestDisk {
  const path = join(work, 'mbr.img');
  sh('truncate', ['-s', String(size), path]);
  const parts: PartSpec[] = [{ start: 1 * MiB, size: 40 * MiB, fs: 'ext4' }, { start: 50 * MiB, size: 40 * MiB, fs: 'vfat' }];
  sh('sfdisk', ['-q', path], `label: dos\nlabel-id: 0x1234abcd\n` +
    `start=${parts[0]!.start / 512}, size=${parts[0]!.size / 512}, type=83, bootable\n` +
    `start=${48 * MiB / 512}, size=${60 * MiB / 512}, type=5\n` +
    `start=${parts[1]!.start / 512}, size=${parts[1]!.size / 512}, type=c\n`);
  parts.forEach((p, i) => copyInto(makeFs(work, p, tree, i), path, p.start));
  return { path, size, parts };
}

/** Copy one partition's bytes out of a disk file, for fsck. */
export function extractPart(disk: string, p: PartSpec, out: string): string {
  sh('dd', [`if=${disk}`, `of=${out}`, 'bs=1M', `skip=${p.start / MiB}`, `count=${p.size / MiB}`, 'status=none']);
  return out;
}

export function sha256File(path: string): string {
  return createHash('sha256').update(execFileSync('cat', [path], { maxBuffer: 1 << 30 })).digest('hex');
}

export function fileSize(path: string): number {
  return statSync(path).size;
}
