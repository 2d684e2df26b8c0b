// Benchmark: rackcast's TftpServer against Debian's tftpd-hpa, both serving the same 64 MiB file
// at 10.77.0.1 (:69 and :1069) inside a 2-host lab (namespaces; nothing on the real interfaces),
// runs alternating between the two so that a busy neighbour slows both alike, fetched
// by atftp in the other host with blksize 1468, with and without windowsize 16 (tftpd-hpa 5.2 does
// not know windowsize and answers without it, so its atftp falls back to lock-step). Also curl.
// in.tftpd comes from `apt-get download` + `dpkg -x` into the temp dir (never installed, so no
// daemon starts on the machine) unless it is already installed. Needs root (namespaces).
// tftp-floor.ts measures what a minimal Node server reaches in lock-step on the same lab.
// Usage: node scripts/bench.ts tftp [MiB, default 64] [runs, default 3]
//        or directly: node scripts/bench/tftp.ts [MiB] [runs]
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, canMakeLab } from '../lab/netns.ts';
import { printTable } from './lib.ts';
import { SERVER, atftp, loadavg, makeRoot, median, range, ready, sha256, startTftpdHpa, stop, timedFetch, waitFor } from './tftp-lab.ts';

await main();

async function main(): Promise<void> {
  if (!canMakeLab()) { console.error('tftp bench: needs root and `ip netns` (network namespaces)'); process.exit(2); }
  const mib = Number(process.argv[2] ?? 64);
  const runs = Number(process.argv[3] ?? 3);
  const dir = mkdtempSync(join(tmpdir(), 'rc-test-bench-tftp-'));
  let lab: Lab | undefined;
  try {
    const { root, want } = makeRoot(dir, mib);
    lab = new Lab({ hosts: 2 });
    const out = join(dir, 'out.bin');
    // Both servers run at once (rackcast on :69, tftpd-hpa on :1069) and every run alternates
    // between them, so a busy neighbour on this shared machine slows both alike.
    const ports = { rackcast: 69, 'tftpd-hpa': 1069 } as const;
    const clients: Array<[string, string, (port: number) => string[]]> = [
      ['atftp', 'blksize 1468', (p) => atftp('big.bin', out, p)],
      ['atftp', 'blksize 1468, windowsize 16', (p) => atftp('big.bin', out, p, 'windowsize 16')],
      ['curl', 'blksize 1468', (p) => ['curl', '-sS', '--tftp-blksize', '1468', `tftp://${SERVER}:${p}/big.bin`, '-o', out]],
    ];
    const serve = fileURLToPath(new URL('../../test/integration/tftp/serve.ts', import.meta.url));
    const ours = lab.spawn(0, process.execPath, [serve, SERVER, String(ports.rackcast), root]);
    const theirs = startTftpdHpa(lab, dir, root, ports['tftpd-hpa']);
    const results = new Map<string, number[]>(); // "server|client|options" → MiB/s of each run
    const load0 = loadavg();
    try {
      await waitFor(ours, 'listening');
      await ready(lab, dir, ports['tftpd-hpa']);
      for (let r = 0; r < runs; r++) {
        for (const [client, opts, argv] of clients) {
          for (const name of (r % 2 === 0 ? ['rackcast', 'tftpd-hpa'] : ['tftpd-hpa', 'rackcast']) as Array<keyof typeof ports>) {
            const [cmd, ...args] = argv(ports[name]);
            const s = await timedFetch(lab, cmd!, args);
            if (sha256(out) !== want) throw new Error(`${name}/${client}: output differs from the source`);
            rmSync(out);
            const key = `${name}|${client}|${opts}`;
            results.set(key, [...(results.get(key) ?? []), mib / s]);
          }
        }
      }
    } finally {
      await Promise.all([stop(ours), stop(theirs)]);
    }
    const load1 = loadavg();
    const rows = [['client', 'options', 'rackcast MiB/s', '(range)', 'tftpd-hpa MiB/s', '(range)', 'ratio']];
    for (const [client, opts] of clients) {
      const a = results.get(`rackcast|${client}|${opts}`)!;
      const b = results.get(`tftpd-hpa|${client}|${opts}`)!;
      rows.push([client, opts, median(a).toFixed(1), range(a), median(b).toFixed(1), range(b), `${(median(a) / median(b)).toFixed(2)}×`]);
    }
    console.log(`TFTP: ${mib} MiB file, lab veth pair (MTU 1500), ${runs} runs each (alternating servers), bit-exact checked`);
    console.log(`load average before ${load0}, after ${load1} (${cpus().length} CPUs)`);
    printTable(rows);
  } finally {
    await lab?.destroy();
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  }
}
