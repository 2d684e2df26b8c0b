// BOOTP/DHCP message codec (RFC 951, RFC 2131 §2, RFC 2132 §2 options, RFC 3396 long options).
// Integers are big-endian (network order).
//
//   off  len  field
//   0    1    op        1 = BOOTREQUEST (client → server), 2 = BOOTREPLY
//   1    1    htype     hardware type, 1 = Ethernet (RFC 1700 ARP hardware types)
//   2    1    hlen      hardware address length, 6 for Ethernet (≤ 16)
//   3    1    hops      relay agents increment it (RFC 1542 §4.1.1)
//   4    4    xid       transaction id chosen by the client
//   8    2    secs      seconds since the client began acquiring
//   10   2    flags     bit 15 = BROADCAST (RFC 2131 §4.1, RFC 1542 §3.1.1); others must be zero
//   12   4    ciaddr    client address, only when the client is BOUND/RENEWING/REBINDING
//   16   4    yiaddr    "your" address the server assigns
//   20   4    siaddr    next server (TFTP server for the boot file; PXE "next-server")
//   24   4    giaddr    relay agent address (RFC 1542); replies go to giaddr:67
//   28   16   chaddr    client hardware address, first hlen bytes meaningful
//   44   64   sname     server host name, NUL-terminated; option area when option 52 says so
//   108  128  file      boot file name, NUL-terminated; option area when option 52 says so
//   236  4    cookie    magic 99.130.83.99 (RFC 2131 §3, RFC 1497)
//   240  …    options   TLV: code(1) len(1) data(len); 0 = PAD (1 byte), 255 = END (1 byte)
//
// Option 52 (overload, RFC 2132 §9.3): 1 = file holds options, 2 = sname does, 3 = both. They are
// read in the order options, file, sname (RFC 2131 §4.1). Several instances of one code are one
// option whose data is their concatenation in that order (RFC 3396 §7); encode splits data longer
// than 255 bytes the same way. Replies are padded to 300 bytes: older BOOTP relays and clients drop
// shorter messages (RFC 1542 §2.1). Options are kept as raw bytes here; options.ts types them.
import { RackcastError } from '../errors.ts';

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
export const HTYPE_ETHERNET = 1;
export const FLAG_BROADCAST = 0x8000;
export const MAGIC_COOKIE = 0x63825363;
export const HEADER_LENGTH = 236;
export const OPTIONS_OFFSET = 240;
export const MIN_MESSAGE_LENGTH = 300;
/** A UDP datagram cannot be longer; anything larger is not one DHCP message. */
export const MAX_MESSAGE_LENGTH = 65507;
export const OPT_PAD = 0;
export const OPT_OVERLOAD = 52;
export const OPT_END = 255;
const SNAME_OFFSET = 44;
const SNAME_LENGTH = 64;
const FILE_OFFSET = 108;
const FILE_LENGTH = 128;

export interface DhcpMessage {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** The first hlen bytes of the chaddr field. */
  chaddr: Buffer;
  sname: string;
  file: string;
  /** Raw option data by code, in wire order (RFC 3396 instances already concatenated). */
  options: Map<number, Buffer>;
}

function truncated(what: string, offset: number, needed: number, available: number): never {
  throw new RackcastError('RC_ERR_DECODE_TRUNCATED', `DHCP: ${what} needs ${needed} bytes at offset ${offset}, ${Math.max(0, available)} left`,
    { offset, needed, available: Math.max(0, available), what });
}
function invalid(what: string, offset: number, fields: Record<string, unknown> = {}): never {
  throw new RackcastError('RC_ERR_DECODE_INVALID', `DHCP: ${what} (offset ${offset})`, { offset, ...fields });
}

function readIp(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}
function writeIp(b: Buffer, at: number, ip: string, what: string): void {
  const parts = ip.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) invalid(`${what} "${ip}" is not an IPv4 address`, at);
  parts.forEach((p, i) => { b[at + i] = Number(p); });
}

