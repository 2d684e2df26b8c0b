// The appliance's configuration: one JSON file (`rackcast serve --config FILE`) and the command
// line, flags winning over the file. Validated once, here, at start: every message names the
// field as the admin wrote it (`--http-port` or `FILE: http.port`), unknown fields are refused
// (a typo must not silently fall back to a default), and contradictions are refused.
import { readFileSync } from 'node:fs';
import { RackcastError } from '../services/errors.ts';
import type { ServeConfig, ControlConfig } from './serve.ts';
import { SERVE_DEFAULTS } from './serve.ts';

type Kind = 'string' | 'ipv4' | 'cidr' | 'range' | 'port' | 'bool' | 'list' | 'url' | 'tz' | { int: [number, number] } | { num: [number, number] } | { enum: string[] };
interface Field { path: string; flag: string; kind: Kind }

/** Every setting: where it lives in the file, its flag, its type. */
export const FIELDS: Field[] = [
  { path: 'dataDir', flag: 'data', kind: 'string' },
  { path: 'address', flag: 'address', kind: 'ipv4' },
  { path: 'interface', flag: 'interface', kind: 'string' },
  { path: 'dhcp.mode', flag: 'dhcp', kind: { enum: ['off', 'proxy', 'full'] } },
  { path: 'dhcp.subnet', flag: 'subnet', kind: 'cidr' },
  { path: 'dhcp.range', flag: 'dhcp-range', kind: 'range' },
  { path: 'dhcp.router', flag: 'router', kind: 'ipv4' },
  { path: 'dhcp.dns', flag: 'dns', kind: 'list' },
  { path: 'dhcp.bind', flag: 'dhcp-bind', kind: 'ipv4' },
  { path: 'dhcp.force', flag: 'force', kind: 'bool' },
  { path: 'http.port', flag: 'http-port', kind: 'port' },
  { path: 'tftp.port', flag: 'tftp-port', kind: 'port' },
  { path: 'unknown', flag: 'unknown', kind: { enum: ['ignore', 'register'] } },
  { path: 'ipxeDir', flag: 'ipxe-dir', kind: 'string' },
  { path: 'logLevel', flag: 'log-level', kind: { enum: ['debug', 'info', 'warn', 'error'] } },
  { path: 'multicast.rateMbit', flag: 'mcast-rate', kind: { num: [1, 100_000] } },
  { path: 'multicast.mtu', flag: 'mcast-mtu', kind: { int: [576, 65_000] } },
  { path: 'multicast.nice', flag: 'mcast-nice', kind: { int: [-20, 19] } },
  { path: 'ipv6.routerAdverts', flag: 'ipv6-ra', kind: { enum: ['auto', 'on', 'off'] } },
  { path: 'tasks.retries', flag: 'retries', kind: { int: [0, 10] } },
  { path: 'tasks.machineTimeoutSeconds', flag: 'machine-timeout', kind: { int: [10, 7 * 86400] } },
  { path: 'tasks.misfireGraceSeconds', flag: 'misfire-grace', kind: { int: [0, 7 * 86400] } },
  { path: 'tasks.timezone', flag: 'timezone', kind: 'tz' },
  { path: 'wol.enabled', flag: 'wol', kind: 'bool' },
  { path: 'wol.intervalSeconds', flag: 'wol-interval', kind: { int: [1, 3600] } },
  { path: 'wol.timeoutSeconds', flag: 'wol-timeout', kind: { int: [1, 86400] } },
  { path: 'wol.broadcast', flag: 'wol-broadcast', kind: 'ipv4' },
  { path: 'wol.port', flag: 'wol-port', kind: 'port' },
  { path: 'webhook.url', flag: 'webhook', kind: 'url' },
  { path: 'webhook.timeoutSeconds', flag: 'webhook-timeout', kind: { int: [1, 120] } },
];

