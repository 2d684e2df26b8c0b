// `rackcast serve` and the small task/machine commands that drive it until the full control
// plane (API, UI, scheduler) exists.
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { RackcastError } from '../../services/errors.ts';
import { ImageStore } from '../../services/image/store.ts';
import { serve, SERVE_DEFAULTS, type ServeConfig } from '../serve.ts';
import { Store, normalizeMac } from '../store/db.ts';
import { interfaceAddress } from './mcast.ts';
import { dataDirFrom } from './main.ts';

export const SERVE_USAGE = `  serve --interface IF|--address ADDR [--dhcp off|proxy|full] [--subnet CIDR --dhcp-range A-B]
        [--router ADDR] [--dns ADDR,…] [--http-port 8080] [--tftp-port 69] [--unknown ignore|register]
        [--dhcp-bind 0.0.0.0] [--mcast-rate MBIT] [--force] [--log-level debug|info|warn|error]
                                network-boot services: DHCP, TFTP (iPXE), HTTP (scripts, images)
  task deploy IMAGE --machines MAC[,MAC…]   put an image on machines at their next network boot
  task capture NAME --machine MAC          capture a machine's disk as image NAME at its next boot
  task list [--json]                       tasks and their machines
  machine list [--json]                    machines that have network-booted from this appliance`;

const ipv4 = /^\d{1,3}(\.\d{1,3}){3}$/;

export function serveConfig(argv: string[], env: NodeJS.ProcessEnv): ServeConfig {
  const { values: v, positionals } = parseArgs({ args: argv, strict: true, allowPositionals: true, options: {
    store: { type: 'string' }, 'data-dir': { type: 'string' }, data: { type: 'string' }, interface: { type: 'string' }, address: { type: 'string' },
    dhcp: { type: 'string' }, subnet: { type: 'string' }, range: { type: 'string' }, 'dhcp-range': { type: 'string' }, router: { type: 'string' }, dns: { type: 'string' },
    'http-port': { type: 'string' }, 'tftp-port': { type: 'string' }, unknown: { type: 'string' }, 'dhcp-bind': { type: 'string' },
    force: { type: 'boolean' }, 'mcast-rate': { type: 'string' }, 'ipxe-dir': { type: 'string' }, 'log-level': { type: 'string' },
  } });
  if (positionals.length) throw new RackcastError('RC_ERR_USAGE', `serve takes no positional arguments (got ${positionals.join(' ')})`);
  const address = v.address ?? interfaceAddress(v.interface);
  if (!ipv4.test(address)) throw new RackcastError('RC_ERR_USAGE', `--address must be an IPv4 address (got ${address})`);
  const dhcp = (v.dhcp ?? SERVE_DEFAULTS.dhcp) as ServeConfig['dhcp'];
  if (!['off', 'proxy', 'full'].includes(dhcp)) throw new RackcastError('RC_ERR_USAGE', '--dhcp must be off, proxy or full');
  const unknown = (v.unknown ?? SERVE_DEFAULTS.unknown) as ServeConfig['unknown'];
  if (!['ignore', 'register'].includes(unknown)) throw new RackcastError('RC_ERR_USAGE', '--unknown must be ignore or register');
  const port = (s: string | undefined, d: number, name: string): number => {
    const n = s === undefined ? d : Number(s);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new RackcastError('RC_ERR_USAGE', `--${name} must be a port number`);
    return n;
  };
  let range: ServeConfig['range'];
  if (v.range && v['dhcp-range'] && v.range !== v['dhcp-range']) throw new RackcastError('RC_ERR_USAGE', '--range and --dhcp-range differ; give one');
  const rangeArg = v['dhcp-range'] ?? v.range;
  if (rangeArg) {
    const [start, end] = rangeArg.split('-');
    if (!start || !end || !ipv4.test(start) || !ipv4.test(end)) throw new RackcastError('RC_ERR_USAGE', '--dhcp-range must be FIRST-LAST, e.g. 10.0.0.100-10.0.0.199');
    range = { start, end };
  }
  if (dhcp === 'full' && (!v.subnet || !range)) throw new RackcastError('RC_ERR_USAGE', '--dhcp full needs --subnet CIDR and --dhcp-range START-END');
  if (dhcp !== 'full' && (range || v.router || v.dns)) throw new RackcastError('RC_ERR_USAGE', '--dhcp-range, --router and --dns only make sense with --dhcp full');
  const dataDir = v.data ?? dataDirFrom(v, env);
  const logLevel = v['log-level'] ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new RackcastError('RC_ERR_USAGE', '--log-level must be debug, info, warn or error');
  const mcastRateMbit = v['mcast-rate'] === undefined ? SERVE_DEFAULTS.mcastRateMbit : Number(v['mcast-rate']);
  if (!Number.isFinite(mcastRateMbit) || mcastRateMbit < 1 || mcastRateMbit > 100_000) throw new RackcastError('RC_ERR_USAGE', '--mcast-rate must be a rate in Mbit/s (1–100000)');
  return Object.freeze({
    mcastRateMbit,
    logLevel, dataDir, address, dhcp, httpPort: port(v['http-port'], SERVE_DEFAULTS.httpPort, 'http-port'), tftpPort: port(v['tftp-port'], SERVE_DEFAULTS.tftpPort, 'tftp-port'),
    unknown, force: v.force ?? false, ipxeDir: v['ipxe-dir'] ?? SERVE_DEFAULTS.ipxeDir,
    ...(v['dhcp-bind'] ? { dhcpBind: v['dhcp-bind'] } : {}), ...(v.subnet ? { subnet: v.subnet } : {}), ...(range ? { range } : {}),
    ...(v.router ? { router: v.router } : {}), ...(v.dns ? { dns: v.dns.split(',') } : {}),
  });
}

