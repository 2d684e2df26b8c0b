// Multicast receiver: joins the group, learns the session from ANNOUNCE, reassembles chunks,
// has each one decompressed and hash-checked against the signed manifest in a worker, and writes
// it through DiskWriter (the same write path as `image restore`) at every block that uses it.
// Missing fragments are NACKed after a randomized delay and come back as fragments or as PARITY
// datagrams that rebuild them (fec.ts); if no multicast data arrives, or the
// sender says so, the rest comes over HTTP (unicast fallback), verified the same way.
// Delta mode: before it takes any data, the receiver hashes its target's blocks (image/delta.ts),
// counts every chunk whose blocks all hold the right bytes as done, and tells the sender which
// chunks it still needs (WANT), so the sender's first pass can skip what no receiver needs.
import { createSocket, type Socket } from 'node:dgram';
import { ipOf, nativeIo, openGroupReceiver, type GroupReceiver, type IoMode } from './batch-io.ts';
import { randomInt, createHash } from 'node:crypto';
import { RackcastError, isRackcastError } from '../errors.ts';
import { DiskWriter } from '../image/disk-writer.ts';
import { blockHashes, decodeManifest, type Manifest } from '../image/manifest.ts';
import { sameBlocks, sameBytes } from '../image/delta.ts';
import { decodeSignatureFile, verifySignature, type SignatureFile } from '../image/signing.ts';
import { WorkerPool } from '../image/worker-pool.ts';
import { compressBound } from '../image/zstd.ts';
import { Assembly, BufferPool } from './assembly.ts';
import { Bits, chunkTable, type ChunkEntry } from './chunks.ts';
import { chunkUrl, fetchBytes } from './http-source.ts';
import { CONTROL, DELTA, MAX_NACK_ENTRIES, STATE, decodeAnnounce, decodeControl, encodeNack, encodeStatus, encodeWants, type Announce, type NackEntry } from './messages.ts';
import { udpRcvbufErrors } from './udp-stats.ts';
import { cpuSince, threadCpu, type ThreadCpu } from './thread-cpu.ts';
import { parityOf } from './fec.ts';
import { decodeHeader, decodeHeaderInto, HEADER_LENGTH, TYPE, type Header } from './wire.ts';
import { SENDER_DEFAULTS } from './sender.ts';

export const RECEIVER_DEFAULTS = {
  group: SENDER_DEFAULTS.group,
  port: SENDER_DEFAULTS.port,
  fallbackMs: 5000, // no multicast data this long → unicast
  nackIntervalMs: 30,
  // A chunk NACKed before is NACKed again once the sender has served that NACK (a repair for it
  // came and ended: the next datagram was another chunk's) and renackMs have passed; if no
  // repair comes (the NACK was lost, or the sender still has a long queue: a slow link), after
  // renackMaxMs, and only when no datagrams wait in the receive ring. Asking again while the
  // repair is still on its way made the sender send it twice (a receiver on a 4 MiB/s link got
  // ~9,800 duplicates in a 45 MB session).
  renackMs: 120,
  renackMaxMs: 2000,
  // on hearing the sender idle (everything sent, every NACK it had served): NACK again what is
  // still missing unless it was NACKed this recently (the ANNOUNCE may have crossed our NACK)
  idleRenackMs: 10,
  statusMs: 500,
  dropWatchMs: 100, // socket drops grew since the last STATUS: tell the sender now, not in up to 500 ms
  maxPartial: 128, // chunks being reassembled at once
  maxPartialBytes: 256 << 20, // frame bytes those may reserve
  maxBacklog: 32, // chunks waiting for verification/disk
  rejoinMs: 60000,
  httpConcurrency: 4,
  wantMs: 250, // a delta receiver repeats its WANT this often until the sender acknowledges it
  io: 'auto' as IoMode, // group datagrams: batched through the rcudp addon where it is built (batch-io.ts)
  ringSlots: 4096, // native: datagrams the receive ring holds while the JS thread is busy
};

