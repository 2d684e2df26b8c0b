// TFTP wire codec: RFC 1350 (RRQ, WRQ, DATA, ACK, ERROR) and RFC 2347 (options, OACK). Option
// values (RFC 2348 blksize, RFC 2349 timeout/tsize, RFC 7440 windowsize) are interpreted by
// options.ts; here they are strings. Integers are big-endian. One UDP datagram is one packet, so
// DATA's payload runs to the end of the datagram: decode() takes an explicit `end`.
//
//   off  len   field                        notes
//   ---  ----  ---------------------------  ------------------------------------------------------
//   0    2     opcode                       1 RRQ, 2 WRQ, 3 DATA, 4 ACK, 5 ERROR, 6 OACK
//   RRQ / WRQ (RFC 1350 §5; options RFC 2347 §2)
//   2    n+1   filename, NUL-terminated     1..MAX_FILENAME bytes of UTF-8
//   …    m+1   mode, NUL-terminated         "netascii" | "octet" | "mail", case-insensitive
//   …    …     name NUL value NUL, repeated 0..MAX_OPTIONS pairs; names case-insensitive (§2),
//                                           returned lower-cased; trailing NUL padding ignored
//   DATA (RFC 1350 §5)
//   2    2     block number                 1, 2, … 65535, then 0, 1, … (rollover)
//   4    0..N  payload                      N ≤ 65464 (RFC 2348 maximum blksize)
//   ACK (RFC 1350 §5)
//   2    2     block number                 0 acknowledges an OACK (RFC 2347 §3)
//   ERROR (RFC 1350 §5, code 8 from RFC 2347)
//   2    2     error code                   TFTP_ERROR below
//   4    n+1   message, NUL-terminated      ≤ MAX_MESSAGE bytes; a missing final NUL is tolerated
//   OACK (RFC 2347 §3)
//   2    …     name NUL value NUL, repeated as in a request
import { RackcastError } from '../errors.ts';

export const OPCODE = { RRQ: 1, WRQ: 2, DATA: 3, ACK: 4, ERROR: 5, OACK: 6 } as const;
/** ERROR packet codes (RFC 1350 appendix; 8 from RFC 2347). */
export const TFTP_ERROR = {
  UNDEFINED: 0, NOT_FOUND: 1, ACCESS_VIOLATION: 2, DISK_FULL: 3, ILLEGAL_OPERATION: 4,
  UNKNOWN_TID: 5, FILE_EXISTS: 6, NO_SUCH_USER: 7, OPTION_REFUSED: 8,
} as const;

export const MAX_FILENAME = 255;
export const MAX_MODE = 16;
export const MAX_OPTION_NAME = 32;
export const MAX_OPTION_VALUE = 64;
export const MAX_OPTIONS = 16;
export const MAX_MESSAGE = 255;
export const MAX_PAYLOAD = 65464;

/** Requested or acknowledged options, names lower-cased, in packet order. */
export type TftpOptions = ReadonlyMap<string, string>;
export type TftpPacket =
  | { type: 'rrq' | 'wrq'; filename: string; mode: string; options: TftpOptions }
  | { type: 'data'; block: number; data: Uint8Array }
  | { type: 'ack'; block: number }
  | { type: 'error'; code: number; message: string }
  | { type: 'oack'; options: TftpOptions };

const TYPES = ['', 'rrq', 'wrq', 'data', 'ack', 'error', 'oack'] as const;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function truncated(what: string, offset: number): never {
  throw new RackcastError('RC_ERR_DECODE_TRUNCATED', `TFTP: ${what} at offset ${offset}`, { offset, what });
}
function invalid(what: string, offset: number, fields: Record<string, unknown> = {}): never {
  throw new RackcastError('RC_ERR_DECODE_INVALID', `TFTP: ${what} at offset ${offset}`, { offset, what, ...fields });
}

/** Printable ASCII only: 0x21..0x7e (names) or 0x20..0x7e (values). */
function ascii(s: string, spaceOk: boolean): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7e || c < (spaceOk ? 0x20 : 0x21)) return false;
  }
  return true;
}

