// Peer for batch-io.test.ts, run inside a lab namespace: one end of services/multicast/batch-io.ts
// (the rcudp addon or node:dgram), driven by JSON commands on stdin, answering JSON lines on stdout.
// Usage: node batch-io-peer.ts '<config JSON>'
//   {"role":"send","io":"native"|"dgram","iface":IP,"group":IP,"port":N}
//     {"cmd":"send","phase":P,"count":N,"perTick":32,"tickBytes":65536} → {"event":"sent",…}
//       datagrams seq 0 … N-1 of phase P, sizes SIZES[seq % SIZES.length], at most perTick
//       datagrams and tickBytes bytes per 1 ms timer tick, each tick one flush()
//   {"role":"recv","io":…,"iface":…,"group":…,"port":…,"slots":N,
//    "stallFirstMs":0,"stallEvery":0,"stallMs":0}
//       every datagram is checked where the handler sees it (in the ring slot, for native): magic,
//       length, size for its seq, every payload byte; a stall busy-waits inside the handler (the
//       JS thread blocked, the ring filling behind it), then checks again every datagram of the
//       batch so far, whose slots the receive thread must not have touched meanwhile
//     {"cmd":"wait","phase":P,"count":N,"idleMs":M} → {"event":"waited","reached":bool,…report}
//       when phase P has N datagrams, or nothing at all arrived for M ms (an end, not a measure)
//     {"cmd":"membership","add":bool} → {"event":"membership"}
//     {"cmd":"close"} → {"event":"closed",…report}: close() twice, membership() and stats() after
//       it; then the process must exit by itself (the addon's thread and thread-safe function released)
//   {"role":"probe","iface":IP,"group":IP,"port":N} → {"event":"probe","cases":[…]}: the
//       addon's errors for bad options and failing system calls, through batch-io
import { createInterface } from 'node:readline';
import { isRackcastError } from '../../../services/errors.ts';
import { ipOf, nativeIo, openGroupReceiver, openGroupSender, type GroupReceiver, type GroupSender, type IoMode } from '../../../services/multicast/batch-io.ts';

const MAGIC = 0x52434254; // "RCBT"
const HEAD = 16; // magic, phase, seq, length (u32 BE each)
/** 1472 and 8972 fill a 1500 / 9000 MTU; 30000 and 65507 (the largest UDP payload) are IP-fragmented */
const SIZES = [1472, 16, 8972, 30000, 1473, 200, 65507, 1000, 17, 4096];

interface Config {
  role: 'send' | 'recv' | 'probe'; io: IoMode; iface: string; group: string; port: number;
  slots?: number; stallFirstMs?: number; stallEvery?: number; stallMs?: number;
}
const cfg = JSON.parse(process.argv[2] as string) as Config;
const out = (o: object): void => { process.stdout.write(JSON.stringify(o) + '\n'); };

const seedOf = (phase: number, seq: number): number => Math.imul(seq + 1, 0x9e3779b1) ^ Math.imul(phase + 1, 0x85ebca6b);
const byteAt = (seed: number, i: number): number => (Math.imul(i + seed, 0x2c1b3c6d) ^ seed) >>> 24;

function encode(phase: number, seq: number): Buffer {
  const len = SIZES[seq % SIZES.length] as number;
  const b = Buffer.allocUnsafe(len);
  b.writeUInt32BE(MAGIC, 0);
  b.writeUInt32BE(phase, 4);
  b.writeUInt32BE(seq, 8);
  b.writeUInt32BE(len, 12);
  const seed = seedOf(phase, seq);
  for (let i = HEAD; i < len; i++) b[i] = byteAt(seed, i);
  return b;
}

/** What is wrong with buf[off, off + len), or the datagram's phase and seq. */
function check(buf: Buffer, off: number, len: number): { phase: number; seq: number } | string {
  if (len < HEAD) return `short datagram: ${len} bytes`;
  if (buf.readUInt32BE(off) !== MAGIC) return 'bad magic';
  const phase = buf.readUInt32BE(off + 4);
  const seq = buf.readUInt32BE(off + 8);
  const claimed = buf.readUInt32BE(off + 12);
  if (claimed !== len) return `seq ${seq}: ${len} bytes delivered, ${claimed} sent`;
  if (SIZES[seq % SIZES.length] !== len) return `seq ${seq}: ${len} bytes, not ${SIZES[seq % SIZES.length]}`;
  const seed = seedOf(phase, seq);
  for (let i = HEAD; i < len; i++) if (buf[off + i] !== byteAt(seed, i)) return `seq ${seq} (phase ${phase}, ${len} bytes): byte ${i} differs`;
  return { phase, seq };
}

