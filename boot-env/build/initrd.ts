// The two initramfs archives and their compression.
//
// base   (boot/initrd.zst)      busybox, kernel modules, node + libraries: ~130 MB of cpio that
//                               changes only with the kernel, busybox or Node. zstd -19 of it takes
//                               a minute, so compressed archives are cached by the SHA-256 of the
//                               (reproducible) cpio: a rebuild with the same inputs costs a copy.
// client (boot/client.cpio.zst) /init, its helper scripts, the client bundle and the zstd addon:
//                               rebuilt in about a second (npm run build:boot-env -- --client-only).
// The bootloader loads both (iPXE: two initrd lines; QEMU: the two files concatenated); the kernel
// unpacks concatenated archives in order, so the client archive may add files but must never
// replace one from the base (checked in full builds).
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { nonDirPaths, writeCpio, type Entry } from './cpio.ts';
import { BuildError, run, sha256File } from './run.ts';

export interface Archive { path: string; bytes: number; cpioBytes: number; entries: number; sha256: string; cpioSha256: string; cached: boolean; seconds: number }

/** Files must appear at most once across the two archives (directories may repeat). */
export function checkNoOverlap(base: Entry[], client: Entry[], name = 'client'): void {
  const a = nonDirPaths(base);
  const clash = [...nonDirPaths(client)].filter((p) => a.has(p));
  if (clash.length) throw new BuildError(`the ${name} archive would replace files of the archives before it: ${clash.join(', ')}`);
}

/** Copy to a temp name and rename, so a reader (the appliance serving /boot) never sees half a file. */
export function installFile(src: string, dest: string): void {
  const tmp = `${dest}.tmp-${process.pid}`;
  copyFileSync(src, tmp);
  renameSync(tmp, dest);
}

/**
 * zstd arguments. `longWindow` (log2 bytes) enables long-distance matching: on the base archive
 * --long=27 saves 0.6 MB over plain -19 (36.0 → 35.4 MB; -22 reaches only 35.2 MB and takes
 * twice as long). The price is memory while the kernel unpacks: it allocates the frame's window
 * (128 MiB) next to the unpacked files (docs/boot-env.md has the measured minimum RAM).
 */
export function zstdArgs(level: number, longWindow?: number): string[] {
  return [...(level > 19 ? ['--ultra'] : []), `-${level}`, ...(longWindow ? [`--long=${longWindow}`] : []), '-T0', '-q', '-f'];
}

export interface ArchiveOptions {
  entries: Entry[];
  dest: string;
  workDir: string;
  level: number;
  longWindow?: number;
  mtime: number;
  /** directory of compressed archives by cpio hash; none = always compress */
  cacheDir?: string;
  keepCached?: number;
}

export async function buildArchive(name: string, o: ArchiveOptions): Promise<Archive> {
  const t0 = performance.now();
  const cpio = join(o.workDir, `${name}.cpio`);
  const w = writeCpio(cpio, o.entries, o.mtime);
  const cpioSha256 = await sha256File(cpio);
  let cached = false;
  let compressed = join(o.workDir, `${name}.cpio.zst`);
  if (o.cacheDir) {
    mkdirSync(o.cacheDir, { recursive: true });
    const hit = join(o.cacheDir, `${cpioSha256}-zstd${o.level}${o.longWindow ? `-long${o.longWindow}` : ''}.zst`);
    if (existsSync(hit)) {
      cached = true;
      const now = new Date();
      utimesSync(hit, now, now); // most recently used: kept by the pruning below
    } else {
      await run('zstd', [...zstdArgs(o.level, o.longWindow), cpio, '-o', compressed]);
      moveInto(compressed, hit);
    }
    compressed = hit;
    pruneArchives(o.cacheDir, o.keepCached ?? 3);
  } else {
    await run('zstd', [...zstdArgs(o.level, o.longWindow), cpio, '-o', compressed]);
  }
  installFile(compressed, o.dest);
  rmSync(cpio, { force: true });
  return {
    path: o.dest,
    bytes: statSync(o.dest).size,
    cpioBytes: w.bytes,
    entries: w.entries,
    sha256: await sha256File(o.dest),
    cpioSha256,
    cached,
    seconds: (performance.now() - t0) / 1000,
  };
}

/**
 * rename, or copy + rename when the cache is another filesystem or mount (EXDEV: the container
 * build mounts the archive cache as a volume beside its work directory).
 */
function moveInto(src: string, dest: string): void {
  try {
    renameSync(src, dest);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    installFile(src, dest);
    rmSync(src, { force: true });
  }
}

function pruneArchives(dir: string, keep: number): void {
  const files = readdirSync(dir).filter((f) => f.endsWith('.zst')).map((f) => ({ f, t: statSync(join(dir, f)).mtimeMs }));
  files.sort((a, b) => b.t - a.t);
  for (const { f } of files.slice(keep)) rmSync(join(dir, f), { force: true });
}
