// Benchmark: how fast can lock-step TFTP be on node:dgram at all? Next to rackcast's TftpServer
// and Debian's tftpd-hpa it runs the least a Node server can do per block: the whole file laid out
// as DATA datagrams in memory before the first request, each ACK answered with the next one, no
// timers, no retransmission, no checks. Once sending with an address (as rackcast does) and once
// from a connected socket (send without an address). All four serve the same 64 MiB file at
// 10.77.0.1 in a 2-host namespace lab; atftp in the other host fetches it with blksize 1468 and no
// windowsize (lock-step), runs alternating their order. Printed per server: MiB/s and the server's
// CPU time per block (perf stat, when perf is installed). Needs root (namespaces).
// Usage: node scripts/bench.ts tftp-floor [MiB, default 64] [runs, default 3]
//        (internally: tftp-floor.ts --floor <address> <port> <file> plain|connected)
import { createSocket, type RemoteInfo } from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, canMakeLab } from '../lab/netns.ts';
import { printTable } from './lib.ts';
import { SERVER, atftp, cpuMeter, loadavg, makeRoot, median, range, ready, sha256, startTftpdHpa, stop, timedFetch, waitFor } from './tftp-lab.ts';

const BLKSIZE = 1468;

if (process.argv[2] === '--floor') {
  const [address, port, file, how] = process.argv.slice(3);
  floorServer(address!, Number(port), file!, how === 'connected');
} else {
  await main();
}

/** The minimal lock-step server: answers the benchmark's RRQ (blksize 1468) and nothing else. */
function floorServer(address: string, port: number, file: string, connected: boolean): void {
  const data = readFileSync(file);
  const packets: Buffer[] = []; // packets[k] is block k+1, sent for ACK k (ACK 0 acknowledges the OACK)
  for (let at = 0; ; at += BLKSIZE) {
    const b = Buffer.allocUnsafe(4 + Math.min(BLKSIZE, data.length - at));
    b.writeUInt16BE(3, 0);
    b.writeUInt16BE((packets.length + 1) & 0xffff, 2);
    data.copy(b, 4, at);
    packets.push(b);
    if (b.length < 4 + BLKSIZE) break;
  }
  const oack = Buffer.from(`\0\x06blksize\0${BLKSIZE}\0`, 'latin1');
  const lookup = (a: string, family: number, cb: (e: null, a: string, f: number) => void): void => cb(null, a, family);
  const requests = createSocket({ type: 'udp4', lookup: lookup as never });
  requests.on('message', (_rrq: Buffer, peer: RemoteInfo) => {
    const s = createSocket({ type: 'udp4', lookup: lookup as never });
    const send = connected ? (b: Buffer): void => s.send(b) : (b: Buffer): void => s.send(b, peer.port, peer.address);
    let next = 0;
    s.on('message', (ack: Buffer) => {
      if (ack.readUInt16BE(2) !== (next & 0xffff)) return; // a duplicate
      if (next === packets.length) s.close();
      else send(packets[next++]!);
    });
    s.bind(0, address, () => { if (connected) s.connect(peer.port, peer.address, () => send(oack)); else send(oack); });
  });
  requests.bind(port, address, () => console.log('listening'));
}

async function main(): Promise<void> {
  if (!canMakeLab()) { console.error('tftp-floor bench: needs root and `ip netns` (network namespaces)'); process.exit(2); }
  const mib = Number(process.argv[2] ?? 64);
  const runs = Number(process.argv[3] ?? 3);
  const dir = mkdtempSync(join(tmpdir(), 'rc-test-bench-tftp-floor-'));
  let lab: Lab | undefined;
  try {
    const { root, file, want } = makeRoot(dir, mib);
    lab = new Lab({ hosts: 2 });
    const out = join(dir, 'out.bin');
    const self = fileURLToPath(import.meta.url);
    const serve = fileURLToPath(new URL('../../test/integration/tftp/serve.ts', import.meta.url));
    const servers = [
      { name: 'rackcast TftpServer', port: 69, child: lab.spawn(0, process.execPath, [serve, SERVER, '69', root]) },
      { name: 'tftpd-hpa 5.2', port: 1069, child: startTftpdHpa(lab, dir, root, 1069) },
      { name: 'Node floor, send to address', port: 2069, child: lab.spawn(0, process.execPath, [self, '--floor', SERVER, '2069', file, 'plain']) },
      { name: 'Node floor, connected socket', port: 2070, child: lab.spawn(0, process.execPath, [self, '--floor', SERVER, '2070', file, 'connected']) },
    ];
    const blocks = Math.floor((mib << 20) / BLKSIZE) + 1;
    const rates = new Map<string, number[]>();
    const cpu = new Map<string, number[]>(); // µs of server CPU per block
    const load0 = loadavg();
    try {
      for (const s of servers) await (s.port === 1069 ? ready(lab, dir, s.port) : waitFor(s.child, 'listening'));
      for (let r = 0; r < runs; r++) {
        for (const s of r % 2 === 0 ? servers : [...servers].reverse()) {
          const [cmd, ...args] = atftp('big.bin', out, s.port);
          const meter = await cpuMeter(s.child.pid, dir);
          const secs = await timedFetch(lab, cmd!, args);
          const ms = await meter();
          if (sha256(out) !== want) throw new Error(`${s.name}: output differs from the source`);
          rmSync(out);
          rates.set(s.name, [...(rates.get(s.name) ?? []), mib / secs]);
          if (ms !== undefined) cpu.set(s.name, [...(cpu.get(s.name) ?? []), (ms * 1000) / blocks]);
        }
      }
    } finally {
      await Promise.all(servers.map((s) => stop(s.child)));
    }
    const load1 = loadavg();
    const hpa = median(rates.get('tftpd-hpa 5.2')!);
    const rows = [['server (atftp, blksize 1468, lock-step)', 'MiB/s', '(range)', 'vs tftpd-hpa', 'CPU µs/block', '(range)']];
    for (const s of servers) {
      const r = rates.get(s.name)!;
      const c = cpu.get(s.name);
      rows.push([s.name, median(r).toFixed(1), range(r), `${(median(r) / hpa).toFixed(2)}×`, c ? median(c).toFixed(1) : '–', c ? range(c) : '']);
    }
    console.log(`TFTP lock-step floor: ${mib} MiB file (${blocks} blocks), lab veth pair (MTU 1500), ${runs} runs each (alternating order), bit-exact checked`);
    console.log(`load average before ${load0}, after ${load1} (${cpus().length} CPUs)`);
    printTable(rows);
  } finally {
    await lab?.destroy();
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  }
}
