// The filesystem-tools archive (boot/fstools.cpio.zst): what a deploy with `grow` runs after the
// image is written (services/image/geometry.ts, fs/resize.ts): e2fsck and resize2fs for ext2/3/4,
// ntfsresize for NTFS, and util-linux's losetup (busybox's has no --sizelimit, which keeps a
// grown filesystem off the GPT backup). From Debian packages (apt-get download + dpkg -x, as the
// kernel and busybox), with the shared libraries they need from the same packages; libc and the
// loader are in the base archive already.
//
// A third archive rather than more of the base one: 0.75 MB the base initrd's 35 MB budget has no
// room for next to Node 24, and only deploy tasks that grow a partition need it, so the appliance
// adds it to their boot script only (appliance/boot/script.ts). The tools go to /usr/sbin, which
// comes before busybox's /sbin in PATH, so they never replace a base-archive file.
import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { FSTOOLS_INITRD } from '../../appliance/boot/script.ts';
import type { Entry } from './cpio.ts';
import { extractDeb, fetchDeb, type Deb } from './debs.ts';
import { BuildError, run } from './run.ts';

export const FSTOOLS_ARCHIVE = FSTOOLS_INITRD;

/** Debian packages and the files taken from each (binaries, then libraries as their sonames). */
export const FSTOOLS_PACKAGES: Record<string, string[]> = {
  e2fsprogs: ['sbin/e2fsck', 'sbin/resize2fs'],
  'ntfs-3g': ['sbin/ntfsresize'],
  mount: ['sbin/losetup'],
  libext2fs2: ['lib/x86_64-linux-gnu/libext2fs.so.2', 'lib/x86_64-linux-gnu/libe2p.so.2'],
  'libcom-err2': ['lib/x86_64-linux-gnu/libcom_err.so.2'],
  libblkid1: ['usr/lib/x86_64-linux-gnu/libblkid.so.1'],
  libuuid1: ['usr/lib/x86_64-linux-gnu/libuuid.so.1'],
  'libntfs-3g89': ['lib/x86_64-linux-gnu/libntfs-3g.so.89'],
  libsmartcols1: ['usr/lib/x86_64-linux-gnu/libsmartcols.so.1'],
};

export interface FsTools { debs: Deb[]; tools: string[]; entries: Entry[] }

/**
 * Fetch and unpack the packages, and list the archive's entries: binaries as /usr/sbin/NAME,
 * libraries under /lib/x86_64-linux-gnu by soname (the loader's default search path). Checks that
 * every binary's needed libraries are either shipped here or in `baseLibs` (sonames).
 */
export async function fsToolsEntries(cacheDir: string, baseLibs: string[]): Promise<FsTools> {
  const debs = await Promise.all(Object.keys(FSTOOLS_PACKAGES).map((p) => fetchDeb(p, cacheDir)));
  const entries: Entry[] = [];
  const tools: string[] = [];
  const shipped = new Set(baseLibs.map((l) => basename(l)));
  const bins: string[] = [];
  for (const deb of debs) {
    const { root } = await extractDeb(deb, cacheDir);
    for (const rel of FSTOOLS_PACKAGES[deb.pkg] as string[]) {
      const src = join(root, rel);
      if (!existsSync(src)) throw new BuildError(`${deb.file} has no ${rel} (package layout changed? see boot-env/build/fstools.ts)`);
      const name = basename(rel);
      // a library soname in a .deb is a symlink to the versioned file: the cpio gets the content
      const source = realpathSync(src);
      const lib = rel.includes('/lib/') || rel.startsWith('lib/');
      entries.push({ type: 'file', path: lib ? `lib/x86_64-linux-gnu/${name}` : `usr/sbin/${name}`, mode: lib ? 0o644 : 0o755, source, size: statSync(source).size });
      bins.push(source);
      if (lib) shipped.add(name); else tools.push(name);
    }
  }
  for (const bin of bins) {
    const needed = [...(await run('readelf', ['-d', bin])).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1] as string);
    const missing = needed.filter((l) => !shipped.has(l));
    if (missing.length) throw new BuildError(`${basename(bin)} needs ${missing.join(', ')}, which neither the fs-tools nor the base archive ships`);
  }
  return { debs, tools, entries };
}