export interface ReceiverOptions extends Partial<typeof RECEIVER_DEFAULTS> {
  interfaceAddress: string;
  target: string;
  /** manifest + signature given up front; otherwise fetched from the announced URL */
  manifest?: { bytes: Buffer; sig: Buffer };
  /** image URL for unicast-only operation when no ANNOUNCE is heard (http://host:port/images/NAME) */
  imageUrl?: string;
  /** require this signer key id */
  trustKeyId?: string;
  discard?: boolean;
  /**
   * delta: compare the target with the image first (when it already exists with content) and
   * write only the blocks that differ; the sender is told which chunks are still needed
   */
  delta?: boolean;
  /** passed to DiskWriter.open: grow the last partition's filesystem onto a larger target */
  grow?: boolean;
  workers?: number;
  /** have/total: chunks; written/totalBytes: bytes of the disk written so far / to be written (data blocks) */
  onProgress?: (p: { have: number; total: number; written: number; totalBytes: number; mode: 'multicast' | 'unicast' }) => void;
  logger?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

export interface ReceiveReport {
  image: string; digest: string; session: number; seconds: number; chunks: number; bytesWritten: number;
  viaMulticast: number; viaUnicast: number; rejected: number; duplicates: number; malformed: number; foreign: number; nacksSent: number;
  /**
   * chunks received whole while maxBacklog chunks were already being verified and written: kept
   * until there was room (waited), or, past maxPartialBytes, dropped and NACKed again (discarded)
   */
  waited: number; discarded: number;
  mode: 'multicast' | 'unicast' | 'mixed';
  /** seconds since start: first DATA of the session, every chunk written, target synced */
  times: { firstData: number; allData: number; synced: number; acked?: number };
  /** delta: bytes of the disk already right on the target (not written), and how long the comparison took */
  skippedBytes?: number; compareSeconds?: number;
  /** what the `grow` option did on a larger target, or why not (DiskWriter.growLast) */
  grow?: Awaited<ReturnType<DiskWriter['growLast']>>;
  /** how group datagrams were received (batch-io.ts), and the native ring's counters */
  io: 'native' | 'dgram'; ring?: Record<string, number>;
  /** CPU seconds per thread name from the first datagram of the session to all data written (Linux) */
  threadCpu: ThreadCpu;
}

interface Loaded { manifest: Manifest; sig: SignatureFile; digest: string; url: string | undefined }

export class MulticastReceiver {
  readonly id = randomInt(1, 0xffffffff);
  readonly o: typeof RECEIVER_DEFAULTS & ReceiverOptions;
  readonly stats = { viaMulticast: 0, viaUnicast: 0, rejected: 0, duplicates: 0, malformed: 0, foreign: 0, nacksSent: 0, dataPackets: 0, wantsSent: 0, ignoredComparing: 0, parityUsed: 0, parityUnused: 0, rebuilt: 0, discarded: 0, waited: 0 };
  #data?: GroupReceiver;
  #ctl?: Socket;
  #session?: number;
  #sender?: { address: string; port: number };
  #img?: Loaded;
  #table: ChunkEntry[] = [];
  #have?: Bits;
  #busy = new Set<number>(); // chunks being verified/written
  /** complete frames waiting for a place among the busy (verification and the disk are behind) */
  #waiting = new Map<number, { frame: ArrayBuffer | SharedArrayBuffer; frameLength: number; bytes: number }>();
  #partial = new Map<number, Assembly>();
  #partialBytes = 0;
  #frames?: BufferPool; // reassembly buffers (room for any chunk's fragments)
  #blocks?: BufferPool; // decompressed chunks on their way to the disk
  readonly #h: Header = { type: TYPE.DATA, session: 0, index: 0, fragIndex: 0, fragCount: 0, payloadLength: 0, fragSize: 0 };
  #lastNack = new Float64Array(0);
  /** per chunk, since its last NACK: 0 nothing came for it, 1 a repair is arriving, 2 a repair came and ended */
  #served = new Uint8Array(0);
  #lastChunk = 0; // the chunk of the last DATA or PARITY datagram
  #frontier = 0;
  #lastData = 0;
  #written = 0;
  #dataBytes = 0;
  #writer?: DiskWriter;
  #loading?: Promise<void>;
  #pool?: WorkerPool;
  #mode: 'multicast' | 'unicast' = 'multicast';
  #failure?: unknown;
  #wake?: () => void;
  #done = false;
  #doneAck = false;
  #ended = false; // END of our session heard
  #pendingAnnounce?: Promise<void>;
  #firstData = 0;
  #cpuAtFirstData: ThreadCpu = {};
  #dropsSent = 0; // socket drops in the last STATUS
  #times: ReceiveReport['times'] = { firstData: 0, allData: 0, synced: 0 };
  // delta mode
  #comparing?: Promise<void>;
  #deltaState: 0 | 1 | 2 = 0; // DELTA: none, comparing, compared
  #same?: Set<number>; // blocks already right on the target
  #skipped = 0;
  #compareSeconds = 0;
  #wants?: Buffer[];
  #wantAcked = false;

  constructor(opts: ReceiverOptions) {
    this.o = { ...RECEIVER_DEFAULTS, ...opts };
  }