/** NUL-terminated string of a fixed-width field (the rest after the first NUL is ignored). */
function readCString(b: Buffer, at: number, width: number): string {
  const end = b.indexOf(0, at);
  return b.toString('latin1', at, end === -1 || end > at + width ? at + width : end);
}

/** Walks one option area, appending each option's data to `into`; returns the offset after END. */
function readOptionArea(b: Buffer, start: number, end: number, into: Map<number, Buffer[]>, area: string): number {
  let at = start;
  while (at < end) { // every step consumes ≥ 1 byte, so this always terminates
    const code = b[at]!;
    if (code === OPT_PAD) { at += 1; continue; }
    if (code === OPT_END) return at + 1;
    if (end - at < 2) truncated(`${area} option ${code} length`, at + 1, 1, end - at - 1);
    const len = b[at + 1]!;
    if (end - at - 2 < len) truncated(`${area} option ${code} data`, at + 2, len, end - at - 2);
    const list = into.get(code) ?? [];
    list.push(b.subarray(at + 2, at + 2 + len));
    into.set(code, list);
    at += 2 + len;
  }
  return end; // no END: tolerated (many clients omit it when the area is exactly full)
}

/**
 * Decodes one DHCP message at `offset`. `bytes` runs through the END option and any PAD bytes
 * after it (or to the end of the buffer when END is missing). Option data is copied, so the
 * result does not alias `buf`.
 */
export function decode(buf: Buffer, offset = 0): { value: DhcpMessage; bytes: number } {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > buf.length) invalid(`bad offset ${offset}`, offset);
  const avail = buf.length - offset;
  if (avail > MAX_MESSAGE_LENGTH) invalid(`message of ${avail} bytes is longer than any datagram`, offset, { length: avail });
  if (avail < HEADER_LENGTH) truncated('BOOTP header', offset, HEADER_LENGTH, avail);
  const b = buf.subarray(offset);
  const hlen = b[2]!;
  if (hlen > 16) invalid(`hlen ${hlen} exceeds the 16-byte chaddr field`, offset + 2, { hlen });
  if (avail < OPTIONS_OFFSET) truncated('magic cookie', offset + HEADER_LENGTH, 4, avail - HEADER_LENGTH);
  if (b.readUInt32BE(HEADER_LENGTH) !== MAGIC_COOKIE) invalid('no DHCP magic cookie (plain BOOTP is not served)', offset + HEADER_LENGTH);

  const parts = new Map<number, Buffer[]>();
  let endAt = readOptionArea(b, OPTIONS_OFFSET, b.length, parts, 'options');
  while (endAt < b.length && b[endAt] === OPT_PAD) endAt++;
  const overloadData = parts.get(OPT_OVERLOAD);
  let overload = 0;
  if (overloadData) {
    const first = overloadData[0]!;
    if (first.length !== 1 || first[0]! < 1 || first[0]! > 3) invalid(`option 52 (overload) value must be one byte 1..3`, offset + OPTIONS_OFFSET, { option: 52 });
    overload = first[0]!;
    // Option 52 inside the overloaded fields is not allowed to overload again (RFC 2131 §4.1).
    if (overload & 1) readOptionArea(b, FILE_OFFSET, FILE_OFFSET + FILE_LENGTH, parts, 'file-field');
    if (overload & 2) readOptionArea(b, SNAME_OFFSET, SNAME_OFFSET + SNAME_LENGTH, parts, 'sname-field');
    parts.set(OPT_OVERLOAD, [first]);
  }
  const options = new Map<number, Buffer>();
  for (const [code, list] of parts) options.set(code, Buffer.concat(list));

  return {
    value: {
      op: b[0]!,
      htype: b[1]!,
      hlen,
      hops: b[3]!,
      xid: b.readUInt32BE(4),
      secs: b.readUInt16BE(8),
      flags: b.readUInt16BE(10),
      ciaddr: readIp(b, 12),
      yiaddr: readIp(b, 16),
      siaddr: readIp(b, 20),
      giaddr: readIp(b, 24),
      chaddr: Buffer.from(b.subarray(28, 28 + hlen)),
      sname: overload & 2 ? '' : readCString(b, SNAME_OFFSET, SNAME_LENGTH),
      file: overload & 1 ? '' : readCString(b, FILE_OFFSET, FILE_LENGTH),
      options,
    },
    bytes: endAt,
  };
}

