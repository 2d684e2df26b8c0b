// What the boot client's task modes (deploy, capture, register) share: the appliance's client API
// (hello, reports, requests retried while the appliance restarts), the disk rule, and one frame
// for a task run: a log that keeps its last lines, a progress report every few seconds, and on
// any failure a report with those lines (RACKCAST-<MODE>-FAIL) before the error goes to /init.
import { inspectPath, usersOf } from '../../services/image/device.ts';
import type { ClientConfig } from './config.ts';
import type { Disk, Inventory } from './inventory.ts';

export interface HelloReply {
  taskId: number; kind: string; image: string | null; imageUrl: string | null;
  multicast: { group: string; port: number }; after: 'reboot' | 'poweroff';
  /** deploy options: compare the disk first and write only what differs; grow the filesystem onto a larger disk */
  delta?: boolean; grow?: boolean;
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

/** The disk a task uses by the rule, refused if anything holds it: `/dev/<name>` and its inventory. */
export function pickDisk(cfg: ClientConfig, inventory: Inventory): { path: string; disk: Disk } {
  const pick = chooseDisk(inventory.disks, diskPin(cfg.settings));
  if ('error' in pick) throw new Error(pick.error);
  const path = `/dev/${pick.disk.name}`;
  const users = usersOf(inspectPath(path));
  if (users.length) throw new Error(`refusing ${path}: ${users.join('; ')}`);
  return { path, disk: pick.disk };
}

export interface RetryOptions {
  log: (l: string) => void;
  /** how long one request keeps being retried before it fails */
  retryMs?: number;
  /** per attempt */
  timeoutMs?: number;
}

/**
 * One request with retries: network errors, timeouts and 5xx are retried with exponential
 * back-off (0.5 s … 10 s) until `retryMs` has passed; any other status is returned.
 */
export async function requestRetry(url: string, init: RequestInit, o: RetryOptions): Promise<Response> {
  const until = Date.now() + (o.retryMs ?? 120_000);
  for (let k = 0; ; k++) {
    let why: string;
    try {
      const r = await fetch(url, { ...init, signal: AbortSignal.timeout(o.timeoutMs ?? 60_000) });
      if (r.status < 500) return r;
      why = `HTTP ${r.status}`;
      await r.body?.cancel();
    } catch (e) {
      const err = e as Error & { cause?: { code?: string } };
      why = err.cause?.code ?? err.message;
    }
    if (Date.now() >= until) throw new Error(`${init.method ?? 'GET'} ${url}: ${why} (gave up after ${k + 1} attempts)`);
    o.log(`rackcast: ${init.method ?? 'GET'} ${url.replace(/\?.*/, '')}: ${why}; retrying`);
    await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** k, 10_000)));
  }
}

async function post(url: string, body: unknown, timeoutMs = 10_000): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
}

const postRetry = (url: string, body: unknown, log: (l: string) => void): Promise<Response> =>
  requestRetry(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }, { log, retryMs: 60_000, timeoutMs: 10_000 });

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


export interface TaskRun { task: HelloReply; rep: Reporter; log: (l: string) => void }

/**
 * hello, then `body` with a log that keeps the last 200 lines; a failure is printed as
 * RACKCAST-<MODE>-FAIL and reported with those lines, then rethrown (/init keeps a shell).
 */
export async function runTask(o: { cfg: ClientConfig; inventory: Inventory; log: (l: string) => void }, mode: string, body: (r: TaskRun) => Promise<Action>): Promise<Action> {
  const lines: string[] = [];
  const log = (l: string): void => { lines.push(l); if (lines.length > 200) lines.shift(); o.log(l); };
  const task = await hello(o.cfg, o.inventory, log);
  const rep = reporter(o.cfg, log);
  try {
    if (task.kind !== mode) throw new Error(`the appliance gave a ${task.kind} task to a client booted for ${mode}`);
    return await body({ task, rep, log });
  } catch (e) {
    const err = e as Error & { code?: string };
    const msg = `${err.code ? `${err.code}: ` : ''}${err.message}`;
    log(`RACKCAST-${mode.toUpperCase()}-FAIL ${msg}`);
    await rep.report('failed', msg, lines).catch((r: unknown) => log(`rackcast: could not report the failure: ${(r as Error).message}`));
    throw e;
  }
}

/** Every `ms`: log `sample()`'s detail and report it as running with its progress. Returns stop. */
export function reportEvery(ms: number, r: TaskRun, sample: () => { detail: string; progress: ReportProgress }): () => void {
  const timer = setInterval(() => {
    const s = sample();
    r.log(`rackcast: progress ${s.detail}`);
    r.rep.report('running', s.detail, undefined, s.progress).catch((e: unknown) => r.log(`rackcast: progress report failed: ${(e as Error).message}`));
  }, ms);
  return () => clearInterval(timer);
}
