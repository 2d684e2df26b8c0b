// Filesystem tools on one partition of a disk: check, grow to fill the partition, find the
// smallest size, shrink, check again. ext2/3/4 through e2fsprogs (e2fsck, resize2fs, dumpe2fs),
// NTFS through ntfs-3g (ntfsresize, ntfsfix). FAT and everything else has no resize here.
//
// A partition is reached through a loop device with --offset/--sizelimit (util-linux losetup;
// busybox's has no --sizelimit), detached in `finally`. That works the same for a disk image
// file and a block device, needs no re-read of the partition table (which the kernel refuses
// while the disk is held, and which needs udev or mdev to make /dev/sdX2 in the boot
// environment), and the tools see exactly the extent we computed, never the table's idea of it:
// with --sizelimit a filesystem grown "to the device size" cannot run over the GPT backup.
import { spawn } from 'node:child_process';
import { RackcastError } from '../../errors.ts';
import type { FsPolicy } from './types.ts';

export type ResizableFs = 'ext' | 'ntfs';

/** Which resize tools apply to a filesystem found by allocationFor, or why none does. */
export function resizable(policy: FsPolicy, reason: string): { fs: ResizableFs } | { why: string } {
  if (policy === 'ext2' || policy === 'ext3' || policy === 'ext4') return { fs: 'ext' };
  if (policy === 'ntfs') return { fs: 'ntfs' };
  if (policy === 'raw') return { why: reason };
  return { why: `${policy}: rackcast does not resize FAT (no maintained tool resizes it in place)` };
}

export interface ToolRun { code: number; stdout: string; stderr: string }

