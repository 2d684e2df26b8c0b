// Multicast sender: one session over the chunks of one image. No per-slice barrier: a first pass
// sends every chunk in order; receivers NACK what they lack (fragments or whole chunks) and the
// sender merges those NACKs into a repair queue that is served before new data. Late joiners and
// rebooted receivers NACK everything they lack and are served by the same queue. Every datagram
// is paced by a token bucket; the rate adapts to receivers' reported socket drops, and a receiver
// that cannot keep up is told to continue over HTTP instead of slowing the group. Until then, the
// repairs that only lagging receivers asked for wait behind the first pass, so that a slow link
// or host does not take the group's link time (docs/decisions.md, "A slow receiver").
// Repairs for a FEC block that several receivers lack different fragments of go out as PARITY
// datagrams, as many as the receiver lacking most needs (fec.ts), not one fragment per loss.
// Delta receivers declare (WANT) which chunks they still need after comparing their targets; the
// first pass sends only chunks some receiver still needs, a receiver that has not declared counting
// as needing everything (docs/decisions.md, "Delta inside a multicast session").
import { createSocket, type Socket } from 'node:dgram';
import { nativeIo, openGroupSender, type GroupSender, type IoMode } from './batch-io.ts';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import { RackcastError, isRackcastError } from '../errors.ts';
import type { ImageStore, OpenImage } from '../image/store.ts';
import { POOL_DEFAULTS, WorkerPool } from '../image/worker-pool.ts';
import { frameSealed } from '../image/chunk-path.ts';
import { readAhead, readFrame } from '../image/chunk-reader.ts';
import { Bits, chunkTable, type ChunkEntry } from './chunks.ts';
import { decodeHeader, encodeHeader, fragSizeFor, HEADER_LENGTH, TYPE, type Header } from './wire.ts';
import { CONTROL, STATE, decodeNack, decodeStatus, decodeWant, encodeAnnounce, encodeControl, encodeEnd } from './messages.ts';
import { Pacer } from './pacer.ts';
import { FEC_K, FEC_MAX_PARITY, blockRange, codedBlocks, encodeParity, parityFragIndex, parityOf } from './fec.ts';

/** How many chunks verification may run ahead of the first pass (bounds the frame cache's churn). */
const VERIFY_AHEAD = 32;
/**
 * Lag windows: every LAG_WINDOW_MS a receiver that NACKed more than a quarter of the fragments
 * sent in the last LAG_WINDOWS windows (at least LAG_MIN_PACKETS of them) lags; below a
 * twentieth it no longer does.
 */
const LAG_WINDOW_MS = 100;
const LAG_WINDOWS = 10;
const LAG_MIN_PACKETS = 200;
/**
 * Rate windows: every ADAPT_MS the sender looks for overrun receivers (receivers report socket
 * drops within ~100 ms). A cut is followed by ADAPT_HOLD_MS without another, so that its effect
 * shows in the next reports; strikes move a receiver to unicast after STRIKES_MS of overrun.
 */
const ADAPT_MS = 250;
const ADAPT_HOLD_MS = 500;
const STRIKES = 12; // × ADAPT_MS = 3 s
/** After a cut, the rate creeps past what the overrun receivers took in at 1% a window, for this long. */
const CEILING_MS = 4000;
/** Work items ≥ this are parities: PARITY_CODE + the PARITY's fragment index (fec.ts parityFragIndex). */
const PARITY_CODE = 0x10000;

export const SENDER_DEFAULTS = {
  group: '239.255.77.1',
  port: 9700,
  rateMbit: 900,
  minRateMbit: 10,
  mtu: 1500,
  minReceivers: 1,
  maxWaitMs: 0, // 0: wait for minReceivers however long it takes
  deadlineMs: 0, // 0: no deadline
  announceMs: 250,
  // while waiting for receivers: a receiver that lost one ANNOUNCE (1% loss, 8 receivers: one in
  // thirteen sessions) joins 50 ms later instead of 250 (~100 bytes a datagram: 2 KB/s)
  waitAnnounceMs: 50,
  receiverTimeoutMs: 15000,
  repairHoldMs: 30, // a fragment re-sent less than this long ago is not re-sent for another NACK
  // with several receivers, a chunk's repair waits this long after its first NACK, so that the
  // others' NACKs for it (sent on their own timers) arrive and one set of parities serves them all
  repairCoalesceMs: 40,
  // once the first pass is over: receivers NACK their last gaps as the ANNOUNCE saying so arrives
  // (not on their timers), so their NACKs come within a few ms of each other
  tailCoalesceMs: 15,
  verify: true,
  // once sending may start, wait at most this long for delta receivers still comparing their
  // targets (only when every receiver is a delta receiver: otherwise everything is needed anyway)
  declareWaitMs: 60000,
  io: 'auto' as IoMode, // group datagrams: one sendmmsg per paced burst through the rcudp addon where it is built (batch-io.ts)
};

export interface SenderOptions extends Partial<typeof SENDER_DEFAULTS> {
  store: ImageStore;
  image: string;
  /** the address of the interface to send from; control messages arrive here */
  interfaceAddress: string;
  /** base URL receivers use for the manifest and for unicast chunk fetches */
  httpUrl: string;
  logger?: { info(o: object, m?: string): void; warn(o: object, m?: string): void; debug?(o: object, m?: string): void };
  /**
   * When given, it alone decides when sending starts (polled while waiting; at least one receiver
   * must have joined): the appliance's start rule. minReceivers and maxWaitMs then do not apply.
   */
  startGate?: () => boolean;
}

