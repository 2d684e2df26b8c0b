// Multicast sessions the appliance runs for deploy tasks. The first hello of a deploy task starts
// one MulticastSender over the task's image (services/multicast/sender.ts) on the serve address;
// later hellos of the same task find it running. The sender waits for as many receivers as the
// task has unfinished machines (at most maxWaitMs), then sends; it ends when every receiver is done.
//
// Limitation (for now): one session at a time, on the sender's default group and port. A hello
// for another task while a session runs starts nothing; its machines then find no ANNOUNCE and
// continue over HTTP after their fallback delay (same verification, unicast). Per-task groups and
// ports come with the scheduler.
import { MulticastSender, SENDER_DEFAULTS, type SessionReport } from '../services/multicast/sender.ts';
import type { ImageStore } from '../services/image/store.ts';
import type { Logger } from './serve.ts';

export interface SessionsOptions {
  images: ImageStore;
  /** the serve address: the sender binds and sends multicast from it */
  interfaceAddress: string;
  rateMbit: number;
  maxWaitMs?: number;
  logger?: Logger;
}

export interface SessionInfo { taskId: number; image: string; group: string; port: number }

export class Sessions {
  readonly o: SessionsOptions;
  #current?: { taskId: number; image: string; sender: MulticastSender; done: Promise<SessionReport | undefined> };

  constructor(o: SessionsOptions) {
    this.o = o;
  }

  /** Where receivers listen (the same for every session for now). */
  get group(): { group: string; port: number } {
    return { group: SENDER_DEFAULTS.group, port: SENDER_DEFAULTS.port };
  }

  running(): SessionInfo | undefined {
    const c = this.#current;
    return c && { taskId: c.taskId, image: c.image, ...this.group };
  }

  /**
   * Make sure a session for this task runs. Returns false when another task's session holds the
   * group (its machines will use HTTP).
   */
  ensure(taskId: number, image: string, imageUrl: string, minReceivers: number): boolean {
    const c = this.#current;
    if (c) {
      if (c.taskId === taskId) return true;
      this.o.logger?.warn({ taskId, running: c.taskId }, 'multicast: another task\'s session is running; this task\'s machines will fall back to HTTP');
      return false;
    }
    const sender = new MulticastSender({
      store: this.o.images, image, interfaceAddress: this.o.interfaceAddress, httpUrl: imageUrl,
      minReceivers: Math.max(1, minReceivers), maxWaitMs: this.o.maxWaitMs ?? 120_000, rateMbit: this.o.rateMbit,
      ...(this.o.logger ? { logger: this.o.logger } : {}),
    });
    const log = this.o.logger;
    sender.on('start', (s: { receivers: number }) => log?.info({ taskId, image, receivers: s.receivers }, 'multicast: session started'));
    sender.on('receiver-done', (r: { address: string }) => log?.info({ taskId, receiver: r.address }, 'multicast: receiver done'));
    const done = sender.run().then(
      (r) => { log?.info({ taskId, image, reason: r.reason, seconds: r.seconds, bytesSent: r.bytesSent, repairPackets: r.repairPackets, rateMbit: r.finalRateMbit }, 'multicast: session ended'); return r; },
      (e: unknown) => { log?.error({ taskId, image, err: (e as Error).message }, 'multicast: session failed'); return undefined; },
    ).finally(() => { if (this.#current?.sender === sender) this.#current = undefined; });
    this.#current = { taskId, image, sender, done };
    log?.info({ taskId, image, minReceivers, rateMbit: this.o.rateMbit, ...this.group }, 'multicast: session for task');
    return true;
  }

  async close(): Promise<void> {
    const c = this.#current;
    if (!c) return;
    await c.sender.close();
    await c.done;
  }
}
