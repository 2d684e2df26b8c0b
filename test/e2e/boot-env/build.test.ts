// The pure parts of the boot-environment build and client, without QEMU: the cpio writer, the
// module load order, the client bundle and its native addons (zstd-napi, rcudp), kernel
// command-line parsing, the inventory from a fake /sys, and the shell scripts' syntax (busybox sh -n).
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { ADDONS, bundleClient, checkAddonRewrites, rewriteAddonRequires } from '../../../boot-env/build/client.ts';
import { normalize, writeCpio, type Entry } from '../../../boot-env/build/cpio.ts';
import { loadOrder, moduleName, parseModulesDep, trimAliases } from '../../../boot-env/build/modules.ts';
import { BuildError } from '../../../boot-env/build/run.ts';
import { rcudpAddon } from '../../../boot-env/build/runtime.ts';
import { cmdlineSettings, loadConfig, splitCmdline } from '../../../boot-env/client/config.ts';
import { collectInventory, formatInventory } from '../../../boot-env/client/inventory.ts';

let work: string;
beforeAll(() => { work = mkdtempSync(join(tmpdir(), 'rc-test-bootbuild-')); });
afterAll(() => { rmSync(work, { recursive: true, force: true }); });

/** Minimal newc reader: [name, mode, size, rdevmajor, rdevminor, data] per entry. */
function readCpio(b: Buffer): { name: string; mode: number; data: Buffer; rdev: [number, number]; mtime: number }[] {
  const out = [];
  let off = 0;
  for (;;) {
    expect(b.toString('latin1', off, off + 6)).toBe('070701');
    const f = (i: number): number => parseInt(b.toString('latin1', off + 6 + i * 8, off + 14 + i * 8), 16);
    const nameLen = f(11);
    const size = f(6);
    const name = b.toString('utf8', off + 110, off + 110 + nameLen - 1);
    let p = off + 110 + nameLen;
    p += (4 - (p % 4)) % 4;
    if (name === 'TRAILER!!!') return out;
    out.push({ name, mode: f(1), data: b.subarray(p, p + size), rdev: [f(9), f(10)] as [number, number], mtime: f(5) });
    p += size;
    off = p + ((4 - (p % 4)) % 4);
  }
}

describe('cpio newc writer', () => {
  const entries = (): Entry[] => [
    { type: 'data', path: 'usr/bin/hello', mode: 0o755, data: Buffer.from('#!/bin/sh\necho hi\n') },
    { type: 'symlink', path: 'bin/sh', target: '/bin/busybox' },
    { type: 'char', path: 'dev/console', mode: 0o600, major: 5, minor: 1 },
    { type: 'dir', path: 'tmp', mode: 0o1777 },
  ];

  it('writes sorted entries with parents first, fixed mtime, device numbers, symlink targets', () => {
    const out = join(work, 'a.cpio');
    writeCpio(out, entries(), 1234);
    const list = readCpio(readFileSync(out));
    expect(list.map((e) => e.name)).toEqual(['bin', 'bin/sh', 'dev', 'dev/console', 'tmp', 'usr', 'usr/bin', 'usr/bin/hello']);
    const by = new Map(list.map((e) => [e.name, e]));
    expect(by.get('usr/bin/hello')?.mode).toBe(0o100755);
    expect(by.get('usr/bin/hello')?.data.toString()).toBe('#!/bin/sh\necho hi\n');
    expect(by.get('bin/sh')?.mode).toBe(0o120777);
    expect(by.get('bin/sh')?.data.toString()).toBe('/bin/busybox');
    expect(by.get('dev/console')?.rdev).toEqual([5, 1]);
    expect(by.get('tmp')?.mode).toBe(0o41777);
    expect(list.every((e) => e.mtime === 1234)).toBe(true);
  });

  it('is reproducible: the same entries in any order give the same bytes', () => {
    writeCpio(join(work, 'b1.cpio'), entries());
    writeCpio(join(work, 'b2.cpio'), entries().reverse());
    expect(readFileSync(join(work, 'b1.cpio')).equals(readFileSync(join(work, 'b2.cpio')))).toBe(true);
  });

  it('rejects duplicate files, .. and a file used as a directory', () => {
    const f = (path: string): Entry => ({ type: 'data', path, mode: 0o644, data: Buffer.alloc(0) });
    expect(() => normalize([f('a'), f('a')])).toThrow(/given twice/);
    expect(() => normalize([f('a/../b')])).toThrow(/bad initramfs path/);
    expect(() => normalize([f('a'), f('a/b')])).toThrow(/needs it as a directory/);
  });
});

