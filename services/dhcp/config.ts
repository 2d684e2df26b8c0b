// DhcpServer options, defaults and their one-time validation (house style 7: validated once,
// frozen, passed inward; contradictions rejected). Also the small injectable interfaces the server
// uses for sockets, time and logging, so tests can run it with no network and no sleeps.
import { RackcastError } from '../errors.ts';
import { ARCH_FAMILIES, DEFAULT_BOOT_FILES, type ArchFamily } from './arch.ts';
import { intToIp, ipToInt, isIpv4 } from './options.ts';

export const DHCP_DEFAULTS = Object.freeze({
  port: 67,
  proxyPort: 4011,
  clientPort: 68,
  leaseTime: 3600,
  offerHoldMs: 60_000,
  declineHoldMs: 600_000,
  probe: true,
  /** 3 s, not 2: busybox udhcpd ARP-checks an address for 2 s before it offers it (measured). */
  probeMs: 3000,
  force: false,
});

export interface DhcpLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}
export interface DhcpClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}
export interface Remote { address: string; port: number }
/** The part of a UDP socket the server uses; the default wraps node:dgram. */
export interface DhcpSocket {
  bind(port: number, address: string): Promise<void>;
  send(buf: Buffer, port: number, address: string): Promise<void>;
  onMessage(fn: (buf: Buffer, from: Remote) => void): void;
  close(): Promise<void>;
}
/** dhcp: port 67 on bindAddress; dhcp-tx: port 67 on interfaceAddress (sends, and unicast in);
 *  pxe: proxyPort on interfaceAddress; probe / probe-tx: clientPort, the same split. */
export type SocketRole = 'dhcp' | 'dhcp-tx' | 'pxe' | 'probe' | 'probe-tx';
export type SocketFactory = (role: SocketRole) => DhcpSocket;

export interface DhcpServerOptions {
  mode: 'full' | 'proxy';
  /** Our address on the boot network: server identifier (54), source of every reply. */
  interfaceAddress: string;
  /**
   * Required, never defaulted: '0.0.0.0' receives the clients' broadcasts and is only safe where
   * every interface is the boot network (a test's namespace, a dedicated appliance NIC set);
   * interfaceAddress alone receives unicast only (relayed or renewing clients).
   */
  bindAddress: string;
  /** Full mode: "10.77.0.0/24", or an address with `netmask`. */
  subnet?: string;
  netmask?: string;
  range?: { start: string; end: string };
  router?: string;
  dns?: readonly string[];
  domainName?: string;
  leaseTime?: number;
  dataDir?: string;
  bootFiles?: Partial<Record<ArchFamily, string | null>>;
  /** Per-host boot file by MAC, e.g. { '52:54:00:12:34:56': 'snponly.efi' }. */
  hostBootFiles?: Record<string, string>;
  httpBase: string;
  /** next-server (siaddr) and option 66; defaults to interfaceAddress. */
  tftpServer?: string;
  port?: number;
  proxyPort?: number;
  clientPort?: number;
  offerHoldMs?: number;
  declineHoldMs?: number;
  probe?: boolean;
  probeMs?: number;
  force?: boolean;
  logger?: DhcpLogger;
  clock?: DhcpClock;
  socketFactory?: SocketFactory;
}

export interface DhcpConfig {
  mode: 'full' | 'proxy';
  interfaceAddress: string;
  bindAddress: string;
  network: { address: string; netmask: string; broadcast: string; prefix: number } | null;
  range: { start: string; end: string } | null;
  router: string | null;
  dns: readonly string[];
  domainName: string | null;
  leaseTime: number;
  dataDir: string | null;
  boot: { httpBase: string; files: Readonly<Record<ArchFamily, string | null>>; hosts: Readonly<Record<string, string>> };
  tftpServer: string;
  port: number;
  proxyPort: number;
  clientPort: number;
  offerHoldMs: number;
  declineHoldMs: number;
  probe: boolean;
  probeMs: number;
  force: boolean;
}

function reject(msg: string, field: string): never {
  // Proposed dedicated code: RC_ERR_DHCP_CONFIG (see docs/dhcp.md); until then the generic one.
  throw new RackcastError('RC_ERR_DHCP_CONFIG', `DHCP config: ${msg}`, { field });
}
function ip(v: unknown, field: string): string {
  if (typeof v !== 'string' || !isIpv4(v)) reject(`${field} must be an IPv4 address, got ${JSON.stringify(v)}`, field);
  return v;
}
function port(v: unknown, field: string): number {
  if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 65535) reject(`${field} must be a port 1..65535`, field);
  return v as number;
}

function network(o: DhcpServerOptions): NonNullable<DhcpConfig['network']> {
  const [addr, len] = (o.subnet ?? '').split('/');
  let mask: number;
  if (len !== undefined) {
    if (!/^\d+$/.test(len) || Number(len) > 30 || Number(len) < 8) reject('subnet prefix must be /8../30', 'subnet');
    mask = (0xffffffff << (32 - Number(len))) >>> 0;
  } else {
    mask = ipToInt(ip(o.netmask, 'netmask'));
  }
  const prefix = 32 - Math.log2((~mask >>> 0) + 1);
  if (!Number.isInteger(prefix)) reject('netmask is not contiguous', 'netmask');
  const base = (ipToInt(ip(addr, 'subnet')) & mask) >>> 0;
  return { address: intToIp(base), netmask: intToIp(mask), broadcast: intToIp((base | ~mask) >>> 0), prefix };
}

