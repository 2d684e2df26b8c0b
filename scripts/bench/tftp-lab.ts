// Shared by the TFTP benchmarks (tftp.ts, tftp-floor.ts): the served directory, tftpd-hpa taken
// from Debian's package, fetches with a time limit inside the namespace lab, server start/stop,
// and each server's CPU time while a fetch runs (perf stat, which follows tftpd-hpa's forked
// child; absent perf, no CPU figures). Nothing here binds outside the lab's namespaces.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from '../lab/netns.ts';

export const SERVER = '10.77.0.1';
const FETCH_TIMEOUT_S = 120;

export function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** dir/root with big.bin (mib MiB of random bytes) and a tiny "probe", readable by "nobody". */
export function makeRoot(dir: string, mib: number): { root: string; file: string; want: string } {
  const root = join(dir, 'root');
  mkdirSync(root);
  chmodSync(dir, 0o755); // tftpd-hpa drops to "nobody"
  const file = join(root, 'big.bin');
  writeFileSync(file, randomBytes(mib << 20));
  writeFileSync(join(root, 'probe'), 'probe');
  for (const f of ['big.bin', 'probe']) chmodSync(join(root, f), 0o644);
  return { root, file, want: sha256(file) };
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

/** Starts tftpd-hpa in lab host 0 on SERVER:port, serving root; it is ready once `ready()` passes. */
export function startTftpdHpa(lab: Lab, dir: string, root: string, port: number): ChildProcess {
  const hpa = tftpdHpa(dir);
  return lab.spawn(0, 'env', [...hpa.env, hpa.cmd, '--foreground', '--address', `${SERVER}:${port}`, '--secure', root]);
}

/** Runs a command in lab host 1 with a time limit; resolves to seconds taken. */
export function timedFetch(lab: Lab, cmd: string, args: string[]): Promise<number> {
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

/** atftp's command line fetching `name` from SERVER:port into `out` with blksize 1468 and extra options. */
export function atftp(name: string, out: string, port: number, ...options: string[]): string[] {
  return ['atftp', '--get', '-r', name, '-l', out, '--option', 'blksize 1468', ...options.flatMap((o) => ['--option', o]), SERVER, String(port)];
}

export function waitFor(child: ChildProcess, text: string): Promise<void> {
  if (child.stdout === null) return Promise.reject(new Error('no stdout'));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not print "${text}" in 20 s`)), 20_000);
    child.stdout?.on('data', (d: Buffer) => { if (d.toString().includes(text)) { clearTimeout(timer); resolve(); } });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}) before "${text}"`)); });
  });
}

/** Polls with a tiny fetch until the server answers (tftpd-hpa prints nothing when ready). */
export async function ready(lab: Lab, dir: string, port: number): Promise<void> {
  let last: unknown;
  for (let i = 0; i < 20; i++) {
    try {
      const [cmd, ...args] = atftp('probe', join(dir, 'probe.out'), port);
      await timedFetch(lab, cmd!, args);
      return;
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`server never answered: ${(last as Error).message}`);
}

export function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
    const kill = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => { clearTimeout(kill); resolve(); });
    child.kill('SIGTERM');
  });
}

const hasPerf = spawnSync('perf', ['--version'], { stdio: 'ignore' }).status === 0;

/**
 * Counts the CPU time (task-clock: all threads, and children forked meanwhile) of process `pid`
 * from when it resolves until the function it resolves to is called; that one resolves to
 * milliseconds, or undefined without perf. `pid` is a lab.spawn() child's: `ip netns exec` execs,
 * so it is the server's own.
 */
export async function cpuMeter(pid: number | undefined, dir: string): Promise<() => Promise<number | undefined>> {
  if (!hasPerf || pid === undefined) return () => Promise.resolve(undefined);
  const out = join(dir, `perf-${pid}.csv`);
  const perf = spawn('perf', ['stat', '-x,', '-e', 'task-clock', '-p', String(pid), '-o', out], { stdio: 'ignore' });
  const exited = new Promise((r) => perf.once('exit', r));
  await new Promise((r) => setTimeout(r, 200)); // perf attaches
  return async () => {
    perf.kill('SIGINT');
    await exited;
    const line = readFileSync(out, 'utf8').split('\n').find((l) => l.includes('task-clock'));
    rmSync(out, { force: true });
    const ms = Number(line?.split(',')[0]);
    return Number.isFinite(ms) ? ms : undefined;
  };
}

export function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

export const median = (r: number[]): number => [...r].sort((a, b) => a - b)[Math.floor(r.length / 2)]!;
export const range = (r: number[]): string => `${Math.min(...r).toFixed(1)}–${Math.max(...r).toFixed(1)}`;
