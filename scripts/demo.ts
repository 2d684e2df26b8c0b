// The main job: a rack in a box. A network-namespace lab holds the appliance (`rackcast serve`:
// DHCP, TFTP, HTTP, multicast) and three bare QEMU machines:
//   vm-a  SeaBIOS + iPXE ROM, with the reference disk (GPT: ext4 root with real files + FAT32
//         ESP). A capture task: it network-boots rackcast's own Linux, reads its disk and sends
//         the new chunks to the appliance, which verifies each and commits the image.
//   vm-b  SeaBIOS + iPXE ROM, blank disk of the same size.
//   vm-c  UEFI (OVMF, EDK2's own PXE client chainloading ipxe.efi), blank LARGER disk.
// A deploy task names vm-b and vm-c; they boot, receive the image by multicast at the same time,
// verify every block, report and reboot. The demo then checks: vm-b bit-exact with vm-a; vm-c
// equal over vm-a's size except the GPT's own sectors, with its GPT moved to span its disk;
// fsck clean on both; their next boot goes to the local disk.
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
import { forwardFromLab, type Forward } from './lab/forward.ts';

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
const REF = { name: 'vm-a', firmware: 'bios' as const, mac: '52:54:00:72:63:0a', tap: 'rcvma' };
const MiB = 1 << 20;
const MACHINES = [
  { name: 'vm-b', firmware: 'bios' as const, mac: '52:54:00:72:63:0b', tap: 'rcvmb', extra: 0 },
  { name: 'vm-c', firmware: 'uefi' as const, mac: '52:54:00:72:63:0c', tap: 'rcvmc', extra: 64 * MiB },
];
const result: { ok: boolean; bootSeconds: Record<string, number>; machines: Record<string, unknown>[]; error?: string } = { ok: false, bootSeconds: {}, machines: [] };
let lab: Lab | undefined;
const vms: Vm[] = [];
let server: ChildProcess | undefined;
let ui: Forward | undefined;
const cleanup = async (): Promise<void> => {
  await Promise.all(vms.map((v) => v.kill()));
  // --keep: each VM's serial console with arrival times, for looking at where a boot spends its time
  if (keep) vms.forEach((v) => writeFileSync(join(work, `${v.options.name ?? 'vm'}.serial.txt`), v.timedSerial()));
  await ui?.close().catch(() => undefined);
  await lab?.destroy();
  if (!keep) rmSync(work, { recursive: true, force: true });
};
process.once('SIGINT', () => { void cleanup().then(() => process.exit(130)); });
process.once('SIGTERM', () => { void cleanup().then(() => process.exit(143)); });