/** A NUL-terminated string at `at` (before `end`), at most `max` bytes; returns it and the next offset. */
function cstring(b: Buffer, at: number, end: number, max: number, what: string): { s: Buffer; next: number } {
  if (at >= end) truncated(`${what} missing`, at);
  const nul = b.subarray(at, Math.min(end, at + max + 1)).indexOf(0);
  if (nul === -1) return end - at > max ? invalid(`${what} longer than ${max} bytes`, at) : truncated(`${what} has no terminating NUL`, at);
  return { s: b.subarray(at, at + nul), next: at + nul + 1 };
}

function decodeOptions(b: Buffer, at: number, end: number): Map<string, string> {
  const options = new Map<string, string>();
  while (at < end) {
    if (b.subarray(at, end).every((x) => x === 0)) break; // NUL padding some PXE ROMs append
    const name = cstring(b, at, end, MAX_OPTION_NAME, 'option name');
    const key = name.s.toString('latin1').toLowerCase();
    if (key === '' || !ascii(key, false)) invalid('option name is empty or not printable ASCII', at);
    if (options.has(key)) invalid(`option "${key}" repeated`, at);
    if (options.size === MAX_OPTIONS) invalid(`more than ${MAX_OPTIONS} options`, at);
    const value = cstring(b, name.next, end, MAX_OPTION_VALUE, `value of option "${key}"`);
    const v = value.s.toString('latin1');
    if (!ascii(v, true)) invalid(`value of option "${key}" is not printable ASCII`, name.next);
    options.set(key, v);
    at = value.next;
  }
  return options;
}

/**
 * Decodes the packet in buf[offset, end). `bytes` is how much was consumed: up to `end` for
 * DATA, requests and OACK (their extent is the datagram's), 4 for ACK, through the NUL for ERROR.
 */
export function decode(buf: Uint8Array, offset = 0, end = buf.length): { value: TftpPacket; bytes: number } {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(end) || end > buf.length || end < offset) {
    invalid(`bad bounds [${offset}, ${end}) for a buffer of ${buf.length}`, offset);
  }
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  if (end - offset < 2) truncated('opcode needs 2 bytes', offset);
  const op = b.readUInt16BE(offset);
  const type = TYPES[op];
  if (type === undefined || type === '') invalid(`unknown opcode ${op}`, offset, { opcode: op });
  let at = offset + 2;
  if (type === 'data' || type === 'ack' || type === 'error') {
    if (end - at < 2) truncated(`${type.toUpperCase()} needs a 2-byte ${type === 'error' ? 'code' : 'block number'}`, at);
    const n = b.readUInt16BE(at);
    at += 2;
    if (type === 'ack') return { value: { type, block: n }, bytes: 4 };
    if (type === 'data') {
      if (end - at > MAX_PAYLOAD) invalid(`DATA payload of ${end - at} bytes exceeds ${MAX_PAYLOAD}`, at);
      return { value: { type, block: n, data: b.subarray(at, end) }, bytes: end - offset };
    }
    // ERROR: be lenient about the terminator, firmware has been seen to omit it.
    const nul = b.subarray(at, Math.min(end, at + MAX_MESSAGE + 1)).indexOf(0);
    const stop = nul === -1 ? end : at + nul;
    if (stop - at > MAX_MESSAGE) invalid(`ERROR message longer than ${MAX_MESSAGE} bytes`, at);
    return { value: { type, code: n, message: b.toString('latin1', at, stop) }, bytes: Math.min(stop + 1, end) - offset };
  }
  if (type === 'oack') return { value: { type, options: decodeOptions(b, at, end) }, bytes: end - offset };
  const name = cstring(b, at, end, MAX_FILENAME, 'filename');
  if (name.s.length === 0) invalid('empty filename', at);
  let filename: string;
  try { filename = utf8.decode(name.s); } catch { invalid('filename is not UTF-8', at); }
  const mode = cstring(b, name.next, end, MAX_MODE, 'mode');
  const m = mode.s.toString('latin1').toLowerCase();
  if (m === '' || !ascii(m, false)) invalid('mode is empty or not printable ASCII', name.next);
  return { value: { type, filename, mode: m, options: decodeOptions(b, mode.next, end) }, bytes: end - offset };
}

