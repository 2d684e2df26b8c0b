// Typed codecs for the DHCP options rackcast reads or writes. packet.ts keeps options as raw bytes;
// these turn them into values. Each decoder checks lengths and throws a RackcastError naming the
// option; callers treat a bad optional option as absent (a PXE ROM with a sloppy option 94 must
// still boot).
//
//   code  name (RFC)                       wire form
//   1     subnet mask (2132 §3.3)          4-byte address
//   3     routers (2132 §3.5)              n × 4-byte address
//   6     DNS servers (2132 §3.8)          n × 4-byte address
//   12    host name (2132 §3.14)           text
//   15    domain name (2132 §3.17)         text
//   28    broadcast address (2132 §5.3)    4-byte address
//   43    vendor specific (2132 §8.4)      PXE spec §2.4.3: sub-option TLVs (6 = discovery control)
//   50    requested address (2132 §9.1)    4-byte address
//   51    lease time (2132 §9.2)           u32 seconds
//   53    message type (2132 §9.6)         u8, 1 DISCOVER … 8 INFORM
//   54    server identifier (2132 §9.7)    4-byte address
//   55    parameter request list (§9.8)    n × u8
//   57    max message size (2132 §9.10)    u16, ≥ 576
//   58/59 renewal T1 / rebinding T2        u32 seconds
//   60    vendor class (2132 §9.13)        text, "PXEClient:Arch:xxxxx:UNDI:yyyzzz" for PXE
//   61    client identifier (2132 §9.14)   type(1) + id, type 1 = Ethernet MAC
//   66/67 TFTP server / boot file (§9.4/5) text
//   77    user class (RFC 3004)            n × (len(1) + data); iPXE sends plain "iPXE" instead
//   82    relay agent information (3046)   opaque here; echoed last (RFC 3046 §2.2)
//   93    client system arch (RFC 4578)    n × u16
//   94    client NII (RFC 4578 §2.2)       type(1) major(1) minor(1)
//   97    client machine id (RFC 4578)     type(1) = 0 + 16-byte GUID
//   175   iPXE encapsulated options        sub-option TLVs; 176 = no-pxedhcp (u8)
//   255   end (2132 §3.2)                  no data (packet.ts writes it)
import { RackcastError } from '../errors.ts';

export const OPT = {
  subnetMask: 1, router: 3, dns: 6, hostName: 12, domainName: 15, broadcast: 28, vendorSpecific: 43,
  requestedIp: 50, leaseTime: 51, overload: 52, messageType: 53, serverId: 54, paramRequest: 55,
  maxMessageSize: 57, renewalT1: 58, rebindingT2: 59, vendorClass: 60, clientId: 61,
  tftpServer: 66, bootFile: 67, userClass: 77, relayAgent: 82, clientArch: 93, clientNii: 94,
  clientUuid: 97, ipxeEncap: 175, end: 255,
} as const;

export const DHCPDISCOVER = 1;
export const DHCPOFFER = 2;
export const DHCPREQUEST = 3;
export const DHCPDECLINE = 4;
export const DHCPACK = 5;
export const DHCPNAK = 6;
export const DHCPRELEASE = 7;
export const DHCPINFORM = 8;
export const MESSAGE_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: 'DISCOVER', 2: 'OFFER', 3: 'REQUEST', 4: 'DECLINE', 5: 'ACK', 6: 'NAK', 7: 'RELEASE', 8: 'INFORM',
};

/** PXE spec §2.4.3 (Table 2-1) sub-options of option 43 and bits of PXE_DISCOVERY_CONTROL. */
export const PXE_DISCOVERY_CONTROL = 6;
/** Bit 3: a boot file is in the offer: download it, no prompt/menu/boot-server discovery. */
export const PXE_DC_BOOTFILE_NO_MENU = 8;
/** iPXE encapsulated (175) sub-option 176: "no-pxedhcp", skip waiting for ProxyDHCP offers. */
export const IPXE_NO_PXEDHCP = 176;

function bad(code: number, what: string, data: Buffer): never {
  throw new RackcastError('RC_ERR_DECODE_INVALID', `DHCP option ${code}: ${what}`, { option: code, length: data.length });
}

export function ipToInt(ip: string): number {
  const p = ip.split('.');
  if (p.length !== 4 || !p.every((x) => /^\d{1,3}$/.test(x) && Number(x) <= 255)) {
    throw new RackcastError('RC_ERR_DECODE_INVALID', `"${ip}" is not an IPv4 address`, { value: ip });
  }
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}
export function intToIp(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}
export const isIpv4 = (s: string): boolean => { try { ipToInt(s); return true; } catch { return false; } };

// ---- primitive codecs ------------------------------------------------------------------------