export const CONTROL_DEFAULTS: ControlConfig = Object.freeze({
  retries: 0, machineTimeoutSeconds: 7200, misfireGraceSeconds: 3600,
  wol: Object.freeze({ enabled: true, intervalSeconds: 30, timeoutSeconds: 900, port: 9 }),
});

export type Flags = Record<string, string | boolean | undefined>;
type Value = string | number | boolean | string[];
const IPV4 = /^((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)$/;

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (e) { throw new RackcastError('RC_ERR_CONFIG', `cannot read the config file ${path}: ${(e as Error).message}`); }
  let v: unknown;
  try { v = JSON.parse(text); } catch (e) { throw new RackcastError('RC_ERR_CONFIG', `${path} is not valid JSON: ${(e as Error).message}`); }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new RackcastError('RC_ERR_CONFIG', `${path} must hold one JSON object`);
  const known = new Set(FIELDS.map((f) => f.path));
  const walk = (o: Record<string, unknown>, pre: string): void => {
    for (const [k, x] of Object.entries(o)) {
      const p = pre ? `${pre}.${k}` : k;
      if (known.has(p)) continue;
      if (x && typeof x === 'object' && !Array.isArray(x) && [...known].some((kp) => kp.startsWith(`${p}.`))) walk(x as Record<string, unknown>, p);
      else throw new RackcastError('RC_ERR_CONFIG', `${path}: unknown field "${p}" (known: ${[...known].join(', ')})`);
    }
  };
  walk(v as Record<string, unknown>, '');
  return v as Record<string, unknown>;
}

const at = (o: Record<string, unknown> | undefined, path: string): unknown => path.split('.').reduce<unknown>((a, k) => (a && typeof a === 'object' ? (a as Record<string, unknown>)[k] : undefined), o);

function check(kind: Kind, raw: unknown, fromFlag: boolean, name: string): Value {
  const fail = (what: string): never => { throw new RackcastError(fromFlag ? 'RC_ERR_USAGE' : 'RC_ERR_CONFIG', `${name} must be ${what} (got ${JSON.stringify(raw)})`); };
  const s = typeof raw === 'string' ? raw : undefined;
  if (kind === 'bool') {
    if (typeof raw === 'boolean') return raw;
    if (s === 'on' || s === 'true') return true;
    if (s === 'off' || s === 'false') return false;
    return fail('true or false (on/off)');
  }
  if (typeof kind === 'object' && ('int' in kind || 'num' in kind)) {
    const [lo, hi] = 'int' in kind ? kind.int : kind.num;
    const n = typeof raw === 'number' ? raw : s !== undefined && s.trim() !== '' ? Number(s) : NaN;
    if (!Number.isFinite(n) || n < lo || n > hi || ('int' in kind && !Number.isInteger(n))) return fail(`${'int' in kind ? 'a whole number' : 'a number'} from ${lo} to ${hi}`);
    return n;
  }
  if (kind === 'port') {
    const n = typeof raw === 'number' ? raw : s !== undefined && /^\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isInteger(n) || n < 0 || n > 65535) return fail('a port number');
    return n;
  }
  if (kind === 'list') {
    const l = Array.isArray(raw) ? raw : s !== undefined ? s.split(',').filter(Boolean) : fail('a list of IPv4 addresses');
    for (const a of l) if (typeof a !== 'string' || !IPV4.test(a)) fail('a list of IPv4 addresses');
    return l as string[];
  }
  if (s === undefined || s === '') return fail('a non-empty string');
  if (typeof kind === 'object' && 'enum' in kind) return kind.enum.includes(s) ? s : fail(kind.enum.join(', ').replace(/, ([^,]*)$/, ' or $1'));
  if (kind === 'ipv4') return IPV4.test(s) ? s : fail('an IPv4 address');
  if (kind === 'cidr') {
    const [a, b] = s.split('/');
    return a && IPV4.test(a) && b && /^\d+$/.test(b) && Number(b) <= 32 ? s : fail('a subnet in CIDR form, e.g. 10.0.0.0/24');
  }
  if (kind === 'range') {
    const [a, b, extra] = s.split('-');
    return a && b && !extra && IPV4.test(a) && IPV4.test(b) ? s : fail('FIRST-LAST, e.g. 10.0.0.100-10.0.0.199');
  }
  if (kind === 'url') return /^https?:\/\/[^\s/]+/.test(s) ? s : fail('an http:// or https:// URL');
  if (kind === 'tz') {
    try { new Intl.DateTimeFormat('en', { timeZone: s }); return s; } catch { return fail('an IANA time zone such as Europe/Berlin or UTC'); }
  }
  return s;
}

