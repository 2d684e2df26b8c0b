// Debian packages as build inputs: resolve a package name to the exact .deb apt would fetch,
// download it once into the cache (checked against the SHA-256 of the archive's index), and
// unpack it once with dpkg -x. Nothing is installed: busybox-static in particular would replace
// the machine's busybox, and a kernel must never land in /boot.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BuildError, run, sha256File } from './run.ts';

export interface Deb {
  pkg: string;
  /** the .deb file name as apt names it (epoch encoded as %3a) */
  file: string;
  path: string;
  sha256: string;
  size: number;
  /** true when this build downloaded it */
  downloaded: boolean;
}

// Root may not be able to hand the download directory to the _apt sandbox user; we verify the
// archive's SHA-256 ourselves, so run the download as root instead of printing a warning.
const APT_OPTS = ['-q', '-o', 'APT::Sandbox::User=root'];

/** The versioned kernel image package behind the linux-image-amd64 metapackage. */
export async function kernelPackage(meta = 'linux-image-amd64'): Promise<string> {
  const out = await run('apt-cache', ['depends', meta]);
  const m = /Depends:\s+(linux-image-[0-9][^\s]*)/.exec(out);
  if (!m?.[1]) throw new BuildError(`apt-cache depends ${meta} names no linux-image-<version> package:\n${out}\n(run apt-get update?)`);
  return m[1];
}

interface Uri { url: string; file: string; size: number; sha256: string }

async function printUri(pkg: string): Promise<Uri> {
  const out = await run('apt-get', [...APT_OPTS, 'download', '--print-uris', pkg]);
  // 'http://…/name_1.0_amd64.deb' name_1%3a1.0_amd64.deb 928188 SHA256:3d3f…
  const m = /^'([^']+)'\s+(\S+)\s+(\d+)\s+SHA256:([0-9a-f]{64})/m.exec(out);
  if (!m) throw new BuildError(`apt-get download --print-uris ${pkg} gave no SHA256 line:\n${out}`);
  return { url: m[1] as string, file: m[2] as string, size: Number(m[3]), sha256: m[4] as string };
}

/** Download `pkg` into <cache>/debs unless the same archive (by SHA-256) is already there. */
export async function fetchDeb(pkg: string, cacheDir: string): Promise<Deb> {
  const dir = join(cacheDir, 'debs');
  mkdirSync(dir, { recursive: true });
  const uri = await printUri(pkg);
  const path = join(dir, uri.file);
  if (existsSync(path) && (await sha256File(path)) === uri.sha256) {
    return { pkg, file: uri.file, path, sha256: uri.sha256, size: uri.size, downloaded: false };
  }
  // Download into a private directory and rename, so an interrupted build never leaves a
  // truncated .deb where the next build would look.
  const tmp = join(dir, `.tmp-${process.pid}-${pkg}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  try {
    await run('apt-get', [...APT_OPTS, 'download', pkg], { cwd: tmp });
    const got = readdirSync(tmp).find((f) => f.endsWith('.deb'));
    if (!got) throw new BuildError(`apt-get download ${pkg} produced no .deb`);
    const sum = await sha256File(join(tmp, got));
    if (sum !== uri.sha256) throw new BuildError(`${got}: SHA-256 ${sum} differs from the archive index (${uri.sha256})`);
    renameSync(join(tmp, got), path);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return { pkg, file: uri.file, path, sha256: uri.sha256, size: uri.size, downloaded: true };
}

const DONE = '.rackcast-extracted';

/**
 * dpkg -x the package into <cache>/extract/<deb name>/ once; later builds reuse the tree. The
 * marker file is written last, so a half-extracted tree is thrown away and redone.
 */
export async function extractDeb(deb: Deb, cacheDir: string): Promise<{ root: string; extracted: boolean }> {
  const root = join(cacheDir, 'extract', deb.file.replace(/\.deb$/, ''));
  if (existsSync(join(root, DONE))) return { root, extracted: false };
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  await run('dpkg', ['-x', deb.path, root]);
  writeFileSync(join(root, DONE), `${deb.sha256}\n`);
  return { root, extracted: true };
}

/** Remove cached .debs and trees that this build did not use (old kernels after an update). */
export function pruneCache(cacheDir: string, keep: Deb[]): string[] {
  const removed: string[] = [];
  const files = new Set(keep.map((d) => d.file));
  const trees = new Set(keep.map((d) => d.file.replace(/\.deb$/, '')));
  const debs = join(cacheDir, 'debs');
  const ext = join(cacheDir, 'extract');
  for (const f of existsSync(debs) ? readdirSync(debs) : []) {
    if (f.endsWith('.deb') && !files.has(f)) { rmSync(join(debs, f), { force: true }); removed.push(f); }
  }
  for (const d of existsSync(ext) ? readdirSync(ext) : []) {
    if (!trees.has(d)) { rmSync(join(ext, d), { recursive: true, force: true }); removed.push(`${d}/`); }
  }
  return removed;
}
