// The served root: turning a request's filename into an open, read-only file that is inside the
// root, or a TFTP error code (RFC 1350: 1 file not found, 2 access violation) and a reason.
//
// Rules, in order (every refusal is ERROR 2 unless the file simply is not there):
//   1. Leading '/' characters are stripped: PXE ROMs and iPXE often send "/pxelinux.0". The name
//      is always relative to the root, never to the machine's filesystem.
//   2. Refused outright: control characters (NUL, CR, LF, …), backslash (a DOS separator that could
//      mean ".." to someone), and any ".." component — even one that would stay inside the root.
//      Empty and "." components are dropped ("a//b", "./a").
//   3. The path is resolved with realpath: symlinks are followed, and the result must be the root
//      itself or below it. A symlink pointing outside is refused (ERROR 2), not reported missing.
//   4. Only regular files are served (no directories, devices, FIFOs, sockets).
//   5. After open (O_NOFOLLOW, O_NONBLOCK so a FIFO cannot block), the open descriptor's own path
//      (/proc/self/fd) must still be inside the root and its inode the one checked: a directory
//      swapped for a symlink between the check and the open cannot leak a file.
import { constants, type Stats } from 'node:fs';
import { open, readlink, realpath, stat, type FileHandle } from 'node:fs/promises';
import { sep } from 'node:path';
import { TFTP_ERROR } from './packet.ts';

export type OpenResult =
  | { ok: true; file: FileHandle; size: number; path: string }
  | { ok: false; code: number; reason: string };

const FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/** Filename → path components below the root, or the reason it is refused. */
export function sanitize(filename: string): string[] | { refused: string } {
  if (/[\u0000-\u001f\u007f]/.test(filename)) return { refused: 'control character in filename' };
  if (filename.includes('\\')) return { refused: 'backslash in filename' };
  const parts = filename.replace(/^\/+/, '').split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return { refused: '".." in filename' };
  if (parts.length === 0) return { refused: 'filename names the root directory' };
  return parts;
}

/** True when `p` is `root` or below it (both already real paths). */
export function inside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

function refused(reason: string): OpenResult {
  return { ok: false, code: TFTP_ERROR.ACCESS_VIOLATION, reason };
}

function fromErrno(e: unknown): OpenResult {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return { ok: false, code: TFTP_ERROR.NOT_FOUND, reason: 'no such file' };
  if (code === 'ELOOP') return refused('symlink loop');
  if (code === 'EACCES' || code === 'EPERM') return refused('permission denied');
  return { ok: false, code: TFTP_ERROR.UNDEFINED, reason: `cannot open: ${code ?? String(e)}` };
}

/** Where the open descriptor really is, when /proc tells us (Linux); undefined elsewhere. */
async function fdPath(file: FileHandle): Promise<string | undefined> {
  try { return await readlink(`/proc/self/fd/${file.fd}`); } catch { return undefined; }
}

/**
 * Opens `filename` below `root` (which must already be a real path, see realpath()). The caller
 * owns the returned handle and must close it.
 */
export async function openInRoot(root: string, filename: string): Promise<OpenResult> {
  const parts = sanitize(filename);
  if (!Array.isArray(parts)) return refused(parts.refused);
  let real: string;
  let before: Stats;
  try {
    real = await realpath(root + sep + parts.join(sep));
    if (!inside(root, real)) return refused('resolves outside the root');
    before = await stat(real);
  } catch (e) {
    return fromErrno(e);
  }
  if (!before.isFile()) return refused('not a regular file');
  let file: FileHandle;
  try { file = await open(real, FLAGS); } catch (e) { return fromErrno(e); }
  try {
    const after = await file.stat();
    const where = await fdPath(file);
    if (after.ino !== before.ino || after.dev !== before.dev || !after.isFile()) throw new Error('file changed while opening');
    if (where !== undefined && !inside(root, where)) throw new Error('open file is outside the root');
    return { ok: true, file, size: after.size, path: real };
  } catch (e) {
    await file.close().catch(() => {});
    return refused((e as Error).message);
  }
}
