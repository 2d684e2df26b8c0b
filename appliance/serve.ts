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
}

export const SERVE_DEFAULTS = { httpPort: 8080, tftpPort: 69, dhcp: 'off' as const, unknown: 'ignore' as const, ipxeDir: '/usr/lib/ipxe', mcastRateMbit: 300 };
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

export async function serve(c: ServeConfig, log: Logger): Promise<Running> {
  const store = Store.open(c.dataDir);
  const images = ImageStore.open(c.dataDir);
  const tftpRoot = installIpxe(c.dataDir, c.ipxeDir, log);
  mkdirSync(join(c.dataDir, 'boot'), { recursive: true });
  const base = `http://${c.address}:${c.httpPort}`;
  const closers: (() => Promise<void>)[] = [async () => store.close()];
  const close = async (): Promise<void> => { for (const f of closers.splice(0).reverse()) await f().catch(() => undefined); };
  try {
    const sessions = new Sessions({ images, interfaceAddress: c.address, rateMbit: c.mcastRateMbit ?? SERVE_DEFAULTS.mcastRateMbit, logger: log });
    closers.push(() => sessions.close());
    const app = buildApp({ store, images, dataDir: c.dataDir, baseUrl: base, unknown: c.unknown, sessions });
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
    log.info({ address: c.address, dhcp: c.dhcp, http: c.httpPort, tftp: c.tftpPort, data: c.dataDir }, 'rackcast serve: ready');
    return { urls: { http: base }, close };
  } catch (e) {
    await close();
    throw e;
  }
}
