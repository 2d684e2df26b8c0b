// npm run build:boot-env [-- options]: build the network-boot environment from Debian packages
// and the project's own Node, into <data-dir>/boot/:
//   vmlinuz          the Debian kernel (linux-image-amd64's current image package)
//   initrd.zst       base initramfs: busybox, NIC/disk modules, node + its libraries
//   client.cpio.zst  client initramfs: /init, udhcpc hook, the bundled client + its native addons
//                    (zstd-napi, rcudp)
//   fstools.cpio.zst e2fsck, resize2fs, ntfsresize, losetup: loaded for deploys that grow a partition
//   boot-env.json    what went in (versions, module list, sizes, hashes)
// Downloaded .debs, unpacked packages and compressed base archives are cached under
// <data-dir>/cache (or --cache-dir), so a rebuild with unchanged inputs takes seconds.
// See docs/boot-env.md.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ADDONS, bundleClient } from '../boot-env/build/client.ts';
import type { Entry } from '../boot-env/build/cpio.ts';
import { extractDeb, fetchDeb, kernelPackage, pruneCache } from '../boot-env/build/debs.ts';
import { buildArchive, checkNoOverlap, installFile, zstdArgs, type Archive } from '../boot-env/build/initrd.ts';
import { DEFAULT_MODULES, kernelModules } from '../boot-env/build/modules.ts';
import { FSTOOLS_ARCHIVE, fsToolsEntries } from '../boot-env/build/fstools.ts';
import { BuildError, StepLog, fileSize, fmtBytes, run, withLock } from '../boot-env/build/run.ts';
import { busyboxEntries, kernelRelease, nodeEntries, pinnedNode, skeleton } from '../boot-env/build/runtime.ts';

const REPO = resolve(import.meta.dirname, '..');
const USAGE = `usage: npm run build:boot-env -- [--data-dir DIR] [--cache-dir DIR] [--client-only]
       [--level N] [--no-long] [--kernel-package NAME] [--modules a,b,...] [--no-check]
  --data-dir DIR        output goes to DIR/boot (default $RACKCAST_DATA_DIR or /var/lib/rackcast)
  --cache-dir DIR       .debs, unpacked packages, compressed base archives (default DIR/cache)
  --client-only         rebuild only boot/client.cpio.zst (/init + client), in about a second
  --level N             zstd level of the base archive (default 22, with --ultra: 0.18 MB under -19, twice the time)
  --no-long             no long-distance matching (--long=27): 0.6 MB larger, 128 MiB less RAM to unpack
  --kernel-package P    e.g. linux-image-6.1.0-56-amd64 (default: what linux-image-amd64 depends on)
  --modules a,b         extra kernel modules (with their dependencies) beyond the default list
  --no-check            skip running the bundled client's self-test on this machine`;