function busyWait(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* the JS thread is blocked, as by a long GC or a burst of work */ }
}

async function receiver(): Promise<void> {
  const phases = new Map<number, { count: number; last: number; outOfOrder: number; duplicates: number; seen: Set<number> }>();
  const sources = new Set<string>();
  const sizes = new Set<number>();
  const errors: string[] = [];
  let corrupt = 0;
  let total = 0;
  let truncated = 0;
  let stalls = 0;
  let rechecked = 0;
  let lastAt = performance.now();
  let batch: [number, number][] | undefined; // (offset, length) handed over in the current batch
  let waiter: (() => void) | undefined;
  const bad = (why: string): void => { corrupt++; if (errors.length < 10) errors.push(why); };

  const onDatagram = (buf: Buffer, off: number, len: number, from: string | number): void => {
    total++;
    lastAt = performance.now();
    if (!batch) { batch = []; queueMicrotask(() => { batch = undefined; }); } // handlers of one batch run before any microtask
    batch.push([off, len]);
    sources.add(ipOf(from));
    const r = check(buf, off, len);
    if (typeof r === 'string') bad(r);
    else {
      sizes.add(len);
      let p = phases.get(r.phase);
      if (!p) phases.set(r.phase, p = { count: 0, last: -1, outOfOrder: 0, duplicates: 0, seen: new Set() });
      if (p.seen.has(r.seq)) p.duplicates++;
      else { p.seen.add(r.seq); p.count++; }
      if (r.seq <= p.last) p.outOfOrder++;
      p.last = Math.max(p.last, r.seq);
    }
    const stall = (total === 1 && cfg.stallFirstMs) ? cfg.stallFirstMs : (cfg.stallEvery && total % cfg.stallEvery === 0 ? cfg.stallMs ?? 0 : 0);
    if (stall) {
      busyWait(stall);
      stalls++;
      // the receive thread kept filling free slots meanwhile: this batch's must be as they were
      // (a dgram Buffer is the datagram's own and cannot change)
      for (const [o, l] of batch) { rechecked++; const again = check(buf, o, l); if (typeof again === 'string') bad(`after a ${stall} ms stall: ${again}`); }
    }
    waiter?.();
  };
  const rx: GroupReceiver = await openGroupReceiver({ group: cfg.group, port: cfg.port, iface: cfg.iface, rcvbuf: 32 << 20, io: cfg.io, ...(cfg.slots ? { slots: cfg.slots } : {}) },
    onDatagram, () => { truncated++; });

  const report = (): object => ({
    kind: rx.kind, total, corrupt, errors, truncated, stalls, rechecked, sources: [...sources].sort(), sizes: [...sizes].sort((a, b) => a - b),
    phases: Object.fromEntries([...phases].map(([k, p]) => [k, { count: p.count, last: p.last, outOfOrder: p.outOfOrder, duplicates: p.duplicates }])),
  });
  out({ event: 'ready', kind: rx.kind, rcvbuf: rx.rcvbuf });

  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const c = JSON.parse(line) as { cmd: string; phase?: number; count?: number; idleMs?: number; add?: boolean };
    if (c.cmd === 'wait') {
      const since = performance.now();
      await new Promise<void>((res) => {
        const done = (): void => { waiter = undefined; clearInterval(t); res(); };
        const t = setInterval(() => { if (performance.now() - Math.max(lastAt, since) > (c.idleMs ?? 3000)) done(); }, 50);
        waiter = () => { if ((phases.get(c.phase as number)?.count ?? 0) >= (c.count as number)) done(); };
        waiter();
      });
      out({ event: 'waited', reached: (phases.get(c.phase as number)?.count ?? 0) >= (c.count as number), ...report(), ring: rx.stats() });
    } else if (c.cmd === 'membership') {
      rx.membership(c.add as boolean);
      out({ event: 'membership', add: c.add });
    } else if (c.cmd === 'close') {
      const ring = rx.stats();
      await rx.close();
      await rx.close(); // safe twice
      rx.membership(true); // and a no-op once closed
      // the addon frees a closed receiver's state on a later turn of the event loop: stats()
      // after that are the counters at close, not a read of freed memory
      await new Promise((r) => setTimeout(r, 20));
      out({ event: 'closed', ...report(), ring, ringAfterClose: rx.stats() });
      lines.close();
    }
  }
  // nothing else holds the event loop: the process ends here unless close() left the addon's
  // thread-safe function (or a socket) referenced
}

