// DhcpServer in proxy mode and the start-up probe, through injected fake sockets.
import { describe, it, expect, beforeEach, afterEach } from '@jest/globals';
import { DhcpServer } from '../../../services/dhcp/server.ts';
import { DHCPACK, DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, OPT, encodeIp, getOption, setOption } from '../../../services/dhcp/options.ts';
import { BOOTREPLY, encode, emptyMessage } from '../../../services/dhcp/packet.ts';
import { FakeClock, FakeNet, SERVER, fullOptions, pxe, request, tempDir } from './helpers.ts';

let tmp: ReturnType<typeof tempDir>;
let net: FakeNet;
let clock: FakeClock;
let server: DhcpServer;
const UUID = Buffer.concat([Buffer.from([0]), Buffer.alloc(16, 0x5a)]);
const type = (m: { options: Map<number, Buffer> }) => getOption(m.options, OPT.messageType);

beforeEach(() => { tmp = tempDir(); net = new FakeNet(); clock = new FakeClock(); });
afterEach(async () => { await server?.close(); tmp.remove(); });

describe('DhcpServer: proxy mode', () => {
  beforeEach(async () => {
    server = new DhcpServer({
      mode: 'proxy', interfaceAddress: SERVER, bindAddress: '0.0.0.0', httpBase: 'http://10.77.0.1:8080',
      probe: false, socketFactory: net.factory, clock,
    });
    await server.listen();
  });

  it('listens on 67 and on 4011', () => {
    expect(net.sockets.map((s) => [s.role, s.bound])).toEqual([
      ['dhcp', { port: 67, address: '0.0.0.0' }], ['dhcp-tx', { port: 67, address: SERVER }], ['pxe', { port: 4011, address: SERVER }]]);
  });

  it('ignores non-PXE clients and REQUESTs meant for the site DHCP server', async () => {
    expect(await net.request('dhcp', request(DHCPDISCOVER, { vendorClass: 'udhcp 1.35.0' }))).toEqual([]);
    expect(await net.request('dhcp', request(DHCPDISCOVER))).toEqual([]);
    const req = request(DHCPREQUEST, pxe(0), [[OPT.serverId, encodeIp('10.77.0.2')], [OPT.requestedIp, encodeIp('10.77.0.50')]]);
    expect(await net.request('dhcp', req)).toEqual([]);
    expect(server.stats.dropped).toEqual({ 'not-pxe': 2, 'other-server': 1 });
  });

  it('offers PXE clients the boot file with no address: 60, 54, 43 for BIOS, 97 echoed', async () => {
    const [s] = await net.request('dhcp', request(DHCPDISCOVER, pxe(0, { uuid: UUID })));
    const m = s!.msg;
    expect([s!.address, type(m), m.yiaddr, m.siaddr, m.file]).toEqual(['255.255.255.255', DHCPOFFER, '0.0.0.0', SERVER, 'undionly.kpxe']);
    expect(getOption(m.options, OPT.vendorClass)).toBe('PXEClient');
    expect(getOption(m.options, OPT.serverId)).toBe(SERVER);
    expect([m.sname, getOption(m.options, OPT.tftpServer)]).toEqual([SERVER, SERVER]);
    expect(getOption(m.options, OPT.vendorSpecific)?.get(6)).toEqual(Buffer.from([8]));
    expect(m.options.get(OPT.clientUuid)).toEqual(UUID);
    expect(m.options.has(OPT.leaseTime) || m.options.has(OPT.subnetMask)).toBe(false);
    const ipxe = (await net.request('dhcp', request(DHCPDISCOVER, pxe(0, { ipxe: true }))))[0]!.msg;
    expect(ipxe.file).toBe('http://10.77.0.1:8080/boot/52:54:00:12:34:01.ipxe');
    expect(ipxe.options.has(OPT.ipxeEncap)).toBe(false); // no-pxedhcp would make iPXE skip us
  });

  it('answers a boot-server REQUEST on 4011 by unicast to its source, from port 4011', async () => {
    const req = request(DHCPREQUEST, pxe(7, { uuid: UUID }));
    req.ciaddr = '10.77.0.57';
    const [s] = await net.request('pxe', req, { address: '10.77.0.57', port: 68 });
    expect([s!.role, s!.address, s!.port, type(s!.msg), s!.msg.file, s!.msg.ciaddr]).toEqual(['pxe', '10.77.0.57', 68, DHCPACK, 'ipxe.efi', '10.77.0.57']);
    expect(await net.request('pxe', request(DHCPREQUEST), { address: '10.77.0.58', port: 4011 })).toEqual([]);
    expect(server.stats.events).toEqual({ 'pxe-ack': 1 });
  });
});