export function decodeIp(code: number, d: Buffer): string {
  if (d.length !== 4) bad(code, `an address needs 4 bytes, has ${d.length}`, d);
  return intToIp(d.readUInt32BE(0));
}
export function encodeIp(ip: string): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ipToInt(ip));
  return b;
}
export function decodeIpList(code: number, d: Buffer): string[] {
  if (d.length === 0 || d.length % 4 !== 0) bad(code, `an address list needs a multiple of 4 bytes, has ${d.length}`, d);
  const out: string[] = [];
  for (let i = 0; i < d.length; i += 4) out.push(intToIp(d.readUInt32BE(i)));
  return out;
}
export function encodeIpList(ips: readonly string[]): Buffer {
  return Buffer.concat(ips.map(encodeIp));
}
/** Unsigned big-endian integer option of exactly `width` bytes (1, 2 or 4). */
export function decodeUint(code: number, d: Buffer, width: 1 | 2 | 4): number {
  if (d.length !== width) bad(code, `needs ${width} byte(s), has ${d.length}`, d);
  return d.readUIntBE(0, width);
}
export const encodeU8 = (n: number): Buffer => Buffer.from([n & 0xff]);
export const encodeU16 = (n: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; };
export const encodeU32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b; };
/** Text options: some clients NUL-terminate them (RFC 2132 §2 says they should not); strip it. */
export function decodeText(d: Buffer): string {
  const nul = d.indexOf(0);
  return d.toString('latin1', 0, nul === -1 ? d.length : nul);
}
export function encodeText(s: string): Buffer { return Buffer.from(s, 'latin1'); }

// ---- encapsulated sub-options (43 for PXE, 175 for iPXE) ---------------------------------------

/** Sub-option TLVs with PAD (0) and END (255), as in the PXE spec §2.4.3 and iPXE's dhcp.h. */
export function decodeSubOptions(code: number, d: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let at = 0;
  while (at < d.length) {
    const sub = d[at]!;
    if (sub === 0) { at++; continue; }
    if (sub === 255) break;
    if (d.length - at < 2) bad(code, `sub-option ${sub} at ${at} has no length byte`, d);
    const len = d[at + 1]!;
    if (d.length - at - 2 < len) bad(code, `sub-option ${sub} at ${at} declares ${len} bytes past the end`, d);
    const prev = out.get(sub);
    const val = Buffer.from(d.subarray(at + 2, at + 2 + len));
    out.set(sub, prev ? Buffer.concat([prev, val]) : val);
    at += 2 + len;
  }
  return out;
}
export function encodeSubOptions(subs: ReadonlyMap<number, Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const [sub, val] of subs) {
    if (val.length > 255) throw new RackcastError('RC_ERR_DECODE_INVALID', `sub-option ${sub} longer than 255 bytes`, { option: sub });
    parts.push(Buffer.from([sub, val.length]), val);
  }
  parts.push(Buffer.from([255]));
  return Buffer.concat(parts);
}
/** Option 43 for PXE clients: PXE_DISCOVERY_CONTROL = 8, "boot file in the offer, no menu". */
export function pxeVendorOptions(discoveryControl = PXE_DC_BOOTFILE_NO_MENU): Buffer {
  return encodeSubOptions(new Map([[PXE_DISCOVERY_CONTROL, encodeU8(discoveryControl)]]));
}

// ---- client-identifying options ----------------------------------------------------------------

export interface UserClass { classes: string[]; format: 'rfc3004' | 'plain' }

/**
 * Option 77. RFC 3004 §4: one or more (len ≥ 1, data) instances. iPXE (and Windows) send a bare
 * string ("iPXE") instead; whenever the bytes do not parse exactly as RFC 3004, the whole option
 * is taken as one plain string. "iPXE" itself starts with 0x69 = 105 > 3 remaining, so plain.
 */
export function decodeUserClass(d: Buffer): UserClass {
  const classes: string[] = [];
  let at = 0;
  while (at < d.length) {
    const len = d[at]!;
    if (len === 0 || d.length - at - 1 < len) return { classes: [d.toString('latin1')], format: 'plain' };
    classes.push(d.toString('latin1', at + 1, at + 1 + len));
    at += 1 + len;
  }
  return classes.length ? { classes, format: 'rfc3004' } : { classes: [], format: 'plain' };
}
export function encodeUserClass(u: UserClass): Buffer {
  if (u.format === 'plain') return Buffer.from(u.classes.join(''), 'latin1');
  return Buffer.concat(u.classes.map((c) => Buffer.concat([Buffer.from([Buffer.byteLength(c, 'latin1')]), Buffer.from(c, 'latin1')])));
}

/** Option 93 (RFC 4578 §2.1): list of 16-bit architecture types, most preferred first. */
export function decodeClientArch(d: Buffer): number[] {
  if (d.length === 0 || d.length % 2 !== 0) bad(93, `needs a non-empty even length, has ${d.length}`, d);
  const out: number[] = [];
  for (let i = 0; i < d.length; i += 2) out.push(d.readUInt16BE(i));
  return out;
}
export function encodeClientArch(arches: readonly number[]): Buffer {
  return Buffer.concat(arches.map(encodeU16));
}

