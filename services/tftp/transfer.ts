// One read transfer, on its own socket (RFC 1350 §4: the server's ephemeral port is its TID).
//
//   OACK sent ──ACK 0──▶ DATA window ──ACK n (n < last sent)──▶ window restarts at n+1 (RFC 7440 §4)
//       │                    │      ──ACK of the last block──▶ completed
//       └─ ERROR (any) ─▶ aborted quietly: EDK2 asks for tsize, sends ERROR 8, then asks again
//
// Retransmission is driven by the timer only. A duplicate ACK never triggers a resend: answering
// it is the Sorcerer's Apprentice bug (RFC 1123 §4.2.3.1), where every delayed ACK doubles the
// DATA that follows. The timeout adapts to the measured round trip (RFC 6298 smoothing, Karn's
// rule: no samples from retransmitted blocks), bounded by minTimeoutMs and the client's `timeout`
// option (RFC 2349) or timeoutMs; it doubles on each consecutive timeout, and after QUICK_RETRIES
// unanswered ones it jumps to maxTimeoutMs: the client is gone, or (atftp) it answers a repeated
// DATA once and then ignores repeats until its own timer fires — which only a silence longer than
// its timeout (5 s typically) lets happen. Measured: 5 % loss towards the server, 3 MiB, atftp:
// plain doubling 62–86 s; tftpd-hpa did not finish in 100 s.
// Block numbers are 16 bits on the wire; internally they are absolute, and the wire number
// rolls over 65535 → 0 on files of more than 65535 blocks.
import type { RemoteInfo, Socket } from 'node:dgram';
import type { TftpClock, TftpConfig, TftpLogger, TftpStats } from './config.ts';
import type { Negotiated } from './options.ts';
import { decode, encode, TFTP_ERROR, OPCODE, type TftpPacket } from './packet.ts';
import type { BlockReader } from './reader.ts';

/** Retransmissions at the measured pace before going quiet for maxTimeoutMs (see above). */
export const QUICK_RETRIES = 3;

export type TransferEnd = 'completed' | 'aborted' | 'failed';

export interface TransferContext {
  socket: Socket;
  peer: { address: string; port: number };
  filename: string;
  reader: BlockReader;
  negotiated: Negotiated;
  config: TftpConfig;
  clock: TftpClock;
  logger: TftpLogger;
  stats: TftpStats;
  onEnd: (t: Transfer, how: TransferEnd) => void;
}

export class Transfer {
  readonly peer: { address: string; port: number };
  readonly #c: TransferContext;
  #phase: 'idle' | 'oack' | 'data' | 'done' = 'idle';
  #acked = 0; // highest block acknowledged (0: none yet, or the OACK)
  #sent = 0; // last block of the window in flight
  #highest = 0; // highest block ever sent: anything at or below it is a retransmission
  #gen = 0; // bumped at each window start, so a late disk read cannot send a stale window
  #retries = 0;
  #retransmits = 0;
  #srtt: number | undefined;
  #rttvar = 0;
  #probe = -1; // block (0 = OACK) whose first transmission is being timed; −1 none (Karn)
  #probeAt = 0;
  #deadline = Infinity;
  #timer: unknown;
  #timerAt = 0;
  #startedAt: number;
  #closing: Promise<void> | undefined;

  constructor(ctx: TransferContext) {
    this.#c = ctx;
    this.peer = ctx.peer;
    this.#startedAt = ctx.clock.now();
  }

