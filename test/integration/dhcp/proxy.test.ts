// Proxy mode beside a site DHCP server we do not control (busybox udhcpd), with real clients.
//   h0 10.77.0.1  rackcast (serve.ts)          h1 10.77.0.2  the site's DHCP server (udhcpd)
//   h2            bare machine running udhcpc  h3 10.77.0.4  scripted PXE client (pxe-client.ts)
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canMakeLab, type Lab } from '../../../scripts/lab/netns.ts';
import { HERE, bare, newLab, kv, run, script, startServer, workDir, type Running } from './harness.ts';

const maybe = canMakeLab() ? describe : describe.skip;
const UUID = '00' + 'aabbccddeeff00112233445566778899';

let lab: Lab;
let work: ReturnType<typeof workDir>;
let site: ChildProcess;
let server: Running | undefined;
const base = { interfaceAddress: '10.77.0.1', bindAddress: '0.0.0.0', httpBase: 'http://10.77.0.1:8080', probeMs: 1500 };

interface Reply { from: string; type: string; yiaddr: string; siaddr: string; file: string; serverId: string | null; vendorClass: string | null; bootFile: string | null; pxeDiscoveryControl: number | null; uuid: string | null }
async function pxeClient(args: Record<string, unknown>): Promise<Reply[]> {
  const r = await run(lab, 3, process.execPath, [join(HERE, 'pxe-client.ts'), JSON.stringify(args)], 20_000);
  if (r.code !== 0) throw new Error(`pxe-client failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { replies: Reply[] }).replies;
}

maybe('proxy-mode DHCP beside a site DHCP server', () => {
  beforeAll(async () => {
    work = workDir();
    lab = newLab(4);
    bare(lab, 2);
    const conf = join(work.dir, 'udhcpd.conf');
    writeFileSync(conf, [`start 10.77.0.150`, `end 10.77.0.160`, `interface eth0`, `max_leases 11`, `lease_file ${join(work.dir, 'udhcpd.leases')}`,
      `pidfile ${join(work.dir, 'udhcpd.pid')}`, `option subnet 255.255.255.0`, `option lease 600`, ''].join('\n'));
    writeFileSync(join(work.dir, 'udhcpd.leases'), '');
    // -a: udhcpd ARP-checks an address before offering it, 2 s by default; 300 ms keeps tests quick
    site = lab.spawn(1, 'busybox', ['udhcpd', '-f', '-a', '300', conf]);
    await new Promise((r) => setTimeout(r, 500)); // udhcpd prints nothing when ready; it binds at once
    expect(site.exitCode).toBeNull();
  });
  afterAll(async () => {
    await server?.stop();
    site?.kill('SIGKILL');
    await lab?.destroy();
    work?.remove();
  });

  it('the start-up probe sees the site server: full mode refuses to start, unless forced', async () => {
    const full = { ...base, mode: 'full', subnet: '10.77.0.0/24', range: { start: '10.77.0.100', end: '10.77.0.120' }, dataDir: join(work.dir, 'full'), probe: true };
    const attempt = await startServer(lab, full).then((s) => s, (e: unknown) => e as Error);
    if (!(attempt instanceof Error)) { await attempt.stop(); throw new Error('full mode started beside another DHCP server'); }
    expect(attempt.message).toMatch(/^failed /);
    expect(attempt.message).toContain('RC_ERR_DHCP_FOREIGN_SERVER');
    expect(attempt.message).toContain('"serverId":"10.77.0.2"');
    const forced = await startServer(lab, { ...full, force: true });
    expect(forced.lines.some((l) => l.includes('other DHCP servers answer') && l.includes('10.77.0.2'))).toBe(true);
    await forced.stop();
  });

  it('proxy mode starts (the probe finding the site server is what it expects)', async () => {
    server = await startServer(lab, { ...base, mode: 'proxy', probe: true });
    expect(server.lines.some((l) => l.includes('"serverId":"10.77.0.2"'))).toBe(true);
  });

  it('a non-PXE udhcpc gets its lease from the site server and no answer from us', async () => {
    const out = join(work.dir, 'plain.out');
    const hook = script(join(work.dir, 'hook.sh'), `{ printf 'event=%s\\t' "$1"; env | grep -v -e '^PATH=' -e '^PWD=' | tr '\\n' '\\t'; echo; } >> ${out}`);
    const r = await run(lab, 2, 'busybox', ['udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '5', '-T', '1', '-A', '1', '-s', hook], 20_000);
    expect(r.timedOut).toBe(false);
    const ev = kv(existsSync(out) ? readFileSync(out, 'utf8') : '').filter((e) => e['event'] === 'bound');
    expect(ev).toHaveLength(1);
    expect(ev[0]!['serverid']).toBe('10.77.0.2');
    expect(ev[0]!['ip']).toMatch(/^10\.77\.0\.1(5\d|60)$/);
    expect(ev[0]!['boot_file']).toBeUndefined();
    const mac = lab.host(2).mac;
    expect(server!.lines.some((l) => l.includes('"reason":"not-pxe"') && l.includes(mac))).toBe(true);
    expect(server!.lines.some((l) => l.includes('sent') && l.includes(mac))).toBe(false);
  });

  it('a PXE client gets the address from the site server and the boot file from us (BIOS: 43, UUID echoed)', async () => {
    const replies = await pxeClient({ mode: 'discover', mac: '02:72:63:bb:00:01', to: '10.77.0.255', vendorClass: 'PXEClient:Arch:00000:UNDI:002001', arch: 0, uuid: UUID, waitMs: 3500 });
    const siteOffer = replies.find((x) => x.serverId === '10.77.0.2');
    const ours = replies.filter((x) => x.serverId === '10.77.0.1');
    expect(siteOffer).toMatchObject({ type: 'OFFER', file: '' });
    expect(siteOffer!.yiaddr).toMatch(/^10\.77\.0\.1(5\d|60)$/);
    expect(ours).toEqual([{
      from: '10.77.0.1:67', type: 'OFFER', yiaddr: '0.0.0.0', siaddr: '10.77.0.1', file: 'undionly.kpxe', serverId: '10.77.0.1',
      vendorClass: 'PXEClient', bootFile: 'undionly.kpxe', pxeDiscoveryControl: 8, uuid: UUID,
    }]);
  });

  it('a boot-server REQUEST on port 4011 is answered by unicast, with the boot file for its arch', async () => {
    const replies = await pxeClient({ mode: 'pxe4011', mac: '02:72:63:bb:00:02', to: '10.77.0.1', ciaddr: '10.77.0.4', vendorClass: 'PXEClient:Arch:00007:UNDI:003016', arch: 7, uuid: UUID, waitMs: 1000 });
    expect(replies).toEqual([{
      from: '10.77.0.1:4011', type: 'ACK', yiaddr: '0.0.0.0', siaddr: '10.77.0.1', file: 'ipxe.efi', serverId: '10.77.0.1',
      vendorClass: 'PXEClient', bootFile: 'ipxe.efi', pxeDiscoveryControl: 8, uuid: UUID, // option 43 for every TFTP-booting PXE client (EDK2 needs it)
    }]);
  });

  it('counted everything it dropped and never saw a malformed packet', async () => {
    const stats = await server!.stop();
    server = undefined;
    expect(stats['events']).toEqual({ 'proxy-offer': 1, 'pxe-ack': 1 });
    expect((stats['dropped'] as Record<string, number>)['not-pxe']).toBeGreaterThanOrEqual(2); // udhcpc DISCOVER + REQUEST
    expect(stats['malformed']).toEqual({});
  });
});
