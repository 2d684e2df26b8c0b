// Payloads of the control messages (docs/wire-protocol.md). DATA carries raw frame bytes and
// needs no payload codec. Each codec: encode → Buffer (header included), decode(payload) → value.
//
//   ANNOUNCE (sender → group, ~2/s)          NACK (receiver → sender, unicast)
//   0  32 manifest digest (SHA-256, raw)     0  4  receiver id
//   32 4  chunk count                        4  2  entry count n (≤ MAX_NACK_ENTRIES)
//   36 4  next chunk the sender sends        6  2  reserved (0)
//   40 4  rate, kbit/s                       8  8n entries: u32 chunk, u16 first fragment,
//   44 1  state (0 waiting, 1 sending,             u16 fragment count (0 = the whole chunk)
//         2 idle: nothing left to send)
//   45 1  URL length U                       STATUS (receiver → sender, unicast, ~1/s)
//   46 2  reserved (0)                       0  4  receiver id
//   48 U  HTTP base URL (UTF-8)              4  1  state (1 receiving, 2 done, 3 failed, 4 unicast)
//                                            5  3  reserved (0)
//   CONTROL (sender → one receiver)          8  4  chunks complete
//   0  4  receiver id                        12 4  chunks total
//   4  1  command (1 done-ack, 2 unicast)    16 4  backlog: chunks waiting for the disk
//                                            20 4  socket receive-buffer drops (cumulative)
//   END (sender → group)                     24 8  bytes written
//   0  1  reason (0 complete, 1 deadline, 2 aborted)
//
//   STATUS byte 5 (was reserved; old senders ignore it): delta 0 none, 1 comparing its target
//   with the manifest, 2 compared (its WANT is on the way). CONTROL command 3: WANT received.
//   STATUS byte 6 (was reserved): capabilities, bit 0 = decodes PARITY datagrams (fec.ts); the
//   sender codes repairs only for chunks that receivers with this bit alone asked for. Other bits
//   are ignored (later capabilities).
//   STATUS bytes 32–35 (new; older senders read 32 bytes and ignore the rest): DATA and PARITY
//   datagrams of the session received so far, modulo 2^32. The sender sets a lone slow receiver's
//   rate from it. A 32-byte STATUS (an older receiver) has no count.
//
//   WANT (delta receiver → sender, unicast, repeated until CONTROL 3 acknowledges it): the chunks
//   it still needs after comparing its target, one bit per chunk, in parts of ≤ MAX_WANT_BITS
//   0  4  receiver id                        16 8  bytes skipped (disk bytes already right;
//   4  4  chunk count of the image                 the same in every part)
//   8  4  first: the chunk bit 0 stands for  24 ⌈n/8⌉ bitmap, MSB first: 1 = still needed;
//   12 2  bits n (1 … MAX_WANT_BITS)               padding bits 0, nothing after it
//   14 2  reserved (0)
import { encodeHeader, HEADER_LENGTH, TYPE, invalid, view, type MessageType } from './wire.ts';

export const MAX_NACK_ENTRIES = 170; // 8 + 170·8 = 1368 bytes: fits a 1500-byte MTU
export const MAX_WANT_BITS = 11200; // 24 + 1400 = 1424 bytes: fits a 1500-byte MTU

export interface Announce { digest: Buffer; chunks: number; next: number; rateKbit: number; state: 0 | 1 | 2; url: string }
export interface NackEntry { index: number; first: number; count: number }
/**
 * afterIdle: sent on hearing the sender idle (an ANNOUNCE saying everything has been sent, which
 * came after every datagram sent before it): what it lists was lost, not still on its way, so the
 * sender re-sends it even if it sent it moments ago (flags byte, bit 0; older senders ignore it).
 */
export interface Nack { receiver: number; entries: NackEntry[]; afterIdle?: boolean }
/** `delta` absent: not a delta receiver (0 on the wire) */
export interface Status { receiver: number; state: 1 | 2 | 3 | 4; have: number; total: number; backlog: number; drops: number; written: number; delta?: 1 | 2; parity?: true; received?: number }
export interface Control { receiver: number; command: 1 | 2 | 3 }
/** One part of a WANT: `needed` lists the chunks in [first, first + count) still needed. */
export interface Want { receiver: number; chunks: number; first: number; count: number; skipped: number; needed: number[] }
export const CONTROL = { DONE_ACK: 1, UNICAST: 2, WANT_ACK: 3 } as const;
export const STATE = { RECEIVING: 1, DONE: 2, FAILED: 3, UNICAST: 4 } as const;
export const DELTA = { COMPARING: 1, COMPARED: 2 } as const;

