// Full-mode DHCP against real clients in a namespace lab: busybox udhcpc, ISC dhclient, nmap.
//   h0 10.77.0.1  rackcast DHCP (serve.ts)        h1, h2  bare machines (address flushed)
//   h3 10.77.0.4  observers that need an address: nmap, the scripted client (pxe-client.ts)
// UPDATE_GOLDEN=1 also re-captures the udhcpc and dhclient DISCOVERs used by the unit golden test.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { canMakeLab, type Lab } from '../../../scripts/lab/netns.ts';
import { HERE, bare, newLab, kv, run, script, startServer, workDir, type Running } from './harness.ts';

const maybe = canMakeLab() ? describe : describe.skip;
const UPDATE = process.env['UPDATE_GOLDEN'] === '1';
const UUID = '00' + '78563412bc9af0de0123456789abcdef';

let lab: Lab;
let work: ReturnType<typeof workDir>;
let server: Running;
let config: Record<string, unknown>;

function udhcpc(host: number, out: string, extra: string[]) {
  const hook = script(join(work.dir, `hook-${host}.sh`), `{ printf 'event=%s\\t' "$1"; env | grep -v -e '^PATH=' -e '^PWD=' | tr '\\n' '\\t'; echo; } >> ${out}`);
  return run(lab, host, 'busybox', ['udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '3', '-T', '1', '-A', '1', '-s', hook, ...extra], 15_000);
}
function bound(out: string): Record<string, string> {
  const ev = kv(existsSync(out) ? readFileSync(out, 'utf8') : '').filter((e) => e['event'] === 'bound' || e['reason'] === 'BOUND');
  if (!ev.length) throw new Error(`no bound event in ${out}: ${existsSync(out) ? readFileSync(out, 'utf8') : '(none)'}`);
  return ev.at(-1)!;
}

maybe('full-mode DHCP with real clients', () => {
  beforeAll(async () => {
    work = workDir();
    lab = newLab(4);
    bare(lab, 1);
    bare(lab, 2);
    config = {
      mode: 'full', interfaceAddress: '10.77.0.1', bindAddress: '0.0.0.0', subnet: '10.77.0.0/24',
      range: { start: '10.77.0.100', end: '10.77.0.150' }, router: '10.77.0.1', dns: ['10.77.0.1'], leaseTime: 600,
      dataDir: join(work.dir, 'data'), httpBase: 'http://10.77.0.1:8080', probe: true, probeMs: 500,
      capture: join(work.dir, 'capture.txt'),
    };
    server = await startServer(lab, config);
  });
  afterAll(async () => {
    await server?.stop();
    await lab?.destroy();
    work?.remove();
  });

  it('udhcpc as a BIOS PXE client: lease, next-server and undionly.kpxe, UUID echoed', async () => {
    const out = join(work.dir, 'u-bios.out');
    const r = await udhcpc(1, out, ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '93:0000', '-x', `0x61:${UUID}`]);
    expect(r.timedOut).toBe(false);
    const e = bound(out);
    expect(e['ip']).toMatch(/^10\.77\.0\.(1[0-4]\d|150)$/);
    expect([e['serverid'], e['siaddr'], e['boot_file'], e['subnet'], e['router'], e['lease']]).toEqual(['10.77.0.1', '10.77.0.1', 'undionly.kpxe', '255.255.255.0', '10.77.0.1', '600']);
    expect(e['opt97']).toBe(UUID);
    expect(e['tftp']).toBe('10.77.0.1'); // option 66
    expect(e['sname']).toBe('10.77.0.1');
    expect(e['bootfile']).toBe('undionly.kpxe'); // option 67
  });

  it('udhcpc as a UEFI x64 client (arch 7) gets ipxe.efi', async () => {
    const out = join(work.dir, 'u-efi.out');
    await udhcpc(1, out, ['-V', 'PXEClient:Arch:00007:UNDI:003016', '-x', '93:0007']);
    expect(bound(out)['boot_file']).toBe('ipxe.efi');
  });

  it('udhcpc with user class "iPXE" gets the HTTP URL of its per-machine script', async () => {
    const out = join(work.dir, 'u-ipxe.out');
    await udhcpc(1, out, ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x4d:69505845', '-x', '93:0000']);
    const e = bound(out);
    expect(e['boot_file']).toBe(`http://10.77.0.1:8080/boot/${lab.host(1).mac}.ipxe`);
    expect(e['opt175']).toBe('b00101ff'); // 175.176 = 1: iPXE's no-pxedhcp
    if (UPDATE) saveGolden('udhcpc-discover.hex', (h) => h.includes('4d0469505845'));
  });

  it('dhclient gets a lease and ipxe.efi (vendor class and arch from its config)', async () => {
    const out = join(work.dir, 'dhclient.out');
    const conf = join(work.dir, 'dhclient.conf');
    writeFileSync(conf, ['option pxe-arch code 93 = unsigned integer 16;', 'send vendor-class-identifier "PXEClient:Arch:00007:UNDI:003016";',
      'send pxe-arch 7;', 'request subnet-mask, broadcast-address, routers, domain-name-servers, host-name, bootfile-name, tftp-server-name;',
      'timeout 8;', ''].join('\n'));
    const hook = script(join(work.dir, 'dhclient-hook.sh'), `{ env | grep -v -e '^PATH=' -e '^PWD=' | tr '\\n' '\\t'; echo; } >> ${out}`);
    const pidFile = join(work.dir, 'dhclient.pid');
    const r = await run(lab, 2, 'dhclient', ['-1', '-v', '-cf', conf, '-sf', hook, '-lf', join(work.dir, 'dhclient.leases'), '-pf', pidFile, 'eth0'], 20_000);
    // Without -d, dhclient forks to the background once bound and records the daemon's PID.
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 1) { try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ } }
    }
    expect(r.timedOut).toBe(false);
    const e = bound(out);
    expect(e['new_ip_address']).toMatch(/^10\.77\.0\.1\d\d$/);
    expect([e['new_dhcp_server_identifier'], e['new_filename'], e['new_subnet_mask'], e['new_routers']]).toEqual(['10.77.0.1', 'ipxe.efi', '255.255.255.0', '10.77.0.1']);
    expect(e['new_ip_address']).not.toBe(bound(join(work.dir, 'u-bios.out'))['ip']);
    if (UPDATE) saveGolden('dhclient-discover.hex', (h) => h.includes('3c20505845436c69656e743a417263683a30303030373a554e44493a303033303136') && !h.includes('3d07'));
  });

  it('nmap broadcast-dhcp-discover parses our OFFER', async () => {
    const r = await run(lab, 3, 'nmap', ['--script', 'broadcast-dhcp-discover', '-e', 'eth0', '--script-args', 'broadcast-dhcp-discover.timeout=3'], 30_000);
    expect(r.stdout).toMatch(/Response 1 of 1/);
    expect(r.stdout).toMatch(/IP Offered: 10\.77\.0\.1\d\d/);
    expect(r.stdout).toMatch(/Server Identifier: 10\.77\.0\.1\n/);
    expect(r.stdout).toMatch(/Subnet Mask: 255\.255\.255\.0/);
    expect(r.stdout).toMatch(/Router: 10\.77\.0\.1/);
  });

  it('a REQUEST naming another server id is ignored, and our offer is released', async () => {
    const args = { mode: 'select-other', mac: '02:72:63:aa:00:01', to: '10.77.0.255', otherServer: '10.77.0.99', waitMs: 1000 };
    const r = await run(lab, 3, process.execPath, [join(HERE, 'pxe-client.ts'), JSON.stringify(args)], 15_000);
    const res = JSON.parse(r.stdout) as { offered: string; replies: unknown[] };
    expect(res.offered).toMatch(/^10\.77\.0\.1\d\d$/);
    expect(res.replies).toEqual([]); // no ACK, no NAK
    expect(server.lines.some((l) => l.includes('"reason":"other-server"') && l.includes('02:72:63:aa:00:01'))).toBe(true);
    // released: the next new client is offered that same address (first free in the range)
    const again = await run(lab, 3, process.execPath, [join(HERE, 'pxe-client.ts'), JSON.stringify({ mode: 'discover', mac: '02:72:63:aa:00:02', to: '10.77.0.255', waitMs: 1000 })], 15_000);
    expect((JSON.parse(again.stdout) as { replies: Array<{ yiaddr: string }> }).replies.map((x) => x.yiaddr)).toEqual([res.offered]);
  });

  it('leases survive a server restart: the same client gets the same address', async () => {
    const before = bound(join(work.dir, 'u-bios.out'))['ip'];
    const stats = await server.stop();
    expect(stats['malformed']).toEqual({});
    server = await startServer(lab, { ...config, capture: undefined });
    const out = join(work.dir, 'u-restart.out');
    await udhcpc(1, out, ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '93:0000']);
    expect(bound(out)['ip']).toBe(before);
    expect(JSON.parse(readFileSync(join(work.dir, 'data', 'dhcp-leases.json'), 'utf8')).leases.length).toBeGreaterThanOrEqual(2);
  });
});

/** Copies the first captured DISCOVER that matches into the unit tests' fixtures. */
function saveGolden(name: string, match: (hex: string) => boolean): void {
  const cap = readFileSync(join(work.dir, 'capture.txt'), 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '');
  const hit = cap.find((h) => h.slice(0, 2) === '01' && h.includes('350101') && match(h));
  if (!hit) throw new Error(`no captured DISCOVER for ${name}`);
  writeFileSync(join(HERE, '../../unit/dhcp/fixtures', name), `${hit}\n`);
}