function optionsLength(o: TftpOptions): number {
  let n = 0;
  for (const [k, v] of o) n += Buffer.byteLength(k, 'latin1') + Buffer.byteLength(v, 'latin1') + 2;
  return n;
}

export function encodingLength(p: TftpPacket): number {
  switch (p.type) {
    case 'rrq': case 'wrq': return 2 + Buffer.byteLength(p.filename, 'utf8') + 1 + p.mode.length + 1 + optionsLength(p.options);
    case 'data': return 4 + p.data.length;
    case 'ack': return 4;
    case 'error': return 4 + Buffer.byteLength(p.message, 'latin1') + 1;
    case 'oack': return 2 + optionsLength(p.options);
  }
}

function checkU16(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) invalid(`${what} ${n} is not 0..65535`, 0);
}
/** No NUL (it terminates the field); latin1 fields also no character latin1 cannot carry. */
function checkText(s: string, max: number, what: string, enc: 'utf8' | 'latin1'): void {
  const bad = enc === 'utf8' ? s.includes('\0') : /[\0\u0100-\uffff]/.test(s);
  if (bad || Buffer.byteLength(s, enc) > max) invalid(`${what} contains NUL, characters ${enc} cannot carry, or exceeds ${max} bytes`, 0);
}

/** Encodes a packet; refuses values decode() would refuse (so what we send, we could read). */
export function encode(p: TftpPacket): Buffer {
  const out = Buffer.alloc(encodingLength(p));
  out.writeUInt16BE(OPCODE[p.type.toUpperCase() as Uppercase<typeof p.type>], 0);
  let at = 2;
  const str = (s: string, enc: BufferEncoding): void => { at += out.write(s, at, enc) + 1; };
  const opts = (o: TftpOptions): void => {
    if (o.size > MAX_OPTIONS) invalid(`more than ${MAX_OPTIONS} options`, 0);
    for (const [k, v] of o) {
      if (k === '' || !ascii(k, false) || k.length > MAX_OPTION_NAME) invalid(`bad option name "${k}"`, 0);
      if (!ascii(v, true) || v.length > MAX_OPTION_VALUE) invalid(`bad value for option "${k}"`, 0);
      str(k, 'latin1');
      str(v, 'latin1');
    }
  };
  switch (p.type) {
    case 'rrq': case 'wrq':
      if (p.filename === '') invalid('empty filename', 0);
      checkText(p.filename, MAX_FILENAME, 'filename', 'utf8');
      if (p.mode === '' || !ascii(p.mode, false) || p.mode.length > MAX_MODE) invalid(`bad mode "${p.mode}"`, 0);
      str(p.filename, 'utf8');
      str(p.mode, 'latin1');
      opts(p.options);
      break;
    case 'data':
      checkU16(p.block, 'block');
      if (p.data.length > MAX_PAYLOAD) invalid(`DATA payload exceeds ${MAX_PAYLOAD}`, 0);
      out.writeUInt16BE(p.block, 2);
      out.set(p.data, 4);
      break;
    case 'ack':
      checkU16(p.block, 'block');
      out.writeUInt16BE(p.block, 2);
      break;
    case 'error':
      checkU16(p.code, 'error code');
      checkText(p.message, MAX_MESSAGE, 'message', 'latin1');
      out.writeUInt16BE(p.code, 2);
      at = 4;
      str(p.message, 'latin1');
      break;
    case 'oack':
      opts(p.options);
      break;
  }
  return out;
}

/** Writes the 4-byte DATA header for block `block` (wire number mod 65536) into `into` at `at`. */
export function encodeDataHeader(block: number, into: Buffer = Buffer.allocUnsafe(4), at = 0): Buffer {
  into.writeUInt16BE(OPCODE.DATA, at);
  into.writeUInt16BE(block & 0xffff, at + 2);
  return into;
}
