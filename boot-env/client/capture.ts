// rackcast.mode=capture: hello → choose the source disk (the deploy rule) → read it once with the
// image code (services/image/capture.ts captureToTarget): each block is hashed, the appliance is
// asked whether it has that chunk (HEAD), and only new chunks are compressed and sent (PUT); the
// appliance decompresses and hash-checks every one before keeping it → the manifest is sent to be
// committed (the image exists only from then on) → the task's `after`.
//
// Resumable by block: every request is retried with back-off when the connection drops or the
// appliance answers 5xx (it may be restarting), for up to `retryMs`; a client that starts over
// re-reads the disk but sends only the chunks the appliance does not have yet.
import { captureToTarget, type ChunkTarget } from '../../services/image/capture.ts';
import type { ClientConfig } from './config.ts';
import type { Inventory } from './inventory.ts';
import { requestRetry, reportEvery, runTask, pickDisk, type Action, type RetryOptions } from './task.ts';

export interface UploadOptions extends RetryOptions { url: string; token: string }

export class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
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
  return await runTask(o, 'capture', async (run) => {
    const { task, rep, log } = run;
    log(`rackcast: task ${task.taskId}: ${task.kind} as image ${task.image ?? '-'}, then ${task.after}`);
    if (!task.image) throw new Error('the appliance gave a capture task without an image name');
    const { path: source, disk } = pickDisk(o.cfg, o.inventory);
    log(`rackcast: capturing ${source} (${disk.size} bytes${disk.model ? `, ${disk.model}` : ''}) as ${task.image}`);
    await rep.report('running', `source ${source}`);
    const target = applianceTarget({ url: o.cfg.url as string, token: o.cfg.token as string, log, ...(o.retryMs ? { retryMs: o.retryMs } : {}) });
    let last = { done: 0, total: disk.size };
    const t0 = performance.now();
    const stop = reportEvery(o.progressMs ?? 3000, run, () => {
      const mbps = last.done / 1e6 / Math.max((performance.now() - t0) / 1000, 0.001);
      return { detail: `${last.done}/${last.total} bytes read, ${target.sent.bytes} sent, ${mbps.toFixed(1)} MB/s`, progress: { done: last.done, total: last.total, mbps } };
    });
    let r;
    try {
      r = await captureToTarget({ source, name: task.image, target, tmpDir: o.cfg.tmpDir, onProgress: (p) => { last = p; } });
    } finally {
      stop();
    }
    const c = await target.commit(r.manifest);
    const summary = `${source} -> ${c.image} ${c.digest}: ${r.manifest.disk.size} bytes in ${r.seconds.toFixed(1)} s (${(r.manifest.disk.size / 1e6 / r.seconds).toFixed(1)} MB/s); ${r.newChunks} chunks sent (${target.sent.bytes} bytes), ${r.reusedChunks} already on the appliance, ${r.manifest.stats.holeBlocks} hole blocks`;
    log(`RACKCAST-CAPTURE-OK ${summary}`);
    return task.after;
  });
}
