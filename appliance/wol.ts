// Wake-on-LAN: the AMD "Magic Packet" — 6 bytes 0xff, then the target MAC 16 times (102 bytes) —
// sent as a UDP datagram to the boot network's broadcast address, port 9 (discard), from the
// serve address. The NIC of a powered-off machine matches the pattern anywhere in the frame.
import { createSocket, type Socket } from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { RackcastError } from '../services/errors.ts';

export const WOL_PORT = 9;

export function magicPacket(mac: string): Buffer {
  const hex = mac.toLowerCase().replace(/[^0-9a-f]/g, '');
  if (hex.length !== 12) throw new RackcastError('RC_ERR_MACHINE_INVALID', `not a MAC address: ${mac}`);
  const m = Buffer.from(hex, 'hex');
  const b = Buffer.alloc(6 + 16 * 6, 0xff);
  for (let i = 0; i < 16; i++) m.copy(b, 6 + i * 6);
  return b;
}

const toInt = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const toAddr = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');

/** The directed broadcast address of `address` in a /prefix network. */
export function broadcastAddress(address: string, prefix: number): string {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(address) || !(prefix >= 0 && prefix <= 32)) throw new RackcastError('RC_ERR_CONFIG', `cannot compute a broadcast address from ${address}/${prefix}`);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return toAddr(((toInt(address) & mask) | (~mask >>> 0)) >>> 0);
}

/** Broadcast address for the serve address: from the configured subnet, else from the interface holding it. */
export function servingBroadcast(address: string, subnet?: string): string {
  if (subnet) {
    const [, bits] = subnet.split('/');
    return broadcastAddress(address, Number(bits));
  }
  for (const a of Object.values(networkInterfaces()).flat()) {
    if (a && a.family === 'IPv4' && a.address === address) return broadcastAddress(address, Number(a.cidr?.split('/')[1] ?? 32));
  }
  throw new RackcastError('RC_ERR_CONFIG', `no interface holds ${address}: cannot compute where to send Wake-on-LAN packets (give --subnet or wol.broadcast)`);
}

export interface WolOptions { bindAddress: string; broadcast: string; port?: number }

export class WakeOnLan {
  readonly o: WolOptions;
  #sock?: Socket;
  sent = 0;

  constructor(o: WolOptions) {
    this.o = o;
  }

  async #socket(): Promise<Socket> {
    if (this.#sock) return this.#sock;
    const s = createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((res, rej) => { s.once('error', rej); s.bind({ address: this.o.bindAddress, port: 0 }, () => { s.off('error', rej); res(); }); });
    s.setBroadcast(true);
    s.on('error', () => undefined); // a send error is reported by send()'s callback
    this.#sock = s;
    return s;
  }

  async wake(mac: string): Promise<void> {
    const pkt = magicPacket(mac);
    const s = await this.#socket();
    await new Promise<void>((res, rej) => s.send(pkt, this.o.port ?? WOL_PORT, this.o.broadcast, (e) => (e ? rej(e) : res())));
    this.sent++;
  }

  close(): void {
    this.#sock?.close();
    this.#sock = undefined;
  }
}
