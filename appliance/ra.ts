// IPv6 router advertisements on the boot network, so iPXE does not wait for them. iPXE's
// autoboot configures IPv4 (DHCP) and IPv6 (SLAAC) together and waits for both; on a link where no
// router ever advertises, the IPv6 half times out after 13–16 s on every boot (measured in the
// lab: power-on → DHCP done 18.6 s without RAs, 2.5–2.7 s with them). Node has no raw sockets, so
// the appliance runs Debian's radvd on the boot interface with a config that announces nothing
// but "I am not a router" (router lifetime 0, no prefixes, no M/O flags): hosts keep their IPv6
// state as it was, iPXE's IPv6 configurator finishes at once.
//
// Mode: 'on' (radvd required), 'off', or 'auto' (on with full DHCP — an isolated imaging network
// the appliance owns — when radvd is installed; off in proxy mode, where the site's router is
// the one to advertise).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { RackcastError } from '../services/errors.ts';
import type { Logger } from './serve.ts';

export type RaMode = 'auto' | 'on' | 'off';
export const RADVD_PATHS = ['/usr/sbin/radvd', '/sbin/radvd', '/usr/local/sbin/radvd'];

export function radvdPath(): string | undefined {
  return RADVD_PATHS.find((p) => existsSync(p));
}

/** The name of the interface holding this IPv4 address. */
export function interfaceOf(address: string, ifs = networkInterfaces()): string | undefined {
  return Object.entries(ifs).find(([, as]) => as?.some((a) => a.family === 'IPv4' && a.address === address))?.[0];
}

export function radvdConfig(ifname: string): string {
  if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(ifname)) throw new RackcastError('RC_ERR_USAGE', `not an interface name: ${ifname}`);
  return `# written by rackcast serve (appliance/ra.ts): "not a router", no prefixes, so iPXE's IPv6 setup ends at once
interface ${ifname} {
  AdvSendAdvert on;
  AdvDefaultLifetime 0;
  AdvManagedFlag off;
  AdvOtherConfigFlag off;
  MinRtrAdvInterval 3;
  MaxRtrAdvInterval 10;
};
`;
}

/** Decide and start; returns a closer, or undefined when RAs stay off (and says why). */
export async function startRouterAdverts(o: { mode: RaMode; dhcp: 'off' | 'proxy' | 'full'; address: string; dataDir: string; log: Logger }): Promise<(() => Promise<void>) | undefined> {
  if (o.mode === 'off' || (o.mode === 'auto' && o.dhcp !== 'full')) return undefined;
  const bin = radvdPath();
  if (!bin) {
    if (o.mode === 'on') throw new RackcastError('RC_ERR_USAGE', 'IPv6 router advertisements are on (--ipv6-ra on) but radvd is not installed: apt-get install radvd, or --ipv6-ra off');
    o.log.warn({}, 'radvd is not installed: iPXE will wait ~15 s for IPv6 on every boot (apt-get install radvd, or --ipv6-ra off to silence this)');
    return undefined;
  }
  const ifname = interfaceOf(o.address);
  if (!ifname) throw new RackcastError('RC_ERR_USAGE', `no interface holds ${o.address}: cannot send IPv6 router advertisements on it`);
  const dir = join(o.dataDir, 'run');
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'radvd.conf');
  writeFileSync(conf, radvdConfig(ifname));
  const child: ChildProcess = spawn(bin, ['-n', '-C', conf, '-p', join(dir, 'radvd.pid'), '-m', 'stderr'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (c: Buffer) => { err = (err + c.toString()).slice(-2000); });
  const early = await new Promise<number | null | 'running'>((res) => {
    const t = setTimeout(() => res('running'), 500);
    child.once('exit', (code) => { clearTimeout(t); res(code); });
    child.once('error', () => { clearTimeout(t); res(-1); });
  });
  if (early !== 'running') {
    o.log.warn({ interface: ifname, exit: early, stderr: err.trim().split('\n').slice(-3) }, 'radvd did not start: iPXE will wait ~15 s for IPv6 on every boot');
    return undefined;
  }
  o.log.info({ interface: ifname, pid: child.pid }, 'ipv6: router advertisements on (lifetime 0, no prefixes) so iPXE does not wait for IPv6');
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    try { process.kill(child.pid, 'SIGTERM'); } catch { return; }
    await Promise.race([gone, new Promise((r) => setTimeout(r, 2000))]);
    if (child.exitCode === null && child.signalCode === null) try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
  };
}
