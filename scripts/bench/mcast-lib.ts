// Helpers for the multicast benchmark: real data, processes in lab namespaces, interface counters.
import { closeSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from '../lab/netns.ts';

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

/** Run a command in host i's namespace; resolves with its output, rejects on failure or timeout. */
export function spawnIn(lab: Lab, i: number, cmd: string, args: string[], limitS: number): Promise<{ stdout: string; stderr: string }> {
  const child = lab.spawn(i, cmd, args);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  return new Promise((res, rej) => {
    const t = setTimeout(() => { child.kill('SIGKILL'); rej(new Error(`${cmd} in host ${i} took longer than ${limitS} s`)); }, limitS * 1000);
    child.on('exit', (code) => {
      clearTimeout(t);
      if (code === 0) res({ stdout, stderr });
      else rej(new Error(`${cmd} ${args.join(' ')} in host ${i} exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
    });
  });
}

/** Bytes sent by host i's eth0 so far. */
export function txBytes(lab: Lab, i: number): number {
  const j = JSON.parse(lab.exec(i, 'ip', ['-s', '-j', 'link', 'show', 'eth0'])) as { stats64: { tx: { bytes: number } } }[];
  return j[0]?.stats64.tx.bytes ?? 0;
}