const int = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const inSubnet = (ip: string, cidr: string): boolean => {
  const [net, bits] = cidr.split('/');
  const mask = Number(bits) === 0 ? 0 : (0xffffffff << (32 - Number(bits))) >>> 0;
  return ((int(ip) & mask) >>> 0) === ((int(net as string) & mask) >>> 0);
};

/**
 * Merge the file (optional) and the flags into one frozen ServeConfig. `address` is the resolved
 * serve address (the caller turns --interface into it).
 */
export function resolveConfig(file: Record<string, unknown> | undefined, fileName: string, flags: Flags, resolveInterface: (name: string) => string, defaultDataDir: string): ServeConfig {
  const v = new Map<string, Value>();
  const src = new Map<string, string>();
  for (const f of FIELDS) {
    const fromFlag = flags[f.flag] !== undefined;
    const raw = fromFlag ? flags[f.flag] : at(file, f.path);
    if (raw === undefined || raw === null) continue;
    const name = fromFlag ? `--${f.flag}` : `${fileName}: ${f.path}`;
    v.set(f.path, check(f.kind, raw, fromFlag, name));
    src.set(f.path, name);
  }
  const name = (p: string): string => src.get(p) ?? p;
  const bad = (p: string, msg: string): never => { throw new RackcastError(src.get(p)?.startsWith('--') ? 'RC_ERR_USAGE' : 'RC_ERR_CONFIG', msg); };
  const str = (p: string): string | undefined => v.get(p) as string | undefined;
  const num = (p: string, d: number): number => (v.get(p) as number | undefined) ?? d;

  let address = str('address');
  const iface = str('interface');
  if (iface) {
    const ifAddr = resolveInterface(iface);
    if (address && address !== ifAddr) bad('address', `${name('address')} (${address}) is not the address of ${name('interface')} (${iface} has ${ifAddr}): give one of them`);
    address = ifAddr;
  }
  if (!address) throw new RackcastError('RC_ERR_USAGE', 'give the boot network: --address ADDR or --interface IF (or "address"/"interface" in the config file)');
  const dhcp = (str('dhcp.mode') ?? SERVE_DEFAULTS.dhcp) as ServeConfig['dhcp'];
  const subnet = str('dhcp.subnet');
  const rangeS = str('dhcp.range');
  const range = rangeS ? { start: rangeS.split('-')[0] as string, end: rangeS.split('-')[1] as string } : undefined;
  const router = str('dhcp.router');
  const dns = v.get('dhcp.dns') as string[] | undefined;
  if (dhcp === 'full' && (!subnet || !range)) bad('dhcp.mode', `${name('dhcp.mode')} full needs a subnet and a range (--subnet CIDR and --dhcp-range START-END, or dhcp.subnet and dhcp.range)`);
  if (dhcp !== 'full' && (range || router || dns)) bad(range ? 'dhcp.range' : router ? 'dhcp.router' : 'dhcp.dns', `${name(range ? 'dhcp.range' : router ? 'dhcp.router' : 'dhcp.dns')}: the DHCP range, router and DNS only make sense with full DHCP (dhcp is ${dhcp})`);
  if (dhcp === 'full' && subnet && range) {
    if (!inSubnet(address, subnet)) bad('dhcp.subnet', `${name('dhcp.subnet')}: the serve address ${address} is not inside ${subnet}`);
    for (const a of [range.start, range.end]) if (!inSubnet(a, subnet)) bad('dhcp.range', `${name('dhcp.range')}: ${a} is not inside the subnet ${subnet}`);
    if (int(range.start) > int(range.end)) bad('dhcp.range', `${name('dhcp.range')}: ${range.start} comes after ${range.end}`);
    if (int(address) >= int(range.start) && int(address) <= int(range.end)) bad('dhcp.range', `${name('dhcp.range')} contains the appliance's own address ${address}`);
  }
  const wolEnabled = (v.get('wol.enabled') as boolean | undefined) ?? CONTROL_DEFAULTS.wol.enabled;
  for (const p of ['wol.broadcast', 'wol.intervalSeconds', 'wol.timeoutSeconds', 'wol.port']) if (!wolEnabled && v.has(p)) bad(p, `${name(p)} is set but Wake-on-LAN is off (${name('wol.enabled')}): remove one`);
  if (v.has('webhook.timeoutSeconds') && !v.has('webhook.url')) bad('webhook.timeoutSeconds', `${name('webhook.timeoutSeconds')} is set without a webhook URL`);
  const wolInterval = num('wol.intervalSeconds', CONTROL_DEFAULTS.wol.intervalSeconds);
  const wolTimeout = num('wol.timeoutSeconds', CONTROL_DEFAULTS.wol.timeoutSeconds);
  if (wolEnabled && wolTimeout < wolInterval) bad('wol.timeoutSeconds', `${name('wol.timeoutSeconds')} (${wolTimeout} s) is shorter than the interval between packets (${wolInterval} s)`);

  const control: ControlConfig = Object.freeze({
    retries: num('tasks.retries', CONTROL_DEFAULTS.retries),
    machineTimeoutSeconds: num('tasks.machineTimeoutSeconds', CONTROL_DEFAULTS.machineTimeoutSeconds),
    misfireGraceSeconds: num('tasks.misfireGraceSeconds', CONTROL_DEFAULTS.misfireGraceSeconds),
    ...(str('tasks.timezone') ? { timezone: str('tasks.timezone') as string } : {}),
    wol: Object.freeze({ enabled: wolEnabled, intervalSeconds: wolInterval, timeoutSeconds: wolTimeout, port: num('wol.port', CONTROL_DEFAULTS.wol.port), ...(str('wol.broadcast') ? { broadcast: str('wol.broadcast') as string } : {}) }),
    ...(str('webhook.url') ? { webhook: Object.freeze({ url: str('webhook.url') as string, timeoutSeconds: num('webhook.timeoutSeconds', 5) }) } : {}),
  });
  return Object.freeze({
    logLevel: str('logLevel') ?? 'info', dataDir: str('dataDir') ?? defaultDataDir, address, dhcp,
    httpPort: num('http.port', SERVE_DEFAULTS.httpPort), tftpPort: num('tftp.port', SERVE_DEFAULTS.tftpPort),
    unknown: (str('unknown') ?? SERVE_DEFAULTS.unknown) as ServeConfig['unknown'], force: (v.get('dhcp.force') as boolean | undefined) ?? false,
    ipxeDir: str('ipxeDir') ?? SERVE_DEFAULTS.ipxeDir, mcastRateMbit: num('multicast.rateMbit', SERVE_DEFAULTS.mcastRateMbit),
    ipv6Ra: (str('ipv6.routerAdverts') ?? 'auto') as ServeConfig['ipv6Ra'],
    ...(v.has('multicast.mtu') ? { mcastMtu: num('multicast.mtu', 1500) } : {}),
    mcastNice: num('multicast.nice', SERVE_DEFAULTS.mcastNice),
    ...(str('dhcp.bind') ? { dhcpBind: str('dhcp.bind') as string } : {}), ...(subnet ? { subnet } : {}), ...(range ? { range } : {}),
    ...(router ? { router } : {}), ...(dns ? { dns } : {}), control,
  });
}