/** Length of the options area for `options`, with RFC 3396 splitting of long data and END. */
function optionsLength(options: Map<number, Buffer>): number {
  let n = 1; // END
  for (const [code, data] of options) {
    if (code === OPT_PAD || code === OPT_END) continue;
    n += data.length === 0 ? 2 : data.length + 2 * Math.ceil(data.length / 255);
  }
  return n;
}

export function encodingLength(msg: DhcpMessage): number {
  return Math.max(MIN_MESSAGE_LENGTH, OPTIONS_OFFSET + optionsLength(msg.options));
}

/** Encodes `msg` into `buf` at `offset` (a new buffer when omitted) and returns that buffer. */
export function encode(msg: DhcpMessage, buf?: Buffer, offset = 0): Buffer {
  const len = encodingLength(msg);
  const out = buf ?? Buffer.alloc(len + offset);
  if (out.length - offset < len) invalid(`encode needs ${len} bytes, buffer has ${out.length - offset}`, offset);
  const b = out.subarray(offset, offset + len);
  b.fill(0);
  if (msg.chaddr.length > 16) invalid(`chaddr of ${msg.chaddr.length} bytes exceeds 16`, 28);
  b[0] = msg.op; b[1] = msg.htype; b[2] = msg.hlen; b[3] = msg.hops;
  b.writeUInt32BE(msg.xid >>> 0, 4);
  b.writeUInt16BE(msg.secs, 8);
  b.writeUInt16BE(msg.flags, 10);
  writeIp(b, 12, msg.ciaddr, 'ciaddr');
  writeIp(b, 16, msg.yiaddr, 'yiaddr');
  writeIp(b, 20, msg.siaddr, 'siaddr');
  writeIp(b, 24, msg.giaddr, 'giaddr');
  msg.chaddr.copy(b, 28);
  for (const [field, at, width, value] of [['sname', SNAME_OFFSET, SNAME_LENGTH, msg.sname], ['file', FILE_OFFSET, FILE_LENGTH, msg.file]] as const) {
    // Keep room for the terminating NUL: some firmware (PXE ROMs) copies until NUL.
    if (Buffer.byteLength(value, 'latin1') >= width) invalid(`${field} "${value.slice(0, 20)}…" needs ≤ ${width - 1} bytes`, at);
    b.write(value, at, 'latin1');
  }
  b.writeUInt32BE(MAGIC_COOKIE, HEADER_LENGTH);
  let at = OPTIONS_OFFSET;
  for (const [code, data] of msg.options) {
    if (code === OPT_PAD || code === OPT_END) continue;
    if (!Number.isInteger(code) || code < 1 || code > 254) invalid(`option code ${code} is not 1..254`, at);
    let pos = 0;
    do { // RFC 3396 §5: split long data into consecutive instances of ≤ 255 bytes
      const n = Math.min(255, data.length - pos);
      b[at] = code; b[at + 1] = n;
      data.copy(b, at + 2, pos, pos + n);
      at += 2 + n; pos += n;
    } while (pos < data.length);
  }
  b[at] = OPT_END; // the rest stays PAD (0) up to the 300-byte minimum
  return out;
}

/** A blank message, handy as a base for replies and tests. */
export function emptyMessage(over: Partial<DhcpMessage> = {}): DhcpMessage {
  return {
    op: BOOTREQUEST, htype: HTYPE_ETHERNET, hlen: 6, hops: 0, xid: 0, secs: 0, flags: 0,
    ciaddr: '0.0.0.0', yiaddr: '0.0.0.0', siaddr: '0.0.0.0', giaddr: '0.0.0.0',
    chaddr: Buffer.alloc(6), sname: '', file: '', options: new Map(), ...over,
  };
}
