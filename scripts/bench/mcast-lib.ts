// Helpers for the multicast benchmark: real data, processes in lab namespaces, interface counters.
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from '../lab/netns.ts';
import { rcvbufErrorsIn } from '../../services/multicast/udp-stats.ts';

/** `size` bytes of real file contents from /usr (compressible like a system disk). */
export function sampleUsr(size: number): Buffer {
  const out = Buffer.alloc(size);
  let off = 0;
  const walk = (dir: string): void => {
    let names: string[];
    try { names = readdirSync(dir).sort(); } catch { return; }
    for (const n of names) {
      if (off >= size) return;
      const p = join(dir, n);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && st.size > 0) {
        try { const fd = openSync(p, 'r'); off += readSync(fd, out, off, Math.min(st.size, size - off), 0); closeSync(fd); } catch { /* skip */ }
      }
    }
  };
  for (const d of ['/usr/lib', '/usr/share', '/usr/bin']) walk(d);
  return out;
}

const running = new Set<number>(); // process groups of the commands started by spawnIn
process.once('exit', () => killAll()); // also when the benchmark dies of an error

/**
 * Run a command in host i's namespace under GNU time; resolves with its output and the CPU
 * seconds (user + system, all its threads and waited-for children) it used; rejects on failure or
 * timeout. It runs in its own process group, so a timeout or killAll() ends the command too.
 */
export function spawnIn(lab: Lab, i: number, cmd: string, args: string[], limitS: number): Promise<{ stdout: string; stderr: string; cpu: number }> {
  const child = lab.spawn(i, '/usr/bin/time', ['-f', 'rc-cpu %U %S', cmd, ...args], { detached: true });
  const pgid = child.pid as number;
  running.add(pgid);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  const done = new Promise<{ stdout: string; stderr: string; cpu: number }>((res, rej) => {
    const t = setTimeout(() => { killGroup(pgid); rej(new Error(`${cmd} in host ${i} took longer than ${limitS} s`)); }, limitS * 1000);
    child.on('close', (code) => { // after stdout's last bytes, unlike 'exit'
      clearTimeout(t);
      running.delete(pgid);
      const m = /rc-cpu ([\d.]+) ([\d.]+)\s*$/.exec(stderr);
      if (code === 0) res({ stdout, stderr, cpu: m ? Number(m[1]) + Number(m[2]) : NaN });
      else rej(new Error(`${cmd} ${args.join(' ')} in host ${i} exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
    });
  });
  done.catch(() => undefined); // a failure while the caller still waits for something else is seen when it awaits this
  return done;
}

function killGroup(pgid: number): void {
  try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ }
  running.delete(pgid);
}

/** Kill every command spawnIn started that is still running (by process group). */
export function killAll(): void {
  for (const g of [...running]) killGroup(g);
}

/**
 * Wait until host i is ready, at most limitS: a UDP socket bound (a receiver listening) and its
 * processes nearly idle (≤ 20 ms of CPU in 200 ms: start-up done, worker threads loaded). The
 * sender then starts as on a rack whose machines have booted and wait for the session.
 */
export async function waitReady(lab: Lab, i: number, limitS: number): Promise<void> {
  const until = performance.now() + limitS * 1000;
  let last = -1;
  for (;;) {
    if (performance.now() > until) throw new Error(`host ${i}: not ready after ${limitS} s`);
    const listening = lab.exec(i, 'ss', ['-Hun', 'state', 'unconnected']).trim() !== '';
    const ticks = hostCpu(lab, i) * 100;
    if (listening && last >= 0 && ticks - last <= 2) return;
    last = ticks;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** CPU seconds used so far by the processes in host i's namespace (clock ticks of 1/100 s). */
export function hostCpu(lab: Lab, i: number): number {
  const pids = execFileSync('ip', ['netns', 'pids', lab.host(i).ns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean);
  let t = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' '); // fields from 3 (state) on
      t += Number(rest[11]) + Number(rest[12]); // utime, stime (fields 14, 15)
    } catch { /* exited */ }
  }
  return t / 100;
}

/** UDP datagrams host i's kernel dropped for a full socket buffer (/proc/net/snmp RcvbufErrors) */
export function rcvbufErrors(lab: Lab, i: number): number {
  return rcvbufErrorsIn(lab.exec(i, 'cat', ['/proc/net/snmp']));
}

/** Bytes sent by host i's eth0 so far. */
export function txBytes(lab: Lab, i: number): number {
  const j = JSON.parse(lab.exec(i, 'ip', ['-s', '-j', 'link', 'show', 'eth0'])) as { stats64: { tx: { bytes: number } } }[];
  return j[0]?.stats64.tx.bytes ?? 0;
}
