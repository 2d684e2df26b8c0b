// Benchmark: rackcast's TftpServer against Debian's tftpd-hpa, both serving the same 64 MiB file
// at 10.77.0.1 (:69 and :1069) inside a 2-host lab (namespaces; nothing on the real interfaces),
// runs alternating between the two so that a busy neighbour slows both alike, fetched
// by atftp in the other host with blksize 1468, with and without windowsize 16 (tftpd-hpa 5.2 does
// not know windowsize and answers without it, so its atftp falls back to lock-step). Also curl.
// in.tftpd comes from `apt-get download` + `dpkg -x` into the temp dir (never installed, so no
// daemon starts on the machine) unless it is already installed. Needs root (namespaces).
// Usage: node scripts/bench.ts tftp [MiB, default 64] [runs, default 3]   (needs a "tftp" entry in
//        scripts/bench.ts's list) or directly: node scripts/bench/tftp.ts [MiB] [runs]
//        (internally: tftp.ts --serve <address> <root> runs the rackcast server in a namespace)
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, canMakeLab } from '../lab/netns.ts';
import { printTable } from './lib.ts';

const SERVER = '10.77.0.1';
const FETCH_TIMEOUT_S = 120;

if (process.argv[2] === '--serve') {
  const { TftpServer } = await import('../../services/tftp/server.ts');
  const server = new TftpServer({ address: process.argv[3]!, root: process.argv[4]!, port: 69 });
  await server.listen();
  console.log('listening');
  process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
} else {
  await main();
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** in.tftpd from the system, or extracted from Debian's package into dir (not installed). */
function tftpdHpa(dir: string): { cmd: string; env: string[] } {
  const sys = spawnSync('sh', ['-c', 'command -v in.tftpd'], { encoding: 'utf8' }).stdout.trim();
  if (sys) return { cmd: sys, env: [] };
  const debs = join(dir, 'debs');
  const pkg = join(dir, 'pkg');
  mkdirSync(debs);
  const dl = spawnSync('apt-get', ['download', 'tftpd-hpa', 'libwrap0'], { cwd: debs, encoding: 'utf8', timeout: 120_000 });
  if (dl.status !== 0) throw new Error(`apt-get download tftpd-hpa libwrap0 failed: ${dl.stderr}`);
  for (const f of readdirSync(debs)) spawnSync('dpkg', ['-x', join(debs, f), pkg], { stdio: 'inherit' });
  const libs = ['usr/lib/x86_64-linux-gnu', 'lib/x86_64-linux-gnu'].map((l) => join(pkg, l)).join(':');
  return { cmd: join(pkg, 'usr/sbin/in.tftpd'), env: [`LD_LIBRARY_PATH=${libs}`] };
}

/** Runs a command in lab host 1 with a time limit; resolves to seconds taken. */
function timedFetch(lab: Lab, cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = lab.spawn(1, 'timeout', [String(FETCH_TIMEOUT_S), cmd, ...args]);
    let err = '';
    child.stderr?.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-2000); });
    child.on('close', (code) => {
      if (code === 0) resolve((performance.now() - t0) / 1000);
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.trim()}`));
    });
  });
}

function waitFor(child: ChildProcess, text: string): Promise<void> {
  if (child.stdout === null) return Promise.reject(new Error('no stdout'));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not print "${text}" in 20 s`)), 20_000);
    child.stdout?.on('data', (d: Buffer) => { if (d.toString().includes(text)) { clearTimeout(timer); resolve(); } });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}) before "${text}"`)); });
  });
}

/** Polls with a tiny fetch until the server answers (tftpd-hpa prints nothing when ready). */
async function ready(lab: Lab, dir: string, port: number): Promise<void> {
  let last: unknown;
  for (let i = 0; i < 20; i++) {
    try {
      await timedFetch(lab, 'atftp', ['--get', '-r', 'probe', '-l', join(dir, 'probe.out'), SERVER, String(port)]);
      return;
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`server never answered: ${(last as Error).message}`);
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
    const kill = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => { clearTimeout(kill); resolve(); });
    child.kill('SIGTERM');
  });
}

async function main(): Promise<void> {
  if (!canMakeLab()) { console.error('tftp bench: needs root and `ip netns` (network namespaces)'); process.exit(2); }
  const mib = Number(process.argv[2] ?? 64);
  const runs = Number(process.argv[3] ?? 3);
  const dir = mkdtempSync(join(tmpdir(), 'rc-test-bench-tftp-'));
  let lab: Lab | undefined;
  try {
    const root = join(dir, 'root');
    mkdirSync(root);
    chmodSync(dir, 0o755); // tftpd-hpa drops to "nobody"
    const file = join(root, 'big.bin');
    writeFileSync(file, randomBytes(mib << 20));
    writeFileSync(join(root, 'probe'), 'probe');
    for (const f of ['big.bin', 'probe']) chmodSync(join(root, f), 0o644);
    const want = sha256(file);
    const hpa = tftpdHpa(dir);
    lab = new Lab({ hosts: 2 });
    const out = join(dir, 'out.bin');
    // Both servers run at once (rackcast on :69, tftpd-hpa on :1069) and every run alternates
    // between them, so a busy neighbour on this shared machine slows both alike.
    const ports = { rackcast: 69, 'tftpd-hpa': 1069 } as const;
    const clients: Array<[string, string, (port: number) => string[]]> = [
      ['atftp', 'blksize 1468', (p) => ['atftp', '--get', '-r', 'big.bin', '-l', out, '--option', 'blksize 1468', SERVER, String(p)]],
      ['atftp', 'blksize 1468, windowsize 16', (p) => ['atftp', '--get', '-r', 'big.bin', '-l', out, '--option', 'blksize 1468', '--option', 'windowsize 16', SERVER, String(p)]],
      ['curl', 'blksize 1468', (p) => ['curl', '-sS', '--tftp-blksize', '1468', `tftp://${SERVER}:${p}/big.bin`, '-o', out]],
    ];
    const ours = lab.spawn(0, process.execPath, [fileURLToPath(import.meta.url), '--serve', SERVER, root]);
    const theirs = lab.spawn(0, 'env', [...hpa.env, hpa.cmd, '--foreground', '--address', `${SERVER}:${ports['tftpd-hpa']}`, '--secure', root]);
    const results = new Map<string, number[]>(); // "server|client|options" → MiB/s of each run
    const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
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
            results.set(key, [...(results.get(key) ?? []), mib / s].sort((a, b) => a - b));
          }
        }
      }
    } finally {
      await Promise.all([stop(ours), stop(theirs)]);
    }
    const load1 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    const median = (r: number[]): number => r[Math.floor(r.length / 2)]!;
    const range = (r: number[]): string => `${r[0]!.toFixed(1)}–${r[r.length - 1]!.toFixed(1)}`;
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
