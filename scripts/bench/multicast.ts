// npm run bench -- multicast --receivers N --loss PCT --rate MBIT [--slow MIBPS] [--size-mb M] [--mtu N]
//                             [--cold] [--bin PATH] [--only rackcast|udpcast] [--unzstd] [--json]
//
// rackcast against udpcast (Debian's udp-sender/udp-receiver) on the same namespace lab, in one
// run, carrying the same compressed bytes (the image's chunk frames; udpcast gets them
// concatenated into one file). Every receiver's link (its bridge port) is limited to MBIT with tc
// tbf; --loss drops that share of UDP arriving at every receiver (nftables); --slow limits
// receiver 1's link to MIBPS MiB/s instead. Both senders are told 97% of the link rate.
// The clock starts when the sender is started, once every receiver is ready (listening and idle),
// as on a rack whose machines have booted and wait; --cold starts the sender 300 ms after the
// receivers instead, so their start-up (node, module loading, worker threads) falls inside the
// timed window (receivers get --fallback 30: waiting for the others never sends one to HTTP).
// Every process runs under GNU time: the report has its CPU seconds (all threads).
// udp-receiver writes the compressed stream as it comes (rackcast's receivers decompress and hash
// every block); --unzstd pipes it through `zstd -d` into the disk image instead, as a udpcast
// deployment of a compressed image does (checked bit-exact against the disk, which holds no
// holes or repeated blocks, so its frames in chunk order decompress to exactly the disk).
// --bin benchmarks another checkout's bin/rackcast.js (before/after comparisons in one lab run);
// NODE_OPTIONS passes through to rackcast's processes (e.g. --cpu-prof --cpu-prof-dir=DIR).
// Prints one JSON object (--json) or a readable summary. Bounded: every transfer has a time limit.
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Lab } from '../lab/netns.ts';
import { ImageStore, captureImage } from '../../services/image/index.ts';
import { chunkTable } from '../../services/image/manifest.ts';
import { hostCpu, killAll, sampleUsr, spawnIn, txBytes, waitReady } from './mcast-lib.ts';

const { values: a } = parseArgs({ options: {
  receivers: { type: 'string', default: '3' }, loss: { type: 'string', default: '0' }, rate: { type: 'string', default: '300' },
  slow: { type: 'string' }, 'size-mb': { type: 'string', default: '256' }, mtu: { type: 'string', default: '1500' }, json: { type: 'boolean' },
  only: { type: 'string' }, cold: { type: 'boolean' }, bin: { type: 'string' }, unzstd: { type: 'boolean' },
} });
const N = Number(a.receivers);
const lossPct = Number(a.loss);
const rateMbit = Number(a.rate);
const mtu = Number(a.mtu);
const slow = a.slow === undefined ? undefined : Number(a.slow);
const BIN = resolve(a.bin ?? resolve(import.meta.dirname, '..', '..', 'bin', 'rackcast.js'));
const LIMIT_S = 600;
const work = mkdtempSync(join(tmpdir(), 'rc-bench-mcast-'));
const say = (s: string): void => { if (!a.json) console.log(s); else process.stderr.write(s + '\n'); };

function makeLab(): Lab {
  const lab = new Lab({ hosts: N + 1, mtu });
  for (let i = 1; i <= N; i++) {
    lab.rateLimit(i, i === 1 && slow !== undefined ? slow * 8 * 1.048576 : rateMbit);
    if (lossPct > 0) lab.loss(i, Math.round(lossPct * 10));
  }
  return lab;
}

interface Result {
  seconds: number; perReceiver: number[]; bitExact: boolean; wireBytes: number; extraBytesPct?: number; sender?: Record<string, number>; receiverTimes?: Record<string, number>[];
  /** CPU seconds: the sender, each receiver, and each receiver's after the clock started (the data phase) */
  cpu: { sender: number; receivers: number[]; receiversTimed: number[] };
  /** DATA datagrams each rackcast receiver handled (repairs and duplicates included) */
  receiverPackets?: number[];
}

/**
 * Receivers are started; start the clock when all are ready (or 300 ms later with --cold).
 * Resolves with the CPU seconds each receiver host has used so far.
 */
async function receiversStarted(lab: Lab): Promise<number[]> {
  if (a.cold) await new Promise((r) => setTimeout(r, 300));
  else await Promise.all(Array.from({ length: N }, (_, k) => waitReady(lab, k + 1, 60)));
  return Array.from({ length: N }, (_, k) => hostCpu(lab, k + 1));
}

function cpuOf(sender: { cpu: number }, receivers: { cpu: number }[], before: number[]): Result['cpu'] {
  return { sender: sender.cpu, receivers: receivers.map((o) => o.cpu), receiversTimed: receivers.map((o, k) => o.cpu - (before[k] as number)) };
}

