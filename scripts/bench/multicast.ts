// npm run bench -- multicast --receivers N --loss PCT --rate MBIT [--slow MIBPS] [--size-mb M] [--mtu N] [--json]
//
// rackcast against udpcast (Debian's udp-sender/udp-receiver) on the same namespace lab, in one
// run, carrying the same compressed bytes (the image's chunk frames; udpcast gets them
// concatenated into one file). Every receiver's link (its bridge port) is limited to MBIT with tc
// tbf; --loss drops that share of UDP arriving at every receiver (nftables); --slow limits
// receiver 1's link to MIBPS MiB/s instead. Both senders are told 97% of the link rate.
// Prints one JSON object (--json) or a readable summary. Bounded: every transfer has a time limit.
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Lab } from '../lab/netns.ts';
import { ImageStore, captureImage } from '../../services/image/index.ts';
import { chunkTable } from '../../services/image/manifest.ts';
import { sampleUsr, spawnIn, txBytes } from './mcast-lib.ts';

const { values: a } = parseArgs({ options: {
  receivers: { type: 'string', default: '3' }, loss: { type: 'string', default: '0' }, rate: { type: 'string', default: '300' },
  slow: { type: 'string' }, 'size-mb': { type: 'string', default: '256' }, mtu: { type: 'string', default: '1500' }, json: { type: 'boolean' },
  only: { type: 'string' },
} });
const N = Number(a.receivers);
const lossPct = Number(a.loss);
const rateMbit = Number(a.rate);
const mtu = Number(a.mtu);
const slow = a.slow === undefined ? undefined : Number(a.slow);
const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'rackcast.js');
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

interface Result { seconds: number; perReceiver: number[]; bitExact: boolean; wireBytes: number; extraBytesPct?: number; sender?: Record<string, number>; receiverTimes?: Record<string, number>[] }

async function rackcast(store: string, expect: Buffer): Promise<Result> {
  const lab = makeLab();
  try {
    const rx = Array.from({ length: N }, (_, k) => spawnIn(lab, k + 1, process.execPath, [BIN, 'mcast', 'receive', '--interface', 'eth0', '--target', join(work, `rc-out-${k + 1}.img`), '--json'], LIMIT_S));
    await new Promise((r) => setTimeout(r, 300));
    const tx0 = txBytes(lab, 0);
    const t0 = performance.now();
    const tx = spawnIn(lab, 0, process.execPath, [BIN, 'mcast', 'send', 'bench', '--interface', 'eth0', '--store', store, '--min-receivers', String(N),
      '--rate', `${rateMbit * 0.97}m`, '--mtu', String(mtu), '--json'], LIMIT_S);
    const ends: number[] = [];
    const times = await Promise.all(rx.map((p, k) => p.then((o) => {
      ends[k] = (performance.now() - t0) / 1000;
      return (JSON.parse(o.stdout.trim().split('\n').pop() as string) as { times: Record<string, number> }).times;
    })));
    const s = await tx;
    const seconds = Math.max(...ends);
    const report = JSON.parse(s.stdout.trim().split('\n').pop() as string) as { extraBytesPct: number; firstPassSeconds: number; finalRateMbit: number; repairPackets: number; packetsSent: number };
    const bitExact = Array.from({ length: N }, (_, k) => readFileSync(join(work, `rc-out-${k + 1}.img`)).equals(expect)).every(Boolean);
    return { seconds, perReceiver: ends, bitExact, wireBytes: txBytes(lab, 0) - tx0, extraBytesPct: report.extraBytesPct,
      receiverTimes: times, sender: { firstPassSeconds: report.firstPassSeconds, finalRateMbit: report.finalRateMbit, packets: report.packetsSent, repairPackets: report.repairPackets } };
  } finally { await lab.destroy(); }
}

async function udpcast(file: string, expect: Buffer): Promise<Result> {
  const lab = makeLab();
  try {
    // the same durability as rackcast's receivers, which fsync the target before they report done
    const rx = Array.from({ length: N }, (_, k) => spawnIn(lab, k + 1, 'sh', ['-c', `udp-receiver --interface eth0 --file ${join(work, `uc-out-${k + 1}`)} --nokbd --no-progress && sync ${join(work, `uc-out-${k + 1}`)}`], LIMIT_S));
    await new Promise((r) => setTimeout(r, 300));
    const tx0 = txBytes(lab, 0);
    const t0 = performance.now();
    const tx = spawnIn(lab, 0, 'udp-sender', ['--interface', 'eth0', '--file', file, '--min-receivers', String(N), '--max-bitrate', `${Math.round(rateMbit * 0.97)}m`, '--nokbd', '--no-progress'], LIMIT_S);
    const ends = await Promise.all(rx.map((p) => p.then(() => (performance.now() - t0) / 1000)));
    await tx;
    const bitExact = Array.from({ length: N }, (_, k) => readFileSync(join(work, `uc-out-${k + 1}`)).equals(expect)).every(Boolean);
    return { seconds: Math.max(...ends), perReceiver: ends, bitExact, wireBytes: txBytes(lab, 0) - tx0 };
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
  const u = runU ? await udpcast(frames, framesBytes) : undefined;
  if (u) say(`udpcast:  ${u.seconds.toFixed(2)} s`);
  const rateBps = rateMbit * 1e6 / 8;
  const others = (x: Result): number => (slow !== undefined ? Math.max(...x.perReceiver.slice(1)) : x.seconds);
  const out = {
    receivers: N, lossPct, rateMbit, mtu, bytes, slowMiBps: slow ?? null,
    rackcast: r && { seconds: r.seconds, efficiency: bytes / (r.seconds * rateBps), extraBytesPct: r.extraBytesPct,
      wireExtraPct: (r.wireBytes / perPkt(mtu - 52, 24) - 1) * 100, bitExact: r.bitExact, perReceiver: r.perReceiver, othersSeconds: others(r), sender: r.sender, receiverTimes: r.receiverTimes },
    udpcast: u && { seconds: u.seconds, efficiency: bytes / (u.seconds * rateBps), extraBytesPct: (u.wireBytes / perPkt(1456, 16) - 1) * 100,
      bitExact: u.bitExact, perReceiver: u.perReceiver, othersSeconds: others(u) },
    ratio: r && u ? r.seconds / u.seconds : null,
    othersRatio: r && u && slow !== undefined ? others(r) / others(u) : null,
    machine: { nproc: Number(execFileSync('nproc').toString()) },
  };
  console.log(a.json ? JSON.stringify(out) : JSON.stringify(out, null, 2));
} finally {
  rmSync(work, { recursive: true, force: true });
}