export async function serveCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const c = serveConfig(argv, env);
  const log = pino({ base: { svc: 'rackcast' }, level: c.logLevel });
  const running = await serve(c, log);
  await new Promise<void>((resolve) => {
    const stop = (sig: string): void => { log.info({ sig }, 'stopping'); resolve(); };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await running.close();
  return 0;
}

const out = (s: string): void => { process.stdout.write(s + '\n'); };

export async function taskCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = argv;
  const { values: v, positionals: pos } = parseArgs({ args: rest, strict: true, allowPositionals: true, options: {
    store: { type: 'string' }, 'data-dir': { type: 'string' }, machines: { type: 'string' }, machine: { type: 'string' }, json: { type: 'boolean' },
  } });
  const dataDir = dataDirFrom(v, env);
  const store = Store.open(dataDir);
  try {
    const macs = (s: string | undefined): string[] => (s ?? '').split(',').filter(Boolean).map((m) => {
      const n = normalizeMac(m);
      if (!n) throw new RackcastError('RC_ERR_USAGE', `not a MAC address: ${m}`);
      return n;
    });
    if (sub === 'deploy') {
      if (pos.length !== 1 || !v.machines) throw new RackcastError('RC_ERR_USAGE', 'usage: rackcast task deploy IMAGE --machines MAC[,MAC…]');
      ImageStore.open(dataDir).open(pos[0] as string); // the image must exist and verify
      const t = store.createTask('deploy', pos[0] as string, macs(v.machines));
      out(`task ${t.id}: deploy ${t.image} to ${t.machines.length} machine(s) at their next network boot`);
      return 0;
    }
    if (sub === 'capture') {
      if (pos.length !== 1 || !v.machine) throw new RackcastError('RC_ERR_USAGE', 'usage: rackcast task capture NAME --machine MAC');
      ImageStore.checkName(pos[0] as string);
      const t = store.createTask('capture', pos[0] as string, macs(v.machine));
      out(`task ${t.id}: capture ${v.machine} as ${t.image} at its next network boot`);
      return 0;
    }
    if (sub === 'list') {
      const ts = store.tasks();
      if (v.json) out(JSON.stringify(ts, null, 2));
      else for (const t of ts) out(`${t.id} ${t.kind} ${t.image ?? '-'} ${t.state} ${t.machines.map((m) => `${m.mac}:${m.state}`).join(' ')}`);
      return 0;
    }
    throw new RackcastError('RC_ERR_USAGE', `unknown task command "${sub ?? ''}" (deploy, capture, list)`);
  } finally {
    store.close();
  }
}

export async function machineCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = argv;
  const { values: v } = parseArgs({ args: rest, strict: true, options: { store: { type: 'string' }, 'data-dir': { type: 'string' }, json: { type: 'boolean' } } });
  if (sub !== 'list') throw new RackcastError('RC_ERR_USAGE', 'usage: rackcast machine list [--json]');
  const store = Store.open(dataDirFrom(v, env));
  try {
    const ms = store.machines();
    if (v.json) out(JSON.stringify(ms, null, 2));
    else for (const m of ms) out(`${m.mac} first seen ${m.firstSeen}, last ${m.lastSeen}, ${m.bootCount} boot(s)`);
    return 0;
  } finally {
    store.close();
  }
}
