// The userland of the big initramfs: the filesystem skeleton, busybox (from the busybox-static
// .deb, one static binary plus a symlink per applet), and the project's pinned Node binary,
// stripped, with the shared libraries ldd says it and the native addons need (plus the loader).
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Entry } from './cpio.ts';
import { BuildError, run } from './run.ts';

const require = createRequire(import.meta.url);

/** The Node binary the project pins through the npm package "node" (the one npm scripts run on). */
export function pinnedNode(): string {
  return realpathSync(require.resolve('node/bin/node'));
}

/** A compiled addon that must exist: the boot environment never ships without one (client.ts ADDONS). */
function builtAddon(path: string, fix: string): string {
  if (!existsSync(path)) throw new BuildError(`native addon ${path} is missing: ${fix}`);
  return realpathSync(path);
}

/** zstd-napi's compiled addon; the client bundle loads it from /client/zstd-napi.node. */
export function zstdAddon(): string {
  let pkg: string;
  try { pkg = require.resolve('zstd-napi/package.json'); } catch { throw new BuildError('zstd-napi is not installed: run npm ci'); }
  return builtAddon(join(pkg, '..', 'build', 'Release', 'binding.node'), 'run npm ci (it compiles zstd-napi with node-gyp: python3 make g++)');
}

/** rcudp (services/multicast/native), built by npm ci's install script; the bundle loads /client/rcudp.node. */
export function rcudpAddon(repo: string): string {
  return builtAddon(join(repo, 'services/multicast/native/build/Release/rcudp.node'), 'run npm ci or npm run build:native (node-gyp: python3 make g++)');
}

export function skeleton(): Entry[] {
  const text = (path: string, data: string, mode = 0o644): Entry => ({ type: 'data', path, mode, data: Buffer.from(data) });
  return [
    ...['proc', 'sys', 'dev', 'run', 'mnt', 'etc', 'etc/rackcast', 'var', 'usr/local/bin'].map((path): Entry => ({ type: 'dir', path })),
    { type: 'dir', path: 'tmp', mode: 0o1777 },
    { type: 'dir', path: 'root', mode: 0o700 },
    { type: 'symlink', path: 'var/run', target: '../run' },
    { type: 'symlink', path: 'var/tmp', target: '../tmp' },
    // The kernel opens /dev/console for /init before anything is mounted: without this node
    // /init would start with no stdin/stdout/stderr at all.
    { type: 'char', path: 'dev/console', mode: 0o600, major: 5, minor: 1 },
    { type: 'char', path: 'dev/null', mode: 0o666, major: 1, minor: 3 },
    text('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n'),
    text('etc/group', 'root:x:0:\n'),
    text('etc/hosts', '127.0.0.1\tlocalhost\n::1\tlocalhost\n'),
    text('etc/profile', 'export PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin\nexport PS1="rackcast:\\w# "\n'),
  ];
}

export interface Busybox { version: string; applets: number; entries: Entry[] }

/** busybox plus one symlink per applet, at the paths busybox itself lists (bin/, sbin/, usr/...). */
export async function busyboxEntries(binary: string): Promise<Busybox> {
  const list = (await run(binary, ['--list-full'])).split('\n').map((l) => l.trim()).filter(Boolean);
  const version = /BusyBox v(\S+)/.exec(await run(binary, ['--help']).catch((e: Error) => e.message))?.[1] ?? 'unknown';
  const entries: Entry[] = [{ type: 'file', path: 'bin/busybox', mode: 0o755, source: binary, size: statSync(binary).size }];
  // linuxrc would be an alternative init; /init is ours, and nothing else may compete with it.
  for (const path of list) if (path !== 'linuxrc' && path !== 'bin/busybox') entries.push({ type: 'symlink', path, target: '/bin/busybox' });
  return { version, applets: entries.length - 1, entries };
}

/** Shared objects a dynamically linked ELF file needs, as ldd resolves them here (with the loader). */
export async function sharedLibraries(files: string[]): Promise<string[]> {
  const libs = new Set<string>();
  for (const f of files) {
    const out = await run('ldd', [f]);
    for (const line of out.split('\n')) {
      if (line.includes('not found')) throw new BuildError(`ldd ${f}: ${line.trim()}`);
      const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(0x/.exec(line);
      if (m?.[1]) libs.add(m[1]);
    }
  }
  return [...libs].sort();
}

export interface NodeRuntime { version: string; strippedBytes: number; libs: string[]; entries: Entry[] }

/** Stripped node at /usr/bin/node plus its and the addons' libraries, copied to the paths the loader will look at. */
export async function nodeEntries(nodeBin: string, addons: string[], workDir: string): Promise<NodeRuntime> {
  const version = (await run(nodeBin, ['--version'])).trim();
  const stripped = join(workDir, 'node');
  await run('strip', ['--strip-all', '-o', stripped, nodeBin]);
  const libs = await sharedLibraries([nodeBin, ...addons]);
  const entries: Entry[] = [{ type: 'file', path: 'usr/bin/node', mode: 0o755, source: stripped, size: statSync(stripped).size }];
  for (const lib of libs) {
    const real = realpathSync(lib);
    entries.push({ type: 'file', path: lib.slice(1), mode: 0o755, source: real, size: statSync(real).size });
  }
  return { version, strippedBytes: statSync(stripped).size, libs, entries };
}

/** The kernel release of an unpacked linux-image tree (its single lib/modules/<kver> directory). */
export function kernelRelease(root: string, pkg: string): string {
  const kver = pkg.replace(/^linux-image-/, '');
  try {
    readFileSync(join(root, 'lib/modules', kver, 'modules.builtin'));
  } catch {
    throw new BuildError(`${pkg} has no lib/modules/${kver}/modules.builtin: not a Debian kernel image package?`);
  }
  return kver;
}
