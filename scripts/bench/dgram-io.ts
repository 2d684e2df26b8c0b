// npm run bench -- dgram-io [--count N] [--size BYTES] [--rate MBIT] [--runs K] [--json]
//
// The multicast data plane's datagram I/O alone: node:dgram (one call and one JS callback per
// datagram) against the rcudp addon (a receive thread on recvmmsg filling a ring JS reads in
// batches; one sendmmsg per paced burst), in the same invocation, on a two-host namespace lab.
// A sender host sends `count` datagrams of `size` bytes to the group, paced at `rate` (a flush
// every 1 ms, as the multicast sender's pacer does); a receiver host counts them. Each side
// reports the CPU seconds (all its threads) of the transfer alone, start-up excluded. Every
// combination runs `runs` times in turn; the report has the median CPU per datagram (µs) of each
// side, and the ratio native/dgram. Bounded: each transfer has a time limit.
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { Lab } from '../lab/netns.ts';

const { values: a } = parseArgs({ options: {
  count: { type: 'string', default: '40000' }, size: { type: 'string', default: '1472' }, rate: { type: 'string', default: '300' },
  runs: { type: 'string', default: '3' }, json: { type: 'boolean' },
} });
const count = Number(a.count);
const size = Number(a.size);
const mbit = Number(a.rate);
const runs = Number(a.runs);
if (!(count >= 100 && count <= 1e6) || !(size >= 28 && size <= 65507) || !(mbit > 0 && mbit <= 10000) || !(runs >= 1 && runs <= 9)) {
  throw new Error('--count 100..1e6, --size 28..65507, --rate MBIT > 0, --runs 1..9');
}
const PEER = resolve(import.meta.dirname, 'dgram-io-peer.ts');
const LIMIT_MS = Math.max(30000, 20 * count * size * 8 / (mbit * 1e3));
const say = (s: string): void => { if (a.json) process.stderr.write(s + '\n'); else console.log(s); };

/** Run the peer in host i; resolves with each JSON line it printed, in order. */
function peer(lab: Lab, i: number, args: string[], onLine: (o: Record<string, unknown>) => void): Promise<void> {
  const child = lab.spawn(i, process.execPath, [PEER, ...args]);
  let buf = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let n = buf.indexOf('\n'); n >= 0; n = buf.indexOf('\n')) { onLine(JSON.parse(buf.slice(0, n)) as Record<string, unknown>); buf = buf.slice(n + 1); }
  });
  child.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
  return new Promise((res, rej) => {
    const t = setTimeout(() => { child.kill('SIGKILL'); rej(new Error(`peer in host ${i} took longer than ${LIMIT_MS} ms`)); }, LIMIT_MS);
    child.on('exit', (code) => { clearTimeout(t); if (code === 0) res(); else rej(new Error(`peer in host ${i} exited ${code}: ${err.trim().slice(-300)}`)); });
  });
}

interface One { sendCpu: number; recvCpu: number; received: number; dropped: number }

async function once(lab: Lab, txIo: string, rxIo: string): Promise<One> {
  const base = { iface: '', group: '239.255.77.9', port: 9790 };
  let ready!: () => void;
  const isReady = new Promise<void>((r) => { ready = r; });
  let rxOut: Record<string, unknown> = {};
  let txOut: Record<string, unknown> = {};
  const rx = peer(lab, 1, ['recv', JSON.stringify({ ...base, io: rxIo, iface: lab.host(1).ip })], (o) => { if (o.ready) ready(); else rxOut = o; });
  await Promise.race([isReady, rx]);
  const tx = peer(lab, 0, ['send', JSON.stringify({ ...base, io: txIo, iface: lab.host(0).ip, count, size, mbit })], (o) => { txOut = o; });
  await Promise.all([tx, rx]);
  return { sendCpu: Number(txOut.cpu), recvCpu: Number(rxOut.cpu), received: Number(rxOut.received), dropped: Number(txOut.dropped) };
}

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)] as number;
const lab = new Lab({ hosts: 2, mtu: Math.max(1500, size + 28) });
try {
  const modes = ['dgram', 'native'] as const;
  const got: Record<string, One[]> = { dgram: [], native: [] };
  say(`${count} datagrams of ${size} bytes at ${mbit} Mbit/s, ${runs} runs of node:dgram and rcudp in turn`);
  for (let k = 0; k < runs; k++) for (const m of modes) got[m]?.push(await once(lab, m, m));
  const summary = Object.fromEntries(modes.map((m) => {
    const xs = got[m] as One[];
    return [m, {
      sendUsPerDatagram: median(xs.map((x) => x.sendCpu)) / count * 1e6, recvUsPerDatagram: median(xs.map((x) => x.recvCpu)) / count * 1e6,
      sendCpu: xs.map((x) => x.sendCpu), recvCpu: xs.map((x) => x.recvCpu), received: xs.map((x) => x.received), dropped: xs.map((x) => x.dropped),
    }];
  })) as unknown as Record<'dgram' | 'native', { sendUsPerDatagram: number; recvUsPerDatagram: number }>;
  const out = { count, size, rateMbit: mbit, runs, ...summary,
    ratio: { send: summary.native.sendUsPerDatagram / summary.dgram.sendUsPerDatagram, recv: summary.native.recvUsPerDatagram / summary.dgram.recvUsPerDatagram } };
  console.log(a.json ? JSON.stringify(out) : JSON.stringify(out, null, 2));
} finally {
  await lab.destroy();
}
