// The main job, as far as rackcast goes today: a rack in a box. A network-namespace lab holds the
// appliance (`rackcast serve`: DHCP, TFTP, HTTP, multicast) and two bare QEMU machines — one
// SeaBIOS with the iPXE ROM, one UEFI (OVMF, EDK2's own PXE client chainloading ipxe.efi). A
// reference disk (GPT: FAT32 ESP + ext4 root with real files) is captured on the appliance; a
// deploy task names both machines; they power on, network-boot rackcast's own Linux, receive the
// image by multicast at the same time, verify every block, report and reboot. The demo then
// checks both disks bit-exact, fsck-clean, and that their next boot goes to the local disk.
// (Capturing the reference over the network is not built yet: it is captured locally.)
//
// Usage: npm run demo [-- --json] [-- --keep]    (root, QEMU, ~3–6 min; the boot environment is
// built on first use and cached in /var/cache/rackcast-demo). Without root or QEMU it runs the
// local image demo (scripts/demo-image.ts) instead.
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Lab, canMakeLab } from './lab/netns.ts';
import { Vm, qemuAvailable } from './lab/qemu.ts';
import { makeTree, makeGptDisk, extractPart, sh } from './lab/disks.ts';

const ROOT = resolve(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'rackcast.js');
const json = process.argv.includes('--json');
const keep = process.argv.includes('--keep');
const say = (s: string): void => { (json ? process.stderr : process.stdout).write(s + '\n'); };
const step = (s: string): void => say(`\n== ${s}`);

if (!canMakeLab() || !qemuAvailable('bios').ok || !qemuAvailable('uefi').ok) {
  say(`network lab unavailable (${!canMakeLab() ? 'needs root and ip netns' : qemuAvailable('uefi').reason}): running the local image demo instead`);
  await import('./demo-image.ts');
  process.exit(process.exitCode ?? 0);
}

const work = mkdtempSync(join(tmpdir(), 'rc-demo-'));
const data = join(work, 'data');
const cli = (...a: string[]): string => execFileSync(process.execPath, [BIN, ...a, '--data-dir', data], { encoding: 'utf8' });
const MACHINES = [
  { name: 'vm-b', firmware: 'bios' as const, mac: '52:54:00:72:63:0b', tap: 'rcvmb' },
  { name: 'vm-c', firmware: 'uefi' as const, mac: '52:54:00:72:63:0c', tap: 'rcvmc' },
];
const result: { ok: boolean; bootSeconds: Record<string, number>; machines: Record<string, unknown>[]; error?: string } = { ok: false, bootSeconds: {}, machines: [] };
let lab: Lab | undefined;
const vms: Vm[] = [];
let server: ChildProcess | undefined;
const cleanup = async (): Promise<void> => {
  await Promise.all(vms.map((v) => v.kill()));
  await lab?.destroy();
  if (!keep) rmSync(work, { recursive: true, force: true });
};
process.once('SIGINT', () => { void cleanup().then(() => process.exit(130)); });
process.once('SIGTERM', () => { void cleanup().then(() => process.exit(143)); });