describe('DhcpServer: probe for foreign servers', () => {
  function foreignServer(yiaddr: string): void {
    net.onSend = (s) => {
      if (s.port !== 67 || type(s.msg) !== DHCPDISCOVER) return;
      const o = emptyMessage({ op: BOOTREPLY, xid: s.msg.xid, chaddr: s.msg.chaddr, yiaddr, siaddr: '10.77.0.2', file: 'pxelinux.0' });
      setOption(o.options, OPT.messageType, DHCPOFFER);
      setOption(o.options, OPT.serverId, '10.77.0.2');
      const other = emptyMessage({ op: BOOTREPLY, xid: s.msg.xid + 1 }); // someone else's transaction
      setOption(other.options, OPT.messageType, DHCPOFFER);
      for (const sk of net.sockets.filter((x) => x.role === 'probe' && !x.closed)) {
        sk.deliver(encode(other), { address: '10.77.0.3', port: 67 });
        sk.deliver(encode(o), { address: '10.77.0.2', port: 67 });
        sk.deliver(Buffer.from('junk'), { address: '10.77.0.4', port: 67 });
      }
    };
  }

  it('full mode refuses to start beside another DHCP server, unless forced', async () => {
    foreignServer('10.77.0.150');
    server = new DhcpServer(fullOptions(tmp.dir, net, clock, { probe: true }));
    await expect(server.listen()).rejects.toMatchObject({ code: 'RC_ERR_DHCP_FOREIGN_SERVER' });
    const probeSocks = net.sockets.filter((s) => s.role.startsWith('probe'));
    expect(probeSocks.map((s) => [s.role, s.bound, s.closed])).toEqual([
      ['probe', { port: 68, address: '0.0.0.0' }, true], ['probe-tx', { port: 68, address: SERVER }, true]]);
    const d = net.sent[0]!;
    expect([d.role, d.address, d.port, d.msg.flags, getOption(d.msg.options, OPT.vendorClass)]).toEqual(['probe-tx', '255.255.255.255', 67, 0x8000, 'PXEClient:Arch:00000:UNDI:002001']);
    expect(clock.slept).toEqual([3000]);
    expect(server.lastProbe?.servers).toEqual([{ serverId: '10.77.0.2', from: '10.77.0.2', yiaddr: '10.77.0.150', proxy: false, nextServer: '10.77.0.2', bootFile: 'pxelinux.0' }]);
    await server.close();
    server = new DhcpServer(fullOptions(tmp.dir, net, clock, { probe: true, force: true }));
    await server.listen();
    expect(net.sockets.filter((s) => s.role === 'dhcp').at(-1)?.bound).toEqual({ port: 67, address: '0.0.0.0' });
  });

  it('a probe that cannot bind port 68 fails with RC_ERR_IO and leaves no socket open', async () => {
    const failing = (role: Parameters<FakeNet['factory']>[0]) => {
      const s = net.factory(role);
      return role === 'probe' ? { ...s, bind: async () => { throw new Error('EADDRINUSE'); } } : s;
    };
    server = new DhcpServer(fullOptions(tmp.dir, net, clock, { probe: true, socketFactory: failing }));
    await expect(server.listen()).rejects.toMatchObject({ code: 'RC_ERR_IO' });
    expect(net.sockets.every((s) => s.closed)).toBe(true);
  });

  it('probeForeignServer() reports proxies and servers; a proxy found does not stop full mode', async () => {
    foreignServer('0.0.0.0');
    server = new DhcpServer(fullOptions(tmp.dir, net, clock, { probe: true, probeMs: 500 }));
    const r = await server.probeForeignServer();
    expect(r.servers).toMatchObject([{ serverId: '10.77.0.2', proxy: true }]);
    expect(clock.slept).toEqual([500]);
    await server.listen();
    await expect(server.probeForeignServer()).rejects.toThrow(/before listen/);
  });
});