export interface ReceiverState {
  id: number; address: string; port: number; state: 'receiving' | 'done' | 'failed' | 'unicast' | 'lost' | 'replaced';
  have: number; total: number; written: number; backlog: number; drops: number; lastSeen: number; joinedAt: number; doneAt?: number;
  nackedFrags: number; slowStrikes: number;
  /** in the last lag window it NACKed so much that its repairs wait behind the first pass */
  lagging: boolean;
  /** its STATUS says it decodes PARITY datagrams */
  parity: boolean;
  /** its last STATUS: session datagrams it had received, and how many we had sent when it came */
  rx?: { received: number; sentAt: number };
  /** delta receivers: comparing (or declared, WANT not all here yet), or declared; with the declaration's figures */
  delta?: 'comparing' | 'declared'; skippedBytes?: number; neededChunks?: number;
}
export interface SessionReport {
  session: number; image: string; digest: string; reason: 'complete' | 'deadline' | 'aborted';
  seconds: number; firstPassSeconds: number; chunks: number; frameBytes: number; bytesSent: number; packetsSent: number; repairPackets: number;
  extraBytesPct: number; finalRateMbit: number;
  /** sending time the pacer lost while the process was not scheduled (pacer.ts lostSeconds) */
  paceLostSeconds: number;
  receivers: ReceiverState[]; malformed: number;
  /** repair datagrams that only lagging receivers had asked for (sent after the first pass) */
  lagRepairPackets: number;
  /** PARITY datagrams sent, and the fragments NACKed for blocks that got parities instead */
  parityPackets: number; codedFragments: number;
  /** chunks verified by their seal (the frame's SHA-256) instead of decompressing */
  sealedChunks: number;
  /** how group datagrams were sent (batch-io.ts); datagrams the kernel would not take (lost, NACKed) */
  io: 'native' | 'dgram'; sendDropped: number;
  /** seconds since this process started: sockets ready (first ANNOUNCE), each receiver's first message (in order), sending started */
  since: { ready: number; joins: number[]; go: number | null; done: number[] };
  /** first pass: chunks sent, and chunks (and their frame bytes) not sent because no receiver needed them */
  passChunks: number; skippedChunks: number; skippedBytes: number;
}

export class MulticastSender extends EventEmitter {
  readonly session = randomInt(1, 0xffffffff);
  readonly o: typeof SENDER_DEFAULTS & SenderOptions;
  readonly receivers = new Map<number, ReceiverState>();
  readonly stats = { bytesSent: 0, packetsSent: 0, repairPackets: 0, lagRepairPackets: 0, parityPackets: 0, codedFragments: 0, sealedChunks: 0, malformed: 0, nacks: 0, foreign: 0, wants: 0, passChunks: 0, skippedChunks: 0, skippedBytes: 0 };
  #sock?: Socket; // control: receivers' NACK/STATUS/WANT arrive here, CONTROL leaves from here
  #group?: GroupSender; // connected to the group: DATA, ANNOUNCE, END (batch-io.ts)
  readonly #headBuf = Buffer.alloc(HEADER_LENGTH); // the header being sent (GroupSender.push copies it)
  #img?: OpenImage;
  #chunks: ChunkEntry[] = [];
  #frames = new Map<number, Buffer>();
  #frameBytes = 0;
  #fragSize: number;
  #pass = 0; // next chunk of the first pass
  #repairs: RepairQueue = new Map(); // insertion order = FIFO
  #lagRepairs: RepairQueue = new Map(); // asked for by lagging receivers only: after the pass
  #missing = new Map<number, Map<number, Bits>>(); // chunk → receiver → fragments it NACKed (PARITY-capable receivers)
  #plainOnly = new Set<number>(); // chunks a receiver without PARITY asked for
  #parityNext = new Map<number, Uint8Array>(); // chunk → next parity id per FEC block
  #cur?: Sending;
  #paused?: Sending; // the pass's chunk, stopped part-way for a repair that was due
  readonly #head: Header = { type: TYPE.DATA, session: 0, index: 0, fragIndex: 0, fragCount: 0, payloadLength: 0, fragSize: 0 };
  #lastSent = new Map<number, Float64Array>();
  #pacer: Pacer;
  #rateMbit: number;
  #started = false;
  #verifiedUpTo = 0;
  #failure: unknown;
  #idleAnnounced = false;
  #passSeconds: number | undefined;
  #closed = false;
  #t0 = 0;
  #goAt?: number; // when the start rule first said go
  #holdLogged = false;
  #declared = new Map<number, { covered: Bits; need: Bits }>(); // WANT parts per receiver id

  constructor(opts: SenderOptions) {
    super();
    this.o = { ...SENDER_DEFAULTS, ...opts };
    this.#fragSize = fragSizeFor(this.o.mtu);
    this.#rateMbit = this.o.rateMbit;
    this.#pacer = new Pacer(this.#rateMbit * 125000);
  }

  get rateMbit(): number { return this.#rateMbit; }

  async #prepare(): Promise<void> {
    this.#img = this.o.store.open(this.o.image);
    this.#chunks = chunkTable(this.#img.manifest);
    this.#verifiedUpTo = this.o.verify ? 0 : this.#chunks.length;
  }

