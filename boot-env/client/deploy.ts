// rackcast.mode=deploy: hello → choose the target disk → receive the image by multicast (HTTP
// fallback), every block verified against the signed manifest and written through DiskWriter →
// report done (or failed, with the error and the last log lines) → the action the task says
// (`after`, normally reboot: /init runs `reboot -f`, and the appliance's next /boot script for this
// machine boots the local disk because its part of the task is done).
//
// Target disk rule: the pinned disk (rackcast.disk-serial / rackcast.disk-wwn, from the machine's or
// its group's settings) if there is one, else the largest disk in /sys/block that has a device
// behind it (so not loop, ram, zram, dm, md), is not an sr/fd device and is not removable. If that disk is mounted or held, or
// too small for the image (DiskWriter's refusals), the deploy fails with that reason: it never
// falls back to another disk.
import { networkInterfaces } from 'node:os';
import { MulticastReceiver } from '../../services/multicast/receiver.ts';
import { inspectPath, usersOf } from '../../services/image/device.ts';
import type { ClientConfig } from './config.ts';
import type { Disk, Inventory } from './inventory.ts';

export interface HelloReply {
  taskId: number; kind: string; image: string | null; imageUrl: string | null;
  multicast: { group: string; port: number }; after: 'reboot' | 'poweroff';
}
export type Action = 'poweroff' | 'reboot' | 'shell';

const EXCLUDED = /^(loop|ram|zram|sr|fd|dm-|md|nbd)/;

export interface DiskPin { serial?: string; wwn?: string }

/** The pin the appliance put on the kernel command line (a machine's or its group's pinned disk). */
export function diskPin(settings: Map<string, string>): DiskPin | undefined {
  const serial = settings.get('disk-serial');
  const wwn = settings.get('disk-wwn');
  return serial || wwn ? { ...(serial ? { serial } : {}), ...(wwn ? { wwn } : {}) } : undefined;
}

const normWwn = (s: string): string => s.trim().toLowerCase().replace(/^(naa|eui|t10|wwn)[.-]/, '').replace(/^0x/, '');

/**
 * The target (or capture source) by rule, or an explanation of why there is none: the pinned disk
 * (serial or WWN) when the machine has one — never another disk if it is missing — else the
 * largest fixed disk.
 */
export function chooseDisk(disks: Disk[], pin?: DiskPin): { disk: Disk } | { error: string } {
  const eligible = disks.filter((d) => !EXCLUDED.test(d.name));
  if (pin) {
    const hit = eligible.find((d) => (pin.serial !== undefined && d.serial?.trim() === pin.serial.trim()) || (pin.wwn !== undefined && d.wwid !== undefined && normWwn(d.wwid) === normWwn(pin.wwn)));
    const what = [pin.serial ? `serial ${pin.serial}` : '', pin.wwn ? `WWN ${pin.wwn}` : ''].filter(Boolean).join(' / ');
    if (!hit) return { error: `the pinned disk (${what}) is not in this machine (disks: ${eligible.map((d) => `${d.name} serial=${d.serial ?? '-'} wwn=${d.wwid ?? '-'}`).join('; ') || 'none'})` };
    if (hit.removable) return { error: `the pinned disk (${what}) is ${hit.name}, a removable disk, which is never used` };
    return { disk: hit };
  }
  const fixed = eligible.filter((d) => !d.removable && d.size > 0);
  if (!fixed.length) {
    const removable = eligible.filter((d) => d.removable).map((d) => d.name);
    return { error: removable.length ? `no fixed disk: only removable disk(s) ${removable.join(', ')}, which a deploy never overwrites` : `no disk found in /sys/block (seen: ${disks.map((d) => d.name).join(', ') || 'none'})` };
  }
  const disk = [...fixed].sort((a, b) => b.size - a.size || a.name.localeCompare(b.name))[0] as Disk;
  return { disk };
}

/** The IPv4 address of the NIC we booted from (rackcast.mac), else the first non-loopback one. */
export function bootAddress(mac: string | undefined, ifs = networkInterfaces()): string | undefined {
  const all = Object.values(ifs).flat().filter((a) => a && a.family === 'IPv4' && !a.internal);
  const byMac = mac ? all.find((a) => a?.mac.toLowerCase() === mac.toLowerCase()) : undefined;
  return (byMac ?? all[0])?.address;
}

async function post(url: string, body: unknown, timeoutMs = 10_000): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
}

/** POST with retries on network errors and 5xx (the appliance may restart); 4xx is final. */
async function postRetry(url: string, body: unknown, log: (l: string) => void, tries = 10): Promise<Response> {
  let last: unknown;
  for (let k = 0; k < tries; k++) {
    try {
      const r = await post(url, body);
      if (r.status < 500) return r;
      last = new Error(`HTTP ${r.status}`);
    } catch (e) { last = e; }
    log(`rackcast: ${url}: ${(last as Error).message}; retrying`);
    await new Promise((r) => setTimeout(r, Math.min(1000 * 2 ** k, 10_000)));
  }
  throw new Error(`${url}: ${(last as Error).message}`);
}

export async function hello(cfg: ClientConfig, inventory: Inventory, log: (l: string) => void): Promise<HelloReply> {
  if (!cfg.url || !cfg.token) throw new Error('rackcast.url and rackcast.token are needed (the appliance\'s boot script sets them)');
  const r = await postRetry(`${cfg.url}/api/v1/client/hello`, { token: cfg.token, inventory }, log);
  if (!r.ok) throw new Error(`hello refused by the appliance: HTTP ${r.status} ${await r.text()}`);
  return await r.json() as HelloReply;
}

