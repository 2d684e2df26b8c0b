// DhcpServer: full DHCP or ProxyDHCP for PXE, on node:dgram. respond() decides; this class owns
// the sockets, the counters and the start-up probe.
//
// Sockets (all SO_REUSEADDR so the wildcard and the address-bound socket can share a port):
//   dhcp     bindAddress:67        receives broadcasts (only a wildcard socket gets 255.255.255.255)
//   dhcp-tx  interfaceAddress:67   sends every reply: a socket bound to an address makes Linux
//                                  route even a 255.255.255.255 broadcast out of the interface
//                                  that owns it (never via a default route on another NIC)
//   pxe      interfaceAddress:4011 proxy mode only: boot-server REQUESTs, answered unicast
// A bad packet is counted, logged at debug and dropped; nothing a client sends stops the loop
// (house rule 3).
import { createSocket } from 'node:dgram';
import { RackcastError, isRackcastError } from '../errors.ts';
import {
  DHCP_DEFAULTS, validateConfig, type DhcpClock, type DhcpConfig, type DhcpLogger, type DhcpServerOptions,
  type DhcpSocket, type Remote, type SocketFactory, type SocketRole,
} from './config.ts';
import { LeaseStore } from './leases.ts';
import { MESSAGE_TYPE_NAMES, OPT, macString } from './options.ts';
import { decode, encode } from './packet.ts';
import { probe, type ProbeResult } from './probe.ts';
import { respond } from './responder.ts';

export { DHCP_DEFAULTS };
export type { DhcpServerOptions, DhcpSocket, SocketFactory, SocketRole, DhcpClock, DhcpLogger, ProbeResult };

const silent: DhcpLogger = { debug() {}, info() {}, warn() {}, error() {} };
const realClock: DhcpClock = { now: () => Date.now(), sleep: (ms) => new Promise((r) => setTimeout(r, ms)) };

/** node:dgram behind the DhcpSocket interface. */
export function udpSocket(): DhcpSocket {
  const s = createSocket({ type: 'udp4', reuseAddr: true });
  let closed = false;
  return {
    bind: (port, address) => new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      s.once('error', onError);
      s.bind({ port, address, exclusive: false }, () => {
        s.off('error', onError);
        s.on('error', () => { /* send errors are reported through send()'s callback */ });
        s.setBroadcast(true);
        resolve();
      });
    }),
    send: (buf, port, address) => new Promise((resolve, reject) => s.send(buf, port, address, (e) => (e ? reject(e) : resolve()))),
    onMessage: (fn) => { s.on('message', (msg, r) => fn(msg, { address: r.address, port: r.port })); },
    close: () => new Promise((resolve) => { if (closed) { resolve(); return; } closed = true; s.close(() => resolve()); }),
  };
}

export interface DhcpStats {
  received: number;
  sent: number;
  sendErrors: number;
  /** Answers by event: offer, ack, renew, nak, inform, decline, release, proxy-offer, pxe-ack … */
  events: Record<string, number>;
  /** Well-formed packets we chose not to answer, by reason (not-pxe, other-server …). */
  dropped: Record<string, number>;
  /** Undecodable packets by reason: truncated, invalid, internal. */
  malformed: Record<string, number>;
}

export class DhcpServer {
  readonly config: DhcpConfig;
  readonly leases: LeaseStore | null;
  readonly stats: DhcpStats = { received: 0, sent: 0, sendErrors: 0, events: {}, dropped: {}, malformed: {} };
  readonly #log: DhcpLogger;
  readonly #clock: DhcpClock;
  readonly #factory: SocketFactory;
  #sockets = new Map<SocketRole, DhcpSocket>();
  #listening: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  #lastProbe: ProbeResult | null = null;

  constructor(opts: DhcpServerOptions) {
    this.config = validateConfig(opts);
    this.#log = opts.logger ?? silent;
    this.#clock = opts.clock ?? realClock;
    this.#factory = opts.socketFactory ?? udpSocket;
    const c = this.config;
    this.leases = c.mode === 'full'
      ? new LeaseStore({
        dataDir: c.dataDir!, rangeStart: c.range!.start, rangeEnd: c.range!.end,
        exclude: [c.interfaceAddress, c.tftpServer, ...(c.router ? [c.router] : [])],
        offerHoldMs: c.offerHoldMs, declineHoldMs: c.declineHoldMs, now: () => this.#clock.now(),
      })
      : null;
  }

