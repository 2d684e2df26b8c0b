// A cpio "newc" writer for initramfs archives (the only format the kernel unpacks; see the
// kernel's Documentation/driver-api/early-userspace/buffer-format.rst). Written here rather than
// with cpio(1) so archives are reproducible: entries sorted by path, owner root, one fixed mtime,
// inode numbers by position, device nodes without mknod on the build host.
//
//   offset  width  field (ASCII hex, 8 digits each after the magic)
//        0      6  magic "070701"
//        6      8  ino         14  mode        22  uid        30  gid
//       38      8  nlink       46  mtime       54  filesize   62  devmajor
//       70      8  devminor    78  rdevmajor   86  rdevminor  94  namesize (with its NUL)
//      102      8  check (0)
//      110         name, NUL, padded to 4 bytes; then data padded to 4 bytes
// The archive ends with an entry named "TRAILER!!!".
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { BuildError } from './run.ts';

export type Entry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; mode: number; source: string; size: number }
  | { type: 'data'; path: string; mode: number; data: Buffer }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char'; path: string; mode: number; major: number; minor: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/** Normalize paths ("./a/b/" → "a/b") and add missing parent directories; sort parents first. */
export function normalize(entries: Entry[]): Entry[] {
  const byPath = new Map<string, Entry>();
  for (const e of entries) {
    const path = e.path.replace(/^\.?\/+/, '').replace(/\/+$/, '');
    if (!path || path.split('/').includes('..')) throw new BuildError(`bad initramfs path "${e.path}"`);
    const prev = byPath.get(path);
    if (prev && !(prev.type === 'dir' && e.type === 'dir')) throw new BuildError(`initramfs path ${path} given twice`);
    byPath.set(path, { ...e, path });
  }
  for (const path of [...byPath.keys()]) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      const p = byPath.get(parent);
      if (!p) byPath.set(parent, { type: 'dir', path: parent });
      else if (p.type !== 'dir') throw new BuildError(`initramfs path ${parent} is a ${p.type} but ${path} needs it as a directory`);
    }
  }
  // A prefix sorts before its extensions, so every directory precedes its contents.
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export interface CpioResult { bytes: number; entries: number }

/** Write `entries` as one newc archive to `outPath`. `mtime` is seconds since the epoch. */
export function writeCpio(outPath: string, entries: Entry[], mtime = 0): CpioResult {
  const list = normalize(entries);
  const fd = openSync(outPath, 'w');
  let bytes = 0;
  const put = (b: Uint8Array): void => {
    let off = 0;
    while (off < b.length) off += writeSync(fd, b, off);
    bytes += b.length;
  };
  const header = (ino: number, mode: number, size: number, name: string, rdev: [number, number] = [0, 0]): void => {
    const nameLen = Buffer.byteLength(name) + 1;
    const fields = [ino, mode, 0, 0, mode & S_IFDIR ? 2 : 1, mtime, size, 0, 0, rdev[0], rdev[1], nameLen, 0];
    const head = `070701${fields.map(hex8).join('')}${name}\0`;
    put(Buffer.from(head + '\0'.repeat(pad4(110 + nameLen))));
  };
  const chunk = Buffer.allocUnsafe(8 << 20);
  try {
    let ino = 1;
    for (const e of list) {
      ino++;
      if (e.type === 'dir') header(ino, S_IFDIR | (e.mode ?? 0o755), 0, e.path);
      else if (e.type === 'symlink') {
        const t = Buffer.from(e.target);
        header(ino, S_IFLNK | 0o777, t.length, e.path);
        put(t);
        put(Buffer.alloc(pad4(t.length)));
      } else if (e.type === 'char') header(ino, S_IFCHR | e.mode, 0, e.path, [e.major, e.minor]);
      else if (e.type === 'data') {
        header(ino, S_IFREG | e.mode, e.data.length, e.path);
        put(e.data);
        put(Buffer.alloc(pad4(e.data.length)));
      } else {
        header(ino, S_IFREG | e.mode, e.size, e.path);
        const src = openSync(e.source, 'r');
        try {
          let done = 0;
          while (done < e.size) {
            const n = readSync(src, chunk, 0, Math.min(chunk.length, e.size - done), done);
            if (n === 0) throw new BuildError(`${e.source} shrank while being archived`);
            put(chunk.subarray(0, n));
            done += n;
          }
        } finally {
          closeSync(src);
        }
        put(Buffer.alloc(pad4(e.size)));
      }
    }
    header(0, 0, 0, 'TRAILER!!!');
  } finally {
    closeSync(fd);
  }
  return { bytes, entries: list.length };
}

/** Paths that are not directories (for checking two archives never overwrite each other). */
export function nonDirPaths(entries: Entry[]): Set<string> {
  return new Set(normalize(entries).filter((e) => e.type !== 'dir').map((e) => e.path));
}