function usage(msg: string): never {
  process.stderr.write(`build-boot-env: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

const { values: v } = (() => { try { return parseArgs({
  options: {
    'data-dir': { type: 'string' }, 'cache-dir': { type: 'string' }, 'client-only': { type: 'boolean' },
    level: { type: 'string' }, 'kernel-package': { type: 'string' }, modules: { type: 'string' },
    'no-check': { type: 'boolean' }, 'no-long': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  },
  strict: true,
}); } catch (e) { return usage((e as Error).message); } })();
if (v.help) { process.stdout.write(`${USAGE}\n`); process.exit(0); }

const dataDir = resolve(v['data-dir'] ?? process.env.RACKCAST_DATA_DIR ?? '/var/lib/rackcast');
const cacheDir = resolve(v['cache-dir'] ?? join(dataDir, 'cache'));
const bootDir = join(dataDir, 'boot');
const level = Number(v.level ?? 22);
if (!Number.isInteger(level) || level < 1 || level > 22) usage('--level must be 1..22');
const longWindow = v['no-long'] ? undefined : 27;
// Every archive entry gets this mtime, so equal inputs give byte-identical archives.
const mtime = Number(process.env.SOURCE_DATE_EPOCH ?? 0);
const version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const log = new StepLog();
mkdirSync(cacheDir, { recursive: true });
const file = (path: string, source: string, mode = 0o755): Entry => ({ type: 'file', path, mode, source, size: statSync(source).size });

/** The native addons the bundle requires, stripped, next to it in `dir` (ADDONS in client.ts). */
async function copyAddons(dir: string): Promise<void> {
  for (const a of ADDONS) {
    const dest = join(dir, a.name);
    await run('strip', ['--strip-unneeded', '-o', dest, a.source(REPO)]);
    chmodSync(dest, 0o755);
  }
}

/** The client archive: /init and helpers from boot-env/, the bundle, its (stripped) native addons. */
async function clientArchive(work: string): Promise<{ entries: Entry[]; files: string[]; dir: string }> {
  const dir = join(work, 'client');
  const bundle = await bundleClient(REPO, dir, version);
  await copyAddons(dir);
  log.step(`bundled client ${version}: ${bundle.files.map((f) => `${f.name} ${fmtBytes(f.bytes)}`).join(', ')}; workers: ${bundle.workers.join(', ')}; addons: ${ADDONS.map((a) => `${a.name} ${fmtBytes(fileSize(join(dir, a.name)))}`).join(', ')}`);
  const entries: Entry[] = [
    file('init', join(REPO, 'boot-env/init')),
    file('etc/rackcast/udhcpc.script', join(REPO, 'boot-env/udhcpc.script')),
    ...bundle.files.map((f) => file(`client/${f.name}`, f.path, 0o644)),
    ...ADDONS.map((a) => file(`client/${a.name}`, join(dir, a.name))),
  ];
  return { entries, files: [...bundle.files.map((f) => f.name), ...ADDONS.map((a) => a.name)], dir };
}

/** Run the bundle exactly as shipped (same node, addons beside it) against a scratch file. */
function checkClient(dir: string, work: string): void {
  const disk = join(work, 'check.raw');
  writeFileSync(disk, '');
  const env = { PATH: process.env.PATH, RACKCAST_MODE: 'selftest', RACKCAST_SELFTEST_DISK: disk, RACKCAST_RUN_DIR: join(work, 'run'), RACKCAST_TMP: work };
  const r = spawnSync(pinnedNode(), [join(dir, 'main.mjs')], { env, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0 || !r.stdout.includes('RACKCAST-SELFTEST-OK')) {
    throw new BuildError(`the bundled client failed its self-test on this machine (status ${r.status}):\n${r.stdout}${r.stderr}`);
  }
  log.step('bundled client passed its self-test on this machine (capture + restore to a file)');
}

async function base(work: string): Promise<{ entries: Entry[]; meta: Record<string, unknown>; vmlinuz: string; tools: Entry[] }> {
  const kpkg = v['kernel-package'] ?? await kernelPackage();
  const [kdeb, bdeb] = await Promise.all([fetchDeb(kpkg, cacheDir), fetchDeb('busybox-static', cacheDir)]);
  log.step(`packages: ${kdeb.file} (${fmtBytes(kdeb.size)}${kdeb.downloaded ? ', downloaded' : ', cached'}), ${bdeb.file}${bdeb.downloaded ? ' (downloaded)' : ' (cached)'}`);
  const [ktree, btree] = await Promise.all([extractDeb(kdeb, cacheDir), extractDeb(bdeb, cacheDir)]);
  log.step(`unpacked with dpkg -x${ktree.extracted || btree.extracted ? '' : ' (cached trees)'}`);
  const kver = kernelRelease(ktree.root, kpkg);
  const busybox = join(btree.root, 'bin/busybox');
  const bb = await busyboxEntries(busybox);
  const wanted = [...DEFAULT_MODULES, ...(v.modules ? v.modules.split(',').map((s) => s.trim()).filter(Boolean) : [])];
  const mods = await kernelModules(ktree.root, kver, wanted, busybox, work);
  if (mods.missing.length) log.step(`WARNING: modules neither in ${kpkg} nor built in: ${mods.missing.join(', ')}`);
  log.step(`kernel ${kver}: ${mods.order.length} modules (${fmtBytes(mods.bytes)}) for ${wanted.length} wanted${mods.builtin.length ? `; built in: ${mods.builtin.join(', ')}` : ''}`);
  const node = await nodeEntries(pinnedNode(), ADDONS.map((a) => a.source(REPO)), work);
  log.step(`node ${node.version} stripped to ${fmtBytes(node.strippedBytes)}; libraries: ${node.libs.join(' ')}`);
  const fst = await fsToolsEntries(cacheDir, node.libs);
  log.step(`filesystem tools: ${fst.tools.join(' ')} from ${fst.debs.map((d) => d.file).join(' ')}`);
  const meta = {
    fstools: { tools: fst.tools, debs: fst.debs.map((d) => ({ deb: d.file, sha256: d.sha256 })) },
    kernel: { package: kpkg, deb: kdeb.file, sha256: kdeb.sha256, release: kver },
    busybox: { deb: bdeb.file, sha256: bdeb.sha256, version: bb.version, applets: bb.applets },
    node: { version: node.version, strippedBytes: node.strippedBytes, libs: node.libs },
    modules: { wanted, order: mods.order, builtin: mods.builtin, missing: mods.missing, bytes: mods.bytes },
  };
  const buildId = `kernel ${kver}, busybox ${bb.version}, node ${node.version}`;
  const entries: Entry[] = [
    ...skeleton(), ...bb.entries, ...mods.entries, ...node.entries,
    { type: 'data', path: 'etc/rackcast/boot-env.json', mode: 0o644, data: Buffer.from(`${JSON.stringify(meta, null, 2)}\n`) },
    { type: 'data', path: 'etc/rackcast/build-id', mode: 0o644, data: Buffer.from(`${buildId}\n`) },
  ];
  pruneCache(cacheDir, [kdeb, bdeb, ...fst.debs]);
  return { entries, meta, vmlinuz: join(ktree.root, 'boot', `vmlinuz-${kver}`), tools: fst.entries };
}

async function main(): Promise<void> {
  mkdirSync(bootDir, { recursive: true });
  // We hold the cache lock: a work directory left here is from a build that was killed.
  for (const f of readdirSync(cacheDir)) if (f.startsWith('work-')) rmSync(join(cacheDir, f), { recursive: true, force: true });
  const work = mkdtempSync(join(cacheDir, 'work-'));
  const infoPath = join(bootDir, 'boot-env.json');
  try {
    log.step(`building the boot environment into ${bootDir} (cache ${cacheDir})`);
    const client = await clientArchive(work);
    if (!v['no-check']) checkClient(client.dir, work);
    let info: Record<string, unknown> = {};
    let baseArchive: Archive | undefined;
    let toolsArchive: Archive | undefined;
    if (v['client-only']) {
      try { info = JSON.parse(readFileSync(infoPath, 'utf8')) as Record<string, unknown>; } catch { /* first build */ }
      if (!info.initrd) log.step(`WARNING: ${bootDir} has no base archive yet: run a full build (without --client-only)`);
    } else {
      const b = await base(work);
      checkNoOverlap(b.entries, client.entries);
      checkNoOverlap([...b.entries, ...client.entries], b.tools, 'fstools');
      log.step(`compressing the base archive (zstd ${zstdArgs(level, longWindow).slice(0, -3).join(' ')}; over a minute unless cached)`);
      baseArchive = await buildArchive('initrd', { entries: b.entries, dest: join(bootDir, 'initrd.zst'), workDir: work, level, longWindow, mtime, cacheDir: join(cacheDir, 'initrd') });
      // Kernel last, right after its modules' archive: boot/ never pairs a new kernel with an old initrd
      // because a build failed half-way.
      installFile(b.vmlinuz, join(bootDir, 'vmlinuz'));
      toolsArchive = await buildArchive('fstools', { entries: b.tools, dest: join(bootDir, FSTOOLS_ARCHIVE), workDir: work, level: 19, mtime });
      info = { ...b.meta, initrd: { ...baseArchive, zstd: zstdArgs(level, longWindow).slice(0, -3) }, fstoolsArchive: toolsArchive };
    }
    const clientArch = await buildArchive('client', { entries: client.entries, dest: join(bootDir, 'client.cpio.zst'), workDir: work, level: 19, mtime });
    const kernelBytes = existsSync(join(bootDir, 'vmlinuz')) ? fileSize(join(bootDir, 'vmlinuz')) : 0;
    info = { ...info, version, builtAt: new Date().toISOString(), vmlinuz: { bytes: kernelBytes }, client: { ...clientArch, files: client.files } };
    writeFileSync(`${infoPath}.tmp`, `${JSON.stringify(info, null, 2)}\n`);
    renameSync(`${infoPath}.tmp`, infoPath);

    const row = (name: string, bytes: number, note: string): string => `  ${name.padEnd(16)} ${fmtBytes(bytes).padStart(10)}  ${note}\n`;
    let out = `\nboot environment in ${bootDir}:\n`;
    if (kernelBytes) out += row('vmlinuz', kernelBytes, String((info.kernel as { release?: string } | undefined)?.release ?? ''));
    if (baseArchive) out += row('initrd.zst', baseArchive.bytes, `${fmtBytes(baseArchive.cpioBytes)} cpio, ${baseArchive.entries} entries, zstd ${zstdArgs(level, longWindow).slice(0, -3).join(' ')}${baseArchive.cached ? ' (cached)' : ''}, ${baseArchive.seconds.toFixed(1)} s`);
    else if (info.initrd) out += row('initrd.zst', fileSize(join(bootDir, 'initrd.zst')), '(unchanged)');
    out += row('client.cpio.zst', clientArch.bytes, `${fmtBytes(clientArch.cpioBytes)} cpio, ${clientArch.entries} entries`);
    if (toolsArchive) out += row(FSTOOLS_ARCHIVE, toolsArchive.bytes, `${fmtBytes(toolsArchive.cpioBytes)} cpio (deploys with grow only)`);
    if (baseArchive) out += `base initrd ${(baseArchive.bytes / 1e6).toFixed(2)} MB (budget 35 MB${baseArchive.bytes > 35e6 ? ': OVER' : ''})\n`;
    out += `built in ${log.seconds().toFixed(1)} s\n`;
    process.stdout.write(out);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

withLock(join(cacheDir, 'build.lock'), main, (pid) => log.step(`waiting for build ${pid}, which uses the same cache ${cacheDir}`)).catch((e: unknown) => {
  process.stderr.write(`build-boot-env: ${e instanceof BuildError ? e.message : (e as Error).stack}\n`);
  process.exitCode = 1;
});