function frame(type: MessageType, session: number, payload: Buffer): Buffer {
  const out = Buffer.alloc(HEADER_LENGTH + payload.length);
  encodeHeader({ type, session, index: 0, fragIndex: 0, fragCount: 0, payloadLength: payload.length, fragSize: 0 }, out);
  payload.copy(out, HEADER_LENGTH);
  return out;
}

function needLen(p: Uint8Array, n: number, what: string): void {
  if (p.length < n) invalid(`${what} payload of ${p.length} bytes, needs ${n}`, HEADER_LENGTH);
}

export function encodeAnnounce(session: number, a: Announce): Buffer {
  const url = Buffer.from(a.url, 'utf8');
  if (url.length > 255 || a.digest.length !== 32) invalid('announce URL longer than 255 bytes or digest not 32 bytes', 0);
  const p = Buffer.alloc(48 + url.length);
  a.digest.copy(p, 0);
  p.writeUInt32BE(a.chunks, 32);
  p.writeUInt32BE(a.next, 36);
  p.writeUInt32BE(Math.min(a.rateKbit, 0xffffffff), 40);
  p.writeUInt8(a.state, 44);
  p.writeUInt8(url.length, 45);
  url.copy(p, 48);
  return frame(TYPE.ANNOUNCE, session, p);
}

export function decodeAnnounce(p: Uint8Array): Announce {
  needLen(p, 48, 'announce');
  const v = view(p);
  const state = v.getUint8(44);
  if (state > 2) invalid(`announce state ${state}`, HEADER_LENGTH + 44);
  const ulen = v.getUint8(45);
  needLen(p, 48 + ulen, 'announce');
  return {
    digest: Buffer.from(p.subarray(0, 32)), chunks: v.getUint32(32), next: v.getUint32(36), rateKbit: v.getUint32(40),
    state: state as 0 | 1 | 2, url: Buffer.from(p.subarray(48, 48 + ulen)).toString('utf8'),
  };
}

export function encodeNack(session: number, n: Nack): Buffer {
  if (n.entries.length > MAX_NACK_ENTRIES) invalid(`${n.entries.length} NACK entries, at most ${MAX_NACK_ENTRIES}`, 0);
  const p = Buffer.alloc(8 + 8 * n.entries.length);
  p.writeUInt32BE(n.receiver >>> 0, 0);
  p.writeUInt16BE(n.entries.length, 4);
  p.writeUInt8(n.afterIdle ? 1 : 0, 6);
  n.entries.forEach((e, i) => {
    p.writeUInt32BE(e.index, 8 + 8 * i);
    p.writeUInt16BE(e.first, 12 + 8 * i);
    p.writeUInt16BE(e.count, 14 + 8 * i);
  });
  return frame(TYPE.NACK, session, p);
}

export function decodeNack(p: Uint8Array): Nack {
  needLen(p, 8, 'nack');
  const v = view(p);
  const count = v.getUint16(4);
  if (count > MAX_NACK_ENTRIES) invalid(`${count} NACK entries`, HEADER_LENGTH + 4);
  needLen(p, 8 + 8 * count, 'nack');
  const entries: NackEntry[] = [];
  for (let i = 0; i < count; i++) entries.push({ index: v.getUint32(8 + 8 * i), first: v.getUint16(12 + 8 * i), count: v.getUint16(14 + 8 * i) });
  return { receiver: v.getUint32(0), entries, afterIdle: (v.getUint8(6) & 1) === 1 };
}

export function encodeStatus(session: number, s: Status): Buffer {
  const p = Buffer.alloc(s.received === undefined ? 32 : 36);
  p.writeUInt32BE(s.receiver >>> 0, 0);
  p.writeUInt8(s.state, 4);
  p.writeUInt8(s.delta ?? 0, 5);
  p.writeUInt8(s.parity ? 1 : 0, 6);
  p.writeUInt32BE(s.have, 8);
  p.writeUInt32BE(s.total, 12);
  p.writeUInt32BE(Math.min(s.backlog, 0xffffffff), 16);
  p.writeUInt32BE(Math.min(s.drops, 0xffffffff), 20);
  p.writeBigUInt64BE(BigInt(s.written), 24);
  if (s.received !== undefined) p.writeUInt32BE(s.received % 2 ** 32, 32);
  return frame(TYPE.STATUS, session, p);
}

