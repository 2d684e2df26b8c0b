// `rackcast serve`: the appliance (config file and flags: appliance/config.ts). The task, machine,
// group and token commands are in task.ts.
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { RackcastError } from '../../services/errors.ts';
import { serve, type ServeConfig } from '../serve.ts';
import { readConfigFile, resolveConfig, type Flags } from '../config.ts';
import { interfaceAddress } from './mcast.ts';
import { dataDirFrom } from './main.ts';

export const SERVE_USAGE = `  serve [--config FILE] --interface IF|--address ADDR [--dhcp off|proxy|full] [--subnet CIDR --dhcp-range A-B]
        [--router ADDR] [--dns ADDR,…] [--http-port 8080] [--tftp-port 69] [--unknown ignore|register]
        [--dhcp-bind 0.0.0.0] [--mcast-rate MBIT] [--mcast-mtu BYTES] [--mcast-nice N] [--ipv6-ra auto|on|off] [--force] [--log-level debug|info|warn|error]
        [--retries N] [--machine-timeout S] [--misfire-grace S] [--timezone TZ]
        [--wol on|off] [--wol-interval S] [--wol-timeout S] [--wol-broadcast ADDR] [--webhook URL]
                                the appliance: DHCP, TFTP (iPXE), HTTP (scripts, images, API, reports)`;

export function serveConfig(argv: string[], env: NodeJS.ProcessEnv): ServeConfig {
  const { values: v, positionals } = parseArgs({ args: argv, strict: true, allowPositionals: true, options: {
    config: { type: 'string' },
    store: { type: 'string' }, 'data-dir': { type: 'string' }, data: { type: 'string' }, interface: { type: 'string' }, address: { type: 'string' },
    dhcp: { type: 'string' }, subnet: { type: 'string' }, range: { type: 'string' }, 'dhcp-range': { type: 'string' }, router: { type: 'string' }, dns: { type: 'string' },
    'http-port': { type: 'string' }, 'tftp-port': { type: 'string' }, unknown: { type: 'string' }, 'dhcp-bind': { type: 'string' },
    force: { type: 'boolean' }, 'mcast-rate': { type: 'string' }, 'ipv6-ra': { type: 'string' }, 'mcast-mtu': { type: 'string' }, 'mcast-nice': { type: 'string' }, 'ipxe-dir': { type: 'string' }, 'log-level': { type: 'string' },
    retries: { type: 'string' }, 'machine-timeout': { type: 'string' }, 'misfire-grace': { type: 'string' }, timezone: { type: 'string' },
    wol: { type: 'string' }, 'wol-interval': { type: 'string' }, 'wol-timeout': { type: 'string' }, 'wol-broadcast': { type: 'string' }, 'wol-port': { type: 'string' },
    webhook: { type: 'string' }, 'webhook-timeout': { type: 'string' },
  } });
  if (positionals.length) throw new RackcastError('RC_ERR_USAGE', `serve takes no positional arguments (got ${positionals.join(' ')})`);
  if (v.range && v['dhcp-range'] && v.range !== v['dhcp-range']) throw new RackcastError('RC_ERR_USAGE', '--range and --dhcp-range differ; give one');
  const dirs = [v.data, v['data-dir'], v.store].filter((x): x is string => x !== undefined);
  if (new Set(dirs).size > 1) throw new RackcastError('RC_ERR_USAGE', '--data, --data-dir and --store name different directories; give one');
  const file = v.config ? readConfigFile(v.config) : undefined;
  const flags: Flags = { ...v, data: dirs[0], 'dhcp-range': v['dhcp-range'] ?? v.range };
  // without a directory on the command line: the file's dataDir, then $RACKCAST_DATA_DIR, then the default
  const defaultDir = dataDirFrom({}, env);
  return resolveConfig(file, v.config ?? 'config', flags, interfaceAddress, defaultDir);
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
