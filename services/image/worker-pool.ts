// A small pool of chunk workers (chunk-worker.ts). Jobs go to the worker with the fewest in flight;
// each worker keeps up to `depth` queued so it never idles between jobs. Replies that report a
// failure become RackcastErrors with the worker's code and fields.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { RackcastError, ERROR_CODES, type ErrorCode } from '../errors.ts';
import type { Job, Reply, WorkerInit } from './chunk-worker.ts';

export const POOL_DEFAULTS = { workers: availableParallelism(), depth: 2 };

interface Slot { worker: Worker; pending: { resolve: (r: Reply) => void; reject: (e: Error) => void }[] }

export type OkReply = Extract<Reply, { ok: true }>;

export class WorkerPool {
  readonly size: number;
  readonly #slots: Slot[] = [];
  #waiters: (() => void)[] = [];
  #depth: number;
  #closed = false;

  constructor(init: WorkerInit, opts: { workers?: number; depth?: number } = {}) {
    this.size = Math.max(1, opts.workers ?? POOL_DEFAULTS.workers);
    this.#depth = opts.depth ?? POOL_DEFAULTS.depth;
    for (let i = 0; i < this.size; i++) {
      const worker = new Worker(new URL('./chunk-worker.ts', import.meta.url), { workerData: init });
      const slot: Slot = { worker, pending: [] };
      worker.on('message', (r: Reply) => {
        slot.pending.shift()?.resolve(r);
        for (const w of this.#waiters.splice(0)) w();
      });
      worker.on('error', (e) => { for (const p of slot.pending.splice(0)) p.reject(e); });
      worker.on('exit', (code) => {
        const e = new RackcastError('RC_ERR_IO', `chunk worker exited (code ${code})`);
        for (const p of slot.pending.splice(0)) p.reject(e);
      });
      this.#slots.push(slot);
    }
  }

  /** Resolves once some worker has room for another job (back-pressure for producers). */
  async ready(): Promise<void> {
    while (!this.#closed && this.#slots.every((s) => s.pending.length >= this.#depth)) {
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  /**
   * Run one job; a failed job rejects with a RackcastError (its buffer, if any, is on
   * `.fields.buf`). The job is posted synchronously when a worker has room, so a producer that
   * awaits ready() before each run() never queues more than size × depth jobs.
   */
  async run(job: Job, transfer: ArrayBuffer[] = []): Promise<OkReply> {
    let slot = this.#slots.reduce((a, b) => (b.pending.length < a.pending.length ? b : a));
    while (!this.#closed && slot.pending.length >= this.#depth) {
      await new Promise<void>((r) => this.#waiters.push(r));
      slot = this.#slots.reduce((a, b) => (b.pending.length < a.pending.length ? b : a));
    }
    if (this.#closed) throw new RackcastError('RC_ERR_IO', 'worker pool is closed');
    const reply = await new Promise<Reply>((resolve, reject) => {
      slot.pending.push({ resolve, reject });
      slot.worker.postMessage(job, transfer);
    });
    if (reply.ok) return reply;
    const code = (reply.code in ERROR_CODES ? reply.code : 'RC_ERR_IO') as ErrorCode;
    throw new RackcastError(code, reply.message, { ...reply.fields, ...(reply.buf ? { buf: reply.buf } : {}) });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) w();
    await Promise.all(this.#slots.map((s) => s.worker.terminate()));
  }
}
