// DhcpServer behaviour through injected fake sockets: no network, no sleeps.
import { describe, it, expect, beforeEach, afterEach } from '@jest/globals';
import { isRackcastError } from '../../../services/errors.ts';
import { DhcpServer, DHCP_DEFAULTS } from '../../../services/dhcp/server.ts';
import {
  DHCPACK, DHCPDECLINE, DHCPDISCOVER, DHCPINFORM, DHCPNAK, DHCPOFFER, DHCPRELEASE, DHCPREQUEST, OPT, encodeIp, getOption, pxeVendorOptions, setOption,
} from '../../../services/dhcp/options.ts';
import { BOOTREPLY, encode, emptyMessage } from '../../../services/dhcp/packet.ts';
import { prng } from '../../helpers/rng.ts';
import { FakeClock, FakeNet, SERVER, fullOptions, macOf, pxe, request, tempDir } from './helpers.ts';

let tmp: ReturnType<typeof tempDir>;
let net: FakeNet;
let clock: FakeClock;
let server: DhcpServer;
const UUID = Buffer.concat([Buffer.from([0]), Buffer.alloc(16, 0x5a)]);

async function start(over: Parameters<typeof fullOptions>[3] = {}): Promise<DhcpServer> {
  server = new DhcpServer(fullOptions(tmp.dir, net, clock, over));
  await server.listen();
  return server;
}
const type = (m: { options: Map<number, Buffer> }) => getOption(m.options, OPT.messageType);

beforeEach(() => { tmp = tempDir(); net = new FakeNet(); clock = new FakeClock(); });
afterEach(async () => { await server?.close(); tmp.remove(); });

describe('DhcpServer: sockets and lifecycle', () => {
  it('binds the wildcard for broadcasts and the interface address for sending; listen/close twice are safe', async () => {
    await start();
    await server.listen();
    expect(net.sockets.map((s) => [s.role, s.bound])).toEqual([
      ['dhcp', { port: 67, address: '0.0.0.0' }], ['dhcp-tx', { port: 67, address: SERVER }]]);
    await server.close();
    await server.close();
    expect(net.sockets.every((s) => s.closed)).toBe(true);
    await expect(server.listen()).rejects.toThrow(/closed/);
    expect(DHCP_DEFAULTS).toMatchObject({ port: 67, proxyPort: 4011, clientPort: 68 });
  });

  it('rejects contradictory or unsafe config at construction', () => {
    const bad = [
      { bindAddress: '10.77.0.9' }, { bindAddress: undefined as unknown as string }, { range: { start: '10.77.0.200', end: '10.77.0.100' } },
      { range: { start: '10.77.1.1', end: '10.77.1.9' } }, { interfaceAddress: '192.168.0.1' }, { httpBase: 'ftp://x' },
      { dataDir: '' }, { mode: 'proxy' as const }, { bootFiles: { 'sparc': 'x' } as never }, { leaseTime: 5 },
    ];
    for (const over of bad) {
      let err: unknown;
      try { new DhcpServer(fullOptions(tmp.dir, net, clock, over)); } catch (e) { err = e; }
      expect([over, isRackcastError(err, 'RC_ERR_DHCP_CONFIG')]).toEqual([over, true]);
    }
  });
});