describe('module load order', () => {
  const dep = parseModulesDep([
    'kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko',
    'kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko',
    'kernel/drivers/virtio/virtio.ko:',
    'kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko',
    'kernel/net/core/failover.ko:',
    'kernel/drivers/scsi/sd_mod.ko.xz: kernel/drivers/scsi/scsi-mod.ko.xz',
    'kernel/drivers/scsi/scsi-mod.ko.xz:',
  ].join('\n'));

  it('puts every dependency before its users, reports built-in and missing modules', () => {
    const r = loadOrder(['virtio_net', 'sd_mod', 'virtio_pci', 'nosuch'], dep, new Set(['virtio_pci']));
    const pos = (n: string): number => r.order.findIndex((p) => moduleName(p) === n);
    expect(r.order).toHaveLength(7);
    expect(pos('virtio')).toBeLessThan(pos('virtio_ring'));
    expect(pos('failover')).toBeLessThan(pos('net_failover'));
    expect(pos('net_failover')).toBeLessThan(pos('virtio_net'));
    expect(pos('scsi_mod')).toBeLessThan(pos('sd_mod'));
    expect(r.builtin).toEqual(['virtio_pci']);
    expect(r.missing).toEqual(['nosuch']);
  });

  it('detects a dependency loop', () => {
    const loop = parseModulesDep('a.ko: b.ko\nb.ko: a.ko\n');
    expect(() => loadOrder(['a'], loop, new Set())).toThrow(/loop/);
  });

  it('keeps only the aliases of the shipped modules (names normalized like the kernel does)', () => {
    const text = [
      '# Aliases extracted from modules themselves.',
      'alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci',
      'alias virtio:d00000001v* virtio_net',
      'alias pci:v000014E4d0000165Fsv*sd*bc*sc*i* tg3',
      'alias scsi:t-0x00* sd_mod',
      'alias pci:v00001000d00000097sv*sd*bc*sc*i* mpt3sas',
      'alias usb:v0BDAp8153d*dc*dsc*dp*ic*isc*ip*in* r8152',
      'alias fs-crc-t10dif crc-t10dif',
      'alias broken',
      '',
    ].join('\n');
    expect(trimAliases(text, new Set(['virtio_pci', 'virtio_net', 'sd_mod', 'crc_t10dif']))).toEqual([
      'alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci',
      'alias virtio:d00000001v* virtio_net',
      'alias scsi:t-0x00* sd_mod',
      'alias fs-crc-t10dif crc-t10dif',
    ]);
  });
});

