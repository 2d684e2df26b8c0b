// Group datagram I/O for the multicast data plane: batched through the rcudp addon
// (native/rcudp.c: a receive thread on recvmmsg filling a ring JS reads in batches; sendmmsg of a
// paced burst), or node:dgram one datagram at a time where the addon is not built or not wanted.
// Both deliver every datagram as (buffer, offset, length, from) to the same handler, and the
// handler must be done with those bytes when it returns (the ring slot is reused): it copies what
// it keeps (Assembly.add does; group messages are copied before they are decoded).
//
// Measured here (docs/decisions.md, "Multicast: batched datagram I/O"): 40,000 datagrams of 1,472
// bytes at 300 Mbit/s cost a node:dgram receiver 0.75–0.83 CPU s and recvmmsg 0.18–0.25 s; a
// paced node:dgram sender 0.52–0.54 s and sendmmsg 0.21–0.26 s.
import { createSocket, type Socket } from 'node:dgram';
import { createRequire } from 'node:module';
import { RackcastError } from '../errors.ts';

/** 'auto': the addon where it loads, else node:dgram */
export type IoMode = 'auto' | 'native' | 'dgram';

interface RxOpened { handle: unknown; memory: ArrayBuffer; rcvbuf: number; slotSize: number }
/** The addon's functions (native/rcudp.c); exported for unit tests that stand in for the kernel. */
export interface Binding {
  rxOpen(o: { group: string; port: number; iface: string; rcvbuf: number; slots: number; slotSize: number; coalesceUs?: number }, onBatch: (first: number, count: number) => void): RxOpened;
  rxMembership(h: unknown, add: boolean, group: string, iface: string): void;
  rxStats(h: unknown): { datagrams: number; batches: number; fullWaits: number; truncated: number; errors: number; lastErrno: number };
  rxClose(h: unknown): void;
  txOpen(o: { iface: string; port: number; group: string; ttl: number; sndbuf: number; loop: number }): unknown;
  txSend(h: unknown, buf: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number;
  txClose(h: unknown): void;
}

let loaded: { binding?: Binding; error?: string } | undefined;

/** The addon, or why it is not there (loaded once). */
export function nativeIo(): { binding?: Binding; error?: string } {
  if (loaded) return loaded;
  try {
    const require = createRequire(import.meta.url);
    loaded = { binding: require('./native/build/Release/rcudp.node') as Binding };
  } catch (e) {
    loaded = { error: `rcudp addon not loaded (${(e as Error).message.split('\n')[0]}); build it with npm ci or npm run build:native` };
  }
  return loaded;
}

function pick(mode: IoMode): Binding | undefined {
  if (mode === 'dgram') return undefined;
  const { binding, error } = nativeIo();
  if (!binding && mode === 'native') throw new RackcastError('RC_ERR_USAGE', `native datagram I/O asked for, but ${error}`);
  return binding;
}

/** Rethrow an addon error (a plain Error with a code) as a RackcastError. */
function native<T>(what: string, f: () => T): T {
  try { return f(); } catch (e) {
    const code = (e as { code?: string }).code === 'RC_ERR_USAGE' ? 'RC_ERR_USAGE' : 'RC_ERR_IO';
    throw new RackcastError(code, `${what}: ${(e as Error).message}`, { what });
  }
}

/** A datagram: buf[offset, offset + length) from `from` (IPv4, a string or a ring's u32; see ipOf). */
export type DatagramHandler = (buf: Buffer, offset: number, length: number, from: string | number) => void;

/** The dotted address of a handler's `from`. */
export function ipOf(from: string | number): string {
  if (typeof from === 'string') return from;
  // the ring stores s_addr (network order) in host-order (little-endian) memory
  return `${from & 255}.${(from >>> 8) & 255}.${(from >>> 16) & 255}.${from >>> 24}`;
}

export interface GroupReceiver {
  readonly kind: 'native' | 'dgram';
  /** kernel receive buffer granted (bytes) */
  readonly rcvbuf: number;
  membership(add: boolean): void;
  /** native: datagrams, batches, waits for a full ring, truncated datagrams */
  stats(): Record<string, number>;
  /** native: datagrams the receive thread has taken off the socket that JS has not handled yet (0 for node:dgram) */
  pending(): number;
  close(): Promise<void>;
}

export interface ReceiverIoOptions {
  group: string; port: number; iface: string; rcvbuf: number; io: IoMode; slots?: number;
  /** native: after a batch that emptied the socket, the receive thread waits this long for more (µs; 0: never) */
  coalesceUs?: number;
}

/** Slot size: the largest UDP payload, so any datagram size a sender picks fits (pages are touched only as far as datagrams reach). */
const SLOT_SIZE = 65536;

/** Join `group` on `iface` and hand every datagram to onDatagram. */
export async function openGroupReceiver(o: ReceiverIoOptions, onDatagram: DatagramHandler, onTruncated: () => void = () => undefined): Promise<GroupReceiver> {
  const b = pick(o.io);
  if (b) {
    const slots = o.slots ?? 4096;
    let ring: Buffer | undefined;
    let lens: Uint32Array | undefined;
    let addrs: Uint32Array | undefined;
    let size = 0;
    let handled = 0;
    const r = native('multicast receive socket', () => b.rxOpen({ group: o.group, port: o.port, iface: o.iface, rcvbuf: o.rcvbuf, slots, slotSize: SLOT_SIZE, coalesceUs: o.coalesceUs ?? 500 }, (first, count) => {
      handled += count;
      for (let k = 0, s = first; k < count; k++, s = s + 1 === slots ? 0 : s + 1) {
        const len = (lens as Uint32Array)[s] as number;
        if (len > size) { onTruncated(); continue; }
        onDatagram(ring as Buffer, s * size, len, (addrs as Uint32Array)[s] as number);
      }
    }));
    size = r.slotSize;
    ring = Buffer.from(r.memory, 0, slots * size);
    lens = new Uint32Array(r.memory, slots * size, slots);
    addrs = new Uint32Array(r.memory, slots * size + slots * 4, slots);
    let closed = false;
    // the addon frees its receiver state once the closed handle's thread-safe function is
    // finalized (a later turn of the event loop): after close(), stats() are the counters at
    // close and the handle is not used again (rxStats would read freed memory)
    let final: Record<string, number> | undefined;
    return {
      kind: 'native', rcvbuf: r.rcvbuf,
      membership: (add) => { if (!closed) native('multicast membership', () => b.rxMembership(r.handle, add, o.group, o.iface)); },
      stats: () => final ?? b.rxStats(r.handle),
      pending: () => (closed ? 0 : Math.max(0, b.rxStats(r.handle).datagrams - handled)),
      close: async () => { if (!closed) { closed = true; final = b.rxStats(r.handle); b.rxClose(r.handle); } },
    };
  }
  const s = createSocket({ type: 'udp4', reuseAddr: true });
  s.on('message', (msg, rinfo) => onDatagram(msg, 0, msg.length, rinfo.address));
  await new Promise<void>((res, rej) => { s.once('error', rej); s.bind(o.port, o.group, () => { s.off('error', rej); res(); }); });
  s.addMembership(o.group, o.iface);
  try { s.setRecvBufferSize(o.rcvbuf); } catch { /* capped by net.core.rmem_max */ }
  let closed = false;
  return {
    kind: 'dgram', rcvbuf: s.getRecvBufferSize(),
    membership: (add) => { if (!closed) { if (add) s.addMembership(o.group, o.iface); else s.dropMembership(o.group, o.iface); } },
    stats: () => ({}),
    pending: () => 0,
    close: () => (closed ? Promise.resolve() : new Promise<void>((r) => { closed = true; s.close(() => r()); })),
  };
}

export interface GroupSender {
  readonly kind: 'native' | 'dgram';
  /**
   * Queue one datagram: head then body. The head is copied (reuse it freely); the body is copied
   * by the native path and referenced by node:dgram until sent (do not change it meanwhile).
   */
  push(head: Uint8Array, body?: Uint8Array): void;
  /** Send what is queued (native: one sendmmsg). */
  flush(): void;
  /** datagrams the kernel would not take (socket buffer full or a send error): lost, to be NACKed */
  readonly dropped: number;
  close(): Promise<void>;
}

export interface SenderIoOptions {
  group: string; port: number; iface: string; sndbuf: number; io: IoMode;
  /** unit tests only: a stand-in for the addon (a socket buffer that refuses, a send error) */
  binding?: Binding;
}

/** The sender's stage: room for a burst far larger than the pacer's (2–20 ms of credit). */
export const STAGE_BYTES = 2 << 20;
export const STAGE_DATAGRAMS = 2048;

/**
 * The socket group traffic leaves from: bound to the interface address and port the control
 * socket uses (SO_REUSEADDR; receivers see one source), multicast TTL 1, no loopback, connected
 * to the group (no address lookup per datagram; being connected it receives nothing, so the
 * receivers' unicast messages reach the control socket).
 */
export async function openGroupSender(o: SenderIoOptions): Promise<GroupSender> {
  const b = o.binding ?? pick(o.io);
  if (b) {
    const h = native('multicast send socket', () => b.txOpen({ iface: o.iface, port: o.port, group: o.group, ttl: 1, sndbuf: o.sndbuf, loop: 0 }));
    const stage = Buffer.allocUnsafeSlow(STAGE_BYTES);
    const offs = new Uint32Array(STAGE_DATAGRAMS);
    const lens = new Uint32Array(STAGE_DATAGRAMS);
    let n = 0; // datagrams staged
    let sent = 0; // of them already sent (a flush the socket buffer cut short)
    let used = 0; // bytes staged
    let closed = false;
    const out = {
      kind: 'native' as const, dropped: 0,
      flush(): void {
        if (closed || sent === n) { n = sent = used = 0; return; }
        let r = b.txSend(h, stage, offs.subarray(sent), lens.subarray(sent), n - sent);
        while (r < 0 && sent < n) {
          // an error on the first datagram (no route, interface down, a firewall's EPERM, too
          // large): that one is lost, counted, and NACKed by receivers; the rest go on
          out.dropped++;
          sent++;
          r = sent < n ? b.txSend(h, stage, offs.subarray(sent), lens.subarray(sent), n - sent) : 0;
        }
        sent += Math.max(0, r);
        if (sent === n) n = sent = used = 0;
      },
      push(head: Uint8Array, body?: Uint8Array): void {
        if (closed) return;
        const len = head.length + (body?.length ?? 0);
        if (n === STAGE_DATAGRAMS || used + len > STAGE_BYTES) {
          out.flush();
          if (sent > 0) {
            // a flush the kernel cut short: move what is still unsent to the front of the stage
            const from = offs[sent] as number;
            stage.copyWithin(0, from, used);
            for (let k = sent; k < n; k++) offs[k - sent] = (offs[k] as number) - from;
            lens.copyWithin(0, sent, n);
            n -= sent;
            used -= from;
            sent = 0;
          }
          // still no room: the kernel takes nothing for now; drop, as a full socket buffer would
          if (n === STAGE_DATAGRAMS || used + len > STAGE_BYTES) { out.dropped++; return; }
        }
        stage.set(head, used);
        if (body) stage.set(body, used + head.length);
        offs[n] = used;
        lens[n] = len;
        n++;
        used += len;
      },
      close: async (): Promise<void> => { if (!closed) { out.flush(); closed = true; b.txClose(h); } },
    };
    return out;
  }
  const g: Socket = createSocket({ type: 'udp4', reuseAddr: true });
  g.on('message', () => undefined); // nothing arrives from the group address; never buffer it
  await new Promise<void>((res, rej) => { g.once('error', rej); g.bind(o.port, o.iface, () => { g.off('error', rej); res(); }); });
  g.setMulticastInterface(o.iface);
  g.setMulticastTTL(1);
  g.setMulticastLoopback(false);
  try { g.setSendBufferSize(o.sndbuf); } catch { /* capped by wmem_max */ }
  await new Promise<void>((res, rej) => { g.once('error', rej); g.connect(o.port, o.group, () => { g.off('error', rej); res(); }); });
  let closed = false;
  return {
    kind: 'dgram', dropped: 0,
    // node:dgram may queue a datagram (EAGAIN) and send it later: it gets its own copy of the header
    push: (head, body) => { if (!closed) g.send(body ? [Buffer.from(head), body] : Buffer.from(head)); },
    flush: () => undefined,
    close: () => (closed ? Promise.resolve() : new Promise<void>((r) => { closed = true; g.close(() => r()); })),
  };
}
