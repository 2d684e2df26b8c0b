// npm run bench -- multicast --receivers N[,N2…] --loss PCT --rate MBIT [--slow MIBPS] [--size-mb M] [--mtu N]
//                             [--cold] [--bin PATH] [--only rackcast|udpcast] [--unzstd] [--target-dir DIR]
//                             [--announce-only] [--pace PCT] [--runs K] [--json]
//
// rackcast against udpcast (Debian's udp-sender/udp-receiver) on the same namespace lab, in one
// run, carrying the same compressed bytes (the image's chunk frames; udpcast gets them
// concatenated into one file). Every receiver's link (its bridge port) is limited to MBIT with tc
// tbf; --loss drops that share of UDP arriving at every receiver (nftables); --slow limits
// receiver 1's link to MIBPS MiB/s instead, and the same N run without it first gives the
// others' slowdown (othersSeconds with the slow receiver / seconds without it − 1, per tool).
// A list of receiver counts (--receivers 1,8) runs each in turn and adds scaling: T(last)/T(first)
// per tool. Both senders are told 97% of the link rate (--pace PCT to change it). --runs K runs
// every configuration K times (each tool in turn) and reports the median run, with every time.
// The clock starts when the sender is started, once every receiver is ready (listening and idle),
// as on a rack whose machines have booted and wait; --cold starts the sender 300 ms after the
// receivers instead, so their start-up (node, module loading, worker threads) falls inside the
// timed window (receivers get --fallback 30: waiting for the others never sends one to HTTP).
// Receivers know the image before the session, as a deploy client does (the appliance's task
// gives it the image URL, and it loads the signed manifest before it joins): they get the
// manifest file and verify it and open their targets while getting ready. --announce-only makes
// them learn it from the ANNOUNCE instead (fetch, verify and open inside the timed window).
// Every process runs under GNU time: the report has its CPU seconds (all threads).
// udp-receiver writes the compressed stream as it comes (rackcast's receivers decompress and hash
// every block); --unzstd pipes it through `zstd -d` into the disk image instead, as a udpcast
// deployment of a compressed image does (checked bit-exact against the disk, which holds no
// holes or repeated blocks, so its frames in chunk order decompress to exactly the disk).
// --bin benchmarks another checkout's bin/rackcast.js (before/after comparisons in one lab run);
// NODE_OPTIONS passes through to rackcast's processes (e.g. --cpu-prof --cpu-prof-dir=DIR).
// --nice N gives rackcast's sender `--nice=N` (its default, as root, is -10; 0 leaves its priority).
// Prints one JSON object (--json) or a readable summary. Bounded: every transfer has a time limit.
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Lab } from '../lab/netns.ts';
import { ImageStore, captureImage } from '../../services/image/index.ts';
import { chunkTable } from '../../services/image/manifest.ts';
import { hostCpu, killAll, rcvbufErrors, sampleUsr, spawnIn, txBytes, waitReady } from './mcast-lib.ts';

const { values: a } = parseArgs({ options: {
  receivers: { type: 'string', default: '3' }, loss: { type: 'string', default: '0' }, rate: { type: 'string', default: '300' },
  slow: { type: 'string' }, 'size-mb': { type: 'string', default: '256' }, mtu: { type: 'string', default: '1500' }, json: { type: 'boolean' },
  only: { type: 'string' }, cold: { type: 'boolean' }, pace: { type: 'string', default: '97' }, runs: { type: 'string', default: '1' }, 'announce-only': { type: 'boolean' }, 'target-dir': { type: 'string' }, bin: { type: 'string' }, unzstd: { type: 'boolean' },
  nice: { type: 'string' },
} });
const Ns = String(a.receivers).split(',').map(Number);
if (!Ns.length || Ns.some((n) => !Number.isInteger(n) || n < 1 || n > 16)) throw new Error('--receivers: receiver counts from 1 to 16, comma-separated');
const lossPct = Number(a.loss);
const rateMbit = Number(a.rate);
const pace = Number(a.pace) / 100;
const repeats = Number(a.runs);
if (!Number.isInteger(repeats) || repeats < 1 || repeats > 9) throw new Error('--runs: 1 to 9');
if (!(pace > 0 && pace <= 1)) throw new Error('--pace: a percentage of the link rate, above 0, at most 100');
const mtu = Number(a.mtu);
const slowArg = a.slow === undefined ? undefined : Number(a.slow);
const BIN = resolve(a.bin ?? resolve(import.meta.dirname, '..', '..', 'bin', 'rackcast.js'));
// every transfer's time limit: ten times the clean wire time over the slowest link, at least 60 s
// (set once the image is built)
let LIMIT_S = 600;
const work = mkdtempSync(join(tmpdir(), 'rc-bench-mcast-'));
// The receivers' targets: every machine of a rack has its own disk, but the lab's N receivers
// would share this box's one disk, and flushing N targets to it at the end grew with N (8
// receivers: 0.4–0.8 s of sync each instead of 0.15 s). So targets live in RAM (tmpfs) unless
// --target-dir says otherwise; both tools write and sync their targets there.
const targets = mkdtempSync(join(a['target-dir'] ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir()), 'rc-bench-mcast-'));
const say = (s: string): void => { if (!a.json) console.log(s); else process.stderr.write(s + '\n'); };

