// Real filesystems in temp files for the used-blocks tests: builders around the real tools
// (mkfs.ext4 -d + debugfs, mkfs.fat + mtools, mkntfs + ntfscp + ntfstruncate; nothing mounted),
// files whose every 512-byte sector carries a findable marker, partclone's used-block figure,
// and readers over files.
import { expect } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allocationFor, type Allocation, type Range, type ReadAt } from '../../../../services/image/fs/index.ts';
import { applyFixups, decodeNtfsBoot, recordAttributes } from '../../../../services/image/fs/ntfs.ts';

import { MiB, sh } from '../../../helpers/disks.ts';
export { MiB, sh, hasTool } from '../../../helpers/disks.ts';

/** stdout and stderr together, whatever the exit status (fsck exits non-zero on findings). */
export function shAll(cmd: string, args: string[]): { status: number; out: string } {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
    return { status: 0, out };
  } catch (e) {
    const x = e as { status?: number; stdout?: string; stderr?: string };
    return { status: x.status ?? -1, out: `${x.stdout ?? ''}${x.stderr ?? ''}` };
  }
}

export function tempDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `rc-fs-${tag}-`));
}

/** A readAt over a file (short at its end, like a disk). Close it when done. */
export function fileReader(path: string): { readAt: ReadAt; size: number; close: () => void } {
  const fd = openSync(path, 'r');
  const size = fstatSync(fd).size;
  return {
    size,
    readAt: async (offset, length) => {
      const b = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
      const n = b.length ? readSync(fd, b, 0, b.length, offset) : 0;
      return b.subarray(0, n);
    },
    close: () => closeSync(fd),
  };
}

/** The used ranges of the filesystem in an image file, as capture sees them. */
export async function allocFile(img: string, force = false): Promise<Allocation> {
  const f = fileReader(img);
  try { return await allocationFor(f.readAt, { start: 0, size: f.size }, { force }); } finally { f.close(); }
}

export const MARK = 'RCMK';

/**
 * `size` bytes whose every 512-byte sector starts "RCMK", the file's tag (12 characters) and the
 * sector number, then pseudo-random bytes: findable on the raw device, incompressible, and
 * never a hole.
 */
export function markedContent(tag: string, size: number): Buffer {
  if (tag.length > 12) throw new Error('tag too long');
  const b = Buffer.alloc(size);
  let x = 0x9e3779b9 ^ (tag.length * 2654435761);
  for (const c of tag) x = (x * 31 + c.charCodeAt(0)) >>> 0;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  for (let s = 0; s * 512 < size; s++) {
    const head = Buffer.alloc(20);
    head.write(MARK, 0, 'latin1');
    head.write(tag.padEnd(12, ' '), 4, 'latin1');
    head.writeUInt32LE(s, 16);
    head.copy(b, s * 512, 0, Math.min(20, size - s * 512));
  }
  return b;
}

/** Every sector of `path` that starts with a marker: tag → absolute byte offsets. */
export function scanMarkers(path: string, base = 0, length = Infinity): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const fd = openSync(path, 'r');
  try {
    const end = Math.min(fstatSync(fd).size, base + length);
    const buf = Buffer.alloc(4 * MiB);
    for (let pos = base; pos < end; pos += buf.length) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, end - pos), pos);
      for (let o = 0; o + 20 <= n; o += 512) {
        if (buf[o] !== 0x52 || buf.toString('latin1', o, o + 4) !== MARK) continue;
        const tag = buf.toString('latin1', o + 4, o + 16).trimEnd();
        let l = out.get(tag);
        if (l === undefined) { l = []; out.set(tag, l); }
        l.push(pos + o);
      }
      if (n === 0) break;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** Is [off, off+len) inside one of the sorted ranges? */
export function covered(ranges: readonly Range[], off: number, len = 512): boolean {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [a, b] = ranges[mid] as Range;
    if (off + len <= a) hi = mid - 1;
    else if (off >= b) lo = mid + 1;
    else return off >= a && off + len <= b;
  }
  return false;
}

/** partclone's figure for a filesystem image: used blocks × block size, and its device size. */
export function partcloneUsed(tool: string, image: string, work: string): { usedBytes: number; deviceBytes: number; blockSize: number } {
  const log = join(work, `partclone-${Date.now()}.log`);
  shAll(tool, ['-c', '-s', image, '-O', '/dev/null', '-L', log]);
  const text = sh('cat', [log]);
  rmSync(log, { force: true });
  const used = /Space in use:.*=\s*(\d+) Blocks/.exec(text);
  const dev = /Device size:.*=\s*(\d+) Blocks/.exec(text);
  const bs = /Block size:\s*(\d+) Byte/.exec(text);
  if (!used || !dev || !bs) throw new Error(`cannot parse ${tool}'s log:\n${text}`);
  const blockSize = Number(bs[1]);
  return { usedBytes: Number(used[1]) * blockSize, deviceBytes: Number(dev[1]) * blockSize, blockSize };
}

