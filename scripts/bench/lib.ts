// Helpers shared by the benchmarks in scripts/bench: running commands, cold-cache timing,
// staging files, and printing aligned tables.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, lstatSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface RunOptions { input?: string; stdout?: boolean }

/** Run a command; stderr is kept for the error message only. Resolves to stdout when asked. */
export function run(cmd: string, args: string[], o: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [o.input === undefined ? 'ignore' : 'pipe', o.stdout ? 'pipe' : 'ignore', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout?.setEncoding('utf8').on('data', (s: string) => { out += s; });
    child.stderr?.setEncoding('utf8').on('data', (s: string) => { err = (err + s).slice(-4000); });
    child.on('error', reject);
    child.on('close', (code, sig) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${sig ?? `exit ${code}`}): ${err.trim().split('\n').slice(-3).join(' | ')}`));
    });
    if (o.input !== undefined) child.stdin?.end(o.input);
  });
}

/** A bash pipeline with pipefail, so a failure anywhere in it fails the step. */
export function sh(script: string): Promise<string> {
  return run('bash', ['-c', `set -euo pipefail; ${script}`]);
}

/** Single-quote a path for bash. */
export const q = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

let dropNoted = false;
/** Flush dirty pages and drop the page cache so the next step reads cold (needs root). */
export async function dropCaches(): Promise<boolean> {
  await run('sync', []);
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch (e) {
    if (!dropNoted) console.log(`note: cannot drop the page cache (${(e as Error).message}); timings may be warm`);
    dropNoted = true;
    return false;
  }
}

/** Seconds taken by fn (wall clock). */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/**
 * Copy regular files from src into dst (relative paths kept) until about `limit` bytes; skips
 * symlinks, special files and anything unreadable. Returns files and bytes copied.
 */
export function stageFiles(src: string, dst: string, limit: number): { files: number; bytes: number } {
  const got = { files: 0, bytes: 0 };
  const walk = (rel: string): void => {
    let names: string[];
    try { names = readdirSync(join(src, rel)).sort(); } catch { return; }
    for (const n of names) {
      if (got.bytes >= limit) return;
      const r = join(rel, n);
      let st;
      try { st = lstatSync(join(src, r)); } catch { continue; }
      if (st.isDirectory()) { walk(r); continue; }
      if (!st.isFile() || got.bytes + st.size > limit + (16 << 20)) continue;
      try {
        mkdirSync(join(dst, rel), { recursive: true });
        copyFileSync(join(src, r), join(dst, r));
        got.files++;
        got.bytes += st.size;
      } catch { /* unreadable: skip */ }
    }
  };
  walk('');
  return got;
}

export const MB = 1e6;
export const mb = (n: number): string => (n / MB).toFixed(1);
export const rate = (bytes: number, s: number): string => (bytes / MB / s).toFixed(1);

/** Print rows as an aligned table; the first row is the header. Numbers-looking cells align right. */
export function printTable(rows: string[][]): void {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  const right = (s: string): boolean => /^[\d.,×%+-]+[a-zA-Z×%]*$/.test(s);
  const line = (r: string[]): string => r.map((cell, c) => (right(cell) ? cell.padStart(widths[c] ?? 0) : cell.padEnd(widths[c] ?? 0))).join('  ').trimEnd();
  for (const [i, r] of rows.entries()) {
    console.log(line(r));
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}