describe('DhcpServer: full mode', () => {
  beforeEach(async () => { await start({ range: { start: '10.77.0.100', end: '10.77.0.100' } }); });

  it('DISCOVER → broadcast OFFER with lease options; a PXE BIOS client gets undionly.kpxe, 43, 60 and its UUID back', async () => {
    const [s] = await net.request('dhcp', request(DHCPDISCOVER, pxe(0, { uuid: UUID })));
    expect(s).toMatchObject({ role: 'dhcp-tx', address: '255.255.255.255', port: 68 });
    const m = s!.msg;
    expect([m.op, type(m), m.yiaddr, m.siaddr, m.file]).toEqual([BOOTREPLY, DHCPOFFER, '10.77.0.100', SERVER, 'undionly.kpxe']);
    expect(getOption(m.options, OPT.serverId)).toBe(SERVER);
    expect(getOption(m.options, OPT.subnetMask)).toBe('255.255.255.0');
    expect(getOption(m.options, OPT.router)).toEqual([SERVER]);
    expect(getOption(m.options, OPT.leaseTime)).toBe(600);
    expect(getOption(m.options, OPT.renewalT1)).toBe(300);
    expect(getOption(m.options, OPT.vendorClass)).toBe('PXEClient');
    expect(getOption(m.options, OPT.bootFile)).toBe('undionly.kpxe');
    expect(getOption(m.options, OPT.vendorSpecific)?.get(6)).toEqual(Buffer.from([8]));
    expect(m.options.get(OPT.clientUuid)).toEqual(UUID);
    expect(server.stats.events).toEqual({ offer: 1 });
  });

  it('a plain client gets a lease and no boot file; UEFI x64 gets ipxe.efi; iPXE gets its script URL', async () => {
    const plain = (await net.request('dhcp', request(DHCPDISCOVER, { mac: macOf(2) })))[0]!.msg;
    expect([plain.yiaddr, plain.file, plain.options.has(OPT.bootFile), plain.options.has(OPT.vendorClass)]).toEqual(['10.77.0.100', '', false, false]);
    await server.close(); // that pool holds one address: a fresh server with a larger one for the rest
    await start({ range: { start: '10.77.0.100', end: '10.77.0.110' } });
    const efi = (await net.request('dhcp', request(DHCPDISCOVER, pxe(7, { mac: macOf(3) }))))[0]!.msg;
    expect(efi.file).toBe('ipxe.efi');
    expect(efi.options.get(OPT.vendorSpecific)).toEqual(pxeVendorOptions()); // EDK2 needs discovery control 8
    const ipxe = (await net.request('dhcp', request(DHCPDISCOVER, pxe(7, { mac: macOf(4), ipxe: true }))))[0]!.msg;
    expect(ipxe.file).toBe('http://10.77.0.1:8080/boot/52:54:00:12:34:04.ipxe');
    expect(getOption(ipxe.options, OPT.ipxeEncap)?.get(176)).toEqual(Buffer.from([1]));
  });

  it('SELECTING REQUEST for our server id → ACK; for another server id → silence and the offer is released', async () => {
    await net.request('dhcp', request(DHCPDISCOVER, { mac: macOf(1) }));
    const other = request(DHCPREQUEST, { mac: macOf(1) }, [[OPT.serverId, encodeIp('10.77.0.2')], [OPT.requestedIp, encodeIp('10.77.0.100')]]);
    expect(await net.request('dhcp', other)).toEqual([]);
    expect(server.stats.dropped['other-server']).toBe(1);
    // the single address is free again at once: another client can have it
    const offer2 = (await net.request('dhcp', request(DHCPDISCOVER, { mac: macOf(2) })))[0]!.msg;
    expect(offer2.yiaddr).toBe('10.77.0.100');
    const ours = request(DHCPREQUEST, { mac: macOf(2) }, [[OPT.serverId, encodeIp(SERVER)], [OPT.requestedIp, encodeIp('10.77.0.100')]]);
    const [ack] = await net.request('dhcp', ours);
    expect([type(ack!.msg), ack!.msg.yiaddr, ack!.address]).toEqual([DHCPACK, '10.77.0.100', '255.255.255.255']);
    expect(server.leases!.list()).toMatchObject([{ ip: '10.77.0.100', state: 'bound', mac: '52:54:00:12:34:02' }]);
    // the first client now asks for the taken address: NAK, broadcast
    const taken = request(DHCPREQUEST, { mac: macOf(1) }, [[OPT.serverId, encodeIp(SERVER)], [OPT.requestedIp, encodeIp('10.77.0.100')]]);
    const [nak] = await net.request('dhcp', taken);
    expect([type(nak!.msg), nak!.msg.yiaddr, nak!.address]).toEqual([DHCPNAK, '0.0.0.0', '255.255.255.255']);
  });

  it('RENEWING (ciaddr set) is answered by unicast to ciaddr; INIT-REBOOT on a wrong network gets a NAK', async () => {
    server.leases!.bind('mac:52:54:00:12:34:01', '52:54:00:12:34:01', '10.77.0.100', 600);
    const renew = request(DHCPREQUEST, { mac: macOf(1) });
    renew.ciaddr = '10.77.0.100';
    const [ack] = await net.request('dhcp', renew, { address: '10.77.0.100', port: 68 });
    expect([type(ack!.msg), ack!.msg.yiaddr, ack!.msg.ciaddr, ack!.address, ack!.port]).toEqual([DHCPACK, '10.77.0.100', '10.77.0.100', '10.77.0.100', 68]);
    expect(server.stats.events['renew']).toBe(1);
    const reboot = request(DHCPREQUEST, { mac: macOf(5) }, [[OPT.requestedIp, encodeIp('192.168.1.50')]]);
    const [nak] = await net.request('dhcp', reboot);
    expect([type(nak!.msg), nak!.address]).toEqual([DHCPNAK, '255.255.255.255']);
  });

  it('honours the BROADCAST flag in replies, answers relays at giaddr:67 and echoes option 82 last', async () => {
    const d = request(DHCPDISCOVER, pxe(0, { mac: macOf(6), flags: 0 }), [[OPT.relayAgent, Buffer.from([1, 3, 0x61, 0x62, 0x63])]]);
    d.giaddr = '10.77.0.254';
    d.hops = 1;
    const [s] = await net.request('dhcp', d, { address: '10.77.0.254', port: 67 });
    expect([s!.address, s!.port, s!.msg.giaddr, s!.msg.flags, s!.msg.hops]).toEqual(['10.77.0.254', 67, '10.77.0.254', 0, 0]);
    // not relayed: the flag is copied into the reply, and the reply is broadcast either way (no ARP entry for yiaddr)
    const flagged = (await net.request('dhcp', request(DHCPDISCOVER, { mac: macOf(6), flags: 0x8000 })))[0]!;
    expect([flagged.address, flagged.msg.flags]).toEqual(['255.255.255.255', 0x8000]);
    expect([...s!.msg.options.keys()].at(-1)).toBe(OPT.relayAgent);
    const foreign = request(DHCPDISCOVER, { mac: macOf(7) });
    foreign.giaddr = '10.99.0.1';
    expect(await net.request('dhcp', foreign)).toEqual([]);
    expect(server.stats.dropped['relay-foreign-subnet']).toBe(1);
  });

  it('DECLINE marks the address bad, RELEASE frees it, INFORM gets options without a lease', async () => {
    const sid: [number, Buffer] = [OPT.serverId, encodeIp(SERVER)];
    server.leases!.bind('mac:52:54:00:12:34:01', 'x', '10.77.0.100', 600);
    const rel = request(DHCPRELEASE, { mac: macOf(1) }, [sid]);
    rel.ciaddr = '10.77.0.100';
    expect(await net.request('dhcp', rel)).toEqual([]);
    expect(server.leases!.list()[0]?.state).toBe('released');
    const dec = request(DHCPDECLINE, { mac: macOf(1) }, [sid, [OPT.requestedIp, encodeIp('10.77.0.100')]]);
    expect(await net.request('dhcp', dec)).toEqual([]);
    expect(await net.request('dhcp', request(DHCPDISCOVER, { mac: macOf(8) }))).toEqual([]); // only address is bad
    expect(server.stats.dropped['pool-exhausted']).toBe(1);
    const inf = request(DHCPINFORM, pxe(7, { mac: macOf(9) }));
    inf.ciaddr = '10.77.0.50';
    const [ack] = await net.request('dhcp', inf, { address: '10.77.0.50', port: 68 });
    expect([type(ack!.msg), ack!.msg.yiaddr, ack!.address, ack!.msg.options.has(OPT.leaseTime), ack!.msg.file]).toEqual([DHCPACK, '0.0.0.0', '10.77.0.50', false, 'ipxe.efi']);
    const offNet = request(DHCPINFORM, { mac: macOf(9) });
    offNet.ciaddr = '192.168.5.5'; // would be unicast off the boot network: never answered
    expect(await net.request('dhcp', offNet)).toEqual([]);
    expect(server.stats.dropped['not-our-network']).toBe(1);
    expect(server.stats.events).toMatchObject({ release: 1, decline: 1, inform: 1 });
  });

  it('malformed and foreign packets are counted and dropped; the loop keeps answering', async () => {
    const good = request(DHCPDISCOVER, { mac: macOf(1) });
    const sock = net.socket('dhcp');
    sock.deliver(Buffer.alloc(10));
    sock.deliver(Buffer.concat([encode(good).subarray(0, 240), Buffer.from([53, 9])]));
    const badType = request(DHCPDISCOVER); badType.options.set(53, Buffer.from([1, 1]));
    sock.deliver(encode(badType));
    const reply = emptyMessage({ op: BOOTREPLY }); setOption(reply.options, OPT.messageType, DHCPOFFER);
    sock.deliver(encode(reply));
    const bootp = emptyMessage();
    sock.deliver(encode(bootp));
    const offer = request(DHCPOFFER);
    sock.deliver(encode(offer));
    const [s] = await net.request('dhcp', good);
    expect(type(s!.msg)).toBe(DHCPOFFER);
    expect(server.stats.malformed).toEqual({ truncated: 2, invalid: 1 });
    expect(server.stats.dropped).toEqual({ 'not-bootrequest': 1, 'bootp': 1, 'not-a-client-message': 1 });
    expect(server.stats.received).toBe(7);
  });

  it('survives 500 seeded random datagrams (half with a valid header and cookie) and still answers', async () => {
    const rnd = prng(67);
    const sock = net.socket('dhcp');
    const base = encode(request(DHCPDISCOVER, pxe(0)));
    for (let i = 0; i < 500; i++) {
      const b = i % 2 ? Buffer.from(base) : Buffer.alloc(Math.floor(rnd() * 600));
      for (let k = i % 2 ? 1 + Math.floor(rnd() * 8) : b.length; k > 0; k--) b[i % 2 ? 236 + 4 + Math.floor(rnd() * (b.length - 240)) : k - 1] = Math.floor(rnd() * 256);
      sock.deliver(b);
    }
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    const st = server.stats;
    expect(st.received).toBe(500);
    expect(st.malformed['internal']).toBeUndefined();
    const handled = Object.values(st.malformed).concat(Object.values(st.dropped), Object.values(st.events)).reduce((a, b) => a + b, 0);
    expect(handled).toBe(500);
    clock.advance(61_000); // let any offer a mutated DISCOVER won lapse: the pool holds one address
    expect(type((await net.request('dhcp', request(DHCPDISCOVER, { mac: macOf(200) })))[0]?.msg ?? { options: new Map() })).toBe(DHCPOFFER);
  });

  it('counts a failed send and carries on', async () => {
    net.onSend = () => { throw new Error('ENETUNREACH'); };
    expect(await net.request('dhcp', request(DHCPDISCOVER))).toHaveLength(1);
    expect([server.stats.sendErrors, server.stats.sent]).toEqual([1, 0]);
  });
});