/** MiB/s → Mbit/s (tc rates are in 10^6 bits) */
const mibToMbit = (mib: number): number => mib * 8.388608;

/** One configuration: how many receivers, and receiver 1's link in MiB/s if it is the slow one. */
interface Setup { N: number; slow: number | undefined }

function makeLab({ N, slow }: Setup): Lab {
  const lab = new Lab({ hosts: N + 1, mtu });
  for (let i = 1; i <= N; i++) {
    lab.rateLimit(i, i === 1 && slow !== undefined ? mibToMbit(slow) : rateMbit);
    if (lossPct > 0) lab.loss(i, Math.round(lossPct * 10));
  }
  return lab;
}

interface Result {
  seconds: number; perReceiver: number[]; bitExact: boolean; wireBytes: number; extraBytesPct?: number; socketDrops?: number[]; receiverTimes?: Record<string, number>[];
  /** CPU seconds: the sender, each receiver, and each receiver's after the clock started (the data phase) */
  cpu: { sender: number; receivers: number[]; receiversTimed: number[] };
  /** DATA datagrams each rackcast receiver handled (repairs and duplicates included) */
  receiverPackets?: number[];
  sender?: Record<string, number | number[]>;
  /** what each rackcast receiver made of repairs: duplicates, parities used / of no use, fragments rebuilt */
  receiverRepairs?: Record<string, number>[];
  /** how each rackcast receiver took its datagrams (batch-io.ts): native (with the ring's counters) or dgram */
  receiverIo?: Record<string, number | string>[];
  /** each rackcast receiver's CPU seconds per thread name, first datagram to all data written */
  receiverThreadCpu?: Record<string, number>[];
}

/**
 * Receivers are started; start the clock when all are ready (or 300 ms later with --cold).
 * Resolves with the CPU seconds each receiver host has used so far.
 */
async function receiversStarted(lab: Lab, N: number): Promise<number[]> {
  if (a.cold) await new Promise((r) => setTimeout(r, 300));
  else await Promise.all(Array.from({ length: N }, (_, k) => waitReady(lab, k + 1, 60)));
  return Array.from({ length: N }, (_, k) => hostCpu(lab, k + 1));
}

function cpuOf(sender: { cpu: number }, receivers: { cpu: number }[], before: number[]): Result['cpu'] {
  return { sender: sender.cpu, receivers: receivers.map((o) => o.cpu), receiversTimed: receivers.map((o, k) => o.cpu - (before[k] as number)) };
}