/** Files to keep (tag → content) and files to delete; sizes are odd on purpose. */
export function fileSet(prefix: string, keep: number, del: number, base = 300 * 1024): { keep: [string, Buffer][]; del: [string, Buffer][] } {
  const mk = (kind: string, n: number): [string, Buffer][] =>
    Array.from({ length: n }, (_, i) => { const tag = `${prefix}${kind}${i}`; return [tag, markedContent(tag, base + i * 77_777 + 1234)]; });
  return { keep: mk('k', keep), del: mk('d', del) };
}

/** ext2/3/4 in `img` (size bytes) with `keep` files in the root and `del` files written, then deleted by debugfs. */
export function makeExt(work: string, img: string, size: number, mkfs: string, args: string[], files: ReturnType<typeof fileSet>): void {
  const tree = join(work, `tree-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(join(tree, 'dir', 'sub'), { recursive: true });
  for (const [tag, data] of files.keep) writeFileSync(join(tree, 'dir', 'sub', tag), data);
  for (const [tag, data] of files.del) writeFileSync(join(tree, tag), data);
  writeFileSync(join(tree, 'small.txt'), 'tiny\n');
  rmSync(img, { force: true });
  sh(mkfs, ['-q', '-F', '-E', 'root_owner=0:0', ...args, '-d', tree, img, `${size / 1024}k`]);
  rmSync(tree, { recursive: true, force: true });
  for (const [tag] of files.del) sh('debugfs', ['-w', '-R', `rm /${tag}`, img]);
}

/** The path inside the ext tree makeExt uses for a kept file. */
export const extPath = (tag: string): string => `/dir/sub/${tag}`;

/** FAT12/16/32 in `img` with kept files under ::/DIR and deleted files removed by mdel. */
export function makeFat(work: string, img: string, sizeKiB: number, bits: 12 | 16 | 32, args: string[], files: ReturnType<typeof fileSet>): void {
  rmSync(img, { force: true });
  sh('mkfs.fat', ['-F', String(bits), ...args, '-C', img, String(sizeKiB)]);
  sh('mmd', ['-i', img, '::/DIR']);
  const put = (tag: string, data: Buffer, dst: string): void => {
    const f = join(work, tag);
    writeFileSync(f, data);
    sh('mcopy', ['-i', img, f, dst]);
    rmSync(f);
  };
  // interleave kept and deleted files so that freed clusters lie between used ones
  const n = Math.max(files.keep.length, files.del.length);
  for (let i = 0; i < n; i++) {
    const k = files.keep[i];
    const d = files.del[i];
    if (k) put(k[0], k[1], `::/DIR/${k[0]}`);
    if (d) put(d[0], d[1], `::/${d[0]}`);
  }
  for (const [tag] of files.del) sh('mdel', ['-i', img, `::/${tag}`]);
}

/** NTFS in `img` (mkntfs -F -Q), kept files copied in by ntfscp, deleted ones truncated to 0 by ntfstruncate. */
export function makeNtfs(work: string, img: string, size: number, args: string[], files: ReturnType<typeof fileSet>): void {
  rmSync(img, { force: true });
  sh('truncate', ['-s', String(size), img]);
  sh('mkntfs', ['-F', '-Q', ...args, img]);
  const n = Math.max(files.keep.length, files.del.length);
  for (let i = 0; i < n; i++) {
    for (const e of [files.keep[i], files.del[i]]) {
      if (!e) continue;
      const f = join(work, e[0]);
      writeFileSync(f, e[1]);
      sh('ntfscp', ['-q', img, f, e[0]]);
      rmSync(f);
    }
  }
  for (const [tag] of files.del) {
    const inode = /Dumping Inode (\d+)/.exec(sh('ntfsinfo', ['-F', tag, img]))?.[1];
    if (inode === undefined) throw new Error(`no inode for ${tag}`);
    sh('ntfstruncate', ['-q', img, inode, '0x80', '', '0']);
  }
}

/** Copy `src` into `dst` at `offset` (dst stays sparse), skipping all-zero 1 MiB pieces. */
export function copyInto(src: string, dst: string, offset: number): void {
  const from = openSync(src, 'r');
  const to = openSync(dst, 'r+');
  try {
    const buf = Buffer.alloc(MiB);
    for (let pos = 0; ; pos += MiB) {
      const n = readSync(from, buf, 0, MiB, pos);
      if (n === 0) break;
      if (buf.subarray(0, n).some((b) => b !== 0)) writeSync(to, buf, 0, n, offset + pos);
    }
  } finally {
    closeSync(from);
    closeSync(to);
  }
}

export type PartFs = 'ext4' | 'ext4-1k' | 'ext2' | 'fat12' | 'fat16' | 'fat32' | 'ntfs' | 'swap' | 'none';
export interface DiskPartSpec { fs: PartFs; size: number; type: string; gapBefore?: number; logical?: boolean }
export interface BuiltPart { index: number; fs: PartFs; start: number; size: number; files: ReturnType<typeof fileSet> }
export interface BuiltDisk { path: string; size: number; parts: BuiltPart[] }

/**
 * A sparse disk file with a real partition table (sfdisk) and a real filesystem in each partition,
 * filled by makeExt/makeFat/makeNtfs (kept + deleted marked files). `label` 'dos' with `logical`
 * parts puts those in one extended partition (after the primaries). 1 MiB alignment throughout.
 */
export function makeDisk(work: string, name: string, label: 'gpt' | 'dos', specs: DiskPartSpec[], tail = MiB): BuiltDisk {
  const path = join(work, `${name}.img`);
  const parts: BuiltPart[] = [];
  let pos = MiB;
  const lines: string[] = [`label: ${label}`];
  const logicals = specs.filter((s) => s.logical);
  const primaries = specs.filter((s) => !s.logical);
  let index = 1;
  const place = (s: DiskPartSpec, idx: number): BuiltPart => {
    pos += s.gapBefore ?? 0;
    const p: BuiltPart = { index: idx, fs: s.fs, start: pos, size: s.size, files: fileSet(`${name.slice(0, 3)}${idx}`, 3, 2, 150 * 1024) };
    lines.push(`start=${pos / 512}, size=${s.size / 512}, type=${s.type}`);
    pos += s.size;
    return p;
  };
  for (const s of primaries) parts.push(place(s, index++));
  if (logicals.length) {
    const extStart = pos;
    const extSize = logicals.reduce((n, s) => n + s.size + (s.gapBefore ?? 0) + MiB, 0);
    lines.push(`start=${extStart / 512}, size=${extSize / 512}, type=5`);
    let li = 5;
    for (const s of logicals) { pos += MiB; parts.push(place(s, li++)); } // 1 MiB for each EBR
    pos = extStart + extSize;
  }
  const size = pos + tail;
  rmSync(path, { force: true });
  sh('truncate', ['-s', String(size), path]);
  sh('sfdisk', ['-q', path], lines.join('\n') + '\n');
  for (const p of parts) {
    const img = join(work, `${name}-p${p.index}.img`);
    switch (p.fs) {
      case 'ext4': makeExt(work, img, p.size, 'mkfs.ext4', ['-b', '4096'], p.files); break;
      case 'ext4-1k': makeExt(work, img, p.size, 'mkfs.ext4', ['-b', '1024'], p.files); break;
      case 'ext2': makeExt(work, img, p.size, 'mkfs.ext2', [], p.files); break;
      case 'fat12': case 'fat16': case 'fat32':
        makeFat(work, img, p.size / 1024, Number(p.fs.slice(3)) as 12 | 16 | 32, p.fs === 'fat32' ? ['-s', '1'] : [], p.files); break;
      case 'ntfs': makeNtfs(work, img, p.size, [], p.files); break;
      case 'swap': sh('truncate', ['-s', String(p.size), img]); sh('mkswap', ['-q', img]); break;
      case 'none': writeFileSync(img, markedContent(`${name.slice(0, 3)}${p.index}raw`, 256 * 1024)); break;
    }
    copyInto(img, path, p.start);
    rmSync(img);
  }
  return { path, size, parts };
}

/**
 * Every sector of every kept file is inside `ranges`; every deleted file is still on the disk
 * (its markers are found) but no sector of it is inside `ranges`.
 */
export function expectMarkersCovered(img: string, ranges: readonly Range[], files: { keep: [string, Buffer][]; del: [string, Buffer][] }): void {
  const marks = scanMarkers(img);
  for (const [tag, data] of files.keep) {
    const at = marks.get(tag) ?? [];
    expect(at.length).toBe(Math.ceil(data.length / 512));
    expect(at.filter((o) => !covered(ranges, o))).toEqual([]);
  }
  for (const [tag] of files.del) {
    const at = marks.get(tag) ?? [];
    expect(at.length).toBeGreaterThan(0); // the data is still on disk …
    expect(at.filter((o) => covered(ranges, o))).toEqual([]); // … but not in the image
  }
}

/**
 * Mark an NTFS volume (a file) dirty the way Windows does: the $VOLUME_INFORMATION flags of MFT
 * record 3 get VOLUME_IS_DIRTY (the MFT is contiguous on a fresh mkntfs volume).
 */
export function markNtfsDirty(path: string): void {
  const disk = readFileSync(path);
  const boot = decodeNtfsBoot(disk.subarray(0, 512), disk.length);
  const at = boot.mftLcn * boot.clusterSize + 3 * boot.recordSize;
  const rec = Buffer.from(disk.subarray(at, at + boot.recordSize));
  applyFixups(rec, 'record 3');
  const vi = recordAttributes(rec, 'record 3').find((x) => x.type === 0x70);
  if (!vi) throw new Error('no $VOLUME_INFORMATION');
  const flags = vi.offset + rec.readUInt16LE(vi.offset + 0x14) + 10;
  expect(flags % 512).not.toBe(510); // not under a fixup
  const fd = openSync(path, 'r+');
  try { writeSync(fd, Buffer.from([1, 0]), 0, 2, at + flags); } finally { closeSync(fd); }
}