export interface ReportProgress { done: number; total: number; mbps?: number; verify?: 'ok' | 'failed' | 'skipped' }
export interface Reporter { report(state: 'running' | 'done' | 'failed', detail?: string, logLines?: string[], progress?: ReportProgress): Promise<void> }

export function reporter(cfg: ClientConfig, log: (l: string) => void): Reporter {
  return {
    async report(state, detail, logLines, progress) {
      const p = progress && { done: Math.max(0, Math.floor(progress.done)), total: Math.max(0, Math.floor(progress.total)), ...(progress.mbps !== undefined && Number.isFinite(progress.mbps) ? { mbps: Math.max(0, progress.mbps) } : {}), ...(progress.verify ? { verify: progress.verify } : {}) };
      const body = { token: cfg.token, state, ...(detail !== undefined ? { detail: detail.slice(0, 2000) } : {}), ...(logLines?.length ? { log: logLines.slice(-100).map((l) => l.slice(0, 2000)) } : {}), ...(p ? { progress: p } : {}) };
      const r = state === 'running' ? await post(`${cfg.url}/api/v1/client/report`, body, 5000) : await postRetry(`${cfg.url}/api/v1/client/report`, body, log);
      if (!r.ok && state !== 'running') throw new Error(`report ${state} refused: HTTP ${r.status} ${await r.text()}`);
    },
  };
}

export interface DeployOptions { cfg: ClientConfig; inventory: Inventory; log: (l: string) => void; progressMs?: number; fallbackMs?: number }

export async function runDeploy(o: DeployOptions): Promise<Action> {
  const lines: string[] = [];
  const log = (l: string): void => { lines.push(l); if (lines.length > 200) lines.shift(); o.log(l); };
  const task = await hello(o.cfg, o.inventory, log);
  log(`rackcast: task ${task.taskId}: ${task.kind} ${task.image ?? '-'} from ${task.imageUrl ?? '-'} (multicast ${task.multicast.group}:${task.multicast.port}), then ${task.after}`);
  const rep = reporter(o.cfg, log);
  try {
    if (task.kind !== 'deploy' || !task.imageUrl) throw new Error(`the appliance gave a ${task.kind} task to a client booted for deploy`);
    const pick = chooseDisk(o.inventory.disks, diskPin(o.cfg.settings));
    if ('error' in pick) throw new Error(pick.error);
    const target = `/dev/${pick.disk.name}`;
    const users = usersOf(inspectPath(target));
    if (users.length) throw new Error(`refusing ${target}: ${users.join('; ')}`);
    const address = bootAddress(o.cfg.settings.get('mac'));
    if (!address) throw new Error('no IPv4 address on any NIC: the network did not come up');
    log(`rackcast: target ${target} (${pick.disk.size} bytes${pick.disk.model ? `, ${pick.disk.model}` : ''}, ${pick.disk.rotational ? 'rotational: holes zeroed' : 'non-rotational: holes discarded'}), receiving on ${address}`);
    await rep.report('running', `target ${target}`);
    let last = { have: 0, total: 0, written: 0, totalBytes: 0, mode: 'multicast' };
    let prev = { at: performance.now(), written: 0 };
    const timer = setInterval(() => {
      const now = performance.now();
      const mbps = (last.written - prev.written) / 1e6 / Math.max(0.001, (now - prev.at) / 1000);
      prev = { at: now, written: last.written };
      const detail = `${last.have}/${last.total}`;
      log(`rackcast: progress ${detail} (${last.mode}, ${mbps.toFixed(1)} MB/s)`);
      rep.report('running', detail, undefined, { done: last.written, total: last.totalBytes, mbps }).catch((e: unknown) => log(`rackcast: progress report failed: ${(e as Error).message}`));
    }, o.progressMs ?? 3000);
    let report;
    try {
      const rx = new MulticastReceiver({
        imageUrl: task.imageUrl, target, interfaceAddress: address, group: task.multicast.group, port: task.multicast.port,
        fallbackMs: o.fallbackMs ?? 10_000,
        // SSDs and NVMe: unused ranges are discarded (TRIM) instead of zeroed; falls back to zeroing
        discard: !pick.disk.rotational,
        onProgress: (p) => { last = p; },
        logger: { info: (x, m) => log(`rackcast: ${m ?? ''} ${JSON.stringify(x)}`), warn: (x, m) => log(`rackcast: warning: ${m ?? ''} ${JSON.stringify(x)}`) },
      });
      report = await rx.run();
    } finally {
      clearInterval(timer);
    }
    const summary = `${report.image} ${report.digest} -> ${target}: ${report.chunks} chunks, ${report.bytesWritten} bytes in ${report.seconds.toFixed(1)} s (${report.mode}: ${report.viaMulticast} multicast, ${report.viaUnicast} unicast)`;
    log(`RACKCAST-DEPLOY-OK ${summary}`);
    await rep.report('done', summary, undefined, { done: report.bytesWritten, total: report.bytesWritten, mbps: report.bytesWritten / 1e6 / Math.max(0.001, report.seconds), verify: 'ok' });
    return task.after;
  } catch (e) {
    const err = e as Error & { code?: string };
    const msg = `${err.code ? `${err.code}: ` : ''}${err.message}`;
    log(`RACKCAST-DEPLOY-FAIL ${msg}`);
    await rep.report('failed', msg, lines).catch((r: unknown) => log(`rackcast: could not report the failure: ${(r as Error).message}`));
    throw e;
  }
}