  start(): void {
    this.#c.socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      try { this.#onMessage(msg, rinfo); } catch (e) { this.#c.logger.warn({ client: this.peer.address, err: (e as Error).message }, 'tftp: datagram dropped'); }
    });
    if (this.#c.negotiated.oack) {
      this.#phase = 'oack';
      this.#sendOack();
    } else {
      this.#phase = 'data';
      this.#sendWindow(1, this.#c.clock.now());
    }
  }

  #onMessage = (msg: Buffer, rinfo: RemoteInfo): void => {
    if (this.#phase === 'done') return;
    const { stats } = this.#c;
    if (rinfo.port !== this.peer.port || rinfo.address !== this.peer.address) {
      stats.unknownTid++; // RFC 1350 §4: tell the stranger, do not disturb the transfer
      if (msg.length < 2 || msg.readUInt16BE(0) !== OPCODE.ERROR) this.#send(encode({ type: 'error', code: TFTP_ERROR.UNKNOWN_TID, message: 'unknown transfer ID' }), rinfo);
      return;
    }
    if (msg.length === 4 && msg[0] === 0 && msg[1] === OPCODE.ACK) { this.#onAck(msg.readUInt16BE(2)); return; } // the hot path
    let p: TftpPacket;
    try {
      p = decode(msg).value;
    } catch (e) {
      stats.malformed++;
      this.#c.logger.debug({ client: this.peer.address, err: (e as Error).message }, 'tftp: malformed datagram dropped');
      return;
    }
    if (p.type === 'ack') this.#onAck(p.block);
    else if (p.type === 'error') this.#onClientError(p.code, p.message);
    else stats.malformed++; // DATA, OACK or a request on a read transfer: ignored
  };

  #onAck(wire: number): void {
    const now = this.#c.clock.now();
    if (this.#phase === 'oack') {
      if (wire !== 0) { this.#c.stats.duplicates++; return; }
      if (this.#probe === 0) this.#sample(now - this.#probeAt);
      this.#phase = 'data';
      this.#retries = 0;
      this.#sendWindow(1, now);
      return;
    }
    if (this.#phase !== 'data') return;
    const n = this.#acked + ((wire - (this.#acked & 0xffff) + 0x10000) & 0xffff);
    if (n === this.#acked || n > this.#sent) { this.#c.stats.duplicates++; return; } // never resend here
    if (n === this.#probe) this.#sample(now - this.#probeAt);
    this.#acked = n;
    this.#retries = 0;
    this.#c.reader.release(n + 1);
    if (n === this.#c.reader.blocks) this.#end('completed');
    else this.#sendWindow(n + 1, now); // n < last sent: the client saw a gap, restart there (RFC 7440 §4)
  }

  #onClientError(code: number, message: string): void {
    const probe = this.#phase === 'oack';
    const fields = { client: this.peer.address, file: this.#c.filename, code, message };
    if (probe) this.#c.logger.debug(fields, 'tftp: client ended the transfer after OACK (size probe)');
    else this.#c.logger.info(fields, 'tftp: client aborted the transfer');
    this.#end('aborted');
  }

  #sendOack(): void {
    const now = this.#c.clock.now();
    this.#send(encode({ type: 'oack', options: this.#c.negotiated.oack! }));
    if (this.#retries === 0) { this.#probe = 0; this.#probeAt = now; } else {
      this.#probe = -1;
      this.#c.stats.retransmits++;
      this.#retransmits++;
    }
    this.#arm(now);
  }

  /** Sends blocks from.. (one window) now if they are in memory, else once the disk delivers. */
  #sendWindow(from: number, now: number): void {
    const { reader } = this.#c;
    const to = Math.min(from + this.#c.negotiated.windowsize - 1, reader.blocks);
    const gen = ++this.#gen;
    if (reader.ready(from, to)) { this.#sendRange(from, to, now); return; }
    this.#deadline = Infinity; // no retransmission while the disk has not delivered
    reader.load(from, to).then(
      () => { if (gen === this.#gen && this.#phase === 'data') this.#sendRange(from, to, this.#c.clock.now()); },
      (e: Error) => { if (this.#phase !== 'done') this.#fail(`read error: ${e.message}`); },
    );
  }

  #sendRange(from: number, to: number, now: number): void {
    const { reader, stats, socket, peer } = this.#c;
    for (let n = from; n <= to; n++) {
      const packet = reader.packet(n)!;
      socket.send(packet, peer.port, peer.address); // no callback: lets node send synchronously
      stats.bytesSent += packet.length - 4;
      if (n <= this.#highest) { stats.retransmits++; this.#retransmits++; }
    }
    if (to > this.#highest) { this.#highest = to; this.#probe = to; this.#probeAt = now; } else this.#probe = -1;
    this.#sent = to;
    this.#arm(now);
    if (to < reader.blocks) reader.prefetch(to + reader.segmentBlocks); // read ahead; errors resurface on use
  }

  #afterSend = (err: Error | null): void => {
    if (err && this.#phase !== 'done') this.#c.logger.debug({ client: this.peer.address, err: err.message }, 'tftp: send failed');
  };

  #send(buf: Buffer, to: { address: string; port: number } = this.peer, after?: () => void): void {
    this.#c.socket.send(buf, to.port, to.address, (err) => { this.#afterSend(err); after?.(); });
  }

  #sample(r: number): void {
    if (this.#srtt === undefined) { this.#srtt = r; this.#rttvar = r / 2; } else {
      this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - r);
      this.#srtt = 0.875 * this.#srtt + 0.125 * r;
    }
    this.#probe = -1;
  }

  /** Current retransmission timeout in ms (see the header comment). */
  get rto(): number {
    const { config, negotiated } = this.#c;
    const ceiling = negotiated.timeoutMs ?? config.timeoutMs;
    const base = this.#srtt === undefined ? ceiling : Math.min(Math.max(this.#srtt + 4 * this.#rttvar, config.minTimeoutMs), ceiling);
    if (this.#retries === 0) return base; // base ≤ ceiling ≤ cap
    const cap = Math.max(config.maxTimeoutMs, ceiling);
    return this.#retries >= QUICK_RETRIES ? cap : Math.min(base * 2 ** this.#retries, cap);
  }

  #arm(now: number): void {
    this.#deadline = now + this.rto;
    if (this.#timer === undefined || this.#deadline < this.#timerAt) this.#schedule(this.#deadline);
  }

  // One timer per transfer, re-armed lazily: an ACK that moves the deadline later costs nothing;
  // only an earlier deadline (the round trip got shorter) replaces the timer.
  #schedule(at: number): void {
    const { clock } = this.#c;
    if (this.#timer !== undefined) clock.clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = clock.setTimeout(this.#onTimer, Math.max(0, at - clock.now()));
  }

  #onTimer = (): void => {
    this.#timer = undefined;
    if (this.#phase === 'done' || this.#deadline === Infinity) return;
    if (this.#deadline > this.#c.clock.now()) { this.#schedule(this.#deadline); return; }
    if (++this.#retries > this.#c.config.maxRetries) { this.#fail(`timed out after ${this.#c.config.maxRetries} retransmissions`); return; }
    this.#c.logger.debug({ client: this.peer.address, file: this.#c.filename, block: this.#acked + 1, retry: this.#retries }, 'tftp: timeout, retransmitting');
    if (this.#phase === 'oack') this.#sendOack();
    else this.#sendWindow(this.#acked + 1, this.#c.clock.now());
  };

  #fail(reason: string): void {
    this.#c.logger.warn({ client: this.peer.address, file: this.#c.filename, block: this.#acked + 1, reason }, 'tftp: transfer failed');
    this.#end('failed', encode({ type: 'error', code: TFTP_ERROR.UNDEFINED, message: reason.slice(0, 200) }));
  }

  #end(how: TransferEnd, farewell?: Buffer): void {
    if (this.#phase === 'done') return;
    this.#phase = 'done';
    if (how === 'completed') {
      const ms = Math.round(this.#c.clock.now() - this.#startedAt);
      this.#c.logger.info({ client: this.peer.address, file: this.#c.filename, blocks: this.#acked, ms, retransmits: this.#retransmits }, 'tftp: transfer completed');
    }
    this.#c.onEnd(this, how);
    if (farewell) this.#send(farewell, this.peer, () => void this.close());
    else void this.close();
  }

  /** Stops the transfer (no ERROR sent), closes its socket and file. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#phase = 'done';
      if (this.#timer !== undefined) this.#c.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
      try { this.#c.socket.close(); } catch { /* already closed */ }
      await this.#c.reader.close().catch(() => {});
    })();
    return this.#closing;
  }
}
