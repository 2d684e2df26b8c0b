// Test doubles for the DHCP server: an in-memory "network" of fake sockets, a fake clock, and
// builders for client requests. Nothing here touches a real socket.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DhcpClock, DhcpSocket, DhcpServerOptions, SocketRole } from '../../../services/dhcp/server.ts';
import { DHCPDISCOVER, DHCPREQUEST, OPT, setOption } from '../../../services/dhcp/options.ts';
import { FLAG_BROADCAST, decode, emptyMessage, encode, type DhcpMessage } from '../../../services/dhcp/packet.ts';

export interface Sent { role: SocketRole; buf: Buffer; port: number; address: string; msg: DhcpMessage }
export interface FakeSocket extends DhcpSocket { role: SocketRole; bound?: { port: number; address: string }; closed: boolean; deliver(buf: Buffer, from?: { address: string; port: number }): void }

/** Records every socket the server opens and everything it sends. */
export class FakeNet {
  readonly sockets: FakeSocket[] = [];
  readonly sent: Sent[] = [];
  /** Called for every send; may deliver answers (used to fake a foreign server for the probe). */
  onSend: ((s: Sent, sock: FakeSocket) => void) | null = null;

  factory = (role: SocketRole): DhcpSocket => {
    const handlers: Array<(b: Buffer, f: { address: string; port: number }) => void> = [];
    const net = this;
    const sock: FakeSocket = {
      role, closed: false,
      async bind(port, address) { sock.bound = { port, address }; },
      async send(buf, port, address) {
        if (sock.closed) throw new Error('send on closed socket');
        const s: Sent = { role, buf: Buffer.from(buf), port, address, msg: decode(buf).value };
        net.sent.push(s);
        net.onSend?.(s, sock);
      },
      onMessage(fn) { handlers.push(fn); },
      async close() { sock.closed = true; },
      deliver(buf, from = { address: '0.0.0.0', port: 68 }) { for (const h of handlers) h(buf, from); },
    };
    this.sockets.push(sock);
    return sock;
  };

  socket(role: SocketRole): FakeSocket {
    const s = this.sockets.filter((x) => x.role === role).at(-1);
    if (!s) throw new Error(`no ${role} socket`);
    return s;
  }

  /** Delivers a request to the server and waits for its (async) handling to finish. */
  async request(role: SocketRole, msg: DhcpMessage, from = { address: '0.0.0.0', port: 68 }): Promise<Sent[]> {
    const before = this.sent.length;
    this.socket(role).deliver(encode(msg), from);
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r)); // bounded: handler is a few awaits deep
    return this.sent.slice(before);
  }
}

export class FakeClock implements DhcpClock {
  t = Date.UTC(2026, 0, 1);
  slept: number[] = [];
  now(): number { return this.t; }
  async sleep(ms: number): Promise<void> { this.slept.push(ms); this.t += ms; }
  advance(ms: number): void { this.t += ms; }
}

export function tempDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'rc-test-dhcp-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export const SERVER = '10.77.0.1';

export function fullOptions(dataDir: string, net: FakeNet, clock: FakeClock, over: Partial<DhcpServerOptions> = {}): DhcpServerOptions {
  return {
    mode: 'full', interfaceAddress: SERVER, bindAddress: '0.0.0.0', subnet: '10.77.0.0/24',
    range: { start: '10.77.0.100', end: '10.77.0.109' }, router: SERVER, dns: [SERVER], leaseTime: 600, dataDir,
    httpBase: 'http://10.77.0.1:8080', tftpServer: SERVER, probe: false,
    socketFactory: net.factory, clock, ...over,
  };
}

export function macOf(i: number): Buffer {
  return Buffer.from([0x52, 0x54, 0x00, 0x12, 0x34, i & 0xff]);
}

export interface ClientShape { mac?: Buffer; xid?: number; vendorClass?: string; arch?: number; ipxe?: boolean; uuid?: Buffer; clientId?: Buffer; flags?: number }

/** A client request of `type` with the usual options of the given shape. */
export function request(type: number, shape: ClientShape = {}, extra: Array<[number, Buffer]> = []): DhcpMessage {
  const m = emptyMessage({ xid: shape.xid ?? 0x1234abcd, chaddr: shape.mac ?? macOf(1), flags: shape.flags ?? (type === DHCPDISCOVER ? FLAG_BROADCAST : 0) });
  setOption(m.options, OPT.messageType, type);
  if (shape.clientId) m.options.set(OPT.clientId, shape.clientId);
  if (shape.arch !== undefined) setOption(m.options, OPT.clientArch, [shape.arch]);
  if (shape.vendorClass !== undefined) setOption(m.options, OPT.vendorClass, shape.vendorClass);
  if (shape.ipxe) {
    m.options.set(OPT.userClass, Buffer.from('iPXE'));
    m.options.set(OPT.ipxeEncap, Buffer.from([0x13, 0x01, 0x01, 0xff]));
  }
  if (shape.uuid) m.options.set(OPT.clientUuid, shape.uuid);
  for (const [c, v] of extra) m.options.set(c, v);
  return m;
}

export function pxe(arch: number, over: ClientShape = {}): ClientShape {
  return { vendorClass: `PXEClient:Arch:${String(arch).padStart(5, '0')}:UNDI:002001`, arch, ...over };
}

export { DHCPDISCOVER, DHCPREQUEST };
