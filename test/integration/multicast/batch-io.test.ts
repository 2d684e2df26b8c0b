// Group datagram I/O (services/multicast/batch-io.ts) between network namespaces: the rcudp addon's
// receive ring and sendmmsg sender against each other and against node:dgram. Each end is a peer
// process (batch-io-peer.ts) in its own lab host, driven over stdin; every datagram carries its
// phase, sequence number, length and a pattern derived from them, and is checked byte for byte
// where the handler sees it (for native: inside the ring slot, before the slot is reused).
import { describe, it, expect, afterEach } from '@jest/globals';
import type { ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { nativeIo } from '../../../services/multicast/batch-io.ts';
import { Lab, canMakeLab } from '../../../scripts/lab/netns.ts';

const ok = canMakeLab();
const d = ok ? describe : describe.skip;
if (!ok) console.warn('batch-io tests skipped: they need root and network namespaces');

const PEER = resolve('test/integration/multicast/batch-io-peer.ts');
const GROUP = '239.255.77.9';
const PORT = 9710;
/** what the peer sends, cycled by sequence number: 1472 and 8972 fill a 1500 / 9000 MTU, 30000 and 65507 (the largest UDP payload) are IP-fragmented */
const SIZES = [16, 17, 200, 1000, 1472, 1473, 4096, 8972, 30000, 65507];

let lab: Lab | undefined;
afterEach(async () => { await lab?.destroy(); lab = undefined; });

type Msg = Record<string, unknown> & { event: string };
interface PhaseReport { count: number; last: number; outOfOrder: number; duplicates: number }
interface RxReport extends Msg {
  kind: string; total: number; corrupt: number; errors: string[]; truncated: number; stalls: number; rechecked: number;
  sources: string[]; sizes: number[]; phases: Record<string, PhaseReport>; ring: Record<string, number>; reached?: boolean;
}

/** A batch-io-peer.ts process in a lab host: send it commands, await its answers by event name. */
class Peer {
  readonly child: ChildProcess;
  readonly exit: Promise<number | null>;
  #queue: Msg[] = [];
  #waiting: ((m: Msg) => void) | undefined;
  stderr = '';

  constructor(l: Lab, host: number, config: object) {
    this.child = l.spawn(host, process.execPath, [PEER, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr?.on('data', (b: Buffer) => { this.stderr += b.toString(); });
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const m = JSON.parse(line) as Msg;
      if (this.#waiting) this.#waiting(m); else this.#queue.push(m);
    });
    // 'close': the process has exited and its stdout has been read to the end
    this.exit = new Promise((r) => this.child.once('close', (code) => {
      const m = { event: 'exit', code, stderr: this.stderr };
      if (this.#waiting) this.#waiting(m); else this.#queue.push(m);
      r(code);
    }));
  }

  /** The next message, which must be `event` (a peer that dies instead fails the test with its stderr). */
  async next<T extends Msg = Msg>(event: string): Promise<T> {
    const m = this.#queue.shift() ?? await new Promise<Msg>((r) => { this.#waiting = (x) => { this.#waiting = undefined; r(x); }; });
    if (m.event !== event) throw new Error(`peer: expected "${event}", got ${JSON.stringify(m)}\n${this.stderr}`);
    return m as T;
  }

  send(cmd: object): void {
    this.child.stdin?.write(JSON.stringify(cmd) + '\n');
  }

  async ask<T extends Msg = Msg>(cmd: object, event: string): Promise<T> {
    this.send(cmd);
    return this.next<T>(event);
  }
}

function receiver(l: Lab, host: number, io: string, extra: object = {}): Peer {
  return new Peer(l, host, { role: 'recv', io, iface: l.host(host).ip, group: GROUP, port: PORT, ...extra });
}

function sender(l: Lab, host: number, io: string): Peer {
  return new Peer(l, host, { role: 'send', io, iface: l.host(host).ip, group: GROUP, port: PORT });
}

/** Every datagram the receiver got was intact, came from `from`, and none was delivered twice. */
function intact(r: RxReport, from: string): void {
  expect(r.errors).toEqual([]);
  expect(r.corrupt).toBe(0);
  expect(r.truncated).toBe(0);
  expect(r.sources).toEqual([from]);
  for (const p of Object.values(r.phases)) expect(p.duplicates).toBe(0);
}

// Loading the addon needs no namespace: on Linux x64 it is part of the product (npm ci builds it)
(process.platform === 'linux' && process.arch === 'x64' ? describe : describe.skip)('rcudp addon', () => {
  it('loads, with every function batch-io.ts calls', () => {
    const { binding, error } = nativeIo();
    expect(error).toBeUndefined();
    expect(binding).toBeDefined();
    for (const f of ['rxOpen', 'rxMembership', 'rxStats', 'rxClose', 'txOpen', 'txSend', 'txClose'] as const) expect(typeof binding?.[f]).toBe('function');
  });
});

d('batch-io between namespaces', () => {
  it.each([['native', 'native'], ['native', 'dgram'], ['dgram', 'native']])('%s sender → %s receiver: 2,000 datagrams of 16 … 65,507 bytes arrive intact, in order, from the sender, at a gentle pace', async (txIo, rxIo) => {
    lab = new Lab({ hosts: 2 });
    const rx = receiver(lab, 1, rxIo);
    const ready = await rx.next('ready');
    expect(ready.kind).toBe(rxIo);
    // as root the native receiver's socket buffer is what it asked for (32 MiB, which Linux
    // doubles), past net.core.rmem_max (4 MiB on the lab machine: 8 MiB without SO_RCVBUFFORCE)
    if (rxIo === 'native' && process.getuid?.() === 0) expect(ready.rcvbuf).toBe(2 * (32 << 20));
    const tx = sender(lab, 0, txIo);
    expect((await tx.next('ready')).kind).toBe(txIo);
    // 32 datagrams or 64 KiB per 1 ms tick, one flush each
    const sent = await tx.ask({ cmd: 'send', phase: 1, count: 2000, perTick: 32, tickBytes: 65536 }, 'sent');
    expect(sent.sizes).toEqual(SIZES);
    expect(sent.dropped).toBe(0);
    const r = await rx.ask<RxReport>({ cmd: 'wait', phase: 1, count: 2000, idleMs: 5000 }, 'waited');
    intact(r, lab.host(0).ip);
    expect(r.phases['1']).toEqual({ count: 2000, last: 1999, outOfOrder: 0, duplicates: 0 });
    expect(r.total).toBe(2000);
    expect(r.sizes).toEqual(SIZES);
    if (rxIo === 'native') {
      // the thread took exactly what JS was given (a batch per wake-up: at most one per datagram)
      expect(r.ring.datagrams).toBe(2000);
      expect(r.ring.truncated).toBe(0);
      expect(r.ring.errors).toBe(0);
      expect(r.ring.batches).toBeGreaterThan(0);
      expect(r.ring.batches).toBeLessThanOrEqual(2000);
    } else {
      expect(r.ring).toEqual({});
    }
    const closed = await rx.ask<RxReport & { ringAfterClose: Record<string, number> }>({ cmd: 'close' }, 'closed');
    expect(closed.total).toBe(2000);
    // stats() still answers once the addon has let go of the closed receiver: its last counters
    if (rxIo === 'native') expect(closed.ringAfterClose).toMatchObject({ datagrams: 2000, truncated: 0 });
    else expect(closed.ringAfterClose).toEqual({});
    expect(await rx.exit).toBe(0);
    expect(rx.stderr).toBe('');
    expect((await tx.ask({ cmd: 'close' }, 'closed')).dropped).toBe(0);
    expect(await tx.exit).toBe(0);
  });

  it('a receiver whose JS thread is blocked: the 64-slot ring fills and waits, and every datagram delivered is intact and in order', async () => {
    lab = new Lab({ hosts: 2 });
    // 300 ms blocked on the first datagram, then 20 ms on every 300th: each stall re-checks the
    // slots of its batch after the receive thread went on filling the others
    const rx = receiver(lab, 1, 'native', { slots: 64, stallFirstMs: 300, stallEvery: 300, stallMs: 20 });
    await rx.next('ready');
    const tx = sender(lab, 0, 'native');
    await tx.next('ready');
    // 4,000 datagrams at 8 per tick: sending lasts well past the first stall
    const sent = await tx.ask({ cmd: 'send', phase: 1, count: 4000, perTick: 8, tickBytes: 1 << 20 }, 'sent');
    const r = await rx.ask<RxReport>({ cmd: 'wait', phase: 1, count: 4000, idleMs: 1500 }, 'waited');
    intact(r, lab.host(0).ip);
    const p = r.phases['1'] as PhaseReport;
    expect(p.outOfOrder).toBe(0);
    expect(r.stalls).toBeGreaterThanOrEqual(1);
    expect(r.rechecked).toBeGreaterThanOrEqual(r.stalls);
    // the ring was full while JS was blocked, and went round many times afterwards
    expect(r.ring.fullWaits).toBeGreaterThan(0);
    expect(p.count).toBeGreaterThan(4 * 64);
    expect(r.ring.datagrams).toBe(r.total);
    expect(p.count).toBeLessThanOrEqual(Number(sent.count));
    await rx.ask({ cmd: 'close' }, 'closed');
    expect(await rx.exit).toBe(0);
  });

  it.each([['native'], ['dgram']])('%s receiver: membership(false) stops delivery, membership(true) restores it; close() twice is safe', async (io) => {
    lab = new Lab({ hosts: 3 });
    const rx = receiver(lab, 1, io);
    const witness = receiver(lab, 2, 'native'); // a member all along: it shows what was sent, and when
    await rx.next('ready');
    await witness.next('ready');
    const tx = sender(lab, 0, 'native');
    await tx.next('ready');
    const phase = async (n: number, who: Peer[]): Promise<RxReport[]> => {
      await tx.ask({ cmd: 'send', phase: n, count: 300, perTick: 16 }, 'sent');
      return Promise.all(who.map((x) => x.ask<RxReport>({ cmd: 'wait', phase: n, count: 300, idleMs: 3000 }, 'waited')));
    };
    // 1: both members
    for (const r of await phase(1, [rx, witness])) expect(r.reached).toBe(true);
    // 2: rx has left; the witness getting all of phase 2 means all of it was on the wire
    await rx.ask({ cmd: 'membership', add: false }, 'membership');
    expect((await phase(2, [witness]))[0]?.reached).toBe(true);
    // 3: rx is back; phase 3 arrives, and nothing of phase 2 came before it (it would have: same
    // sender, same path, in order)
    await rx.ask({ cmd: 'membership', add: true }, 'membership');
    const [r3, w3] = await phase(3, [rx, witness]);
    const r = r3 as RxReport;
    expect(r.reached).toBe(true);
    intact(r, lab.host(0).ip);
    expect(r.phases['1']?.count).toBe(300);
    expect(r.phases['2']).toBeUndefined();
    expect(r.phases['3']?.count).toBe(300);
    expect(r.total).toBe(600);
    expect(w3?.total).toBe(900);
    // close() twice, membership() and stats() after close(): no throw, and the process exits by itself
    const closed = await rx.ask<RxReport & { ringAfterClose: Record<string, number> }>({ cmd: 'close' }, 'closed');
    expect(closed.total).toBe(600);
    if (io === 'native') expect(closed.ringAfterClose.datagrams).toBe(600);
    expect(await rx.exit).toBe(0);
    expect(rx.stderr).toBe('');
  });

  it('bad options are RC_ERR_USAGE, failing system calls RC_ERR_IO, both as RackcastErrors', async () => {
    lab = new Lab({ hosts: 1 });
    const p = new Peer(lab, 0, { role: 'probe', iface: lab.host(0).ip, group: GROUP, port: PORT });
    const { loaded, cases } = await p.next<Msg & { loaded: boolean; cases: { name: string; threw: boolean; rackcast?: boolean; code?: string; message?: string }[] }>('probe');
    expect(loaded).toBe(true);
    const codes = Object.fromEntries(cases.map((c) => [c.name, c.threw ? `${c.rackcast ? 'RackcastError' : 'other'} ${c.code}` : 'opened']));
    const usage = 'RackcastError RC_ERR_USAGE';
    const io = 'RackcastError RC_ERR_IO';
    expect(codes).toEqual({
      'rx group not an address': usage, 'rx group 239.255.77.300': usage, 'rx iface not an address': usage,
      'rx port 0': usage, 'rx port 65536': usage, 'rx port -1': usage, 'rx slots 63': usage, 'rx slots 1': usage,
      'tx group not an address': usage, 'tx iface not an address': usage, 'tx port 0': usage, 'tx port 70000': usage,
      'rx iface not on this host': io, 'tx iface not on this host': io,
      'rx good': 'opened', 'tx good': 'opened',
    });
    // the messages say where: the operation, then the addon's reason
    for (const c of cases.filter((x) => x.threw)) expect(c.message).toMatch(/^multicast (receive|send) socket: /);
    expect(await p.exit).toBe(0);
  });
});