async function rackcast(setup: Setup, store: string, expect: Buffer): Promise<Result> {
  const { N } = setup;
  const lab = makeLab(setup);
  try {
    const rx = Array.from({ length: N }, (_, k) => spawnIn(lab, k + 1, process.execPath, [BIN, 'mcast', 'receive', '--interface', 'eth0', '--target', join(targets, `rc-out-${k + 1}.img`),
      '--fallback', '30', '--json', ...(a['announce-only'] ? [] : ['--manifest', join(store, 'images', 'bench', 'manifest.json')])], LIMIT_S));
    const cpu0 = await receiversStarted(lab, N);
    const tx0 = txBytes(lab, 0);
    const drops0 = Array.from({ length: N }, (_, k) => rcvbufErrors(lab, k + 1));
    const t0 = performance.now();
    const tx = spawnIn(lab, 0, process.execPath, [BIN, 'mcast', 'send', 'bench', '--interface', 'eth0', '--store', store, '--min-receivers', String(N),
      '--rate', `${rateMbit * pace}m`, '--mtu', String(mtu), '--json', ...(a.nice !== undefined ? [`--nice=${a.nice}`] : [])], LIMIT_S);
    const ends: number[] = [];
    const outs = await Promise.all(rx.map((p, k) => p.then((o) => { ends[k] = (performance.now() - t0) / 1000; return o; })));
    const reports = outs.map((o) => JSON.parse(o.stdout.trim().split('\n').pop() as string) as { times: Record<string, number>; dataPackets: number; duplicates: number; parityUsed: number; parityUnused: number; rebuilt: number; viaUnicast: number; waited?: number; discarded?: number; io: string; ring?: Record<string, number>; threadCpu?: Record<string, number> });
    const s = await tx;
    const seconds = Math.max(...ends);
    const report = JSON.parse(s.stdout.trim().split('\n').pop() as string) as { seconds: number; extraBytesPct: number; firstPassSeconds: number; finalRateMbit: number; paceLostSeconds: number; repairPackets: number; packetsSent: number; lagRepairPackets: number; parityPackets: number; codedFragments: number; sealedChunks: number; since: { ready: number; joins: number[]; go: number; done: number[] } };
    const bitExact = Array.from({ length: N }, (_, k) => readFileSync(join(targets, `rc-out-${k + 1}.img`)).equals(expect)).every(Boolean);
    return { seconds, perReceiver: ends, bitExact, wireBytes: txBytes(lab, 0) - tx0, extraBytesPct: report.extraBytesPct,
      socketDrops: drops0.map((d, k) => rcvbufErrors(lab, k + 1) - d), cpu: cpuOf(s, outs, cpu0), receiverTimes: reports.map((x) => x.times), receiverPackets: reports.map((x) => x.dataPackets),
      receiverRepairs: reports.map((x) => ({ duplicates: x.duplicates, parityUsed: x.parityUsed, parityUnused: x.parityUnused, rebuilt: x.rebuilt, viaUnicast: x.viaUnicast, waited: x.waited ?? 0, discarded: x.discarded ?? 0 })),
      receiverIo: reports.map((x) => ({ io: x.io, ...(x.ring ?? {}) })), receiverThreadCpu: reports.map((x) => x.threadCpu ?? {}), sender: { sessionSeconds: report.seconds, firstPassSeconds: report.firstPassSeconds, finalRateMbit: report.finalRateMbit, paceLostSeconds: report.paceLostSeconds, packets: report.packetsSent, repairPackets: report.repairPackets, lagRepairPackets: report.lagRepairPackets, parityPackets: report.parityPackets, codedFragments: report.codedFragments, sealedChunks: report.sealedChunks, readyAt: report.since.ready, joins: report.since.joins, goAt: report.since.go, doneAt: report.since.done } };
  } finally { killAll(); await lab.destroy(); }
}

async function udpcast(setup: Setup, file: string, expect: Buffer): Promise<Result> {
  const { N } = setup;
  const lab = makeLab(setup);
  try {
    // the same durability as rackcast's receivers, which fsync the target before they report done
    const pipe = a.unzstd ? ` --pipe 'zstd -d -q'` : '';
    const rx = Array.from({ length: N }, (_, k) => spawnIn(lab, k + 1, 'sh', ['-c', `udp-receiver --interface eth0 --file ${join(targets, `uc-out-${k + 1}`)}${pipe} --nokbd --no-progress && sync ${join(targets, `uc-out-${k + 1}`)}`], LIMIT_S));
    const cpu0 = await receiversStarted(lab, N);
    const tx0 = txBytes(lab, 0);
    const t0 = performance.now();
    const tx = spawnIn(lab, 0, 'udp-sender', ['--interface', 'eth0', '--file', file, '--min-receivers', String(N), '--max-bitrate', `${Math.round(rateMbit * pace)}m`, '--nokbd', '--no-progress'], LIMIT_S);
    const ends: number[] = [];
    const outs = await Promise.all(rx.map((p, k) => p.then((o) => { ends[k] = (performance.now() - t0) / 1000; return o; })));
    const s = await tx;
    const bitExact = Array.from({ length: N }, (_, k) => readFileSync(join(targets, `uc-out-${k + 1}`)).equals(expect)).every(Boolean);
    return { seconds: Math.max(...ends), perReceiver: ends, bitExact, wireBytes: txBytes(lab, 0) - tx0, cpu: cpuOf(s, outs, cpu0) };
  } finally { killAll(); await lab.destroy(); }
}

