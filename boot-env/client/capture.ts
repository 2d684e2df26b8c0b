// rackcast.mode=capture: hello → choose the source disk (the deploy rule) → read it once with the
// image code (services/image/capture.ts captureToTarget): each block is hashed, the appliance is
// asked whether it has that chunk (HEAD), and only new chunks are compressed and sent (PUT); the
// appliance decompresses and hash-checks every one before keeping it → the manifest is sent to be
// committed (the image exists only from then on) → the task's `after`.
//
// Resumable by block: every request is retried with back-off when the connection drops or the
// appliance answers 5xx (it may be restarting), for up to `retryMs`; a client that starts over
// re-reads the disk but sends only the chunks the appliance does not have yet.
import { inspectPath, usersOf } from '../../services/image/device.ts';
import { captureToTarget, type ChunkTarget } from '../../services/image/capture.ts';
import type { ClientConfig } from './config.ts';
import type { Inventory } from './inventory.ts';
import { chooseDisk, diskPin, hello, reporter, type Action } from './deploy.ts';

export interface UploadOptions {
  url: string;
  token: string;
  log: (l: string) => void;
  /** how long one request keeps being retried before the capture fails */
  retryMs?: number;
  /** per attempt */
  timeoutMs?: number;
}

export class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/**
 * One request with retries: network errors, timeouts and 5xx are retried with exponential
 * back-off (0.5 s … 10 s) until `retryMs` has passed; any other status is returned.
 */
export async function requestRetry(url: string, init: RequestInit, o: Pick<UploadOptions, 'log' | 'retryMs' | 'timeoutMs'>): Promise<Response> {
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

/** The appliance as a ChunkTarget (HEAD/PUT /api/v1/client/chunks/<hash>), plus commit. */
export function applianceTarget(o: UploadOptions): ChunkTarget & { commit(manifest: unknown): Promise<{ image: string; digest: string; detail: string }>; sent: { requests: number; bytes: number } } {
  const auth = { authorization: `Bearer ${o.token}` };
  const sent = { requests: 0, bytes: 0 };
  return {
    sent,
    async has(hash) {
      const r = await requestRetry(`${o.url}/api/v1/client/chunks/${hash}`, { method: 'HEAD', headers: auth }, o);
      if (r.status === 200) return true;
      if (r.status === 404) return false;
      throw new HttpError(r.status, `the appliance refused chunk queries: HTTP ${r.status}`);
    },
    async put(hash, length, frame) {
      const r = await requestRetry(`${o.url}/api/v1/client/chunks/${hash}?length=${length}`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: frame }, o);
      sent.requests++;
      sent.bytes += frame.length;
      if (r.status !== 200 && r.status !== 201) throw new HttpError(r.status, `the appliance refused chunk ${hash.slice(0, 16)}…: HTTP ${r.status} ${await r.text()}`);
      await r.body?.cancel();
    },
    async commit(manifest) {
      const r = await requestRetry(`${o.url}/api/v1/client/capture/commit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: o.token, manifest }) }, o);
      if (!r.ok) throw new HttpError(r.status, `the appliance refused the image: HTTP ${r.status} ${await r.text()}`);
      return await r.json() as { image: string; digest: string; detail: string };
    },
  };
}

export interface CaptureRunOptions { cfg: ClientConfig; inventory: Inventory; log: (l: string) => void; progressMs?: number; retryMs?: number }

export async function runCapture(o: CaptureRunOptions): Promise<Action> {
  const lines: string[] = [];
  const log = (l: string): void => { lines.push(l); if (lines.length > 200) lines.shift(); o.log(l); };
  const task = await hello(o.cfg, o.inventory, log);
  log(`rackcast: task ${task.taskId}: ${task.kind} as image ${task.image ?? '-'}, then ${task.after}`);
  const rep = reporter(o.cfg, log);
  try {
    if (task.kind !== 'capture' || !task.image) throw new Error(`the appliance gave a ${task.kind} task to a client booted for capture`);
    const pick = chooseDisk(o.inventory.disks, diskPin(o.cfg.settings));
    if ('error' in pick) throw new Error(pick.error);
    const source = `/dev/${pick.disk.name}`;
    const users = usersOf(inspectPath(source));
    if (users.length) throw new Error(`refusing ${source}: ${users.join('; ')}`);
    log(`rackcast: capturing ${source} (${pick.disk.size} bytes${pick.disk.model ? `, ${pick.disk.model}` : ''}) as ${task.image}`);
    await rep.report('running', `source ${source}`);
    const target = applianceTarget({ url: o.cfg.url as string, token: o.cfg.token as string, log, ...(o.retryMs ? { retryMs: o.retryMs } : {}) });
    let last = { done: 0, total: pick.disk.size };
    const t0 = performance.now();
    const timer = setInterval(() => {
      const s = (performance.now() - t0) / 1000;
      const mbps = last.done / 1e6 / Math.max(s, 0.001);
      const detail = `${last.done}/${last.total} bytes read, ${target.sent.bytes} sent, ${mbps.toFixed(1)} MB/s`;
      log(`rackcast: progress ${detail}`);
      rep.report('running', detail, undefined, { done: last.done, total: last.total, mbps }).catch((e: unknown) => log(`rackcast: progress report failed: ${(e as Error).message}`));
    }, o.progressMs ?? 3000);
    let r;
    try {
      r = await captureToTarget({ source, name: task.image, target, tmpDir: o.cfg.tmpDir, onProgress: (p) => { last = p; } });
    } finally {
      clearInterval(timer);
    }
    const c = await target.commit(r.manifest);
    const summary = `${source} -> ${c.image} ${c.digest}: ${r.manifest.disk.size} bytes in ${r.seconds.toFixed(1)} s (${(r.manifest.disk.size / 1e6 / r.seconds).toFixed(1)} MB/s); ${r.newChunks} chunks sent (${target.sent.bytes} bytes), ${r.reusedChunks} already on the appliance, ${r.manifest.stats.holeBlocks} hole blocks`;
    log(`RACKCAST-CAPTURE-OK ${summary}`);
    return task.after;
  } catch (e) {
    const err = e as Error & { code?: string };
    const msg = `${err.code ? `${err.code}: ` : ''}${err.message}`;
    log(`RACKCAST-CAPTURE-FAIL ${msg}`);
    await rep.report('failed', msg, lines).catch((r: unknown) => log(`rackcast: could not report the failure: ${(r as Error).message}`));
    throw e;
  }
}