  /**
   * Verify chunks (decompress + SHA-256, in worker threads) in pass order, at most VERIFY_AHEAD
   * chunks ahead of the first pass, while the session is already running: nothing unverified is
   * ever sent, the wait for receivers or the pacing hides the cost, and the verified frame goes
   * into the frame cache so the pass does not read the file again. A bad chunk aborts the session.
   */
  async #verifyAhead(): Promise<void> {
    if (!this.o.verify) return;
    // Sealed frames (the usual case: capture and import seal every chunk) are checked here by the
    // SHA-256 of their bytes, ~1 ms for a 4 MiB block's frame; worker threads, whose start costs
    // ~0.15 CPU s each while the session starts, are only started for a chunk without a seal.
    let pool: WorkerPool | undefined;
    const done = new Uint8Array(this.#chunks.length);
    const read = async (c: ChunkEntry): Promise<{ frame: ArrayBuffer; frameLength: number }> => {
      while (c.index >= this.#pass + VERIFY_AHEAD && !this.#closed) await sleep(5);
      return readFrame(this.o.store.root, c.hash, this.o.image);
    };
    try {
      await readAhead(this.#chunks, read, async (c, f, readErr) => {
        if (readErr) throw readErr;
        if (this.#closed || this.#failure) return;
        const { frame, frameLength } = f as { frame: ArrayBuffer; frameLength: number };
        if (frameSealed(this.o.store.root, c.hash, new Uint8Array(frame, 0, frameLength))) {
          this.stats.sealedChunks++;
          this.#cacheFrame(c.index, Buffer.from(frame, 0, frameLength));
        } else {
          pool ??= new WorkerPool({ root: this.o.store.root, level: 3 });
          const r = await pool.run({ op: 'checkFrame', hash: c.hash, length: c.length, frame, frameLength, image: this.o.image, sealed: true }, [frame]);
          this.#cacheFrame(c.index, Buffer.from(r.buf as ArrayBuffer, 0, frameLength));
        }
        done[c.index] = 1;
        while (this.#verifiedUpTo < done.length && done[this.#verifiedUpTo]) this.#verifiedUpTo++;
      }, 2 * POOL_DEFAULTS.workers);
    } catch (e) {
      this.#failure ??= e;
    } finally {
      await pool?.close();
    }
  }

  #frame(i: number): Buffer {
    // a frame evicted from the cache (large images) is read again; it was verified before its first send
    return this.#frames.get(i) ?? this.#cacheFrame(i, readFileSync(this.o.store.chunkPath((this.#chunks[i] as ChunkEntry).hash)));
  }

  /** Keep at most ~256 MiB of frames; the oldest inserted go first. */
  #cacheFrame(i: number, f: Buffer): Buffer {
    if (this.#frames.has(i)) return this.#frames.get(i) as Buffer;
    this.#frames.set(i, f);
    this.#frameBytes += f.length;
    for (const [k, v] of this.#frames) {
      if (this.#frameBytes <= 256 << 20) break;
      this.#frames.delete(k);
      this.#frameBytes -= v.length;
    }
    return f;
  }

  #fragCount(i: number): number {
    return Math.max(1, Math.ceil(this.#frame(i).length / this.#fragSize));
  }

  /** Run the whole session; resolves with a report when it ends. */
  async run(): Promise<SessionReport> {
    await this.#prepare();
    const img = this.#img as OpenImage;
    const sock = createSocket({ type: 'udp4', reuseAddr: true });
    this.#sock = sock;
    sock.on('message', (msg, rinfo) => this.#onMessage(msg, rinfo.address, rinfo.port));
    await new Promise<void>((res, rej) => { sock.once('error', rej); sock.bind(this.o.port, this.o.interfaceAddress, () => { sock.off('error', rej); res(); }); });
    this.#group = await openGroupSender({ group: this.o.group, port: this.o.port, iface: this.o.interfaceAddress, sndbuf: 4 << 20, io: this.o.io });
    const why = this.#group.kind === 'dgram' && this.o.io === 'auto' ? nativeIo().error : undefined;
    this.o.logger?.info({ io: this.#group.kind, ...(why ? { why } : {}), session: this.session, image: this.o.image, chunks: this.#chunks.length, group: this.o.group, port: this.o.port }, 'multicast session ready');
    this.#t0 = performance.now();
    const readyAt = this.#t0;
    const verifying = this.#verifyAhead();
    const waitStart = Date.now();
    let reason: SessionReport['reason'] = 'complete';
    let lastAnnounce = 0;
    let lastAdapt = Date.now();
    let lastLag = Date.now();
    while (!this.#closed) {
      const now = Date.now();
      if (now - lastAnnounce >= (this.#started ? this.o.announceMs : Math.min(this.o.announceMs, this.o.waitAnnounceMs))) { lastAnnounce = now; this.#announce(); this.#expireReceivers(now); }
      if (!this.#started) {
        const joined = this.receivers.size;
        if (this.#goAt === undefined && (this.o.startGate
          ? joined >= 1 && this.o.startGate()
          : joined >= this.o.minReceivers || (this.o.maxWaitMs > 0 && now - waitStart >= this.o.maxWaitMs))) this.#goAt = now;
        const go = this.#goAt !== undefined && !this.#holdForDeclarations(now);
        if (go) {
          this.#started = true;
          this.#t0 = performance.now();
          this.#pacer.reset();
          this.emit('start', { receivers: joined });
        } else { await sleep(20); continue; }
      }
      if (this.#failure) break;
      if (this.o.deadlineMs > 0 && performance.now() - this.#t0 >= this.o.deadlineMs) { reason = 'deadline'; break; }
      if (now - lastAdapt >= ADAPT_MS) { lastAdapt = now; this.#adapt(now); }
      if (now - lastLag >= LAG_WINDOW_MS) { lastLag = now; this.#lagCheck(); }
      if (this.#finished()) break;
      const sent = await this.#sendSome();
      if (!sent) {
        // Idle: tell receivers at once that everything has been sent, so they NACK their last
        // gaps now rather than at the next periodic announce.
        if (!this.#idleAnnounced) { this.#idleAnnounced = true; this.#announce(); }
        if (this.#pass >= this.#chunks.length) this.#passSeconds ??= (performance.now() - this.#t0) / 1000;
        this.#pacer.reset(); // an idle sender keeps no credit (and loses none: pacer.lostSeconds)
        await sleep(2);
      } else {
        this.#idleAnnounced = false;
        await new Promise<void>((r) => setImmediate(r)); // let NACKs and STATUS in between bursts
      }
    }
    if (this.#closed || this.#failure) reason = 'aborted';
    for (let k = 0; k < 3; k++) { this.#send(encodeEnd(this.session, reason === 'complete' ? 0 : reason === 'deadline' ? 1 : 2)); await sleep(30); }
    const seconds = (performance.now() - this.#t0) / 1000;
    const frameBytes = this.#chunks.reduce((a, c) => a + this.#frameLen(c.index), 0);
    const due = frameBytes - this.stats.skippedBytes; // what the first pass had to send
    const report: SessionReport = {
      session: this.session, image: this.o.image, digest: img.digest, reason, seconds, firstPassSeconds: this.#passSeconds ?? seconds, chunks: this.#chunks.length, frameBytes,
      bytesSent: this.stats.bytesSent, packetsSent: this.stats.packetsSent, repairPackets: this.stats.repairPackets,
      extraBytesPct: due ? Math.max(0, (this.stats.bytesSent - due - this.stats.packetsSent * HEADER_LENGTH) / due * 100) : 0,
      finalRateMbit: this.#rateMbit, paceLostSeconds: this.#pacer.lostSeconds, receivers: [...this.receivers.values()], malformed: this.stats.malformed, lagRepairPackets: this.stats.lagRepairPackets,
      parityPackets: this.stats.parityPackets, codedFragments: this.stats.codedFragments, sealedChunks: this.stats.sealedChunks,
      io: this.#group?.kind ?? 'dgram', sendDropped: this.#group?.dropped ?? 0,
      since: { ready: readyAt / 1000, joins: [...this.receivers.values()].map((r) => (r.joinedAt - performance.timeOrigin) / 1000).sort((x, y) => x - y), go: this.#started ? this.#t0 / 1000 : null,
        done: [...this.receivers.values()].flatMap((r) => (r.doneAt ? [(r.doneAt - performance.timeOrigin) / 1000] : [])).sort((x, y) => x - y) },
      passChunks: this.stats.passChunks, skippedChunks: this.stats.skippedChunks, skippedBytes: this.stats.skippedBytes,
    };
    await this.close();
    await verifying;
    if (this.#failure) throw this.#failure;
    return report;
  }

  #frameLen(i: number): number {
    return this.#frame(i).length;
  }

  #finished(): boolean {
    const active = [...this.receivers.values()].filter((r) => r.state === 'receiving' || r.state === 'unicast' || r.state === 'done');
    if (active.length < (this.o.startGate ? 1 : this.o.minReceivers)) return false;
    return active.length > 0 && active.every((r) => r.state === 'done');
  }

  #announce(): void {
    const idle = this.#started && this.#pass >= this.#chunks.length && this.#repairs.size === 0 && this.#lagRepairs.size === 0 && !this.#cur && !this.#paused;
    const pass = this.#paused ?? this.#cur;
    this.#send(encodeAnnounce(this.session, {
      digest: Buffer.from((this.#img as OpenImage).digest.replace('sha256:', ''), 'hex'), chunks: this.#chunks.length,
      // chunks before `next` have been sent in full; the one in progress is not due yet
      next: pass && !pass.repair && pass.at < pass.frags.length ? pass.index : Math.min(this.#pass, this.#chunks.length), rateKbit: Math.round(this.#rateMbit * 1000), state: !this.#started ? 0 : idle ? 2 : 1, url: this.o.httpUrl,
    }));
  }

  /**
   * Pick the next chunk to work on: repairs first, then the pass's chunk a repair interrupted,
   * then the first pass, then the repairs only lagging receivers asked for.
   */
  #nextWork(): Sending | undefined {
    const repair = this.#takeRepair(this.#repairs, false);
    if (repair) return this.#sending(repair);
    const paused = this.#paused;
    this.#paused = undefined;
    if (paused) return paused;
    const pass = this.#takePass();
    if (pass) return this.#sending(pass);
    // the pass may still wait for verification: lagging receivers' repairs fill that gap too
    const lag = this.#takeRepair(this.#lagRepairs, true);
    return lag && this.#sending(lag);
  }

  #takeRepair(queue: RepairQueue, lag: boolean): { index: number; frags: number[]; repair: boolean; lag: boolean } | undefined {
    const now = performance.now();
    const wait = this.#passOver() ? Math.min(this.o.tailCoalesceMs, this.o.repairCoalesceMs) : this.o.repairCoalesceMs;
    const coalesce = wait > 0 && this.#receivingCount() > 1;
    for (const [index, { want, at, lost }] of queue) {
      if (coalesce && now - at < wait) break; // FIFO: the rest are younger
      queue.delete(index);
      const n = this.#fragCount(index);
      const frags = Array.from({ length: n }, (_, k) => k).filter((k) => want === 'all' || want.has(k));
      const recent = this.#lastSent.get(index);
      // a NACK sent after the receiver heard us idle is not stale: what it lists was lost
      const fresh = recent && !lost ? frags.filter((k) => now - (recent[k] ?? 0) >= this.o.repairHoldMs) : frags;
      const work = this.#code(index, fresh, want === 'all');
      if (work.length) return { index, frags: work, repair: true, lag };
    }
    return undefined;
  }

  /** The first pass has sent every chunk: what is left are repairs. */
  #passOver(): boolean {
    const c = this.#cur;
    return this.#pass >= this.#chunks.length && !this.#paused && !(c && !c.repair && c.at < c.frags.length);
  }

  #receivingCount(): number {
    let n = 0;
    for (const r of this.receivers.values()) if (r.state === 'receiving') n++;
    return n;
  }

  /**
   * Replace the fragments of each FEC block of a chunk by parities where that sends less: when
   * the receivers that NACKed it lack different fragments, as many parities as the one lacking
   * most (each rebuilds a different fragment at every receiver). A chunk some receiver without
   * PARITY or without any of it asked for, the chunk's last fragment and blocks past
   * FEC_MAX_BLOCKS stay plain.
   */
  #code(index: number, frags: number[], whole: boolean): number[] {
    const per = this.#missing.get(index);
    this.#missing.delete(index);
    const plainOnly = this.#plainOnly.delete(index);
    // a receiver that asked for the whole chunk holds none of it: parities are of no use to it
    if (!per || per.size < 2 || plainOnly || whole) return frags;
    const n = this.#fragCount(index);
    const blocks = codedBlocks(n);
    const byBlock = new Map<number, number[]>();
    const out: number[] = [];
    for (const k of frags) {
      const b = Math.floor(k / FEC_K);
      if (k === n - 1 || b >= blocks) out.push(k);
      else { const l = byBlock.get(b); if (l) l.push(k); else byBlock.set(b, [k]); }
    }
    let next = this.#parityNext.get(index);
    for (const [b, ks] of byBlock) {
      let most = 0;
      for (const bits of per.values()) {
        let m = 0;
        for (const k of ks) if (bits.has(k)) m++;
        if (m > most) most = m;
      }
      next ??= new Uint8Array(blocks);
      const j = next[b] as number;
      if (most === 0 || most >= ks.length || j + most > FEC_MAX_PARITY) { out.push(...ks); continue; }
      for (let t = 0; t < most; t++) out.push(PARITY_CODE + parityFragIndex(b, j + t));
      next[b] = j + most;
      this.stats.codedFragments += ks.length;
    }
    if (next) this.#parityNext.set(index, next);
    return out;
  }

  #takePass(): { index: number; frags: number[]; repair: boolean; lag: boolean } | undefined {
    while (this.#pass < this.#verifiedUpTo) {
      const index = this.#pass++;
      if (!this.#needed(index)) {
        this.stats.skippedChunks++;
        this.stats.skippedBytes += this.#frameLen(index);
        continue;
      }
      this.stats.passChunks++;
      return { index, frags: Array.from({ length: this.#fragCount(index) }, (_, k) => k), repair: false, lag: false };
    }
    return undefined;
  }

  /**
   * The union, decided as the first pass reaches each chunk: needed unless every receiver still
   * in the session has declared and none of them wants it. A receiver that has not declared (not
   * a delta receiver, still comparing, its WANT lost) counts as needing everything; with no
   * receiver left in the session, everything is sent as before.
   */
  #needed(index: number): boolean {
    let any = false;
    for (const r of this.receivers.values()) {
      if (r.state !== 'receiving' && r.state !== 'lost') continue;
      any = true;
      if (r.delta !== 'declared' || this.#declared.get(r.id)?.need.has(index) !== false) return true;
    }
    return !any;
  }

  /**
   * Hold the first pass while delta receivers are still comparing, but only when every receiver
   * is one (a plain receiver needs everything: nothing to gain), and at most declareWaitMs.
   */
  #holdForDeclarations(now: number): boolean {
    const rs = [...this.receivers.values()].filter((r) => r.state === 'receiving');
    const hold = rs.length > 0 && rs.every((r) => r.delta !== undefined) && rs.some((r) => r.delta === 'comparing');
    if (!hold || now - (this.#goAt as number) >= this.o.declareWaitMs) return false;
    if (!this.#holdLogged) {
      this.#holdLogged = true;
      this.o.logger?.info({ comparing: rs.filter((r) => r.delta === 'comparing').length, maxWaitMs: this.o.declareWaitMs }, 'waiting for delta receivers to compare their targets');
    }
    return true;
  }

  async #sendSome(): Promise<boolean> {
    let budget = this.#pacer.take();
    if (budget < HEADER_LENGTH + this.#fragSize + 28) { await sleep(1); return true; }
    let any = false;
    const pkt = HEADER_LENGTH + this.#fragSize + 28;
    const now = performance.now(); // one burst is ~2 ms: one timestamp serves all its fragments
    // A repair that is due does not wait for the rest of the chunk the pass is sending (a 4 MiB
    // chunk's frame takes ~0.3 s at 30 Mbit/s, and with eight receivers the repairs of the
    // last-but-one chunk then came after the whole last chunk): the pass resumes where it stopped.
    const c0 = this.#cur;
    if (c0 && !c0.repair && !c0.lag && !this.#paused && c0.at > 0 && c0.at < c0.frags.length) {
      const r = this.#takeRepair(this.#repairs, false);
      if (r) { this.#paused = c0; this.#cur = this.#sending(r); }
    }
    while (budget >= pkt) {
      if (!this.#cur || this.#cur.at >= this.#cur.frags.length) {
        this.#cur = this.#nextWork();
        if (!this.#cur) break;
      }
      const c = this.#cur;
      const k = c.frags[c.at++] as number;
      let bytes: number;
      if (k >= PARITY_CODE) { bytes = this.#sendParity(c, k - PARITY_CODE); this.stats.parityPackets++; } else {
        c.sent[k] = now;
        bytes = this.#sendFragment(c, k);
      }
      if (c.repair) this.stats.repairPackets++;
      if (c.lag) this.stats.lagRepairPackets++;
      budget -= bytes + 28;
      this.#pacer.spend(bytes + 28);
      any = true;
    }
    this.#group?.flush(); // the burst leaves in one sendmmsg
    return any || this.#cur !== undefined || this.#paused !== undefined;
  }

  #sending(w: { index: number; frags: number[]; repair: boolean; lag: boolean }): Sending {
    return { ...w, at: 0, frame: this.#frame(w.index), count: this.#fragCount(w.index), sent: this.#sentTimes(w.index) };
  }

  /** When each fragment of chunk i was last sent (repairs skip what went out < repairHoldMs ago). */
  #sentTimes(i: number): Float64Array {
    let t = this.#lastSent.get(i);
    if (!t) { t = new Float64Array(this.#fragCount(i)); this.#lastSent.set(i, t); }
    return t;
  }

  #sendFragment(c: { index: number; frame: Buffer; count: number }, k: number): number {
    const start = k * this.#fragSize;
    const len = Math.min(this.#fragSize, c.frame.length - start);
    const h = this.#head;
    h.session = this.session;
    h.index = c.index;
    h.fragIndex = k;
    h.fragCount = c.count;
    h.payloadLength = len;
    h.fragSize = this.#fragSize;
    const head = this.#headBuf;
    encodeHeader(h, head);
    this.#sendParts(head, c.frame.subarray(start, start + len));
    return HEADER_LENGTH + len;
  }

  /** The PARITY with fragment index fragIndex (block, parity id) of the current chunk, as one datagram. */
  #sendParity(c: { index: number; frame: Buffer; count: number }, fragIndex: number): number {
    const fs = this.#fragSize;
    const [block, j] = parityOf(fragIndex);
    const [first, end] = blockRange(block, c.count);
    const sources: Uint8Array[] = [];
    for (let k = first; k < end; k++) sources.push(c.frame.subarray(k * fs, (k + 1) * fs));
    const body = encodeParity(j, sources, Buffer.allocUnsafe(fs));
    const head = this.#headBuf;
    encodeHeader({ type: TYPE.PARITY, session: this.session, index: c.index, fragIndex, fragCount: c.count, payloadLength: fs, fragSize: fs }, head);
    this.#sendParts(head, body as Buffer);
    return HEADER_LENGTH + fs;
  }

  #send(buf: Buffer): void {
    if (!this.#group || this.#closed) return;
    this.stats.bytesSent += buf.length;
    this.stats.packetsSent++;
    this.#group.push(buf);
    this.#group.flush(); // ANNOUNCE and END leave at once
  }

  #sendParts(head: Buffer, body: Buffer): void {
    if (!this.#group || this.#closed) return;
    this.stats.bytesSent += head.length + body.length;
    this.stats.packetsSent++;
    this.#group.push(head, body);
  }

  #onMessage(msg: Buffer, address: string, port: number): void {
    try {
      const { value: h } = decodeHeader(msg);
      // Session 0: a receiver that never heard our multicast and works over HTTP (STATUS only).
      if (h.session !== this.session && !(h.session === 0 && h.type === TYPE.STATUS)) { this.stats.foreign++; return; }
      const payload = msg.subarray(HEADER_LENGTH, HEADER_LENGTH + h.payloadLength);
      if (h.type === TYPE.NACK) {
        const n = decodeNack(payload);
        const r = this.#touch(n.receiver, address, port);
        if (r.state === 'done') return;
        if (r.state === 'unicast') {
          // it still NACKs: our CONTROL was lost, say it again (its STATUS will say UNICAST once it heard)
          this.#unicastTo(r, encodeControl(this.session, { receiver: r.id, command: CONTROL.UNICAST }));
          return;
        }
        this.stats.nacks++;
        for (const e of n.entries) this.#queueRepair(e.index, e.first, e.count, r, n.afterIdle === true);
      } else if (h.type === TYPE.STATUS) {
        const s = decodeStatus(payload);
        const r = this.#touch(s.receiver, address, port);
        Object.assign(r, { have: s.have, total: s.total, written: s.written, backlog: s.backlog });
        if (s.delta && r.delta === undefined) r.delta = 'comparing';
        r.parity = s.parity === true;
        if (s.received !== undefined) r.rx = { received: s.received, sentAt: this.stats.packetsSent };
        if (s.drops > r.drops) r.drops = s.drops;
        if (s.state === STATE.DONE) {
          if (r.state !== 'done') { r.state = 'done'; r.doneAt = Date.now(); this.emit('receiver-done', r); }
          this.#unicastTo(r, encodeControl(h.session, { receiver: r.id, command: CONTROL.DONE_ACK }));
        } else if (s.state === STATE.FAILED) {
          r.state = 'failed';
        } else if (s.state === STATE.UNICAST && r.state !== 'done') {
          r.state = 'unicast';
        }
        this.emit('progress', r);
      } else if (h.type === TYPE.WANT) {
        this.#onWant(payload, address, port);
      } else {
        this.stats.malformed++; // a receiver never sends other types to us
      }
    } catch (e) {
      if (!isRackcastError(e)) throw e;
      this.stats.malformed++;
    }
  }

  /** A part of a delta receiver's WANT; once all its parts are here, acknowledge (again on each repeat). */
  #onWant(payload: Uint8Array, address: string, port: number): void {
    const w = decodeWant(payload);
    if (w.chunks !== this.#chunks.length) { this.stats.malformed++; return; }
    this.stats.wants++;
    const r = this.#touch(w.receiver, address, port);
    if (r.delta !== 'declared') {
      let d = this.#declared.get(r.id);
      if (!d) { d = { covered: new Bits(w.chunks), need: new Bits(w.chunks) }; this.#declared.set(r.id, d); }
      for (let i = w.first; i < w.first + w.count; i++) d.covered.set(i);
      for (const i of w.needed) d.need.set(i); // parts only ever add to what is needed
      r.delta = 'comparing';
      if (!d.covered.full()) return;
      Object.assign(r, { delta: 'declared', skippedBytes: w.skipped, neededChunks: d.need.count });
      this.o.logger?.info({ receiver: r.id.toString(16), address, neededChunks: d.need.count, skippedBytes: w.skipped }, 'delta receiver declared what it needs');
      this.emit('receiver-declared', r);
    }
    this.#unicastTo(r, encodeControl(this.session, { receiver: r.id, command: CONTROL.WANT_ACK }));
  }

  #touch(id: number, address: string, port: number): ReceiverState {
    let r = this.receivers.get(id);
    const now = Date.now();
    if (!r) {
      // A machine that rebooted mid-session comes back with a new receiver id from the same
      // address: the old entry will never finish, so it no longer holds the session open (also
      // when it already went silent long enough to count as lost: it was not lost, it rebooted).
      for (const old of this.receivers.values()) {
        if (old.address === address && (old.state === 'receiving' || old.state === 'unicast' || old.state === 'lost')) { old.state = 'replaced'; this.emit('receiver-replaced', old); }
      }
      r = { id, address, port, state: 'receiving', have: 0, total: this.#chunks.length, written: 0, backlog: 0, drops: 0, lastSeen: now, joinedAt: now, nackedFrags: 0, slowStrikes: 0, lagging: false, parity: false };
      this.receivers.set(id, r);
      this.o.logger?.info({ receiver: id.toString(16), address }, 'receiver joined');
      this.emit('join', r);
    }
    if (r.state === 'lost') r.state = 'receiving';
    r.address = address;
    r.port = port;
    r.lastSeen = now;
    return r;
  }

  #queueRepair(index: number, first: number, count: number, r: ReceiverState, afterIdle = false): void {
    if (index >= this.#chunks.length) { this.stats.malformed++; return; }
    // One entry per chunk across both queues, or a chunk asked for while its receiver lagged and
    // again after went out twice: a chunk the group's queue holds takes a lagging receiver's
    // NACK too, and one waiting behind the pass moves up when a receiver that keeps up asks.
    let queue = r.lagging ? this.#lagRepairs : this.#repairs;
    if (queue === this.#lagRepairs && this.#repairs.has(index)) queue = this.#repairs;
    else if (queue === this.#repairs) {
      const waiting = this.#lagRepairs.get(index);
      if (waiting) { this.#lagRepairs.delete(index); this.#repairs.set(index, waiting); }
    }
    const n = this.#fragCount(index);
    const cur = queue.get(index);
    if (cur && afterIdle) cur.lost = true;
    if (count === 0) {
      if (cur) cur.want = 'all'; else queue.set(index, { want: 'all', at: performance.now(), lost: afterIdle });
      r.nackedFrags += n;
      return;
    }
    if (first >= n) { this.stats.malformed++; return; }
    const end = Math.min(n, first + count);
    r.nackedFrags += end - first;
    // who lacks what, for coding this chunk's repair (#code)
    if (!r.parity) this.#plainOnly.add(index);
    else {
      let per = this.#missing.get(index);
      if (!per) { per = new Map(); this.#missing.set(index, per); }
      let mine = per.get(r.id);
      if (!mine) { mine = new Bits(n); per.set(r.id, mine); }
      for (let k = first; k < end; k++) mine.set(k);
    }
    if (cur?.want === 'all') return;
    const bits = cur?.want ?? new Bits(n);
    for (let k = first; k < end; k++) bits.set(k);
    if (!cur) queue.set(index, { want: bits, at: performance.now(), lost: afterIdle });
  }

  /**
   * Every lag window: which receivers lag (NACKed over a quarter of what was sent in the last second;
   * random loss of a few percent is far below). Their repairs then wait behind the first pass,
   * so one slow link or host does not hold the others back. Only a minority can lag: when most
   * receivers NACK that much, the rate is too high for the group, and #adapt slows it down.
   */
  #lagWin = new Map<number, number[]>(); // per receiver: nackedFrags at the start of each of the last LAG_WINDOWS windows
  #lagSent: number[] = []; // packetsSent at the start of each of them
  #lagCheck(): void {
    // over the last LAG_WINDOWS windows: a receiver NACKs a chunk's gaps as the pass moves past
    // it (every few windows on a slow link) and, once asked, again only when the repair has come,
    // so single windows swing between nothing and a whole chunk's gaps
    this.#lagSent.push(this.stats.packetsSent);
    if (this.#lagSent.length > LAG_WINDOWS + 1) this.#lagSent.shift();
    const sent = this.stats.packetsSent - (this.#lagSent[0] as number);
    const active = [...this.receivers.values()].filter((r) => r.state === 'receiving');
    const lags = new Set<ReceiverState>();
    for (const r of active) {
      let h = this.#lagWin.get(r.id);
      if (!h) { h = []; this.#lagWin.set(r.id, h); }
      h.push(r.nackedFrags);
      if (h.length > LAG_WINDOWS + 1) h.shift();
      const nacked = r.nackedFrags - (h[0] as number);
      if (sent < LAG_MIN_PACKETS) { if (r.lagging) lags.add(r); continue; }
      if (nacked > sent / 4 || (r.lagging && nacked >= sent / 20)) lags.add(r);
    }
    const minority = lags.size * 2 < active.length;
    for (const r of this.receivers.values()) {
      const lagging = minority && lags.has(r);
      if (lagging !== r.lagging) {
        r.lagging = lagging;
        this.o.logger?.debug?.({ receiver: r.id.toString(16), address: r.address }, lagging ? 'receiver lags: its repairs wait behind the first pass' : 'receiver keeps up again');
      }
    }
  }

  #unicastTo(r: ReceiverState, buf: Buffer): void {
    if (!this.#sock || this.#closed) return;
    this.#sock.send(buf, r.port, r.address);
  }

  #expireReceivers(now: number): void {
    for (const r of this.receivers.values()) {
      if ((r.state === 'receiving' || r.state === 'unicast') && now - r.lastSeen > this.o.receiverTimeoutMs) {
        r.state = 'lost';
        this.o.logger?.warn({ receiver: r.id.toString(16), address: r.address }, 'receiver went silent');
        this.emit('receiver-lost', r);
      }
    }
  }

  /**
   * Every ADAPT_MS: a receiver is overrun when its socket drops grew (by more than 12 datagrams),
   * its disk backlog is long, or it NACKed more than a third of what was sent in the window (a
   * link or host slower than the group's rate; random wire loss of a few percent does not count,
   * repairs handle it). If most of the group is overrun, slow down: to 95% of the share of
   * datagrams the worst of them received (its STATUS counts them; a receiver alone on a link at
   * 40% of the rate gets there at once), cutting by 15% at least and 50% at most, by 15% when no
   * count is known; then hold for ADAPT_HOLD_MS. Lagging receivers (whose repairs already wait
   * behind the pass) do not vote while others remain. If only some are overrun, they get strikes
   * and after STRIKES windows running are moved to unicast so they stop holding the others back.
   * Otherwise creep back up to the maximum, 3% a window (~12% a second), but only 1% a window
   * past the rate the overrun receivers took in at the last cut (their link, probed gently) for
   * CEILING_MS after it. A receiver that alone sets the rate is cut below a 90% share, not 80%.
   */
  #prev = new Map<number, { drops: number; nacked: number; rx?: { received: number; sentAt: number }; share?: number; shareAt?: number }>();
  #prevPackets = 0;
  #holdUntil = 0;
  #ceiling?: { mbit: number; until: number }; // what the receivers that forced the last cut took in
  #adapt(now: number): void {
    const sent = this.stats.packetsSent - this.#prevPackets;
    this.#prevPackets = this.stats.packetsSent;
    const active = [...this.receivers.values()].filter((r) => r.state === 'receiving');
    if (!active.length) return;
    const overrun = new Map<ReceiverState, number | undefined>(); // → share of the datagrams sent that it received, if known
    const voters = active.some((r) => !r.lagging) ? active.filter((r) => !r.lagging) : active;
    for (const r of active) {
      const p = this.#prev.get(r.id) ?? { drops: r.drops, nacked: r.nackedFrags, rx: r.rx };
      // the delivered share between its last two STATUS that span ≥ 100 datagrams (STATUS comes
      // every 500 ms: a window without a new one uses the last share, up to a second old)
      let share = p.shareAt !== undefined && now - p.shareAt <= 1000 ? p.share : undefined;
      let shareAt = p.shareAt;
      const fresh = r.rx && p.rx && r.rx.sentAt - p.rx.sentAt >= 100;
      if (fresh && r.rx && p.rx) { share = ((r.rx.received - p.rx.received + 2 ** 32) % 2 ** 32) / (r.rx.sentAt - p.rx.sentAt); shareAt = now; }
      this.#prev.set(r.id, { drops: r.drops, nacked: r.nackedFrags, rx: fresh || !p.rx ? r.rx : p.rx, ...(share !== undefined ? { share, shareAt } : {}) });
      // Losing more than wire loss explains: under 80% of what was sent arrived (from its counts),
      // or, without counts, it NACKed over a third of it. NACKs alone overstate a slow receiver's
      // loss (it NACKs what is still missing again and again) and drove the rate to its floor.
      // (a receiver that sends counts is judged by them alone: right after a cut there is no
      // share yet, and its NACKs for what is still missing would cut again)
      // A receiver that alone sets the rate (the only one, or the last one left, lagging) is cut
      // below 90%: its link is the limit, and between 80% and 90% the rate overshoots it by up to
      // a quarter, so that much of every repair round is lost and sent again.
      const cutShare = voters.length === 1 && voters[0] === r ? 0.9 : 0.8;
      const lossy = r.rx !== undefined ? share !== undefined && share < cutShare : sent > 200 && r.nackedFrags - p.nacked > sent / 3;
      if (r.drops - p.drops > 12 || r.backlog > 64 || lossy) overrun.set(r, share);
      this.o.logger?.debug?.({ receiver: r.id.toString(16), rateMbit: +this.#rateMbit.toFixed(1), sent, share, drops: r.drops - p.drops, nacked: r.nackedFrags - p.nacked, backlog: r.backlog, lagging: r.lagging }, 'rate window');
    }
    const over = voters.filter((r) => overrun.has(r));
    if (over.length * 2 > voters.length) {
      if (now < this.#holdUntil) return;
      const shares = over.map((r) => overrun.get(r)).filter((x): x is number => x !== undefined);
      const factor = shares.length ? Math.max(0.5, Math.min(0.85, 0.95 * Math.min(...shares))) : 0.85;
      // what the worst of them took in: the rate creeps back quickly up to it, slowly past it
      if (shares.length) this.#ceiling = { mbit: this.#rateMbit * Math.min(...shares), until: now + CEILING_MS };
      this.#setRate(Math.max(Math.min(this.o.minRateMbit, this.o.rateMbit), this.#rateMbit * factor));
      this.#holdUntil = now + ADAPT_HOLD_MS;
      // shares measured at the old rate say nothing about the new one: measure again from here
      for (const [id, p] of this.#prev) this.#prev.set(id, { drops: p.drops, nacked: p.nacked });
      return;
    }
    for (const r of active) {
      // a lagging receiver's repairs already wait behind the pass: it holds no one back, and over
      // HTTP it would fetch again, whole, every chunk it holds a part of (and load the sender)
      if (overrun.has(r) && !r.lagging) r.slowStrikes++; else r.slowStrikes = Math.max(0, r.slowStrikes - 1);
      if (r.slowStrikes >= STRIKES && active.length > 1) {
        r.state = 'unicast';
        this.o.logger?.warn({ receiver: r.id.toString(16), address: r.address }, 'receiver cannot keep up: moved to unicast');
        this.#unicastTo(r, encodeControl(this.session, { receiver: r.id, command: CONTROL.UNICAST }));
        this.emit('receiver-unicast', r);
      }
    }
    if (!overrun.size) {
      const r = this.#rateMbit;
      const c = this.#ceiling && now < this.#ceiling.until ? this.#ceiling.mbit : Infinity;
      this.#setRate(Math.min(this.o.rateMbit, r < c ? Math.min(c, r * 1.03) : r * 1.01));
    }
  }

  #setRate(mbit: number): void {
    if (Math.abs(mbit - this.#rateMbit) < 0.01) return;
    this.#rateMbit = mbit;
    this.#pacer.setRate(mbit * 125000);
  }

  async close(): Promise<void> {
    if (this.#closed && !this.#sock && !this.#group) return;
    this.#closed = true;
    const sock = this.#sock;
    const group = this.#group;
    this.#sock = undefined;
    this.#group = undefined;
    await Promise.all([group?.close(), sock && new Promise<void>((r) => sock.close(() => r()))]);
  }
}

/** What is being sent: a chunk's fragments (or parities) in order, and how far it got. */
interface Sending { index: number; frags: number[]; at: number; repair: boolean; lag: boolean; frame: Buffer; count: number; sent: Float64Array }

/**
 * Chunk → the fragments (or all of it) to repair, when it was first asked for, and whether a
 * NACK for it came after its receiver heard us idle (lost: no repairHoldMs for it).
 */
type RepairQueue = Map<number, { want: Bits | 'all'; at: number; lost: boolean }>;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

