// `rackcast serve`: DHCP (full, proxy or off), TFTP (iPXE binaries) and HTTP (boot scripts,
// artifacts, images) on one address, with the state in the data directory. Every server binds
// to the configured address; DHCP must also receive broadcasts, which needs 0.0.0.0:67 — allowed
// only when the boot interface is the host's only IPv4 interface (a dedicated appliance, a
// container or namespace with just that NIC) or when the admin says so (--dhcp-bind 0.0.0.0).
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { RackcastError } from '../services/errors.ts';
import { DhcpServer } from '../services/dhcp/server.ts';
import { TftpServer } from '../services/tftp/server.ts';
import { ImageStore } from '../services/image/store.ts';
import { buildApp } from './http/app.ts';
import { Store } from './store/db.ts';
import { Sessions } from './sessions.ts';
import { startRouterAdverts, type RaMode } from './ra.ts';
import { Engine } from './engine.ts';
import { systemClock, type Clock } from './scheduler.ts';
import { WakeOnLan, servingBroadcast } from './wol.ts';
import { ensureAdminToken } from './api/auth.ts';
import { raisePriority } from '../services/multicast/priority.ts';

export interface ServeConfig {
  logLevel: string;
  dataDir: string;
  address: string;
  dhcp: 'off' | 'proxy' | 'full';
  dhcpBind?: string;
  subnet?: string;
  range?: { start: string; end: string };
  router?: string;
  dns?: string[];
  httpPort: number;
  tftpPort: number;
  unknown: 'register' | 'ignore';
  force: boolean;
  ipxeDir: string;
  /** multicast sender rate for deploy sessions (Mbit/s) */
  mcastRateMbit?: number;
  /** multicast datagram size (bytes, IP packet; larger than the link MTU means IP fragments) */
  mcastMtu?: number;
  /**
   * the appliance's scheduling priority when root (services/multicast/priority.ts: the senders'
   * pacing keeps time on a busy host); 0 leaves it
   */
  mcastNice?: number;
  /** IPv6 router advertisements on the boot interface (appliance/ra.ts); default auto */
  ipv6Ra?: RaMode;
  /** the control plane: tasks, schedules, Wake-on-LAN, webhook (config.ts has the defaults) */
  control?: ControlConfig;
}

export interface ControlConfig {
  /** default retries per machine of a new task */
  retries: number;
  /** a booting/running machine with no word for this long fails (and is retried) */
  machineTimeoutSeconds: number;
  /** a one-shot schedule missed (appliance down) by more than this fails instead of starting late */
  misfireGraceSeconds: number;
  /** time zone of cron schedules (default: the host's) */
  timezone?: string;
  wol: { enabled: boolean; intervalSeconds: number; timeoutSeconds: number; port: number; broadcast?: string };
  webhook?: { url: string; timeoutSeconds: number };
}

export const SERVE_DEFAULTS = { httpPort: 8080, tftpPort: 69, dhcp: 'off' as const, unknown: 'ignore' as const, ipxeDir: '/usr/lib/ipxe', mcastRateMbit: 300, mcastNice: -10 };
const IPXE_FILES = ['undionly.kpxe', 'ipxe.efi', 'snponly.efi'];

export interface Logger { info(o: object, m?: string): void; warn(o: object, m?: string): void; debug(o: object, m?: string): void; error(o: object, m?: string): void }

/** Copy Debian's iPXE binaries into <data>/tftp (served over TFTP and as /boot/bin/ over HTTP). */
export function installIpxe(dataDir: string, from: string, log: Logger): string {
  const dir = join(dataDir, 'tftp');
  mkdirSync(dir, { recursive: true });
  const missing: string[] = [];
  for (const f of IPXE_FILES) {
    if (existsSync(join(dir, f))) continue;
    if (existsSync(join(from, f))) copyFileSync(join(from, f), join(dir, f)); else missing.push(f);
  }
  if (missing.length) log.warn({ missing, from }, 'iPXE binaries missing: install Debian\'s ipxe package (apt-get install ipxe) or put them in <data>/tftp');
  return dir;
}

/** Is `address` the only non-loopback IPv4 address of this host (or network namespace)? */
export function soleInterface(address: string): boolean {
  const v4 = Object.values(networkInterfaces()).flat().filter((a) => a && a.family === 'IPv4' && !a.internal);
  return v4.length === 1 && v4[0]?.address === address;
}

export interface Running { urls: { http: string }; close(): Promise<void> }