async function sender(): Promise<void> {
  const tx: GroupSender = await openGroupSender({ group: cfg.group, port: cfg.port, iface: cfg.iface, sndbuf: 4 << 20, io: cfg.io });
  out({ event: 'ready', kind: tx.kind });
  const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 1));
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const c = JSON.parse(line) as { cmd: string; phase?: number; count?: number; perTick?: number; tickBytes?: number };
    if (c.cmd === 'send') {
      const phase = c.phase ?? 0;
      const head = Buffer.alloc(HEAD);
      const sizes = new Set<number>();
      let bytes = 0;
      for (let seq = 0; seq < (c.count as number);) {
        let n = 0;
        let b = 0;
        while (seq < (c.count as number) && n < (c.perTick ?? 32) && b < (c.tickBytes ?? 65536)) {
          const d = encode(phase, seq++);
          // as the multicast sender pushes: one header buffer reused for every datagram (push
          // copies it), and a view of the body
          head.set(d.subarray(0, HEAD));
          tx.push(head, d.subarray(HEAD));
          head.fill(0xa5);
          sizes.add(d.length);
          n++;
          b += d.length;
        }
        bytes += b;
        tx.flush();
        await tick();
      }
      // what the kernel refused stays staged: flush again on later ticks
      for (let k = 0; k < 20; k++) { tx.flush(); await tick(); }
      out({ event: 'sent', phase, count: c.count, bytes, sizes: [...sizes].sort((a, b) => a - b), dropped: tx.dropped });
    } else if (c.cmd === 'close') {
      await tx.close();
      await tx.close();
      out({ event: 'closed', dropped: tx.dropped });
      lines.close();
    }
  }
}

async function probe(): Promise<void> {
  const cases: object[] = [];
  const attempt = async (name: string, f: () => Promise<{ close(): Promise<void> }>): Promise<void> => {
    try {
      const h = await f();
      await h.close();
      cases.push({ name, threw: false });
    } catch (e) {
      cases.push({ name, threw: true, rackcast: isRackcastError(e), code: (e as { code?: string }).code, message: (e as Error).message });
    }
  };
  const rx = (o: Partial<{ group: string; port: number; iface: string; slots: number }>) => () =>
    openGroupReceiver({ group: cfg.group, port: cfg.port, iface: cfg.iface, rcvbuf: 1 << 20, io: 'native', slots: 64, ...o }, () => undefined);
  const tx = (o: Partial<{ group: string; port: number; iface: string }>) => () =>
    openGroupSender({ group: cfg.group, port: cfg.port, iface: cfg.iface, sndbuf: 1 << 20, io: 'native', ...o });
  await attempt('rx group not an address', rx({ group: 'not-an-address' }));
  await attempt('rx group 239.255.77.300', rx({ group: '239.255.77.300' }));
  await attempt('rx iface not an address', rx({ iface: 'eth0' }));
  await attempt('rx port 0', rx({ port: 0 }));
  await attempt('rx port 65536', rx({ port: 65536 }));
  await attempt('rx port -1', rx({ port: -1 }));
  await attempt('rx slots 63', rx({ slots: 63 }));
  await attempt('rx slots 1', rx({ slots: 1 }));
  await attempt('tx group not an address', tx({ group: '239.255.77' }));
  await attempt('tx iface not an address', tx({ iface: '' }));
  await attempt('tx port 0', tx({ port: 0 }));
  await attempt('tx port 70000', tx({ port: 70000 }));
  // well-formed, but the system refuses: no interface has this address
  await attempt('rx iface not on this host', rx({ iface: '10.99.99.99' }));
  await attempt('tx iface not on this host', tx({ iface: '10.99.99.99' }));
  // the good options open (and close) fine: the cases above failed for what they changed
  await attempt('rx good', rx({}));
  await attempt('tx good', tx({}));
  out({ event: 'probe', loaded: nativeIo().binding !== undefined, cases });
}

await (cfg.role === 'send' ? sender() : cfg.role === 'recv' ? receiver() : probe());