/** What a result or an error shows of a tool's output: its verdict line, else its last line. */
export function summary(r: Pick<ToolRun, 'stdout' | 'stderr'>): string {
  const lines = `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l && !/^(resize2fs|e2fsck|ntfsresize|ntfsfix) [v\d]/.test(l));
  // ntfsresize ends a shrink with advice on re-creating the partition: its verdict comes before
  return lines.findLast((l) => /^(ERROR|Successfully|Nothing to do|The filesystem .* is now)|processed successfully/.test(l)) ?? lines.at(-1) ?? '';
}

/**
 * Run a tool; exit codes outside `ok` (default [0]) are RC_ERR_IO with its last line. `signal`
 * kills the tool and rejects (the callers' `finally` blocks then clean up).
 */
export function runTool(cmd: string, args: string[], o: { ok?: number[]; input?: string; signal?: AbortSignal } = {}): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) { reject(aborted(cmd)); return; }
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...(o.signal ? { signal: o.signal } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    child.stdin.on('error', () => { /* the tool may exit without reading its input */ });
    child.stdin.end(o.input ?? '');
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.name === 'AbortError') reject(aborted(cmd));
      else reject(new RackcastError('RC_ERR_IO', e.code === 'ENOENT' ? `${cmd} is not installed (needed to resize filesystems)` : `${cmd}: ${e.message}`, { cmd }));
    });
    child.on('close', (code) => {
      const r = { code: code ?? -1, stdout, stderr };
      if ((o.ok ?? [0]).includes(r.code)) resolve(r);
      else reject(new RackcastError('RC_ERR_IO', `${cmd} ${args.join(' ')} failed (exit ${r.code}): ${summary(r) || 'no output'}`, { cmd, code: r.code }));
    });
  });
}

function aborted(cmd: string): RackcastError {
  return new RackcastError('RC_ERR_IO', `interrupted (while running ${cmd})`, { cmd });
}

/** Attach bytes [offset, offset+size) of `path` to a loop device, run `fn` on it, detach. */
export async function withPartition<T>(path: string, offset: number, size: number, fn: (dev: string) => Promise<T>, signal?: AbortSignal): Promise<T> {
  const r = await runTool('losetup', ['--find', '--show', '--offset', String(offset), '--sizelimit', String(size), path], signal ? { signal } : {});
  const dev = r.stdout.trim();
  try {
    return await fn(dev);
  } finally {
    await runTool('losetup', ['--detach', dev]);
  }
}

type Opts = { signal?: AbortSignal };

/**
 * Check before a resize. ext: `e2fsck -f -p` (safe repairs only; exit 0–2 is fine; anything
 * else needs a person) or, for `repair: 'yes'` on a private copy, `-y`. NTFS: ntfsresize's own
 * consistency check (--check). Returns the tool's summary line.
 */
export async function checkBeforeResize(fs: ResizableFs, dev: string, repair: 'preen' | 'yes', o: Opts = {}): Promise<string> {
  if (fs === 'ext') return `e2fsck: ${summary(await runTool('e2fsck', ['-f', repair === 'preen' ? '-p' : '-y', dev], { ok: [0, 1, 2], ...o }))}`;
  await runTool('ntfsresize', ['--check', '--force', '--no-progress-bar', dev], o);
  return 'ntfsresize --check: consistent';
}

/**
 * ntfsresize asks "Are you sure you want to proceed (y/[n])?" before changing anything (unless a
 * --force is left over after the dirty-volume check): answer it with "y" on stdin, never by EOF.
 */
function ntfsresize(args: string[], dev: string, o: Opts): Promise<ToolRun> {
  return runTool('ntfsresize', ['--force', '--no-progress-bar', ...args, dev], { input: 'y\n', ...o });
}

/** Grow the filesystem to fill the device. Returns the tool's summary line. */
export async function growFs(fs: ResizableFs, dev: string, o: Opts = {}): Promise<string> {
  if (fs === 'ext') return `resize2fs: ${summary(await runTool('resize2fs', [dev], o))}`;
  return `ntfsresize: ${summary(await ntfsresize([], dev, o))}`;
}

/** The smallest size in bytes the filesystem can be shrunk to (after checkBeforeResize). */
export async function minimumSize(fs: ResizableFs, dev: string, o: Opts = {}): Promise<number> {
  if (fs === 'ext') {
    const blocks = /minimum size of the filesystem:\s*(\d+)/i.exec((await runTool('resize2fs', ['-P', dev], o)).stdout);
    const bs = /^Block size:\s*(\d+)/m.exec((await runTool('dumpe2fs', ['-h', dev], o)).stdout);
    if (!blocks || !bs) throw new RackcastError('RC_ERR_IO', `cannot tell the minimum size of the ext filesystem on ${dev}`, { dev });
    return Number(blocks[1]) * Number(bs[1]);
  }
  const r = await runTool('ntfsresize', ['--info', '--force', '--no-progress-bar', dev], o);
  const m = /You might resize at (\d+) bytes/.exec(r.stdout);
  if (!m) throw new RackcastError('RC_ERR_IO', `ntfsresize cannot shrink the NTFS on ${dev}: ${summary(r)}`, { dev });
  return Number(m[1]);
}

/** Shrink the filesystem to at most `bytes` (ext: whole 1 KiB units, rounded down to its blocks). */
export async function shrinkFs(fs: ResizableFs, dev: string, bytes: number, o: Opts = {}): Promise<string> {
  if (fs === 'ext') return `resize2fs: ${summary(await runTool('resize2fs', [dev, `${Math.floor(bytes / 1024)}K`], o))}`;
  return `ntfsresize: ${summary(await ntfsresize(['--size', String(bytes)], dev, o))}`;
}

/** Read-only check after a resize: `e2fsck -fn`, `ntfsfix -n`. Throws RC_ERR_IO when not clean. */
export async function checkFs(fs: ResizableFs, dev: string, o: Opts = {}): Promise<string> {
  if (fs === 'ext') return `e2fsck -fn: ${summary(await runTool('e2fsck', ['-fn', dev], o))}`;
  return `ntfsfix -n: ${summary(await runTool('ntfsfix', ['-n', dev], o))}`;
}
