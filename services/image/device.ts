// What a path names, for capture sources and restore targets: a regular file or a block device,
// its size and logical sector size, and who is using it (mounts, swap, device-mapper/md holders,
// loop devices backed by a file). Linux only; everything comes from /sys and /proc, no ioctl.
import { existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { RackcastError } from '../errors.ts';

export interface DeviceInfo {
  path: string;
  kind: 'block' | 'file' | 'missing';
  size: number;
  sectorSize: number;
  /** "major:minor" for block devices */
  dev?: string;
  rotational?: boolean;
}

export function devString(rdev: number): string {
  // Linux dev_t: minor = bits 0-7 and 20-39, major = bits 8-19 and 40-63 (glibc's makedev).
  const hi = Math.floor(rdev / 2 ** 32);
  const lo = rdev >>> 0;
  const major = ((lo >>> 8) & 0xfff) | ((hi & ~0xfff) >>> 0);
  const minor = (lo & 0xff) | ((lo >>> 12) & ~0xff);
  return `${major}:${minor >>> 0}`;
}

function sysRead(path: string): string | undefined {
  try { return readFileSync(path, 'utf8').trim(); } catch { return undefined; }
}

function sysDir(dev: string): string {
  return realpathSync(`/sys/dev/block/${dev}`);
}

/** The device's sysfs directory and, for a partition, its whole disk's. */
function queueDir(dir: string): string {
  return existsSync(join(dir, 'partition')) ? join(dir, '..', 'queue') : join(dir, 'queue');
}

export function inspectPath(path: string): DeviceInfo {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return { path, kind: 'missing', size: 0, sectorSize: 512 };
  if (st.isFile()) return { path, kind: 'file', size: st.size, sectorSize: 512 };
  if (!st.isBlockDevice()) {
    throw new RackcastError('RC_ERR_TARGET_INVALID', `${path} is neither a regular file nor a block device`, { path });
  }
  const dev = devString(st.rdev);
  const dir = sysDir(dev);
  const sectors = Number(sysRead(join(dir, 'size')) ?? '0');
  const q = queueDir(dir);
  return {
    path,
    kind: 'block',
    size: sectors * 512, // /sys .../size is always in 512-byte units
    sectorSize: Number(sysRead(join(q, 'logical_block_size')) ?? '512'),
    dev,
    rotational: sysRead(join(q, 'rotational')) === '1',
  };
}

function mountedDevs(): Map<string, string> {
  // /proc/self/mountinfo field 3 is major:minor of the mounted filesystem's device, field 5 the mount point.
  const out = new Map<string, string>();
  for (const line of (sysRead('/proc/self/mountinfo') ?? '').split('\n')) {
    const f = line.split(' ');
    if (f[2] && f[4]) out.set(f[2], f[4]);
  }
  return out;
}

function partitionsOf(dir: string): { name: string; dev: string }[] {
  const out: { name: string; dev: string }[] = [];
  for (const n of readdirSync(dir)) {
    if (existsSync(join(dir, n, 'partition'))) {
      const d = sysRead(join(dir, n, 'dev'));
      if (d) out.push({ name: n, dev: d });
    }
  }
  return out;
}

/** Everything that uses a device or file right now, as human-readable phrases; empty when free. */
export function usersOf(info: DeviceInfo): string[] {
  const users: string[] = [];
  const mounts = mountedDevs();
  if (info.kind === 'file') {
    const real = realpathSync(info.path);
    for (const loop of readdirSync('/sys/block').filter((n) => n.startsWith('loop'))) {
      const backing = sysRead(join('/sys/block', loop, 'loop', 'backing_file'));
      if (backing === real) {
        users.push(`attached to /dev/${loop}`);
        const d = sysRead(join('/sys/block', loop, 'dev'));
        const sub = [d, ...partitionsOf(join('/sys/block', loop)).map((p) => p.dev)];
        for (const x of sub) if (x && mounts.has(x)) users.push(`mounted on ${mounts.get(x)} through /dev/${loop}`);
      }
    }
    return users;
  }
  if (info.kind !== 'block' || !info.dev) return users;
  const dir = sysDir(info.dev);
  const devs = [{ name: dir.split('/').pop() ?? info.path, dev: info.dev }, ...partitionsOf(dir)];
  const swaps = (sysRead('/proc/swaps') ?? '').split('\n').slice(1).map((l) => l.split(/\s+/)[0]).filter(Boolean);
  const swapDevs = new Set(swaps.map((s) => {
    try { return devString(statSync(s as string).rdev); } catch { return ''; }
  }));
  for (const d of devs) {
    if (mounts.has(d.dev)) users.push(`/dev/${d.name} is mounted on ${mounts.get(d.dev)}`);
    if (swapDevs.has(d.dev)) users.push(`/dev/${d.name} is in use as swap`);
    const holders = join(sysDir(d.dev), 'holders');
    const h = existsSync(holders) ? readdirSync(holders) : [];
    if (h.length) users.push(`/dev/${d.name} is held by ${h.join(', ')}`);
  }
  return users;
}