async function rackcast(store: string, expect: Buffer): Promise<Result> {
  const lab = makeLab();
  try {
    const rx = Array.from({ length: N }, (_, k) => spawnIn(lab, k + 1, process.execPath, [BIN, 'mcast', 'receive', '--interface', 'eth0', '--target', join(work, `rc-out-${k + 1}.img`),
      '--fallback', '30', '--json'], LIMIT_S));
    const cpu0 = await receiversStarted(lab);
    const tx0 = txBytes(lab, 0);
    const t0 = performance.now();
    const tx = spawnIn(lab, 0, process.execPath, [BIN, 'mcast', 'send', 'bench', '--interface', 'eth0', '--store', store, '--min-receivers', String(N),
      '--rate', `${rateMbit * 0.97}m`, '--mtu', String(mtu), '--json'], LIMIT_S);
    const ends: number[] = [];
    const outs = await Promise.all(rx.map((p, k) => p.then((o) => { ends[k] = (performance.now() - t0) / 1000; return o; })));
    const reports = outs.map((o) => JSON.parse(o.stdout.trim().split('\n').pop() as string) as { times: Record<string, number>; dataPackets: number });
    const s = await tx;
    const seconds = Math.max(...ends);
    const report = JSON.parse(s.stdout.trim().split('\n').pop() as string) as { seconds: number; extraBytesPct: number; firstPassSeconds: number; finalRateMbit: number; repairPackets: number; packetsSent: number };
    const bitExact = Array.from({ length: N }, (_, k) => readFileSync(join(work, `rc-out-${k + 1}.img`)).equals(expect)).every(Boolean);
    return { seconds, perReceiver: ends, bitExact, wireBytes: txBytes(lab, 0) - tx0, extraBytesPct: report.extraBytesPct,
      cpu: cpuOf(s, outs, cpu0), receiverTimes: reports.map((x) => x.times), receiverPackets: reports.map((x) => x.dataPackets), sender: { sessionSeconds: report.seconds, firstPassSeconds: report.firstPassSeconds, finalRateMbit: report.finalRateMbit, packets: report.packetsSent, repairPackets: report.repairPackets } };
  } finally { await lab.destroy(); }
}

async function udpcast(file: string, expect: Buffer): Promise<Result> {
  const lab = makeLab();
  try {
    // the same durability as rackcast's receivers, which fsync the target before they report done
    const pipe = a.unzstd ? ` --pipe 'zstd -d -q'` : '';
    const rx = Array.from({ length: N }, (_, k) => spawnIn(lab, k + 1, 'sh', ['-c', `udp-receiver --interface eth0 --file ${join(work, `uc-out-${k + 1}`)}${pipe} --nokbd --no-progress && sync ${join(work, `uc-out-${k + 1}`)}`], LIMIT_S));
    const cpu0 = await receiversStarted(lab);
    const tx0 = txBytes(lab, 0);
    const t0 = performance.now();
    const tx = spawnIn(lab, 0, 'udp-sender', ['--interface', 'eth0', '--file', file, '--min-receivers', String(N), '--max-bitrate', `${Math.round(rateMbit * 0.97)}m`, '--nokbd', '--no-progress'], LIMIT_S);
    const ends: number[] = [];
    const outs = await Promise.all(rx.map((p, k) => p.then((o) => { ends[k] = (performance.now() - t0) / 1000; return o; })));
    const s = await tx;
    const bitExact = Array.from({ length: N }, (_, k) => readFileSync(join(work, `uc-out-${k + 1}`)).equals(expect)).every(Boolean);
    return { seconds: Math.max(...ends), perReceiver: ends, bitExact, wireBytes: txBytes(lab, 0) - tx0, cpu: cpuOf(s, outs, cpu0) };
  } finally { await lab.destroy(); }
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
  say(`image: ${(bytes / 1e6).toFixed(1)} MB of zstd frames; ${N} receivers, link ${rateMbit} Mbit/s, loss ${lossPct}%${slow !== undefined ? `, receiver 1 limited to ${slow} MiB/s` : ''}, MTU ${mtu}`);
  const runR = a.only !== 'udpcast';
  const runU = a.only !== 'rackcast';
  const r = runR ? await rackcast(store, diskBytes) : undefined;
  if (r) say(`rackcast: ${r.seconds.toFixed(2)} s`);
  const u = runU ? await udpcast(frames, a.unzstd ? diskBytes : framesBytes) : undefined;
  if (u) say(`udpcast:  ${u.seconds.toFixed(2)} s`);
  const rateBps = rateMbit * 1e6 / 8;
  const others = (x: Result): number => (slow !== undefined ? Math.max(...x.perReceiver.slice(1)) : x.seconds);
  const out = {
    receivers: N, lossPct, rateMbit, mtu, bytes, slowMiBps: slow ?? null,
    rackcast: r && { seconds: r.seconds, efficiency: bytes / (r.seconds * rateBps), extraBytesPct: r.extraBytesPct,
      wireExtraPct: (r.wireBytes / perPkt(mtu - 52, 24) - 1) * 100, bitExact: r.bitExact, perReceiver: r.perReceiver, othersSeconds: others(r), cpu: r.cpu, receiverPackets: r.receiverPackets, sender: r.sender, receiverTimes: r.receiverTimes },
    udpcast: u && { seconds: u.seconds, efficiency: bytes / (u.seconds * rateBps), extraBytesPct: (u.wireBytes / perPkt(1456, 16) - 1) * 100,
      bitExact: u.bitExact, perReceiver: u.perReceiver, othersSeconds: others(u), cpu: u.cpu },
    ratio: r && u ? r.seconds / u.seconds : null,
    othersRatio: r && u && slow !== undefined ? others(r) / others(u) : null,
    start: a.cold ? 'cold' : 'ready', bin: BIN, udpcastDecompresses: a.unzstd === true,
    machine: { nproc: Number(execFileSync('nproc').toString()), loadavg: loadavg() },
  };
  console.log(a.json ? JSON.stringify(out) : JSON.stringify(out, null, 2));
} finally {
  killAll();
  rmSync(work, { recursive: true, force: true });
}
