// Small helpers for the boot-environment build: running host tools with useful errors, hashing,
// sizes and a step log. The build is a script run by an admin (npm run build:boot-env), so every
// failure names the command, its exit status and the end of its stderr.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export class BuildError extends Error {
  override name = 'BuildError';
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** bytes allowed on stdout (default 64 MiB) */
  maxBuffer?: number;
}

/** Run a host tool and return its stdout; a failure throws a BuildError naming the command. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, maxBuffer: opts.maxBuffer ?? 64 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) { resolve(stdout); return; }
      const e = err as NodeJS.ErrnoException & { code?: string | number };
      if (e.code === 'ENOENT') {
        reject(new BuildError(`${cmd} is not installed (needed for: ${cmd} ${args.join(' ')})`));
        return;
      }
      const tail = stderr.trim().split('\n').slice(-8).join('\n');
      reject(new BuildError(`${cmd} ${args.join(' ')} failed (${e.code ?? 'signal'}):\n${tail}`));
    });
  });
}

/** Run a tool with its output shown (long steps like zstd -19 that print their own progress). */
export function runVisible(cmd: string, args: string[], opts: RunOptions = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', (e) => reject(new BuildError(`${cmd} could not start: ${e.message}`)));
    child.on('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new BuildError(`${cmd} ${args.join(' ')} failed (${code ?? signal})`));
    });
  });
}

/** true when `cmd` can be found on PATH */
export async function have(cmd: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path, { highWaterMark: 4 << 20 })
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** sha256 over the contents of several small files (source files that shape an artifact) */
export function sha256Files(paths: string[]): string {
  const h = createHash('sha256');
  for (const p of [...paths].sort()) h.update(p).update('\0').update(readFileSync(p)).update('\0');
  return h.digest('hex');
}

export function fileSize(path: string): number {
  return statSync(path).size;
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One build at a time per cache directory: two would unpack into the same package trees. The
 * lock file holds the builder's PID; a lock whose process is gone is taken over.
 */
export async function withLock<T>(path: string, fn: () => Promise<T>, onWait: (pid: number) => void): Promise<T> {
  for (let tries = 0; ; tries++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let pid = 0;
      try { pid = Number(readFileSync(path, 'utf8').trim()); } catch { continue; }
      if (!pid || !alive(pid)) {
        rmSync(path, { force: true });
        continue;
      }
      if (tries === 0) onWait(pid);
      await sleep(1000);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(path, { force: true });
  }
}

/** A step log: every line carries the seconds since the build started. */
export class StepLog {
  readonly t0 = performance.now();
  quiet: boolean;

  constructor(quiet = false) {
    this.quiet = quiet;
  }

  seconds(): number {
    return (performance.now() - this.t0) / 1000;
  }

  step(msg: string): void {
    if (!this.quiet) process.stdout.write(`[${this.seconds().toFixed(1).padStart(6)}s] ${msg}\n`);
  }
}