describe('client bundle and its native addons', () => {
  const REPO = resolve(import.meta.dirname, '../../..');

  it('points each addon require next to the bundle, keeping the quotes, and counts the rewrites', () => {
    const counts = new Map<string, number>();
    const src = [
      "const b = require('zstd-napi/binding') as Binding;",
      'loaded = { binding: require("./native/build/Release/rcudp.node") as Binding };',
      "require( './native/build/Release/rcudp.node' );",
      "require('./native/build/Release/other.node'); require('zstd-napi');",
    ].join('\n');
    expect(rewriteAddonRequires(src, counts).split('\n')).toEqual([
      "const b = require('./zstd-napi.node') as Binding;",
      'loaded = { binding: require("./rcudp.node") as Binding };',
      "require('./rcudp.node');",
      "require('./native/build/Release/other.node'); require('zstd-napi');",
    ]);
    expect(Object.fromEntries(counts)).toEqual({ 'zstd-napi.node': 1, 'rcudp.node': 2 });
  });

  it('fails the build when an addon require was not found or survives in the bundle', () => {
    const all = new Map([['zstd-napi.node', 1], ['rcudp.node', 1]]);
    const clean = [{ name: 'main.mjs', text: 'require("./zstd-napi.node"); require("./rcudp.node");' }];
    expect(() => checkAddonRewrites(all, clean)).not.toThrow();
    expect(() => checkAddonRewrites(new Map([['zstd-napi.node', 1]]), clean)).toThrow(BuildError);
    expect(() => checkAddonRewrites(new Map([['zstd-napi.node', 1]]), clean)).toThrow(/no require\('\.\/native\/build\/Release\/rcudp\.node'\).*services\/multicast\/batch-io\.ts changed/);
    const left = [...clean, { name: 'chunk-worker.mjs', text: 'e=r("./native/build/Release/rcudp.node")' }];
    expect(() => checkAddonRewrites(all, left)).toThrow(/chunk-worker\.mjs still requires \.\/native\/build\/Release\/rcudp\.node/);
  });

  it('fails the build when rcudp is not built', () => {
    expect(() => rcudpAddon(join(work, 'no-such-checkout'))).toThrow(BuildError);
    expect(() => rcudpAddon(join(work, 'no-such-checkout'))).toThrow(/rcudp\.node is missing: run npm ci or npm run build:native/);
  });

  it('bundles the client requiring both addons beside it, and the bundle loads them (self-test, as the build runs it)', async () => {
    const dir = join(work, 'client');
    const bundle = await bundleClient(REPO, dir, 'test');
    const main = readFileSync(join(dir, 'main.mjs'), 'utf8');
    // esbuild renames or inlines the createRequire'd function: match the call's argument
    expect(main).toMatch(/\((['"])\.\/zstd-napi\.node\1\)/);
    expect(main).toMatch(/\((['"])\.\/rcudp\.node\1\)/);
    for (const f of bundle.files) expect(readFileSync(f.path, 'utf8')).not.toMatch(/native\/build\/Release|zstd-napi\/binding/);
    expect(ADDONS.map((a) => a.name)).toEqual(['zstd-napi.node', 'rcudp.node']);
    for (const a of ADDONS) copyFileSync(a.source(REPO), join(dir, a.name));
    const disk = join(work, 'selftest.raw');
    writeFileSync(disk, '');
    const env = { PATH: process.env.PATH, RACKCAST_MODE: 'selftest', RACKCAST_SELFTEST_DISK: disk, RACKCAST_RUN_DIR: join(work, 'run'), RACKCAST_TMP: work };
    const r = spawnSync(process.execPath, [join(dir, 'main.mjs')], { env, encoding: 'utf8', timeout: 120_000 });
    expect(r.stdout).toContain('selftest: rcudp datagram I/O addon loaded');
    expect(r.stdout).toContain('RACKCAST-SELFTEST-OK');
    expect(r.status).toBe(0);
  });
});

describe('client settings', () => {
  it('splits a kernel command line with quotes like the kernel does', () => {
    expect(splitCmdline('console=ttyS0  rackcast.note="two words" "x=y z" quiet\n')).toEqual(['console=ttyS0', 'rackcast.note=two words', 'x=y z', 'quiet']);
    expect([...cmdlineSettings('rackcast.url=http://10.0.0.1:8080 rackcast.selftest.disk=/dev/sdb rackcast.debug BOOTIF=01-aa')])
      .toEqual([['url', 'http://10.0.0.1:8080'], ['selftest.disk', '/dev/sdb'], ['debug', '1']]);
  });

  it('takes the environment over the command line and checks mode and URL', () => {
    const c = loadConfig({ RACKCAST_MODE: 'selftest' }, 'rackcast.mode=deploy rackcast.url=http://a:8080/ rackcast.token=t0k');
    expect(c.mode).toBe('selftest');
    expect(c.url).toBe('http://a:8080');
    expect(c.token).toBe('t0k');
    expect(c.selftestDisk).toBe('/dev/vda');
    expect(loadConfig({}, '').mode).toBe('hello');
    expect(() => loadConfig({}, 'rackcast.mode=bogus')).toThrow(/not one of/);
    expect(() => loadConfig({}, 'rackcast.url=ftp://x')).toThrow(/http/);
  });
});

describe('inventory from /sys and /proc', () => {
  it('lists physical NICs and disks, DMI and firmware type', () => {
    const root = join(work, 'fake');
    const put = (p: string, s: string): void => { mkdirSync(dirname(join(root, p)), { recursive: true }); writeFileSync(join(root, p), s); };
    put('sys/devices/pci0/virtio1/block/vda/size', '131072\n');
    put('sys/devices/pci0/virtio1/block/vda/serial', 'SER123\n');
    put('sys/devices/pci0/virtio1/block/vda/removable', '0\n');
    put('sys/devices/pci0/virtio1/block/vda/queue/rotational', '0\n');
    mkdirSync(join(root, 'sys/devices/pci0/virtio1/block/vda/device'));
    mkdirSync(join(root, 'sys/block/loop0'), { recursive: true });
    symlinkSync('../devices/pci0/virtio1/block/vda', join(root, 'sys/block/vda'));
    put('sys/class/net/eth0/type', '1\n');
    put('sys/class/net/eth0/address', '52:54:00:12:34:56\n');
    put('sys/class/net/eth0/carrier', '1\n');
    put('sys/class/net/eth0/speed', '1000\n');
    mkdirSync(join(root, 'sys/class/net/eth0/device'));
    put('sys/class/net/lo/type', '772\n');
    put('sys/class/dmi/id/product_name', 'Rack Server 9000\n');
    put('sys/class/dmi/id/sys_vendor', 'ACME\n');
    mkdirSync(join(root, 'sys/firmware/efi'), { recursive: true });
    put('proc/cpuinfo', 'processor\t: 0\nmodel name\t: Test CPU\n\nprocessor\t: 1\nmodel name\t: Test CPU\n');
    put('proc/meminfo', 'MemTotal:        1048576 kB\n');
    const inv = collectInventory(root);
    expect(inv.firmware).toBe('uefi');
    expect(inv.dmi).toEqual({ product_name: 'Rack Server 9000', sys_vendor: 'ACME' });
    expect(inv.cpu).toEqual({ model: 'Test CPU', count: 2 });
    expect(inv.memoryBytes).toBe(1 << 30);
    expect(inv.nics).toEqual([{ name: 'eth0', mac: '52:54:00:12:34:56', carrier: true, speedMbps: 1000, ipv4: [] }]);
    expect(inv.disks).toEqual([{ name: 'vda', size: 64 << 20, serial: 'SER123', rotational: false, removable: false, transport: 'virtio' }]);
    expect(formatInventory(inv).join('\n')).toMatch(/disk +vda 64\.0 MiB virtio .*serial=SER123/);
  });
});

const busybox = spawnSync('busybox', ['true']).status === 0;
(busybox ? describe : describe.skip)('boot-env shell scripts', () => {
  it.each(['init', 'udhcpc.script'])('%s parses with busybox sh -n', (f) => {
    const r = spawnSync('busybox', ['sh', '-n', join('boot-env', f)], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