try {
  step('Build the boot environment (Debian kernel, busybox, Node 24, the client; cached)');
  const b = spawnSync(process.execPath, [join(ROOT, 'scripts/build-boot-env.ts'), '--data-dir', data, '--cache-dir', '/var/cache/rackcast-demo'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (b.status !== 0) throw new Error(`boot environment build failed:\n${b.stdout}`);
  say(b.stdout.trim().split('\n').slice(-4).join('\n'));

  step('Make the reference disk (GPT, FAT32 "esp" + ext4 "root" with files) and capture it');
  const ref = makeGptDisk(work, makeTree(join(work, 'tree')), 128 << 20);
  const t0 = performance.now();
  say(cli('image', 'capture', ref.path, '--name', 'rack-2026-11').trim());
  const captureS = (performance.now() - t0) / 1000;
  result.machines.push({ name: 'reference', firmware: 'file', role: 'capture', ok: true, seconds: captureS, mbps: ref.size / 1e6 / captureS });

  step('Start the appliance in a network namespace: rackcast serve --dhcp full');
  lab = new Lab({ hosts: 1 });
  let out = '';
  server = lab.spawn(0, process.execPath, [BIN, 'serve', '--address', '10.77.0.1', '--dhcp', 'full', '--subnet', '10.77.0.0/24',
    '--dhcp-range', '10.77.0.100-10.77.0.150', '--data', data, '--http-port', '8080', '--mcast-rate', '200'], { cwd: ROOT });
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`serve did not start: ${out}`)), 30000);
    server?.stdout?.on('data', (c: Buffer) => { out += c.toString(); if (out.includes('rackcast serve: ready')) { clearTimeout(t); res(); } });
    server?.once('exit', (code) => { clearTimeout(t); rej(new Error(`serve exited ${code}: ${out}`)); });
  });
  say('appliance at http://10.77.0.1:8080 (inside the lab namespace); web UI: not built yet');
  for (const m of MACHINES) lab.addTap(m.tap);
  await new Promise((r) => setTimeout(r, 1000));

  step('Deploy task for both machines, then power them on');
  say(cli('task', 'deploy', 'rack-2026-11', '--machines', MACHINES.map((m) => m.mac).join(',')).trim());
  const disks = MACHINES.map((m) => { const p = join(work, `${m.name}.raw`); writeFileSync(p, ''); truncateSync(p, ref.size); return p; });
  MACHINES.forEach((m, i) => vms.push(Vm.start({ ns: lab!.sw, tap: m.tap, mac: m.mac, firmware: m.firmware, workDir: work, timeoutMs: 420000,
    name: m.name, disk: disks[i] as string, memoryMb: 768, spawn: lab!.spawnSwitch.bind(lab) })));
  const started = new Map<string, number>();
  const done = new Map<string, number>();
  const deadline = Date.now() + 420000;
  for (;;) {
    MACHINES.forEach((m, i) => { if (!started.has(m.name) && /rackcast client/.test((vms[i] as Vm).serial)) started.set(m.name, (vms[i] as Vm).elapsed() / 1000); });
    const t = (JSON.parse(cli('task', 'list', '--json')) as { state: string; machines: { mac: string; state: string; detail: string | null }[] }[]).at(-1);
    for (const x of t?.machines ?? []) {
      const k = MACHINES.findIndex((m) => m.mac === x.mac);
      if (x.state === 'done' && !done.has(x.mac)) { done.set(x.mac, (vms[k] as Vm).elapsed() / 1000); say(`${MACHINES[k]?.name}: done after ${done.get(x.mac)?.toFixed(1)} s (${x.detail ?? ''})`); }
      if (x.state === 'failed') throw new Error(`${MACHINES[k]?.name} failed: ${x.detail}`);
    }
    if (t?.state === 'done') break;
    if (Date.now() > deadline || vms.every((v) => !v.running)) throw new Error(`deploy did not finish: ${JSON.stringify(t)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  for (const [k, v] of started) result.bootSeconds[k] = v;

  step('Check the disks: bit-exact, fsck clean, next boot goes to the local disk');
  const want = readFileSync(ref.path);
  MACHINES.forEach((m, i) => {
    const disk = disks[i] as string;
    const bitExact = readFileSync(disk).equals(want);
    sh('e2fsck', ['-fn', extractPart(disk, ref.parts[0]!, join(work, `${m.name}-root.ext4`))]);
    sh('fsck.vfat', ['-n', extractPart(disk, ref.parts[1]!, join(work, `${m.name}-esp.vfat`))]);
    const next = lab!.exec(0, 'curl', ['-sf', `http://10.77.0.1:8080/boot/${m.mac}.ipxe`]);
    const local = next.includes('booting the local disk');
    const secs = (done.get(m.mac) ?? NaN) - (started.get(m.name) ?? 0);
    result.machines.push({ name: m.name, firmware: m.firmware, role: 'deploy', ok: bitExact && local, bitExact, seconds: secs, mbps: ref.size / 1e6 / secs });
    say(`${m.name} (${m.firmware}): power-on → client ${started.get(m.name)?.toFixed(1)} s, client → done ${secs.toFixed(1)} s; bit-exact ${bitExact}; fsck clean; next boot: ${local ? 'local disk' : 'NOT local disk'}`);
  });
  result.ok = result.machines.every((m) => m.ok === true);
} catch (e) {
  result.error = (e as Error).message;
  say(`demo failed: ${result.error}`);
  for (const [i, v] of vms.entries()) say(`--- ${MACHINES[i]?.name} serial tail:\n${v.serial.slice(-1500)}`);
} finally {
  await cleanup();
}
if (json) process.stdout.write(JSON.stringify(result) + '\n');
else say(`\n${result.ok ? 'demo OK' : 'demo FAILED'}${keep ? ` (kept ${work})` : ''}`);
process.exitCode = result.ok ? 0 : 1;