  async run(): Promise<ReceiveReport> {
    const t0 = performance.now();
    const timers: NodeJS.Timeout[] = [];
    try {
      await this.#open();
      const start = Date.now();
      timers.push(setInterval(() => this.#nack(), this.o.nackIntervalMs + randomInt(0, 10)));
      timers.push(setInterval(() => this.#status(), this.o.statusMs));
      timers.push(setInterval(() => { const d = udpRcvbufErrors(); if (d > this.#dropsSent) this.#status(d); }, this.o.dropWatchMs));
      timers.push(setInterval(() => this.#rejoin(), this.o.rejoinMs));
      if (this.o.delta) timers.push(setInterval(() => this.#declare(), this.o.wantMs));
      // wait: complete, failed, or time to fall back to unicast
      while (!this.#failure && !this.#complete()) {
        await this.#nap(100);
        const quiet = Date.now() - (this.#lastData || start);
        // comparing takes as long as reading the disk: not hearing data meanwhile is expected
        if (this.#mode === 'multicast' && this.#deltaState !== DELTA.COMPARING && quiet > this.o.fallbackMs) {
          this.o.logger?.warn({ quietMs: quiet }, 'no multicast data: continuing over HTTP');
          await this.#unicast();
        }
      }
      if (this.#failure) throw this.#failure;
      while (this.#busy.size || this.#waiting.size) await this.#nap(20);
      if (this.#failure) throw this.#failure;
      const tData = performance.now();
      const dataCpu = this.#firstData ? cpuSince(this.#cpuAtFirstData) : {};
      const w = this.#writer as DiskWriter;
      const same = this.#same;
      await w.finishHoles(undefined, same ? (i) => same.has(i) : undefined);
      if (w.discardFallback) this.o.logger?.warn({}, w.discardFallback);
      const fitted = await w.fitTable();
      if (fitted) this.o.logger?.info({ moved: fitted.moved }, `partition table: ${fitted.reason}`);
      const grown = await w.growLast();
      if (grown) this.o.logger?.info({ grow: grown }, 'grow: last partition');
      await w.close();
      this.#times = { firstData: ((this.#firstData || tData) - t0) / 1000, allData: (tData - t0) / 1000, synced: (performance.now() - t0) / 1000 };
      this.#done = true;
      // until the sender acknowledges, or ends the session (its done-ack may have been lost, and
      // a sender that has ended acknowledges nothing more: without this, 1% loss on 8 receivers
      // kept one of them waiting out the 3 s in about one session in twelve)
      for (let k = 0; k < 15 && !this.#doneAck && !this.#ended; k++) {
        this.#status();
        if (!this.#sender) break;
        await this.#nap(200); // the DONE_ACK (or END) wakes it
      }
      this.#times.acked = (performance.now() - t0) / 1000;
      const img = this.#img as Loaded;
      const { viaMulticast: m, viaUnicast: u } = this.stats;
      const io = this.#data?.kind ?? 'dgram';
      const ring = io === 'native' ? this.#data?.stats() : undefined;
      return {
        image: img.manifest.name, digest: img.digest, session: this.#session ?? 0, seconds: (performance.now() - t0) / 1000, chunks: this.#table.length,
        bytesWritten: this.#written, times: this.#times, ...this.stats, mode: u === 0 ? 'multicast' : m === 0 ? 'unicast' : 'mixed',
        ...(this.o.delta ? { skippedBytes: this.#skipped, compareSeconds: this.#compareSeconds } : {}), ...(grown ? { grow: grown } : {}),
        io, ...(ring ? { ring } : {}), threadCpu: dataCpu,
      };
    } catch (e) {
      if (this.#sender && this.#ctl) this.#sendCtl(encodeStatus(this.#session ?? 0, { receiver: this.id, state: STATE.FAILED, have: this.#have?.count ?? 0, total: this.#table.length, backlog: 0, drops: 0, written: this.#written }));
      throw e;
    } finally {
      for (const t of timers) clearInterval(t);
      await this.close();
    }
  }

  /**
   * Wait up to ms, or until something wakes the run loop (a chunk written, a failure, the
   * sender's acknowledgement). The timer is cleared on wake-up: a pending one would hold the
   * process open after the run for up to its whole length.
   */
  #nap(ms: number): Promise<void> {
    return new Promise<void>((r) => {
      const t = setTimeout(() => { this.#wake = undefined; r(); }, ms);
      this.#wake = () => { clearTimeout(t); this.#wake = undefined; r(); };
    });
  }

  #complete(): boolean {
    return this.#have !== undefined && this.#have.full();
  }

  async #open(): Promise<void> {
    this.#pool = new WorkerPool({ root: '/nonexistent', level: 3 }, this.o.workers ? { workers: this.o.workers } : {});
    this.#data = await openGroupReceiver({ group: this.o.group, port: this.o.port, iface: this.o.interfaceAddress, rcvbuf: 32 << 20, io: this.o.io, slots: this.o.ringSlots },
      (buf, off, len, from) => this.#onData(buf, off, len, from), () => { this.stats.malformed++; });
    const why = this.#data.kind === 'dgram' && this.o.io === 'auto' ? nativeIo().error : undefined;
    this.o.logger?.info({ io: this.#data.kind, rcvbuf: this.#data.rcvbuf, ...(why ? { why } : {}) }, 'joined the multicast group');
    const ctl = createSocket({ type: 'udp4' });
    this.#ctl = ctl;
    ctl.on('message', (msg) => this.#onControl(msg));
    await new Promise<void>((res, rej) => { ctl.once('error', rej); ctl.bind(0, this.o.interfaceAddress, () => { ctl.off('error', rej); res(); }); });
    if (this.o.manifest && this.o.imageUrl === undefined) {
      // manifest given and no URL: verify it and open the target now, so that joining the
      // matching session (its ANNOUNCE gives the URL for unicast) is only a STATUS
      await this.#load(this.o.manifest, undefined, undefined);
    } else if (this.o.imageUrl) {
      await this.#loadRetrying(this.o.imageUrl);
    }
  }

  /** The appliance may still be starting, or briefly unreachable: keep trying for ~30 s. */
  async #loadRetrying(url: string): Promise<void> {
    for (let attempt = 1; !this.#img; attempt++) {
      try {
        await this.#load(this.o.manifest, url, undefined);
      } catch (e) {
        if (!isRackcastError(e, 'RC_ERR_IO') || attempt >= 30) throw e;
        this.o.logger?.warn({ url, attempt, error: (e as Error).message }, 'image manifest not reachable yet; retrying');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /**
   * Verify and adopt a manifest; open the target. One load at a time: the HTTP load at start and
   * an ANNOUNCE arriving meanwhile must not both open the target (O_EXCL: the second would fail
   * with "in use"); the later caller waits and then finds the image adopted.
   */
  async #load(given: { bytes: Buffer; sig: Buffer } | undefined, url: string | undefined, digest: Buffer | undefined): Promise<void> {
    while (this.#loading) await this.#loading.catch(() => undefined);
    if (this.#img) return;
    const p = this.#loadNow(given, url, digest);
    this.#loading = p;
    try { await p; } finally { if (this.#loading === p) this.#loading = undefined; }
  }

  async #loadNow(given: { bytes: Buffer; sig: Buffer } | undefined, url: string | undefined, digest: Buffer | undefined): Promise<void> {
    let bytes: Buffer, sigBytes: Buffer;
    if (given) ({ bytes, sig: sigBytes } = given);
    else {
      if (!url) throw new RackcastError('RC_ERR_USAGE', 'no manifest and no image URL');
      bytes = await fetchBytes(`${url}/manifest.json`, 512 << 20);
      sigBytes = await fetchBytes(`${url}/manifest.sig`, 64 << 10);
    }
    const what = { url: url ?? 'manifest file' };
    const sig = decodeSignatureFile(sigBytes, what);
    verifySignature(bytes, sig, what);
    if (this.o.trustKeyId && sig.keyId !== this.o.trustKeyId) {
      throw new RackcastError('RC_ERR_SIGNATURE_UNTRUSTED', `image signed by ${sig.keyId}, expected ${this.o.trustKeyId}`, { ...what, keyId: sig.keyId });
    }
    if (digest && sig.digest !== `sha256:${digest.toString('hex')}`) {
      throw new RackcastError('RC_ERR_MANIFEST_DIGEST', 'announced image digest differs from the manifest fetched', what);
    }
    const manifest = decodeManifest(bytes);
    if (this.#img) return;
    this.#writer = await DiskWriter.open(this.o.target, manifest, { discard: this.o.discard ?? false, ...(this.o.grow ? { grow: true } : {}) });
    this.#table = chunkTable(manifest);
    this.#dataBytes = this.#table.reduce((a, c) => a + c.length * c.blocks.length, 0);
    this.#have = new Bits(this.#table.length);
    this.#lastNack = new Float64Array(this.#table.length);
    this.#served = new Uint8Array(this.#table.length);
    this.#frames = new BufferPool(compressBound(manifest.blockSize) + 0xffff);
    this.#blocks = new BufferPool(manifest.blockSize);
    this.#img = { manifest, sig, digest: sig.digest, url };
    this.o.logger?.info({ image: manifest.name, digest: sig.digest, signer: sig.keyId, chunks: this.#table.length }, 'image manifest verified');
    // a fresh (missing or empty) file target has nothing to compare
    if (this.o.delta && !this.#writer.fresh) this.#comparing = this.#compare();
  }

  /**
   * Delta: hash the target's blocks (workers), count every chunk whose blocks all hold the right
   * bytes as done without writing it, then declare what is still needed. DATA that arrives
   * meanwhile is ignored (and NACKed afterwards if the sender sent it anyway).
   */
  async #compare(): Promise<void> {
    const t0 = performance.now();
    const m = (this.#img as Loaded).manifest;
    this.#deltaState = DELTA.COMPARING;
    try {
      const same = await sameBlocks(this.o.target, m, blockHashes(m), this.#pool as WorkerPool);
      this.#same = same;
      this.#skipped = sameBytes(m, same);
      for (const c of this.#table) if (c.blocks.every((b) => same.has(b))) (this.#have as Bits).set(c.index);
    } catch (e) {
      this.#failure ??= e;
    }
    this.#compareSeconds = (performance.now() - t0) / 1000;
    this.#deltaState = DELTA.COMPARED;
    this.#lastData = Date.now();
    const have = (this.#have as Bits).count;
    this.o.logger?.info({ chunksNeeded: this.#table.length - have, chunks: this.#table.length, skippedBytes: this.#skipped, seconds: +this.#compareSeconds.toFixed(1) }, 'target compared with the image');
    this.o.onProgress?.({ have, total: this.#table.length, written: this.#written, totalBytes: this.#dataBytes, mode: this.#mode });
    this.#status();
    this.#declare();
    this.#wake?.();
  }

  /** Send the WANT (all its parts) until the sender acknowledges it. */
  #declare(): void {
    if (this.#deltaState !== DELTA.COMPARED || this.#wantAcked || this.#done || this.#session === undefined || !this.#sender || this.#mode !== 'multicast') return;
    const have = this.#have as Bits;
    this.#wants ??= encodeWants(this.#session, this.id, this.#table.length, this.#skipped, (i) => !have.has(i));
    for (const b of this.#wants) { this.#sendCtl(b); this.stats.wantsSent++; }
  }

  /** A group datagram: msg[off, off + len), valid only until this returns (a reused ring slot). */
  #onData(msg: Buffer, off: number, len: number, from: string | number): void {
    const h = this.#h; // reused: nothing is allocated per datagram on the way to its assembly
    try { decodeHeaderInto(msg, off, h, off + len); } catch (e) { if (!isRackcastError(e)) throw e; this.stats.malformed++; return; }
    const body = off + HEADER_LENGTH;
    if (h.type === TYPE.PARITY) { this.#onParity(h, msg, body); return; }
    // group messages are rare: copied, so nothing decoded from them points into a reused slot
    if (h.type !== TYPE.DATA) { this.#onGroupMessage(h.type, h.session, Buffer.from(msg.subarray(body, body + h.payloadLength)), ipOf(from)); return; }
    if (!this.#wanted(h)) return;
    let a = this.#partial.get(h.index);
    if (!a) {
      if (!this.#fits(h)) { this.stats.malformed++; return; }
      a = this.#startAssembly(h.index, h.fragCount, h.fragSize);
      if (!a) return; // no room: it will be NACKed later
    }
    let added = a.add(h.fragIndex, h.fragCount, h.fragSize, msg, body, h.payloadLength);
    if (added === 'mismatch' && a.mismatches > 2 * a.have + 2 && this.#fits(h)) {
      // The assembly was started by a fragment that disagrees with what keeps arriving (forged
      // or from a stale session), and more disagree than agree: start over. A genuine assembly
      // has many agreeing fragments, so scattered forgeries cannot throw it away.
      this.#dropAssembly(a);
      a.discard();
      a = this.#startAssembly(h.index, h.fragCount, h.fragSize);
      if (!a) return;
      added = a.add(h.fragIndex, h.fragCount, h.fragSize, msg, body, h.payloadLength);
    }
    if (added !== 'ok') { if (added === 'dup') this.stats.duplicates++; else this.stats.malformed++; return; }
    // Chunks before one that is visibly being sent have been sent in full: their gaps are losses
    // to NACK. "Visibly" = 8 agreeing fragments, or a verified chunk (see #accept): random
    // forgeries practically never agree that often, so they cannot trigger premature NACKs.
    if (a.have >= 8 && h.index > this.#frontier) this.#frontier = h.index;
    if (a.complete()) this.#assembled(a);
  }

  /** A complete frame goes to verification and the disk (or is dropped and NACKed later if the disk is behind). */
  #assembled(a: Assembly): void {
    this.#dropAssembly(a);
    this.stats.rebuilt += a.rebuilt;
    if (this.#busy.size >= this.o.maxBacklog) {
      // Verification and the disk are behind. The frame is here: keep it until there is room
      // (within the memory partial chunks may use), rather than drop it and have it sent to the
      // whole group again (3-receiver lab at 300 Mbit/s on two cores: up to 11 chunks dropped
      // per receiver, 23–43% of the image sent again).
      const bytes = a.reserved;
      if (this.#partialBytes + bytes > this.o.maxPartialBytes) { a.discard(); this.stats.discarded++; return; } // NACKed later
      this.#waiting.set(a.index, { frame: a.assemble(), frameLength: a.frameLength, bytes });
      this.#partialBytes += bytes;
      this.stats.waited++;
      return;
    }
    void this.#accept(a.index, a.assemble(), a.frameLength, 'multicast');
  }

  /**
   * A PARITY for a chunk being reassembled. One for a chunk not started is of no use (the chunk
   * is NACKed whole); a forged one rebuilds garbage that the chunk's hash check rejects.
   */
  #onParity(h: Header, msg: Buffer, body: number): void {
    if (!this.#wanted(h)) return;
    const a = this.#partial.get(h.index);
    if (!a) { this.stats.parityUnused++; return; }
    const [block, j] = parityOf(h.fragIndex);
    const r = a.addParity(block, j, h.fragCount, h.fragSize, msg, body, h.payloadLength);
    if (r === 'mismatch') { this.stats.malformed++; return; }
    if (r !== 'ok') { this.stats.parityUnused++; return; }
    this.stats.parityUsed++;
    if (a.complete()) this.#assembled(a);
  }

  /**
   * A DATA or PARITY datagram of our session, for a chunk still to be assembled here (counted
   * otherwise: foreign, ignored while comparing, malformed index, duplicate).
   */
  #wanted(h: Header): boolean {
    if (this.#session === undefined || h.session !== this.#session || !this.#have) { this.stats.foreign++; return false; }
    if (this.#deltaState === DELTA.COMPARING) { this.stats.ignoredComparing++; return false; }
    this.stats.dataPackets++;
    this.#lastData = Date.now();
    if (!this.#firstData) { this.#firstData = performance.now(); this.#cpuAtFirstData = threadCpu(); }
    if (h.index >= this.#table.length) { this.stats.malformed++; return false; }
    // the sender sends a repair's datagrams together: one for another chunk ends the last one's
    const i = h.index;
    if (i !== this.#lastChunk) {
      if (this.#served[this.#lastChunk] === 1) this.#served[this.#lastChunk] = 2;
      this.#lastChunk = i;
    }
    if (this.#served[i] === 0 && this.#lastNack[i]) this.#served[i] = 1;
    if (this.#mode !== 'multicast' || this.#have.has(h.index) || this.#busy.has(h.index) || this.#waiting.has(h.index)) { this.stats.duplicates++; return false; }
    return true;
  }

  /** Whether a DATA header's fragments fit its chunk's largest possible frame (asked only when an assembly (re)starts). */
  #fits(h: Header): boolean {
    return h.fragCount * h.fragSize <= compressBound((this.#table[h.index] as ChunkEntry).length) + h.fragSize;
  }

  /**
   * A new assembly, if there is room: at most maxPartial at once, reserving at most
   * maxPartialBytes for their frames (so forged first fragments cannot make us hold much memory).
   */
  #startAssembly(index: number, count: number, fragSize: number): Assembly | undefined {
    if (this.#partial.size >= this.o.maxPartial || this.#partialBytes + count * fragSize > this.o.maxPartialBytes) return undefined;
    const a = new Assembly(index, count, fragSize, this.#frames);
    this.#partial.set(index, a);
    this.#partialBytes += a.reserved;
    return a;
  }

  #dropAssembly(a: Assembly): void {
    this.#partial.delete(a.index);
    this.#partialBytes -= a.reserved;
  }

  /** ANNOUNCE and END on the group; anything else there is malformed. */
  #onGroupMessage(type: number, session: number, payload: Buffer, from: string): void {
    try {
      if (type === TYPE.ANNOUNCE) this.#onAnnounce(session, decodeAnnounce(payload), from);
      else if (type === TYPE.END) {
        if (session === this.#session) { this.#ended = true; this.#wake?.(); }
        if (session === this.#session && !this.#complete() && this.#mode === 'multicast') void this.#unicast();
      } else this.stats.malformed++;
    } catch (e) {
      if (!isRackcastError(e)) throw e;
      this.stats.malformed++;
    }
  }

  #onAnnounce(session: number, a: Announce, from: string): void {
    if (this.#session !== undefined && session !== this.#session) { this.stats.foreign++; return; }
    if (this.#session === undefined) {
      if (this.#pendingAnnounce) return;
      const given = this.o.manifest;
      if (given && `sha256:${a.digest.toString('hex')}` !== `sha256:${createHash('sha256').update(given.bytes).digest('hex')}`) { this.stats.foreign++; return; }
      this.#pendingAnnounce = this.#load(given, a.url, a.digest).then(() => {
        // loaded over HTTP meanwhile, and this session sends another image: not ours
        if (this.#img && this.#img.digest !== `sha256:${a.digest.toString('hex')}`) { this.stats.foreign++; this.#pendingAnnounce = undefined; return; }
        if (this.#img) this.#img.url ??= a.url; // a manifest given up front: unicast goes to the announced URL
        this.#session = session;
        this.#sender = { address: from, port: this.o.port };
        this.#lastData = Date.now();
        this.#status();
        this.#declare();
      }, (e: unknown) => { this.#failure = e; this.#wake?.(); });
      return;
    }
    this.#frontier = Math.max(this.#frontier, a.next);
    if (a.state === 2) {
      this.#frontier = this.#table.length;
      // everything has been sent: NACK the last chunks' gaps now, not at the next NACK tick (up
      // to 40 ms later), so that every receiver's NACK reaches the sender within its coalescing
      // window and one set of parities serves them all. Every idle ANNOUNCE does (the sender
      // sends one each time it has served the NACKs it had): a tail repair lost on the way is
      // asked for again at once, not renackMs later, and the sender re-sends it without its hold.
      this.#nack(this.o.idleRenackMs, true);
    }
    if (a.state === 0) this.#lastData = Date.now(); // waiting for receivers is not silence
  }

  #onControl(msg: Buffer): void {
    try {
      const { value: h } = decodeHeader(msg);
      if (h.type !== TYPE.CONTROL || h.session !== (this.#session ?? 0)) { this.stats.foreign++; return; }
      const c = decodeControl(msg.subarray(HEADER_LENGTH, HEADER_LENGTH + h.payloadLength));
      if (c.receiver !== this.id) return;
      if (c.command === CONTROL.DONE_ACK) { this.#doneAck = true; this.#wake?.(); }
      if (c.command === CONTROL.WANT_ACK) this.#wantAcked = true;
      if (c.command === CONTROL.UNICAST && this.#mode === 'multicast' && !this.#complete()) void this.#unicast();
    } catch (e) {
      if (!isRackcastError(e)) throw e;
      this.stats.malformed++;
    }
  }

  /** Verify (worker: decompress + SHA-256 against the manifest) and write a chunk everywhere it goes. */
  async #accept(index: number, frame: ArrayBuffer | SharedArrayBuffer, frameLength: number, via: 'multicast' | 'unicast'): Promise<boolean> {
    const e = this.#table[index] as ChunkEntry;
    this.#busy.add(index);
    const blocks = this.#blocks as BufferPool;
    const buf = blocks.take();
    try {
      // shared buffers go to the worker by reference; an HTTP frame is transferred
      const r = await (this.#pool as WorkerPool).run({ op: 'unpack', hash: e.hash, length: e.length, frame, frameLength, buf, image: (this.#img as Loaded).manifest.name }, frame instanceof ArrayBuffer ? [frame] : []);
      const data = new Uint8Array(buf, 0, e.length);
      let n = 0;
      for (const b of e.blocks) {
        if (this.#same?.has(b)) continue; // delta: already right there
        await (this.#writer as DiskWriter).writeBlock(b, data, r.hash as string);
        n++;
      }
      (this.#have as Bits).set(index);
      if (via === 'multicast' && index > this.#frontier) this.#frontier = index;
      this.#written += e.length * n;
      if (via === 'multicast') this.stats.viaMulticast++; else this.stats.viaUnicast++;
      this.o.onProgress?.({ have: (this.#have as Bits).count, total: this.#table.length, written: this.#written, totalBytes: this.#dataBytes, mode: this.#mode });
      return true;
    } catch (err) {
      if (isRackcastError(err, 'RC_ERR_CHUNK_CORRUPT')) { this.stats.rejected++; return false; } // forged or damaged: fetch again
      this.#failure ??= err;
      return false;
    } finally {
      if (frame instanceof SharedArrayBuffer) (this.#frames as BufferPool).give(frame);
      blocks.give(buf);
      this.#busy.delete(index);
      this.#nextWaiting();
      this.#wake?.();
    }
  }

  /** Start verifying waiting frames while there is room among the busy. */
  #nextWaiting(): void {
    for (const [index, w] of this.#waiting) {
      if (this.#busy.size >= this.o.maxBacklog) return;
      this.#waiting.delete(index);
      this.#partialBytes -= w.bytes;
      void this.#accept(index, w.frame, w.frameLength, 'multicast');
    }
  }

  /** Whether chunk i, still missing something, may be NACKed now (RECEIVER_DEFAULTS.renackMs). */
  #mayNack(i: number, now: number, hold: number, afterIdle: boolean, behind: boolean): boolean {
    const last = this.#lastNack[i] as number;
    if (last === 0) return true; // never asked for
    const since = now - last;
    if (since < hold) return false;
    if (afterIdle) return true; // an idle sender has served every NACK it got: what is missing was lost
    const served = this.#served[i];
    if (served === 2) return true; // its repair came and ended
    // a repair arriving (1) ends with another chunk's datagram or the idle ANNOUNCE; with nothing
    // come for it (0), ask again after renackMaxMs, but not while datagrams wait in our ring
    return served === 0 && since >= this.o.renackMaxMs && !behind;
  }

  #nack(hold = this.o.renackMs, afterIdle = false): void {
    if (this.#mode !== 'multicast' || !this.#have || !this.#sender || this.#session === undefined || this.#deltaState === DELTA.COMPARING) return;
    const now = performance.now();
    const entries: NackEntry[] = [];
    const limit = MAX_NACK_ENTRIES * 8;
    const behind = !afterIdle && (this.#data?.pending() ?? 0) > 0;
    for (let i = 0; i < Math.min(this.#frontier, this.#table.length) && entries.length < limit; i++) {
      if (this.#have.has(i) || this.#busy.has(i) || this.#waiting.has(i) || !this.#mayNack(i, now, hold, afterIdle, behind)) continue;
      this.#served[i] = 0;
      const a = this.#partial.get(i);
      if (a) for (const [first, count] of a.gaps(4 * MAX_NACK_ENTRIES)) entries.push({ index: i, first, count });
      else entries.push({ index: i, first: 0, count: 0 });
      this.#lastNack[i] = now;
    }
    for (let k = 0; k < entries.length; k += MAX_NACK_ENTRIES) {
      this.#sendCtl(encodeNack(this.#session, { receiver: this.id, entries: entries.slice(k, k + MAX_NACK_ENTRIES), afterIdle }));
      this.stats.nacksSent++;
    }
  }

  /** drops: the namespace's socket drops, when the caller has just read them */
  #status(drops = udpRcvbufErrors()): void {
    if (!this.#sender && (this.#mode === 'unicast' || this.#done)) {
      // Never heard the session (multicast blocked, or a delta target that needed nothing): report
      // to the sender's unicast port anyway, with session 0, so the session knows this machine.
      const url = this.#img?.url ?? this.o.imageUrl;
      if (url) this.#sender = { address: new URL(url).hostname, port: this.o.port };
    }
    if (!this.#sender) return;
    const state = this.#done ? STATE.DONE : this.#mode === 'unicast' ? STATE.UNICAST : STATE.RECEIVING;
    this.#dropsSent = drops;
    this.#sendCtl(encodeStatus(this.#session ?? 0, { receiver: this.id, state, have: this.#have?.count ?? 0, total: this.#table.length, backlog: this.#busy.size + this.#waiting.size, drops: this.#dropsSent, written: this.#written, parity: true, received: this.#received(), ...(this.#deltaState ? { delta: this.#deltaState } : {}) }));
  }

  /**
   * Datagrams that reached this host, for the sender's rate control (it compares their growth
   * with what it sent). Natively that is what the receive thread took off the socket, whether or
   * not JS has handled it yet: datagrams waiting in the ring were delivered, and counting them
   * only once handled would make a JS thread briefly behind look like a lossy link.
   */
  #received(): number {
    const d = this.#data;
    return d?.kind === 'native' ? (d.stats().datagrams ?? 0) : this.stats.dataPackets;
  }

  #sendCtl(buf: Buffer): void {
    if (this.#ctl && this.#sender) this.#ctl.send(buf, this.#sender.port, this.#sender.address);
  }

  #rejoin(): void {
    // Re-announce membership (a switch without an IGMP querier may age it out).
    try { this.#data?.membership(false); this.#data?.membership(true); } catch { /* closing */ }
  }

  /** Fetch every chunk still missing over HTTP, a few at a time, verified like multicast ones. */
  async #unicast(): Promise<void> {
    if (this.#mode === 'unicast') return;
    this.#mode = 'unicast';
    try { this.#data?.membership(false); } catch { /* already left */ }
    this.#status();
    const url = this.#img?.url ?? this.o.imageUrl;
    if (!this.#img) {
      if (!url) { this.#failure = new RackcastError('RC_ERR_IO', `no multicast session heard on ${this.o.group}:${this.o.port} within ${this.o.fallbackMs} ms, and no image URL for unicast`, { group: this.o.group }); return; }
      try { await this.#loadRetrying(url); } catch (e) { this.#failure = e; return; }
    }
    if (!url) { this.#failure = new RackcastError('RC_ERR_IO', 'multicast failed and no image URL is known for unicast'); return; }
    await this.#comparing; // what is still missing is known once the target has been compared
    const todo = this.#table.filter((e) => !(this.#have as Bits).has(e.index));
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < todo.length && !this.#failure) {
        const e = todo[next++] as ChunkEntry;
        for (let attempt = 1; !(this.#have as Bits).has(e.index); attempt++) {
          while (this.#busy.has(e.index) || this.#waiting.has(e.index)) await new Promise((r) => setTimeout(r, 10));
          if ((this.#have as Bits).has(e.index)) break;
          try {
            const f = await fetchBytes(chunkUrl(url, e.hash), compressBound(e.length));
            const ab = f.buffer.slice(f.byteOffset, f.byteOffset + f.length) as ArrayBuffer;
            if (await this.#accept(e.index, ab, f.length, 'unicast')) break;
          } catch (err) {
            if (attempt >= 4) { this.#failure ??= err; return; }
          }
          if (attempt >= 4) { this.#failure ??= new RackcastError('RC_ERR_CHUNK_CORRUPT', `chunk ${e.hash} failed verification ${attempt} times over HTTP`, { chunk: e.hash }); return; }
          await new Promise((r) => setTimeout(r, 250 * attempt));
        }
      }
    };
    await Promise.all(Array.from({ length: this.o.httpConcurrency }, worker));
    this.#wake?.();
  }

  async close(): Promise<void> {
    const data = this.#data;
    const ctl = this.#ctl;
    this.#data = undefined;
    this.#ctl = undefined;
    await Promise.all([data?.close(), ctl && new Promise<void>((r) => ctl.close(() => r()))]);
    await this.#pool?.close();
    this.#pool = undefined;
    if (this.#writer && !this.#done) await this.#writer.close().catch(() => undefined);
  }
}
