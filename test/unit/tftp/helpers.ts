// Test helpers for the TFTP server: a fake clock (retransmission timers advance only when a test
// says so), a hand-written TFTP client on node:dgram bound to 127.0.0.1:0, temp roots.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TftpClock } from '../../../services/tftp/config.ts';
import { decode, encode, type TftpPacket } from '../../../services/tftp/packet.ts';

export class FakeClock implements TftpClock {
  #t = 1000;
  #id = 0;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();
  now(): number { return this.#t; }
  setTimeout(fn: () => void, ms: number): unknown {
    this.#timers.set(++this.#id, { at: this.#t + ms, fn });
    return this.#id;
  }
  clearTimeout(h: unknown): void { this.#timers.delete(h as number); }
  get pending(): number { return this.#timers.size; }
  /** Moves time forward, firing due timers in order (timers they set fire too if due). */
  advance(ms: number): void {
    const end = this.#t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.#timers) if (e[1].at <= end && (next === undefined || e[1].at < next[1].at)) next = e;
      if (next === undefined) break;
      this.#timers.delete(next[0]);
      this.#t = next[1].at;
      next[1].fn();
    }
    this.#t = end;
  }
}

export interface Received { packet: TftpPacket; rinfo: RemoteInfo }

/** A TFTP client socket on 127.0.0.1 with a queue of decoded packets. */
export class TestClient {
  readonly socket: Socket;
  readonly queue: Received[] = [];
  #waiter: (() => void) | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('message', (msg, rinfo) => {
      this.queue.push({ packet: decode(msg).value, rinfo });
      this.#waiter?.();
    });
  }

  static async open(address = '127.0.0.1'): Promise<TestClient> {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, address, r));
    return new TestClient(s);
  }

  get port(): number { return this.socket.address().port; }

  #inflight = new Set<Promise<void>>();

  send(p: TftpPacket | Buffer, port: number): void {
    const sent = new Promise<void>((r) => this.socket.send(Buffer.isBuffer(p) ? p : encode(p), port, '127.0.0.1', () => r()));
    this.#inflight.add(sent);
    void sent.then(() => this.#inflight.delete(sent));
  }

  rrq(filename: string, port: number, options: Record<string, string> = {}): void {
    this.send({ type: 'rrq', filename, mode: 'octet', options: new Map(Object.entries(options)) }, port);
  }

  /** Next packet; the real-time guard only turns a hang into a failure, tests never wait on it. */
  async next(guardMs = 5000): Promise<Received> {
    const deadline = Date.now() + guardMs;
    while (this.queue.length === 0) {
      if (Date.now() > deadline) throw new Error('no packet arrived');
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.#waiter = () => { clearTimeout(t); r(); };
      });
      this.#waiter = undefined;
    }
    return this.queue.shift()!;
  }

  /** Closes once every send has left (a send is asynchronous: closing at once would drop it). */
  async close(): Promise<void> {
    await Promise.all(this.#inflight);
    this.socket.close();
  }
}

/** Yields to the event loop until cond() holds (bounded). Not a sleep: no time passes on purpose. */
export async function until(cond: () => boolean, what = 'condition'): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

export interface FetchResult { data: Buffer; oack: Map<string, string> | undefined; wireBlocks: number[]; acks: number; tid: number }

/**
 * A well-behaved client: RRQ, ACK 0 after an OACK, then ACK the last block of each window (or the
 * last in-order block when one is missing, RFC 7440 §4), until a short block.
 */
export async function fetchFile(port: number, filename: string, options: Record<string, string> = {}): Promise<FetchResult> {
  const c = await TestClient.open();
  try {
    c.rrq(filename, port, options);
    let first = await c.next();
    const tid = first.rinfo.port;
    let oack: Map<string, string> | undefined;
    if (first.packet.type === 'oack') {
      oack = new Map(first.packet.options);
      c.send({ type: 'ack', block: 0 }, tid);
      first = await c.next();
    }
    const blksize = Number(oack?.get('blksize') ?? 512);
    const window = Number(oack?.get('windowsize') ?? 1);
    const parts: Buffer[] = [];
    const wireBlocks: number[] = [];
    let expected = 1;
    let inWindow = 0;
    let acks = 0;
    for (let r: Received | undefined = first; ; r = await c.next()) {
      const p = r.packet;
      if (p.type === 'error') throw new Error(`ERROR ${p.code}: ${p.message}`);
      if (p.type !== 'data') throw new Error(`unexpected ${p.type}`);
      if (p.block !== (expected & 0xffff)) { c.send({ type: 'ack', block: (expected - 1) & 0xffff }, tid); acks++; inWindow = 0; continue; }
      parts.push(Buffer.from(p.data));
      wireBlocks.push(p.block);
      const last = p.data.length < blksize;
      if (++inWindow === window || last) { c.send({ type: 'ack', block: p.block }, tid); acks++; inWindow = 0; }
      expected++;
      if (last) return { data: Buffer.concat(parts), oack, wireBlocks, acks, tid };
    }
  } finally {
    await c.close();
  }
}

export function tempRoot(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'rc-test-tftp-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
