// Multicast sessions the appliance runs for deploy tasks. The first hello of a deploy task starts
// one MulticastSender over the task's image (services/multicast/sender.ts) on the serve address;
// later hellos of the same task find it running. The sender waits for as many receivers as the
// task has unfinished machines (at most maxWaitMs), then sends; it ends when every receiver is done.
//
// Each running session has its own slot k: group 239.255.77.(1+k) and port 9700+k (the sender
// binds that port for the receivers' STATUS/NACK, so two sessions never share a socket). Tasks
// deploying at the same time thus run side by side; a slot is reused once its session ends. With
// every slot taken (MAX_SESSIONS), a task's machines find no ANNOUNCE and continue over HTTP after
// their fallback delay (same verification, unicast).
import { MulticastSender, SENDER_DEFAULTS, type SessionReport } from '../services/multicast/sender.ts';
import type { ImageStore } from '../services/image/store.ts';
import type { Logger } from './serve.ts';

export interface SessionsOptions {
  images: ImageStore;
  /** the serve address: the sender binds and sends multicast from it */
  interfaceAddress: string;
  rateMbit: number;
  /** datagram size for every session (default: the sender's 1500) */
  mtu?: number;
  maxWaitMs?: number;
  logger?: Logger;
  /**
   * The task's start rule (the engine decides, the store records: Store.sessionMayStart), and how
   * many of its machines have said hello. When given, a session starts when the rule says so and
   * the machines that said hello have joined the group (or 3 s later), instead of after
   * minReceivers/maxWaitMs.
   */
  gate?: (taskId: number) => { start: boolean; joined: number };
}

export interface SessionInfo { taskId: number; image: string; group: string; port: number }
export interface Where { group: string; port: number }

/** Sessions that can run at once (slots: groups 239.255.77.1… and ports 9700…). */
export const MAX_SESSIONS = 32;

/** Slot k's group and port. */
export function slotAddress(k: number): Where {
  const base = SENDER_DEFAULTS.group.split('.').map(Number);
  return { group: `${base[0]}.${base[1]}.${base[2]}.${(base[3] as number) + k}`, port: SENDER_DEFAULTS.port + k };
}

interface Running { taskId: number; image: string; slot: number; sender: MulticastSender; done: Promise<SessionReport | undefined> }

export class Sessions {
  readonly o: SessionsOptions;
  readonly #running = new Map<number, Running>();

  constructor(o: SessionsOptions) {
    this.o = o;
  }

  running(): SessionInfo[] {
    return [...this.#running.values()].map((r) => ({ taskId: r.taskId, image: r.image, ...slotAddress(r.slot) }));
  }

  /**
   * Make sure a session for this task runs; returns where its receivers listen, or undefined when
   * every slot is taken (the task's machines will use HTTP).
   */
  ensure(taskId: number, image: string, imageUrl: string, minReceivers: number): Where | undefined {
    const c = this.#running.get(taskId);
    if (c) return slotAddress(c.slot);
    const used = new Set([...this.#running.values()].map((r) => r.slot));
    let slot = 0;
    while (used.has(slot)) slot++;
    if (slot >= MAX_SESSIONS) {
      this.o.logger?.warn({ taskId, running: [...this.#running.keys()] }, `multicast: all ${MAX_SESSIONS} session slots are in use; this task's machines will fall back to HTTP`);
      return undefined;
    }
    const where = slotAddress(slot);
    const sender: MulticastSender = new MulticastSender({
      ...where, store: this.o.images, image, interfaceAddress: this.o.interfaceAddress, httpUrl: imageUrl,
      minReceivers: Math.max(1, minReceivers), maxWaitMs: this.o.maxWaitMs ?? 120_000, rateMbit: this.o.rateMbit,
      ...(this.o.mtu ? { mtu: this.o.mtu } : {}),
      ...(this.o.gate ? { startGate: (): boolean => this.#gateOpen(taskId, sender) } : {}),
      ...(this.o.logger ? { logger: this.o.logger } : {}),
    });
    const log = this.o.logger;
    sender.on('start', (s: { receivers: number }) => log?.info({ taskId, image, receivers: s.receivers }, 'multicast: session started'));
    sender.on('receiver-done', (r: { address: string }) => log?.info({ taskId, receiver: r.address }, 'multicast: receiver done'));
    sender.on('receiver-declared', (r: { address: string; skippedBytes?: number; neededChunks?: number }) => log?.info({ taskId, receiver: r.address, skippedBytes: r.skippedBytes, neededChunks: r.neededChunks }, 'multicast: delta receiver declared what it needs'));
    const done = sender.run().then(
      (r) => { log?.info({ taskId, image, reason: r.reason, seconds: r.seconds, bytesSent: r.bytesSent, repairPackets: r.repairPackets, rateMbit: r.finalRateMbit, skippedChunks: r.skippedChunks, skippedBytes: r.skippedBytes }, 'multicast: session ended'); return r; },
      (e: unknown) => { log?.error({ taskId, image, err: (e as Error).message }, 'multicast: session failed'); return undefined; },
    ).finally(() => { if (this.#running.get(taskId)?.sender === sender) this.#running.delete(taskId); });
    this.#running.set(taskId, { taskId, image, slot, sender, done });
    log?.info({ taskId, image, minReceivers, rateMbit: this.o.rateMbit, ...where }, 'multicast: session for task');
    return where;
  }

  readonly #gateOpenedAt = new Map<number, number>();

  #gateOpen(taskId: number, sender: MulticastSender): boolean {
    const g = this.o.gate?.(taskId);
    if (!g?.start) return false;
    const at = this.#gateOpenedAt.get(taskId) ?? Date.now();
    this.#gateOpenedAt.set(taskId, at);
    // a machine whose hello just returned needs a moment to join the group: give it 3 s
    if (sender.receivers.size >= g.joined || Date.now() - at > 3000) { this.#gateOpenedAt.delete(taskId); return true; }
    return false;
  }

  async close(): Promise<void> {
    const all = [...this.#running.values()];
    await Promise.all(all.map(async (c) => { await c.sender.close(); await c.done; }));
  }
}
