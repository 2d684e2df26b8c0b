// Helpers to run `rackcast mcast send/receive` in a namespace lab and collect their JSON reports.
import type { ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import type { Lab } from '../../../scripts/lab/netns.ts';

export const BIN = resolve('bin/rackcast.js');

export interface Run { child: ChildProcess; done: Promise<{ code: number | null; json: Record<string, unknown> | undefined; stderr: string }> }

export function run(lab: Lab, host: number, args: string[]): Run {
  const child = lab.spawn(host, process.execPath, [BIN, ...args]);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
  const done = new Promise<{ code: number | null; json: Record<string, unknown> | undefined; stderr: string }>((res) => {
    // 'close', not 'exit': `mcast` exits right after writing its report, and 'exit' can come
    // before the last of stdout has been read from the pipe (seen once in the full suite)
    child.on('close', (code) => {
      let json: Record<string, unknown> | undefined;
      try { json = JSON.parse(out.trim().split('\n').pop() ?? ''); } catch { json = undefined; }
      res({ code, json, stderr: err });
    });
  });
  return { child, done };
}

export function send(lab: Lab, store: string, image: string, extra: string[] = []): Run {
  return run(lab, 0, ['mcast', 'send', image, '--interface', 'eth0', '--store', store, '--json', '--rate', '200m', '--receiver-timeout', '3', '--deadline', '90', ...extra]);
}

export function receive(lab: Lab, host: number, target: string, extra: string[] = []): Run {
  return run(lab, host, ['mcast', 'receive', '--interface', 'eth0', '--target', target, '--json', ...extra]);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
