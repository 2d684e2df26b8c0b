// Looking for other DHCP servers on the boot network before serving (a full-mode server beside
// another one would hand out conflicting addresses; a proxy beside none would leave clients
// without any). One DISCOVER, built like a BIOS PXE ROM's so that ProxyDHCP servers answer too,
// with the BROADCAST flag set (RFC 2131 §4.1) so answers reach us before we have any lease, and
// a random xid (RFC 2131 §4.4.1) to tell its OFFERs from any other traffic.
import { randomBytes } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import type { DhcpConfig, DhcpSocket, Remote, SocketFactory } from './config.ts';
import { DHCPDISCOVER, DHCPOFFER, OPT, setOption, tryOption } from './options.ts';
import { BOOTREPLY, FLAG_BROADCAST, decode, emptyMessage, encode } from './packet.ts';

export interface ForeignServer {
  /** Option 54, or the packet's source address when a server omits it. */
  serverId: string;
  from: string;
  /** Address offered; 0.0.0.0 for a ProxyDHCP offer. */
  yiaddr: string;
  proxy: boolean;
  nextServer: string;
  bootFile: string;
}
export interface ProbeResult { xid: number; mac: string; servers: ForeignServer[] }

/** MAC of the interface holding `address` (in this network namespace), else a random local one. */
export function probeMac(address: string): Buffer {
  for (const list of Object.values(networkInterfaces())) {
    const hit = list?.find((a) => a.family === 'IPv4' && a.address === address && a.mac !== '00:00:00:00:00:00');
    if (hit) return Buffer.from(hit.mac.split(':').map((x) => parseInt(x, 16)));
  }
  const r = randomBytes(6);
  r[0] = (r[0]! & 0xfc) | 0x02; // locally administered, unicast
  return r;
}

export function probeDiscover(xid: number, mac: Buffer): Buffer {
  const m = emptyMessage({ xid, flags: FLAG_BROADCAST, chaddr: mac });
  setOption(m.options, OPT.messageType, DHCPDISCOVER);
  setOption(m.options, OPT.clientId, Buffer.concat([Buffer.from([1]), mac]));
  setOption(m.options, OPT.paramRequest, [1, 3, 6, 54, 60, 66, 67]);
  setOption(m.options, OPT.vendorClass, 'PXEClient:Arch:00000:UNDI:002001');
  setOption(m.options, OPT.clientArch, [0]);
  return encode(m);
}

/** The OFFER in `buf` for our probe, or undefined for anything else (never throws). */
export function parseProbeOffer(buf: Buffer, from: Remote, xid: number): ForeignServer | undefined {
  let m;
  try { m = decode(buf).value; } catch { return undefined; }
  if (m.op !== BOOTREPLY || m.xid !== xid || tryOption(m.options, OPT.messageType) !== DHCPOFFER) return undefined;
  return {
    serverId: tryOption(m.options, OPT.serverId) ?? from.address,
    from: from.address,
    yiaddr: m.yiaddr,
    proxy: m.yiaddr === '0.0.0.0',
    nextServer: m.siaddr,
    bootFile: tryOption(m.options, OPT.bootFile) ?? m.file,
  };
}

/**
 * Sends one DISCOVER from interfaceAddress:clientPort and collects OFFERs for `cfg.probeMs`.
 * Offers from our own address are ignored (another rackcast on the same host is still reported
 * by its address if it is a different one).
 */
export async function probe(cfg: DhcpConfig, sockets: SocketFactory, sleep: (ms: number) => Promise<void>): Promise<ProbeResult> {
  const xid = randomBytes(4).readUInt32BE(0);
  const mac = probeMac(cfg.interfaceAddress);
  const found = new Map<string, ForeignServer>();
  const opened: DhcpSocket[] = [];
  try {
    const rx = sockets('probe');
    opened.push(rx);
    await rx.bind(cfg.clientPort, cfg.bindAddress);
    let tx = rx;
    if (cfg.bindAddress !== cfg.interfaceAddress) {
      tx = sockets('probe-tx');
      opened.push(tx);
      await tx.bind(cfg.clientPort, cfg.interfaceAddress);
    }
    const onOffer = (buf: Buffer, from: Remote): void => {
      const s = parseProbeOffer(buf, from, xid);
      if (s && s.serverId !== cfg.interfaceAddress && !found.has(s.serverId)) found.set(s.serverId, s);
    };
    for (const s of opened) s.onMessage(onOffer);
    await tx.send(probeDiscover(xid, mac), cfg.port, '255.255.255.255');
    await sleep(cfg.probeMs);
  } finally {
    await Promise.allSettled(opened.map((s) => s.close()));
  }
  return { xid, mac: [...mac].map((b) => b.toString(16).padStart(2, '0')).join(':'), servers: [...found.values()] };
}
