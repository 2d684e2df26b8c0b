// `rackcast serve` as a sysadmin runs it, inside a namespace lab: a bare machine (no address)
// gets a lease and the BIOS boot file from our DHCP with busybox udhcpc, fetches iPXE over TFTP
// with curl, then its per-machine script over HTTP: local disk while it has no task, the boot
// environment with a task token once a deploy task names it. Boot artifacts honour Range.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { Lab, canMakeLab } from '../../../scripts/lab/netns.ts';
import { ImageStore, captureImage } from '../../../services/image/index.ts';
import { prng } from '../../helpers/disks.ts';

const BIN = resolve('bin/rackcast.js');
const ok = canMakeLab() && existsSync('/usr/lib/ipxe/undionly.kpxe') && existsSync('/bin/busybox');
const d = ok ? describe : describe.skip;
if (!ok) console.warn('serve tests skipped: they need root, network namespaces, Debian\'s ipxe and busybox');

let lab: Lab;
let work: string;
let data: string;
let serverOut = '';

beforeAll(async () => {
  if (!ok) return;
  work = mkdtempSync(join(tmpdir(), 'rc-test-serve-'));
  data = join(work, 'data');
  const disk = join(work, 'disk.img');
  const b = Buffer.alloc(8 << 20);
  prng(5, 2 << 20).copy(b, 1 << 20);
  writeFileSync(disk, b);
  await captureImage({ store: ImageStore.open(data), source: disk, name: 'web', blockSize: 1 << 20 });
  mkdirSync(join(data, 'boot'), { recursive: true });
  writeFileSync(join(data, 'boot', 'vmlinuz'), prng(9, 300000));
  writeFileSync(join(data, 'boot', 'fstools.cpio.zst'), prng(10, 1000)); // only deploys with grow load it
  lab = new Lab({ hosts: 2 });
  const srv = lab.spawn(0, process.execPath, [BIN, 'serve', '--address', '10.77.0.1', '--dhcp', 'full', '--subnet', '10.77.0.0/24',
    '--range', '10.77.0.100-10.77.0.150', '--data', data, '--http-port', '8080']);
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`serve did not start: ${serverOut}`)), 30000);
    srv.stdout?.on('data', (c: Buffer) => { serverOut += c.toString(); if (serverOut.includes('rackcast serve: ready')) { clearTimeout(t); res(); } });
    srv.stderr?.on('data', (c: Buffer) => { serverOut += c.toString(); });
    srv.once('exit', (code) => { clearTimeout(t); rej(new Error(`serve exited ${code}: ${serverOut}`)); });
  });
  lab.exec(1, 'ip', ['addr', 'flush', 'dev', 'eth0']); // a bare machine
}, 60000);

afterAll(async () => {
  await lab?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

d('rackcast serve', () => {
  const mac = '02:72:63:00:01:01'; // host 1's MAC in the lab

  it('gives a bare BIOS PXE client a lease, next-server and undionly.kpxe (busybox udhcpc)', () => {
    const script = join(work, 'udhcpc.sh');
    writeFileSync(script, `#!/bin/sh\n[ "$1" = bound ] && echo "ip=$ip siaddr=$siaddr boot_file=$boot_file serverid=$serverid" > ${join(work, 'lease.txt')}\nexit 0\n`);
    chmodSync(script, 0o755);
    lab.exec(1, 'busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '5', '-T', '1', '-s', script, '-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '93:0000']);
    const lease = readFileSync(join(work, 'lease.txt'), 'utf8');
    expect(lease).toMatch(/ip=10\.77\.0\.1[0-4]\d /);
    expect(lease).toContain('siaddr=10.77.0.1');
    expect(lease).toContain('boot_file=undionly.kpxe');
    expect(lease).toContain('serverid=10.77.0.1');
    const ip = /ip=(\S+)/.exec(lease)?.[1] as string;
    lab.exec(1, 'ip', ['addr', 'add', `${ip}/24`, 'dev', 'eth0']);
  });

  it('serves iPXE over TFTP bit-exact (curl tftp://)', () => {
    const out = join(work, 'undionly.kpxe');
    lab.exec(1, 'curl', ['-s', '--max-time', '20', '-o', out, 'tftp://10.77.0.1/undionly.kpxe']);
    expect(readFileSync(out).equals(readFileSync('/usr/lib/ipxe/undionly.kpxe'))).toBe(true);
  });

  it('sends a machine without a task to its local disk, and one with a deploy task into the boot environment', () => {
    const url = `http://10.77.0.1:8080/boot/${mac}.ipxe`;
    const idle = lab.exec(1, 'curl', ['-sf', '--max-time', '10', url]);
    expect(idle).toMatch(/^#!ipxe/);
    expect(idle).toContain('sanboot --no-describe --drive 0x80');
    expect(idle).toContain('exit 0');
    const created = execFileSync(process.execPath, [BIN, 'task', 'deploy', 'web', '--machines', mac.toUpperCase().replaceAll(':', '-'), '--data-dir', data], { encoding: 'utf8' });
    expect(created).toMatch(/^task 1: deploy web to 1 machine/);
    const boot = lab.exec(1, 'curl', ['-sf', '--max-time', '10', url]);
    expect(boot).toContain('kernel http://10.77.0.1:8080/boot/files/vmlinuz initrd=initrd.zst initrd=client.cpio.zst');
    expect(boot).toMatch(/rackcast\.token=[0-9a-f]{48} rackcast\.mode=deploy/);
    expect(boot).toContain('initrd http://10.77.0.1:8080/boot/files/client.cpio.zst');
    expect(boot).not.toContain('fstools');
    const tasks = JSON.parse(execFileSync(process.execPath, [BIN, 'task', 'list', '--json', '--data-dir', data], { encoding: 'utf8' })) as { machines: { state: string }[] }[];
    expect(tasks[0]?.machines[0]?.state).toBe('booting');
    const machines = execFileSync(process.execPath, [BIN, 'machine', 'list', '--data-dir', data], { encoding: 'utf8' });
    expect(machines).toContain(mac);
  });

  it('serves boot artifacts with Range, and the image manifest and chunks', () => {
    const whole = readFileSync(join(data, 'boot', 'vmlinuz'));
    const part = join(work, 'part');
    const head = lab.exec(1, 'curl', ['-s', '--max-time', '10', '-r', '1000-1999', '-o', part, '-w', '%{http_code}', 'http://10.77.0.1:8080/boot/files/vmlinuz']);
    expect(head).toBe('206');
    expect(readFileSync(part).equals(whole.subarray(1000, 2000))).toBe(true);
    expect(lab.exec(1, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-r', '999999-', 'http://10.77.0.1:8080/boot/files/vmlinuz'])).toBe('416');
    expect(lab.exec(1, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', 'http://10.77.0.1:8080/boot/files/..%2Frackcast.db'])).toBe('404');
    const manifest = lab.exec(1, 'curl', ['-sf', 'http://10.77.0.1:8080/images/web/manifest.json']);
    expect(manifest).toBe(readFileSync(join(data, 'images', 'web', 'manifest.json'), 'utf8'));
  });
});