  get lastProbe(): ProbeResult | null { return this.#lastProbe; }

  /** Sends one DISCOVER and reports the servers that answered within probeMs. Not while listening. */
  async probeForeignServer(): Promise<ProbeResult> {
    if (this.#listening) throw new RackcastError('RC_ERR_USAGE', 'probe before listen(): our own server would answer', {});
    return this.#probe();
  }

  async #probe(): Promise<ProbeResult> {
    let r: ProbeResult;
    try {
      r = await probe(this.config, this.#factory, (ms) => this.#clock.sleep(ms));
    } catch (e) {
      throw new RackcastError('RC_ERR_IO', `DHCP probe failed: ${(e as Error).message}`, { port: this.config.clientPort }, { cause: e });
    }
    this.#log.info({ servers: r.servers }, `dhcp probe: ${r.servers.length} other server(s) answered`);
    this.#lastProbe = r;
    return r;
  }

  listen(): Promise<void> {
    if (this.#closing) return Promise.reject(new RackcastError('RC_ERR_USAGE', 'DHCP server was closed', {}));
    this.#listening ??= this.#start().catch((e: unknown) => { this.#listening = null; throw e; });
    return this.#listening;
  }

  async #start(): Promise<void> {
    const c = this.config;
    if (c.probe) {
      const found = await this.#probe();
      const real = found.servers.filter((s) => !s.proxy);
      if (c.mode === 'full' && real.length && !c.force) {
        throw new RackcastError('RC_ERR_DHCP_FOREIGN_SERVER',
          `another DHCP server answers on ${c.interfaceAddress}'s network (${real.map((s) => s.serverId).join(', ')}): use proxy mode beside it, or force`,
          { servers: real });
      }
      if (found.servers.length) this.#log.warn({ servers: found.servers }, 'dhcp: other DHCP servers answer on this network');
      else if (c.mode === 'proxy') this.#log.warn({}, 'dhcp proxy: no DHCP server answered; clients will get no address');
    }
    try {
      await this.#open('dhcp', c.port, c.bindAddress);
      if (c.bindAddress !== c.interfaceAddress) await this.#open('dhcp-tx', c.port, c.interfaceAddress);
      if (c.mode === 'proxy') await this.#open('pxe', c.proxyPort, c.interfaceAddress);
    } catch (e) {
      await this.#closeSockets();
      throw new RackcastError('RC_ERR_IO', `DHCP: cannot bind: ${(e as Error).message}`, { bindAddress: c.bindAddress, port: c.port }, { cause: e });
    }
    this.#log.info({ mode: c.mode, interfaceAddress: c.interfaceAddress, bindAddress: c.bindAddress, port: c.port }, 'dhcp listening');
  }

  async #open(role: SocketRole, port: number, address: string): Promise<void> {
    const s = this.#factory(role);
    this.#sockets.set(role, s);
    await s.bind(port, address);
    s.onMessage((buf, from) => { void this.#onMessage(buf, from, role === 'pxe' ? 'pxe' : 'dhcp'); });
  }

  async #onMessage(buf: Buffer, from: Remote, via: 'dhcp' | 'pxe'): Promise<void> {
    this.stats.received++;
    let out;
    let mac = '?';
    try {
      const req = decode(buf).value;
      mac = macString(req.chaddr);
      out = respond({ cfg: this.config, leases: this.leases }, req, via, from);
    } catch (e) {
      const reason = isRackcastError(e, 'RC_ERR_DECODE_TRUNCATED') ? 'truncated' : isRackcastError(e) ? 'invalid' : 'internal';
      this.stats.malformed[reason] = (this.stats.malformed[reason] ?? 0) + 1;
      if (reason === 'internal') this.#log.error({ err: e, from, mac }, 'dhcp: failed to handle a packet');
      else this.#log.debug({ err: e, from, bytes: buf.length }, 'dhcp: malformed packet dropped');
      return;
    }
    if ('drop' in out) {
      this.stats.dropped[out.drop] = (this.stats.dropped[out.drop] ?? 0) + 1;
      this.#log.debug({ from, mac, reason: out.drop }, 'dhcp: packet not answered');
      return;
    }
    this.stats.events[out.event] = (this.stats.events[out.event] ?? 0) + 1;
    for (const r of out.replies) {
      const sock = r.via === 'pxe' ? this.#sockets.get('pxe') : this.#sockets.get('dhcp-tx') ?? this.#sockets.get('dhcp');
      if (!sock) continue; // closed meanwhile
      const type = MESSAGE_TYPE_NAMES[r.msg.options.get(OPT.messageType)?.[0] ?? 0] ?? '?';
      try {
        await sock.send(encode(r.msg), r.to.port, r.to.address);
        this.stats.sent++;
        this.#log.debug({ mac, type, yiaddr: r.msg.yiaddr, file: r.msg.file, to: r.to }, `dhcp: ${type} sent`);
      } catch (e) {
        this.stats.sendErrors++;
        this.#log.warn({ err: e, mac, type, to: r.to }, 'dhcp: send failed');
      }
    }
  }

  async #closeSockets(): Promise<void> {
    const all = [...this.#sockets.values()];
    this.#sockets.clear();
    await Promise.allSettled(all.map((s) => s.close()));
  }

  /** Stops listening. Safe to call twice, and before listen(). */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#listening) await this.#listening.catch(() => undefined);
      await this.#closeSockets();
    })();
    return this.#closing;
  }
}