export interface ClientNii { type: number; major: number; minor: number }
/** Option 94 (RFC 4578 §2.2): interface type 1 = UNDI, then the UNDI version, e.g. 1 3.16. */
export function decodeClientNii(d: Buffer): ClientNii {
  if (d.length !== 3) bad(94, `needs 3 bytes, has ${d.length}`, d);
  return { type: d[0]!, major: d[1]!, minor: d[2]! };
}
export function encodeClientNii(n: ClientNii): Buffer { return Buffer.from([n.type, n.major, n.minor]); }

export interface ClientUuid { type: number | null; id: Buffer; uuid: string | null }
/**
 * Option 97 (RFC 4578 §2.3): type 0 then a 16-byte GUID. Tolerant: any length decodes, and `uuid`
 * is set only for the well-formed case. The GUID is the SMBIOS UUID in the byte order the
 * firmware keeps it (first three fields little-endian, SMBIOS ≥ 2.6); `uuid` prints it the way
 * dmidecode does, so it matches what the booted machine reports. Replies echo the raw bytes.
 */
export function decodeClientUuid(d: Buffer): ClientUuid {
  if (d.length === 0) return { type: null, id: Buffer.alloc(0), uuid: null };
  const id = Buffer.from(d.subarray(1));
  if (d[0] !== 0 || id.length !== 16) return { type: d[0]!, id, uuid: null };
  const h = (a: number, b: number, swap: boolean): string => {
    const s = Buffer.from(id.subarray(a, b));
    return (swap ? s.reverse() : s).toString('hex');
  };
  return { type: 0, id, uuid: `${h(0, 4, true)}-${h(4, 6, true)}-${h(6, 8, true)}-${h(8, 10, false)}-${h(10, 16, false)}` };
}

/** A hardware address as lowercase, colon-separated hex (the form used in iPXE script URLs). */
export function macString(chaddr: Buffer): string {
  return [...chaddr].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

// ---- typed access by code ----------------------------------------------------------------------

export interface OptionValues {
  1: string; 3: string[]; 6: string[]; 12: string; 15: string; 28: string; 43: Map<number, Buffer>;
  50: string; 51: number; 53: number; 54: string; 55: number[]; 57: number; 58: number; 59: number;
  60: string; 61: Buffer; 66: string; 67: string; 77: UserClass; 93: number[]; 94: ClientNii;
  97: ClientUuid; 175: Map<number, Buffer>;
}
type Codec<T> = { dec: (d: Buffer) => T; enc: (v: T) => Buffer };
const ip = (c: number): Codec<string> => ({ dec: (d) => decodeIp(c, d), enc: encodeIp });
const ipl = (c: number): Codec<string[]> => ({ dec: (d) => decodeIpList(c, d), enc: encodeIpList });
const txt: Codec<string> = { dec: decodeText, enc: encodeText };
const u32 = (c: number): Codec<number> => ({ dec: (d) => decodeUint(c, d, 4), enc: encodeU32 });
const subs = (c: number): Codec<Map<number, Buffer>> => ({ dec: (d) => decodeSubOptions(c, d), enc: encodeSubOptions });

export const CODECS: { readonly [K in keyof OptionValues]: Codec<OptionValues[K]> } = {
  1: ip(1), 3: ipl(3), 6: ipl(6), 12: txt, 15: txt, 28: ip(28), 43: subs(43), 50: ip(50), 51: u32(51),
  53: { dec: (d) => decodeUint(53, d, 1), enc: encodeU8 }, 54: ip(54),
  55: { dec: (d) => [...d], enc: (v) => Buffer.from(v) },
  57: { dec: (d) => decodeUint(57, d, 2), enc: encodeU16 }, 58: u32(58), 59: u32(59), 60: txt,
  61: { dec: (d) => { if (d.length < 2) bad(61, `needs ≥ 2 bytes, has ${d.length}`, d); return Buffer.from(d); }, enc: (v) => Buffer.from(v) },
  66: txt, 67: txt, 77: { dec: decodeUserClass, enc: encodeUserClass },
  93: { dec: decodeClientArch, enc: encodeClientArch }, 94: { dec: decodeClientNii, enc: encodeClientNii },
  97: { dec: decodeClientUuid, enc: (v) => (v.type === null ? Buffer.alloc(0) : Buffer.concat([Buffer.from([v.type]), v.id])) },
  175: subs(175),
};

/** Typed value of option `code`, undefined when absent; throws RC_ERR_DECODE_INVALID when bad. */
export function getOption<K extends keyof OptionValues>(opts: ReadonlyMap<number, Buffer>, code: K): OptionValues[K] | undefined {
  const d = opts.get(code);
  return d === undefined ? undefined : CODECS[code].dec(d);
}
/** Like getOption, but a malformed option counts as absent (for informative client options). */
export function tryOption<K extends keyof OptionValues>(opts: ReadonlyMap<number, Buffer>, code: K): OptionValues[K] | undefined {
  try { return getOption(opts, code); } catch { return undefined; }
}
export function setOption<K extends keyof OptionValues>(opts: Map<number, Buffer>, code: K, value: OptionValues[K]): void {
  opts.set(code, CODECS[code].enc(value));
}