export function inNetwork(net: { address: string; netmask: string }, addr: string): boolean {
  const m = ipToInt(net.netmask);
  return ((ipToInt(addr) & m) >>> 0) === ipToInt(net.address);
}

/** Validates options once; the result is frozen. Throws on anything missing or contradictory. */
export function validateConfig(o: DhcpServerOptions): DhcpConfig {
  if (o.mode !== 'full' && o.mode !== 'proxy') reject(`mode must be "full" or "proxy"`, 'mode');
  const iface = ip(o.interfaceAddress, 'interfaceAddress');
  const bind = ip(o.bindAddress, 'bindAddress');
  if (bind !== '0.0.0.0' && bind !== iface) reject('bindAddress must be 0.0.0.0 or interfaceAddress', 'bindAddress');
  if (typeof o.httpBase !== 'string' || !/^https?:\/\/[^/\s]+/.test(o.httpBase)) reject('httpBase must be an http(s) URL', 'httpBase');
  const files = { ...DEFAULT_BOOT_FILES };
  for (const [k, v] of Object.entries(o.bootFiles ?? {})) {
    if (!Object.values(ARCH_FAMILIES).includes(k as ArchFamily)) reject(`bootFiles has unknown family "${k}"`, 'bootFiles');
    if (v !== null && typeof v !== 'string') reject(`bootFiles.${k} must be a string or null`, 'bootFiles');
    files[k as ArchFamily] = v;
  }
  const hosts: Record<string, string> = {};
  for (const [mac, f] of Object.entries(o.hostBootFiles ?? {})) {
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac) || typeof f !== 'string' || !f) reject(`hostBootFiles["${mac}"] needs a MAC key and a file`, 'hostBootFiles');
    hosts[mac.toLowerCase()] = f;
  }
  const leaseTime = o.leaseTime ?? DHCP_DEFAULTS.leaseTime;
  if (!Number.isInteger(leaseTime) || leaseTime < 60 || leaseTime > 0x7fffffff) reject('leaseTime must be whole seconds ≥ 60', 'leaseTime');
  let net: DhcpConfig['network'] = null;
  let range: DhcpConfig['range'] = null;
  if (o.mode === 'full') {
    net = network(o);
    if (!inNetwork(net, iface)) reject(`interfaceAddress ${iface} is outside ${net.address}/${net.prefix}`, 'interfaceAddress');
    if (!o.range) reject('full mode needs a range', 'range');
    range = { start: ip(o.range.start, 'range.start'), end: ip(o.range.end, 'range.end') };
    if (!inNetwork(net, range.start) || !inNetwork(net, range.end)) reject('range must lie inside the subnet', 'range');
    const size = ipToInt(range.end) - ipToInt(range.start) + 1;
    if (size < 1 || size > 65536) reject('range must run low to high and hold at most 65536 addresses', 'range');
    if (o.router !== undefined && !inNetwork(net, ip(o.router, 'router'))) reject('router must be inside the subnet', 'router');
    if (typeof o.dataDir !== 'string' || !o.dataDir) reject('full mode needs dataDir for the lease file', 'dataDir');
  } else if (o.range || o.router || o.dns || o.subnet) {
    reject('proxy mode hands out no addresses: range, subnet, router and dns belong to the site\'s DHCP server', 'mode');
  }
  for (const [i, d] of (o.dns ?? []).entries()) ip(d, `dns[${i}]`);
  const probeMs = o.probeMs ?? DHCP_DEFAULTS.probeMs;
  if (!Number.isInteger(probeMs) || probeMs < 0 || probeMs > 30_000) reject('probeMs must be 0..30000', 'probeMs');
  return Object.freeze({
    mode: o.mode, interfaceAddress: iface, bindAddress: bind, network: net, range,
    router: o.router ?? null, dns: Object.freeze([...(o.dns ?? [])]), domainName: o.domainName ?? null, leaseTime,
    dataDir: o.dataDir ?? null,
    boot: Object.freeze({ httpBase: o.httpBase.replace(/\/+$/, ''), files: Object.freeze(files), hosts: Object.freeze(hosts) }),
    tftpServer: o.tftpServer === undefined ? iface : ip(o.tftpServer, 'tftpServer'),
    port: port(o.port ?? DHCP_DEFAULTS.port, 'port'),
    proxyPort: port(o.proxyPort ?? DHCP_DEFAULTS.proxyPort, 'proxyPort'),
    clientPort: port(o.clientPort ?? DHCP_DEFAULTS.clientPort, 'clientPort'),
    offerHoldMs: o.offerHoldMs ?? DHCP_DEFAULTS.offerHoldMs,
    declineHoldMs: o.declineHoldMs ?? DHCP_DEFAULTS.declineHoldMs,
    probe: o.probe ?? DHCP_DEFAULTS.probe, probeMs, force: o.force ?? DHCP_DEFAULTS.force,
  });
}