export async function serve(c: ServeConfig, log: Logger, clock: Clock = systemClock): Promise<Running> {
  const store = Store.open(c.dataDir, { now: () => clock.now() });
  const images = ImageStore.open(c.dataDir);
  const tftpRoot = installIpxe(c.dataDir, c.ipxeDir, log);
  mkdirSync(join(c.dataDir, 'boot'), { recursive: true });
  const base = `http://${c.address}:${c.httpPort}`;
  const closers: (() => Promise<void>)[] = [async () => store.close()];
  const prio = raisePriority(c.mcastNice ?? SERVE_DEFAULTS.mcastNice);
  closers.push(async () => prio.restore());
  (prio.errors.length ? log.warn : log.info).call(log, prio.summary(), 'scheduling priority (multicast pacing)');
  const close = async (): Promise<void> => { for (const f of closers.splice(0).reverse()) await f().catch(() => undefined); };
  try {
    // deploy sessions start by the task's start rule (the engine decides; see docs/control-plane.md)
    const sessions = new Sessions({ images, interfaceAddress: c.address, rateMbit: c.mcastRateMbit ?? SERVE_DEFAULTS.mcastRateMbit, ...(c.mcastMtu ? { mtu: c.mcastMtu } : {}), logger: log, gate: (id) => {
      const start = store.sessionMayStart(id);
      return { start, joined: start ? (store.task(id)?.machines.filter((m) => m.joinedAt && !['done', 'failed', 'cancelled'].includes(m.state)).length ?? 0) : 0 };
    } });
    closers.push(() => sessions.close());
    const token = ensureAdminToken(c.dataDir);
    // printed once, at the first start; afterwards it is only in <data>/admin.token (mode 0600)
    if (token.created) log.info({ adminToken: token.token, file: join(c.dataDir, 'admin.token') }, 'admin token created: keep it; rotate with rackcast token rotate');
    const ctl = c.control;
    const app = buildApp({ store, images, dataDir: c.dataDir, baseUrl: base, unknown: c.unknown, sessions, ...(ctl?.timezone ? { timezone: ctl.timezone } : {}), ...(ctl ? { defaultRetries: ctl.retries } : {}) });
    await app.listen({ host: c.address, port: c.httpPort });
    closers.push(() => app.close());
    log.info({ url: base }, 'http: listening');
    const tftp = new TftpServer({ root: tftpRoot, address: c.address, port: c.tftpPort, logger: log });
    await tftp.listen();
    closers.push(() => tftp.close());
    if (c.dhcp !== 'off') {
      const bind = c.dhcpBind ?? (soleInterface(c.address) ? '0.0.0.0' : undefined);
      if (!bind) {
        throw new RackcastError('RC_ERR_DHCP_CONFIG', `this host has other IPv4 interfaces besides ${c.address}: DHCP must listen on 0.0.0.0:67 to hear broadcasts and would hear them on every interface; run rackcast where the boot NIC is the only one (container, namespace, dedicated host), or pass --dhcp-bind 0.0.0.0 if every interface is a boot network`, { address: c.address });
      }
      const dhcp = new DhcpServer({
        mode: c.dhcp, interfaceAddress: c.address, bindAddress: bind, httpBase: base, dataDir: join(c.dataDir, 'dhcp'), logger: log, force: c.force,
        ...(c.subnet ? { subnet: c.subnet } : {}), ...(c.range ? { range: c.range } : {}), ...(c.router ? { router: c.router } : {}), ...(c.dns ? { dns: c.dns } : {}),
      });
      await dhcp.listen();
      closers.push(() => dhcp.close());
    }
    const ra = await startRouterAdverts({ mode: c.ipv6Ra ?? 'auto', dhcp: c.dhcp, address: c.address, dataDir: c.dataDir, log });
    if (ra) closers.push(ra);
    if (ctl) {
      let wol: WakeOnLan | undefined;
      if (ctl.wol.enabled) {
        const broadcast = ctl.wol.broadcast ?? servingBroadcast(c.address, c.subnet);
        wol = new WakeOnLan({ bindAddress: c.address, broadcast, port: ctl.wol.port });
        const w = wol;
        closers.push(async () => w.close());
        log.info({ broadcast, port: ctl.wol.port }, 'wol: magic packets go to the boot network broadcast');
      }
      const engine = new Engine({
        store, clock, log, machineTimeoutMs: ctl.machineTimeoutSeconds * 1000, misfireGraceMs: ctl.misfireGraceSeconds * 1000,
        ...(ctl.timezone ? { timezone: ctl.timezone } : {}),
        ...(wol ? { wol: { sender: wol, intervalMs: ctl.wol.intervalSeconds * 1000, timeoutMs: ctl.wol.timeoutSeconds * 1000 } } : {}),
        ...(ctl.webhook ? { webhook: { url: ctl.webhook.url, timeoutMs: ctl.webhook.timeoutSeconds * 1000 } } : {}),
      });
      engine.start();
      closers.push(() => engine.stop());
      void engine.tick();
    }
    log.info({ address: c.address, dhcp: c.dhcp, http: c.httpPort, tftp: c.tftpPort, data: c.dataDir }, 'rackcast serve: ready');
    return { urls: { http: base }, close };
  } catch (e) {
    await close();
    throw e;
  }
}
