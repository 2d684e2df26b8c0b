// Shared plumbing for the DHCP integration tests: start the server runner in lab host 0, run
// real clients in the other hosts with a time limit, kill everything by PID.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab } from '../../../scripts/lab/netns.ts';

export const HERE = fileURLToPath(new URL('.', import.meta.url));
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * A lab with a random name prefix. The default prefix (pid + a per-module counter) repeats when
 * jest runs two test files in one worker, or across PID namespaces; a lab whose names exist
 * already tears down the other one's namespaces while failing. Random names cannot collide.
 */
export function newLab(hosts: number): Lab {
  return new Lab({ hosts, prefix: `rcdh${randomBytes(4).toString('hex')}` });
}

export interface Running {
  proc: ChildProcess;
  lines: string[];
  /** SIGTERM, wait for exit; returns the stats line the runner prints. */
  stop(): Promise<Record<string, unknown>>;
}

/** Starts test/integration/dhcp/serve.ts in host `i`; resolves once it prints "listening". */
export async function startServer(lab: Lab, opts: Record<string, unknown>, i = 0): Promise<Running> {
  const proc = lab.spawn(i, process.execPath, [join(HERE, 'serve.ts'), JSON.stringify(opts)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buf = '';
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server not listening after 15 s: ${lines.join('\n')} ${err}`)), 15_000);
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        if (line === 'listening') { clearTimeout(timer); resolve(); }
        if (line.startsWith('failed ')) { clearTimeout(timer); reject(new Error(line)); }
      }
    });
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}: ${lines.join('\n')} ${err}`)); });
  });
  await ready;
  const exited = new Promise<void>((r) => { if (proc.exitCode !== null) r(); else proc.once('exit', () => r()); });
  return {
    proc, lines,
    async stop() {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
      const s = lines.find((l) => l.startsWith('stats '));
      return s ? JSON.parse(s.slice(6)) as Record<string, unknown> : {};
    },
  };
}

export interface RunResult { code: number | null; stdout: string; stderr: string; timedOut: boolean }

/** Runs a command in host `i`, killing it (by PID) after `timeoutMs`. */
export function run(lab: Lab, i: number, cmd: string, args: string[], timeoutMs: number): Promise<RunResult> {
  const proc = lab.spawn(i, cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  return new Promise((resolve) => {
    let timedOut = false;
    const t = setTimeout(() => { timedOut = true; proc.kill('SIGKILL'); }, timeoutMs);
    proc.once('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr, timedOut }); });
  });
}

/** Removes a client host's static address so it starts as a bare machine. */
export function bare(lab: Lab, i: number): void {
  lab.exec(i, 'ip', ['addr', 'flush', 'dev', 'eth0']);
}

export function workDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'rc-test-dhcp-int-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** An executable shell script. */
export function script(path: string, body: string): string {
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** Parses "k=v" lines (as our client hook scripts print them) into objects. */
export function kv(text: string): Array<Record<string, string>> {
  return text.split('\n').filter(Boolean).map((l) => Object.fromEntries(l.split('\t').map((p) => {
    const eq = p.indexOf('=');
    return [p.slice(0, eq), p.slice(eq + 1)];
  })));
}
