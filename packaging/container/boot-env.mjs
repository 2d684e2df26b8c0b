// Installs the boot environment built into the image (/opt/rackcast/boot-env-dist) into
// <data>/boot, where `rackcast serve` serves it from. The data directory is a volume that outlives
// the image, so the entry point runs this at every `serve` start; it copies only when the image's
// build differs from what the volume holds (a marker file records which build it installed). A
// boot environment the admin built into the volume themselves (boot-env.json but no marker) is
// left alone.
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// the kernel after its modules' archive, the description last: a half-done copy never pairs a
// new kernel with an old initrd under a description that claims otherwise
export const FILES = ['initrd.zst', 'client.cpio.zst', 'fstools.cpio.zst', 'vmlinuz', 'boot-env.json'];
export const MARKER = '.installed-from-image';

/** --data DIR / --data-dir DIR / --store DIR (or =DIR), else $RACKCAST_DATA_DIR, else the default. */
export function dataDir(argv, env) {
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(data|data-dir|store)(?:=(.*))?$/.exec(argv[i]);
    if (m) return m[2] ?? argv[i + 1];
  }
  return env.RACKCAST_DATA_DIR ?? '/var/lib/rackcast';
}

/** @returns 'none' (the image has none), 'kept' (the admin's own), 'current' or 'installed' */
export function installBootEnv(dist, data, log = () => {}) {
  const info = join(dist, 'boot-env.json');
  if (!existsSync(info)) return 'none';
  const want = createHash('sha256').update(readFileSync(info)).digest('hex');
  const boot = join(data, 'boot');
  const marker = join(boot, MARKER);
  const have = existsSync(marker) ? readFileSync(marker, 'utf8').trim() : undefined;
  if (have === undefined && existsSync(join(boot, 'boot-env.json'))) {
    log(`boot environment: keeping the one in ${boot} (not installed from this image; delete it to use the image's)`);
    return 'kept';
  }
  if (have === want && FILES.every((f) => existsSync(join(boot, f)))) return 'current';
  mkdirSync(boot, { recursive: true });
  for (const f of FILES) {
    copyFileSync(join(dist, f), join(boot, `${f}.tmp`));
    renameSync(join(boot, `${f}.tmp`), join(boot, f));
  }
  writeFileSync(`${marker}.tmp`, `${want}\n`);
  renameSync(`${marker}.tmp`, marker);
  log(`boot environment: installed the image's build into ${boot} (boot-env.json sha256 ${want.slice(0, 12)}…)`);
  return 'installed';
}
