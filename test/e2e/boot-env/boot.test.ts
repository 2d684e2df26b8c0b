// The boot environment in a real (emulated) machine: build it (npm run build:boot-env, cached
// under /var/cache/rackcast-test so only the first run takes minutes), boot QEMU with the kernel
// and both initrds, and let the client's self-test capture and restore an image onto the VM's
// virtio disk. The host then checks the bytes that landed in the disk file. A second boot with a
// bad mode checks the failure path: the reason, then a working shell on the serial console.
//
// Skipped with a message when QEMU is missing or the build cannot run here (no apt/dpkg/zstd).
// RACKCAST_TEST_BOOT_DIR=DIR uses an existing <data-dir>/boot instead of building.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { DISK_SIZE, selftestDisk } from '../../../boot-env/client/selftest.ts';
import { FSTOOLS_INITRD } from '../../../appliance/boot/script.ts';

const REPO = resolve('.');
/** The pinned Node 24 (the build script is TypeScript run by Node's type stripping). */
const NODE = join(REPO, 'node_modules/.bin/node');

function writableDir(dir: string): boolean {
  try {
    accessSync(dirname(dir), constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
// Fixed, so the downloads, unpacked packages and the compressed base archive survive between runs.
const CACHE = process.env.RACKCAST_TEST_CACHE_DIR
  ?? (writableDir('/var/cache/rackcast-test') ? '/var/cache/rackcast-test' : join(tmpdir(), 'rackcast-test-cache'));
const QEMU = 'qemu-system-x86_64';
const BOOT_TIMEOUT_MS = 240_000;

function has(cmd: string, args = ['--version']): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
}

const given = process.env.RACKCAST_TEST_BOOT_DIR;
const missing = [
  ...(has(QEMU) ? [] : [`${QEMU} (apt-get install qemu-system-x86)`]),
  ...(given ? [] : ['apt-get', 'apt-cache', 'dpkg', 'strip', 'ldd', 'zstd'].filter((c) => !has('sh', ['-c', `command -v ${c}`]))),
];
if (given && !['vmlinuz', 'initrd.zst', 'client.cpio.zst'].every((f) => existsSync(join(given, f)))) missing.push(`vmlinuz, initrd.zst and client.cpio.zst in RACKCAST_TEST_BOOT_DIR=${given}`);
const d = missing.length ? describe.skip : describe;
if (missing.length) console.warn(`boot-env e2e test skipped: needs ${missing.join(', ')}`);

let work: string;
let boot: string;
let initrd: string;

/**
 * Kernel + the initrds concatenated (each padded to 4 bytes, as iPXE does): QEMU takes one -initrd.
 * The filesystem-tools archive goes last when the build made it, as for a deploy that grows.
 */
function concatInitrds(dir: string, out: string): void {
  const names = ['initrd.zst', 'client.cpio.zst', ...(existsSync(join(dir, FSTOOLS_INITRD)) ? [FSTOOLS_INITRD] : [])];
  const parts = names.map((f) => readFileSync(join(dir, f)));
  const padded = parts.flatMap((p) => [p, Buffer.alloc((4 - (p.length % 4)) % 4)]);
  writeFileSync(out, Buffer.concat(padded));
}

interface Boot { out: string; code: number | null; killed: string | undefined; clientAt: number | undefined; seconds: number }

/** Boot the VM; `onLine` may answer on the serial console (stdin) or return 'kill' to stop early. */
function qemu(append: string, disk: string, onLine?: (line: string, send: (s: string) => void) => 'kill' | void): Promise<Boot> {
  const args = ['-accel', 'tcg', '-cpu', 'max', '-smp', '1', '-m', '768', '-display', 'none', '-machine', 'graphics=off',
    '-monitor', 'none', '-serial', 'stdio', '-no-reboot', '-kernel', join(boot, 'vmlinuz'), '-initrd', initrd,
    '-append', append, '-drive', `file=${disk},format=raw,if=virtio`, '-nic', 'none'];
  const t0 = performance.now();
  const child = spawn(QEMU, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const r: Boot = { out: '', code: null, killed: undefined, clientAt: undefined, seconds: 0 };
  let partial = '';
  const stop = (why: string): void => { if (!r.killed && child.exitCode === null) { r.killed = why; child.kill('SIGKILL'); } };
  const timer = setTimeout(() => stop(`timeout after ${BOOT_TIMEOUT_MS / 1000} s`), BOOT_TIMEOUT_MS);
  const onData = (b: Buffer): void => {
    const s = b.toString('utf8');
    r.out += s;
    partial += s;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (r.clientAt === undefined && line.includes('rackcast client ')) r.clientAt = (performance.now() - t0) / 1000;
      if (onLine?.(line.replace(/\r$/, ''), (x) => child.stdin.write(x)) === 'kill') stop('asked by the test');
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  return new Promise((res) => {
    child.on('exit', (code) => {
      clearTimeout(timer);
      r.code = code;
      r.seconds = (performance.now() - t0) / 1000;
      res(r);
    });
  });
}

function readHead(path: string, n: number): Buffer {
  const buf = Buffer.alloc(n);
  const fd = openSync(path, 'r');
  try { readSync(fd, buf, 0, n, 0); } finally { closeSync(fd); }
  return buf;
}

d('boot environment in QEMU (TCG)', () => {
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'rc-test-bootenv-'));
    if (given) {
      boot = given;
    } else {
      const t0 = performance.now();
      const r = spawnSync(NODE, [join(REPO, 'scripts/build-boot-env.ts'), '--data-dir', join(work, 'data'), '--cache-dir', CACHE],
        { encoding: 'utf8', timeout: 600_000 });
      if (r.status !== 0) throw new Error(`npm run build:boot-env failed (status ${r.status}):\n${r.stdout}\n${r.stderr}`);
      console.log(`boot environment built in ${((performance.now() - t0) / 1000).toFixed(1)} s (cache ${CACHE}):\n${r.stdout.split('\nboot environment in')[1] ?? r.stdout}`);
      boot = join(work, 'data', 'boot');
    }
    initrd = join(work, 'initrd-all.zst');
    concatInitrds(boot, initrd);
  }, 660_000);
  afterAll(() => { if (work) rmSync(work, { recursive: true, force: true }); });

  it('boots to the client, which captures and restores an image onto the virtio disk', async () => {
    const disk = join(work, 'disk.raw');
    writeFileSync(disk, '');
    truncateSync(disk, 64 << 20);
    const r = await qemu('console=ttyS0 rackcast.mode=selftest quiet', disk, (line) => (line.includes('RACKCAST-SELFTEST-FAIL') || line.includes('dropping to a shell') ? 'kill' : undefined));
    const uptime = /rackcast client .* uptime=([\d.]+) s/.exec(r.out)?.[1];
    console.log(`QEMU TCG boot: power-on → client start ${r.clientAt?.toFixed(1) ?? '?'} s (kernel uptime ${uptime ?? '?'} s), power-off after ${r.seconds.toFixed(1)} s`);
    if (!r.out.includes('RACKCAST-SELFTEST-OK')) throw new Error(`no RACKCAST-SELFTEST-OK (${r.killed ?? `exit ${r.code}`}); serial console:\n${r.out.slice(-6000)}`);
    expect(r.killed).toBeUndefined();
    expect(r.code).toBe(0); // poweroff -f ends QEMU; a reboot would too (-no-reboot), but say why
    expect(r.out).toMatch(/client finished: powering off/);
    // The bytes on the VM's disk are the test disk the client built, and what it reported.
    const m = /RACKCAST-SELFTEST-OK bytes=(\d+) sha256=([0-9a-f]{64})/.exec(r.out);
    expect(Number(m?.[1])).toBe(DISK_SIZE);
    const want = createHash('sha256').update(selftestDisk()).digest('hex');
    expect(m?.[2]).toBe(want);
    expect(createHash('sha256').update(readHead(disk, DISK_SIZE)).digest('hex')).toBe(want);
  }, BOOT_TIMEOUT_MS + 30_000);

  it('on failure prints the reason and leaves a shell on the console, never reboots; the filesystem tools run there', async () => {
    const disk = join(work, 'disk2.raw');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    const tools = existsSync(join(boot, FSTOOLS_INITRD));
    // what a deploy with grow needs (services/image/fs/resize.ts): util-linux losetup with offset
    // and size limit on the loop module, and e2fsck, resize2fs, ntfsresize finding their libraries.
    // Full paths: busybox's shell runs its own losetup applet first; the client's spawn() searches
    // PATH, where /usr/sbin comes before busybox's /sbin.
    const toolCheck = 'cd /usr/sbin; dd if=/dev/zero of=/tmp/f bs=1M count=4 2>/dev/null; d=$(./losetup --find --show --offset 1048576 --sizelimit 2097152 /tmp/f)'
      + ' && [ "$(blockdev --getsize64 "$d")" = 2097152 ] && ./losetup --detach "$d" && ./e2fsck -V 2>&1 | grep -q "^e2fsck 1"'
      + ' && ./resize2fs 2>&1 | grep -q "^resize2fs 1" && ./ntfsresize --version 2>&1 | grep -q "^ntfsresize v" && echo TOOLS-$((6*7))\n';
    let phase = 0;
    const r = await qemu('console=ttyS0 rackcast.mode=bogus quiet', disk, (line, send) => {
      if (phase === 0 && line.includes('dropping to a shell')) { phase = 1; setTimeout(() => send('echo RESCUE-$((6*7))\n'), 1500); }
      if (phase === 1 && line.includes('RESCUE-42')) { phase = 2; send(tools ? toolCheck : 'poweroff -f\n'); }
      if (phase === 2 && line.includes('TOOLS-42')) { phase = 3; send('poweroff -f\n'); }
    });
    if (phase < 2) throw new Error(`no working rescue shell (${r.killed ?? `exit ${r.code}`}); serial console:\n${r.out.slice(-4000)}`);
    if (tools && phase < 3) throw new Error(`the filesystem tools did not run in the boot environment; serial console:\n${r.out.slice(-4000)}`);
    expect(r.out).toMatch(/rackcast\.mode=bogus is not one of/);
    expect(r.out).toMatch(/FAILED: the client exited with status 2/);
    expect(r.out).toMatch(/---- last lines of \/run\/rackcast\/client.log ----/);
    expect(r.killed).toBeUndefined();
  }, BOOT_TIMEOUT_MS + 30_000);
});