try {
  say(`building a ${a['size-mb']} MiB disk from /usr data …`);
  const disk = join(work, 'disk.img');
  writeFileSync(disk, sampleUsr(Number(a['size-mb']) << 20));
  const store = join(work, 'store');
  const st = ImageStore.open(store);
  await captureImage({ store: st, source: disk, name: 'bench' });
  const frames = join(work, 'frames.bin');
  const fd = openSync(frames, 'w');
  let bytes = 0;
  for (const c of chunkTable(st.open('bench').manifest)) { const f = readFileSync(st.chunkPath(c.hash)); writeSync(fd, f); bytes += f.length; }
  closeSync(fd);
  const diskBytes = readFileSync(disk);
  const framesBytes = readFileSync(frames);
  // Wire bytes of one clean pass, as each tool frames the payload (Ethernet 14 + IPv4 20 + UDP 8 +
  // its own header). udp-sender always uses 1456-byte blocks (its default and maximum blocksize,
  // whatever the MTU) behind a 16-byte header: a 20 MiB clean transfer in the lab sent 14,404 data
  // frames of 1514 bytes plus 140 small control frames, matching that framing.
  const perPkt = (payload: number, hdr: number): number => Math.ceil(bytes / payload) * (payload + hdr + 28 + 14);
  LIMIT_S = Math.max(60, Math.ceil(10 * bytes / (Math.min(rateMbit, slowArg !== undefined ? mibToMbit(slowArg) : rateMbit) * 125000)));
  const runR = a.only !== 'udpcast';
  const runU = a.only !== 'rackcast';
  const rateBps = rateMbit * 1e6 / 8;
  // a rival that fails or hangs (udpcast has, with a slow receiver and loss) is reported, not fatal
  const one = async (setup: Setup): Promise<{ r?: Result; u?: Result; uFailed?: string }> => {
    const { N, slow } = setup;
    say(`image: ${(bytes / 1e6).toFixed(1)} MB of zstd frames; ${N} receivers, link ${rateMbit} Mbit/s, loss ${lossPct}%${slow !== undefined ? `, receiver 1 limited to ${slow} MiB/s` : ''}, MTU ${mtu}`);
    const r = runR ? await rackcast(setup, store, diskBytes) : undefined;
    if (r) say(`rackcast: ${r.seconds.toFixed(2)} s, extra bytes ${r.extraBytesPct?.toFixed(1)}%, socket drops ${r.socketDrops?.join('/')}, ring full ${r.receiverIo?.map((x) => x.fullWaits ?? '-').join('/')}, ` +
      `duplicates ${r.receiverRepairs?.map((x) => x.duplicates).join('/')}, waited ${r.receiverRepairs?.map((x) => x.waited).join('/')}, discarded ${r.receiverRepairs?.map((x) => x.discarded).join('/')}, ` +
      `rate ${Number(r.sender?.finalRateMbit).toFixed(0)} Mbit/s at the end, pacing lost ${Number(r.sender?.paceLostSeconds).toFixed(2)} s`);
    let u: Result | undefined;
    let uFailed: string | undefined;
    try {
      u = runU ? await udpcast(setup, frames, a.unzstd ? diskBytes : framesBytes) : undefined;
    } catch (e) {
      uFailed = (e as Error).message; // udpcast() has stopped what it started
    }
    if (u) say(`udpcast:  ${u.seconds.toFixed(2)} s`);
    if (uFailed) say(`udpcast failed: ${uFailed}`);
    return { ...(r ? { r } : {}), ...(u ? { u } : {}), ...(uFailed ? { uFailed } : {}) };
  };
  // --runs K: each configuration K times; the run with the median time stands for it (bit-exact
  // only if every run was), and every run's time is listed (series)
  const repeat = async (setup: Setup, key: (x: Result) => number): Promise<{ r?: Result; u?: Result; uFailed?: string; series: { rackcast: number[]; udpcast: number[]; rackcastExtraPct: number[] } }> => {
    const got = [];
    for (let k = 0; k < repeats; k++) got.push(await one(setup));
    const median = (xs: Result[]): Result | undefined => {
      if (!xs.length) return undefined;
      const m = [...xs].sort((x, y) => key(x) - key(y))[Math.floor((xs.length - 1) / 2)] as Result;
      return { ...m, bitExact: xs.every((x) => x.bitExact) };
    };
    const rs = got.flatMap((g) => (g.r ? [g.r] : []));
    const us = got.flatMap((g) => (g.u ? [g.u] : []));
    const failed = got.map((g) => g.uFailed).filter((f): f is string => f !== undefined);
    const r = median(rs);
    const u = median(us);
    return { ...(r ? { r } : {}), ...(u ? { u } : {}), ...(failed.length ? { uFailed: `${failed.length} of ${repeats} runs: ${failed[0]}` } : {}), series: { rackcast: rs.map(key), udpcast: us.map(key), rackcastExtraPct: rs.map((x) => +(x.extraBytesPct ?? NaN).toFixed(2)) } };
  };
  const report = async (N: number): Promise<object> => {
    const others = (x: Result): number => (slowArg !== undefined ? Math.max(...x.perReceiver.slice(1)) : x.seconds);
    // with --slow: the same receivers at full speed first, the baseline of the others' slowdown
    const base = slowArg !== undefined ? await repeat({ N, slow: undefined }, (x) => x.seconds) : undefined;
    const { r, u, uFailed, series } = await repeat({ N, slow: slowArg }, others);
    const slowdown = (x: Result | undefined, b: Result | undefined): number | null => (x && b ? (others(x) / b.seconds - 1) * 100 : null);
    return {
      receivers: N, lossPct, rateMbit, pacePct: pace * 100, mtu, bytes, slowMiBps: slowArg ?? null,
      rackcast: r && { seconds: r.seconds, efficiency: bytes / (r.seconds * rateBps), extraBytesPct: r.extraBytesPct,
        wireExtraPct: (r.wireBytes / perPkt(mtu - 52, 24) - 1) * 100, bitExact: r.bitExact, perReceiver: r.perReceiver, othersSeconds: others(r),
        ...(base ? { baselineSeconds: base.r?.seconds ?? null, othersSlowdownPct: slowdown(r, base.r) } : {}),
        socketDrops: r.socketDrops, cpu: r.cpu, receiverPackets: r.receiverPackets, receiverRepairs: r.receiverRepairs, receiverIo: r.receiverIo, receiverThreadCpu: r.receiverThreadCpu, sender: r.sender, receiverTimes: r.receiverTimes },
      udpcast: u && { seconds: u.seconds, efficiency: bytes / (u.seconds * rateBps), extraBytesPct: (u.wireBytes / perPkt(1456, 16) - 1) * 100,
        bitExact: u.bitExact, perReceiver: u.perReceiver, othersSeconds: others(u),
        ...(base ? { baselineSeconds: base.u?.seconds ?? null, othersSlowdownPct: slowdown(u, base.u) } : {}), cpu: u.cpu },
      ...(uFailed ? { udpcastFailed: uFailed } : {}),
      ...(repeats > 1 ? { runs: repeats, series, ...(base ? { baselineSeries: base.series } : {}) } : {}),
      ratio: r && u ? r.seconds / u.seconds : null,
      othersRatio: r && u && slowArg !== undefined ? others(r) / others(u) : null,
      start: a.cold ? 'cold' : 'ready', manifest: a['announce-only'] ? 'from the announce' : 'known before', bin: BIN, udpcastDecompresses: a.unzstd === true,
      machine: { nproc: Number(execFileSync('nproc').toString()), loadavg: loadavg() },
    };
  };
  const runs: object[] = [];
  for (const N of Ns) runs.push(await report(N));
  let out: object = runs[0] as object;
  if (runs.length > 1) {
    type Run = { receivers: number; rackcast?: { seconds: number }; udpcast?: { seconds: number } };
    const [f, l] = [runs[0] as Run, runs[runs.length - 1] as Run];
    const scale = (k: 'rackcast' | 'udpcast'): number | null => (f[k] && l[k] ? (l[k] as { seconds: number }).seconds / (f[k] as { seconds: number }).seconds : null);
    out = { runs, scaling: { from: f.receivers, to: l.receivers, rackcast: scale('rackcast'), udpcast: scale('udpcast') } };
    say(`T(${l.receivers})/T(${f.receivers}): rackcast ${scale('rackcast')?.toFixed(2) ?? '-'}, udpcast ${scale('udpcast')?.toFixed(2) ?? '-'}`);
  }
  console.log(a.json ? JSON.stringify(out) : JSON.stringify(out, null, 2));
} finally {
  killAll();
  rmSync(work, { recursive: true, force: true });
  rmSync(targets, { recursive: true, force: true });
}