interface M { name: string; mac: string }
/** Poll the newest task until done; when each machine's client started and when it finished. */
async function waitTask(ms: M[], machineVms: Vm[], timeoutMs: number): Promise<{ started: Map<string, number>; done: Map<string, number> }> {
  const started = new Map<string, number>();
  const done = new Map<string, number>();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    ms.forEach((m, i) => { if (!started.has(m.name) && /rackcast client/.test((machineVms[i] as Vm).serial)) started.set(m.name, (machineVms[i] as Vm).elapsed() / 1000); });
    const t = (JSON.parse(cli('task', 'list', '--json')) as { state: string; machines: { mac: string; state: string; detail: string | null }[] }[]).at(-1);
    for (const x of t?.machines ?? []) {
      const k = ms.findIndex((m) => m.mac === x.mac);
      if (x.state === 'done' && !done.has(x.mac)) { done.set(x.mac, (machineVms[k] as Vm).elapsed() / 1000); say(`${ms[k]?.name}: done after ${done.get(x.mac)?.toFixed(1)} s (${x.detail ?? ''})`); }
      if (x.state === 'failed') throw new Error(`${ms[k]?.name} failed: ${x.detail}`);
    }
    if (t?.state === 'done') return { started, done };
    if (Date.now() > deadline || machineVms.every((v) => !v.running)) throw new Error(`task did not finish: ${JSON.stringify(t)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

try {
  step('Build the boot environment (Debian kernel, busybox, Node 24, the client; cached)');
  const b = spawnSync(process.execPath, [join(ROOT, 'scripts/build-boot-env.ts'), '--data-dir', data, '--cache-dir', '/var/cache/rackcast-demo'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (b.status !== 0) throw new Error(`boot environment build failed:\n${b.stdout}`);
  say(b.stdout.trim().split('\n').slice(-4).join('\n'));

  step('Make vm-a\'s reference disk (GPT: ext4 "root" with files + FAT32 "esp")');
  const ref = makeGptDisk(work, makeTree(join(work, 'tree')), 128 << 20);
  const want = readFileSync(ref.path);
  say(`${ref.path}: ${(ref.size / MiB).toFixed(0)} MiB`);

  step('Start the appliance in a network namespace: rackcast serve --dhcp full');
  lab = new Lab({ hosts: 1 });
  let out = '';
  server = lab.spawn(0, process.execPath, [BIN, 'serve', '--address', '10.77.0.1', '--dhcp', 'full', '--subnet', '10.77.0.0/24',
    '--dhcp-range', '10.77.0.100-10.77.0.150', '--data', data, '--http-port', '8080', '--mcast-rate', '200', '--mcast-mtu', '8192'], { cwd: ROOT });
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`serve did not start: ${out}`)), 30000);
    server?.stdout?.on('data', (c: Buffer) => { out += c.toString(); if (out.includes('rackcast serve: ready')) { clearTimeout(t); res(); } });
    server?.once('exit', (code) => { clearTimeout(t); rej(new Error(`serve exited ${code}: ${out}`)); });
  });
  ui = await forwardFromLab(lab, 0, '10.77.0.1', 8080, join(work, 'ui.sock'), Number(process.env.RACKCAST_DEMO_UI_PORT ?? 8480)).catch(() => forwardFromLab(lab as Lab, 0, '10.77.0.1', 8080, join(work, 'ui2.sock')));
  say(`appliance at http://10.77.0.1:8080 inside the lab namespace; web UI while the demo runs: ${ui.url}/ui/ (admin token: ${join(data, 'admin.token')})`);
  lab.addTap(REF.tap);
  for (const m of MACHINES) lab.addTap(m.tap);
  await new Promise((r) => setTimeout(r, 1000));

  step('Capture vm-a over the network: task capture, power on, wait for the image');
  say(cli('task', 'capture', 'rack-2026-11', '--machine', REF.mac).trim());
  const va = Vm.start({ ns: lab.sw, tap: REF.tap, mac: REF.mac, firmware: REF.firmware, workDir: work, timeoutMs: 300000,
    name: REF.name, disk: ref.path, memoryMb: 768, spawn: lab.spawnSwitch.bind(lab) });
  vms.push(va);
  const cap = await waitTask([REF], [va], 300000);
  await Promise.race([va.exited, new Promise((r) => setTimeout(r, 60000))]); // /init syncs and reboots -f: QEMU exits
  const capLine = /RACKCAST-CAPTURE-OK (.*)/.exec(va.serial)?.[1] ?? '';
  const capSecs = (cap.done.get(REF.mac) ?? NaN) - (cap.started.get(REF.name) ?? 0);
  result.bootSeconds[REF.name] = cap.started.get(REF.name) ?? NaN;
  say(`vm-a: power-on → client ${cap.started.get(REF.name)?.toFixed(1)} s; client → image committed ${capSecs.toFixed(1)} s (${(ref.size / 1e6 / capSecs).toFixed(1)} MB/s of disk)`);
  say(`      ${capLine}`);
  say(cli('image', 'list').trim());
  result.machines.push({ name: REF.name, firmware: REF.firmware, role: 'capture', ok: /\brack-2026-11\b/.test(cli('image', 'list')), seconds: capSecs, mbps: ref.size / 1e6 / capSecs });

  step('Deploy task for vm-b and vm-c, then power them on');
  say(cli('task', 'deploy', 'rack-2026-11', '--machines', MACHINES.map((m) => m.mac).join(',')).trim());
  const disks = MACHINES.map((m) => { const p = join(work, `${m.name}.raw`); writeFileSync(p, ''); truncateSync(p, ref.size + m.extra); return p; });
  const deployVms = MACHINES.map((m, i) => Vm.start({ ns: lab!.sw, tap: m.tap, mac: m.mac, firmware: m.firmware, workDir: work, timeoutMs: 420000,
    name: m.name, disk: disks[i] as string, memoryMb: 768, spawn: lab!.spawnSwitch.bind(lab) }));
  vms.push(...deployVms);
  const { started, done } = await waitTask(MACHINES, deployVms, 420000);
  for (const [k, v] of started) result.bootSeconds[k] = v;

  step('Check the disks: equal to vm-a, GPT fits each disk, fsck clean, next boot goes to the local disk');
  MACHINES.forEach((m, i) => {
    const disk = disks[i] as string;
    const got = readFileSync(disk);
    // a larger disk equals vm-a's except the GPT's own sectors (MBR size, headers, old backup)
    const bitExact = m.extra === 0 ? got.equals(want) : got.subarray(1024, ref.size - 33 * 512).equals(want.subarray(1024, ref.size - 33 * 512));
    sh('sfdisk', ['--verify', disk]);
    const lastLba = (JSON.parse(sh('sfdisk', ['--json', disk])) as { partitiontable: { lastlba: number } }).partitiontable.lastlba;
    sh('e2fsck', ['-fn', extractPart(disk, ref.parts[0]!, join(work, `${m.name}-root.ext4`))]);
    sh('fsck.vfat', ['-n', extractPart(disk, ref.parts[1]!, join(work, `${m.name}-esp.vfat`))]);
    const next = lab!.exec(0, 'curl', ['-sf', `http://10.77.0.1:8080/boot/${m.mac}.ipxe`]);
    const local = next.includes('booting the local disk');
    const secs = (done.get(m.mac) ?? NaN) - (started.get(m.name) ?? 0);
    const spans = lastLba === (ref.size + m.extra) / 512 - 34;
    result.machines.push({ name: m.name, firmware: m.firmware, role: 'deploy', ok: bitExact && local && spans, bitExact, seconds: secs, mbps: ref.size / 1e6 / secs });
    say(`${m.name} (${m.firmware}, ${((ref.size + m.extra) / MiB).toFixed(0)} MiB disk): power-on → client ${started.get(m.name)?.toFixed(1)} s, client → done ${secs.toFixed(1)} s (${(ref.size / 1e6 / secs).toFixed(1)} MB/s); ${m.extra ? 'equal to vm-a over its size' : 'bit-exact'}: ${bitExact}; GPT spans the disk: ${spans}; fsck clean; next boot: ${local ? 'local disk' : 'NOT local disk'}`);
  });
  result.ok = result.machines.every((m) => m.ok === true);
} catch (e) {
  result.error = (e as Error).message;
  say(`demo failed: ${result.error}`);
  for (const v of vms) say(`--- ${v.options.name ?? 'vm'} serial tail:\n${v.serial.slice(-1500)}`);
} finally {
  await cleanup();
}
if (json) process.stdout.write(JSON.stringify(result) + '\n');
else say(`\n${result.ok ? 'demo OK' : 'demo FAILED'}${keep ? ` (kept ${work})` : ''}`);
process.exitCode = result.ok ? 0 : 1;