export function decodeStatus(p: Uint8Array): Status {
  needLen(p, p.length > 32 ? 36 : 32, 'status');
  const v = view(p);
  const state = v.getUint8(4);
  if (state < 1 || state > 4) invalid(`status state ${state}`, HEADER_LENGTH + 4);
  const delta = v.getUint8(5);
  if (delta > 2) invalid(`status delta state ${delta}`, HEADER_LENGTH + 5);
  const written = v.getBigUint64(24);
  if (written > BigInt(Number.MAX_SAFE_INTEGER)) invalid('bytes written out of range', HEADER_LENGTH + 24);
  return {
    receiver: v.getUint32(0), state: state as Status['state'], have: v.getUint32(8), total: v.getUint32(12), backlog: v.getUint32(16), drops: v.getUint32(20), written: Number(written),
    ...(delta ? { delta: delta as 1 | 2 } : {}), ...(v.getUint8(6) & 1 ? { parity: true as const } : {}),
    ...(p.length >= 36 ? { received: v.getUint32(32) } : {}),
  };
}

export function encodeControl(session: number, c: Control): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(c.receiver >>> 0, 0);
  p.writeUInt8(c.command, 4);
  return frame(TYPE.CONTROL, session, p);
}

export function decodeControl(p: Uint8Array): Control {
  needLen(p, 8, 'control');
  const v = view(p);
  const command = v.getUint8(4);
  if (command < 1 || command > 3) invalid(`control command ${command}`, HEADER_LENGTH + 4);
  return { receiver: v.getUint32(0), command: command as Control['command'] };
}

export function encodeEnd(session: number, reason: 0 | 1 | 2): Buffer {
  return frame(TYPE.END, session, Buffer.from([reason]));
}

export function decodeEnd(p: Uint8Array): 0 | 1 | 2 {
  needLen(p, 1, 'end');
  const r = p[0] as number;
  if (r > 2) invalid(`end reason ${r}`, HEADER_LENGTH);
  return r as 0 | 1 | 2;
}

export function encodeWant(session: number, w: Want): Buffer {
  if (w.count < 1 || w.count > MAX_WANT_BITS || w.first + w.count > w.chunks) invalid(`WANT part of ${w.count} bits at ${w.first} of ${w.chunks} chunks`, 0);
  const p = Buffer.alloc(24 + Math.ceil(w.count / 8));
  p.writeUInt32BE(w.receiver >>> 0, 0);
  p.writeUInt32BE(w.chunks, 4);
  p.writeUInt32BE(w.first, 8);
  p.writeUInt16BE(w.count, 12);
  p.writeBigUInt64BE(BigInt(w.skipped), 16);
  for (const i of w.needed) {
    const k = i - w.first;
    if (!Number.isInteger(k) || k < 0 || k >= w.count) invalid(`WANT chunk ${i} outside its part`, 0);
    p[24 + (k >>> 3)] = (p[24 + (k >>> 3)] as number) | (0x80 >>> (k & 7));
  }
  return frame(TYPE.WANT, session, p);
}

/** A whole declaration: the chunks for which `needed(i)` is true, in as many parts as it takes. */
export function encodeWants(session: number, receiver: number, chunks: number, skipped: number, needed: (i: number) => boolean): Buffer[] {
  const out: Buffer[] = [];
  for (let first = 0; first < chunks; first += MAX_WANT_BITS) {
    const count = Math.min(MAX_WANT_BITS, chunks - first);
    const list: number[] = [];
    for (let i = first; i < first + count; i++) if (needed(i)) list.push(i);
    out.push(encodeWant(session, { receiver, chunks, first, count, skipped, needed: list }));
  }
  return out;
}

export function decodeWant(p: Uint8Array): Want {
  needLen(p, 24, 'want');
  const v = view(p);
  const chunks = v.getUint32(4);
  const first = v.getUint32(8);
  const count = v.getUint16(12);
  if (count < 1 || count > MAX_WANT_BITS) invalid(`WANT of ${count} bits`, HEADER_LENGTH + 12);
  if (first + count > chunks) invalid(`WANT bits ${first}+${count} beyond ${chunks} chunks`, HEADER_LENGTH + 8);
  if (v.getUint16(14) !== 0) invalid('WANT reserved bits set', HEADER_LENGTH + 14);
  const skipped = v.getBigUint64(16);
  if (skipped > BigInt(Number.MAX_SAFE_INTEGER)) invalid('WANT bytes skipped out of range', HEADER_LENGTH + 16);
  const len = 24 + Math.ceil(count / 8);
  needLen(p, len, 'want');
  if (p.length > len) invalid(`WANT of ${p.length} bytes, ${len} expected`, HEADER_LENGTH + len);
  if (count & 7 && (p[len - 1] as number) & (0xff >>> (count & 7))) invalid('WANT padding bits set', HEADER_LENGTH + len - 1);
  const needed: number[] = [];
  for (let k = 0; k < count; k++) if ((p[24 + (k >>> 3)] as number) & (0x80 >>> (k & 7))) needed.push(first + k);
  return { receiver: v.getUint32(0), chunks, first, count, skipped: Number(skipped), needed };
}
