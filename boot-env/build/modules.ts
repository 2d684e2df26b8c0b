// Kernel modules for the initramfs: the NIC and disk drivers a rack is likely to need, with every
// module they depend on, in a load order /init can follow with plain insmod (no depmod, no udev
// in the boot environment). A modules.alias trimmed to these modules lets /init load only the
// drivers whose devices are present (busybox modprobe matches each device's modalias), which
// under emulation is most of the module-loading time; modules.load is the fallback that loads all.
//
// Debian's kernel package ships no modules.dep (depmod runs at install time), so we generate one
// for the unpacked tree with busybox's depmod (from the busybox-static .deb we ship anyway) and
// read the dependencies from it. Compressed modules (.ko.xz/.ko.zst/.ko.gz, used by newer
// kernels) are decompressed here so /init never depends on insmod understanding a format.
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Entry } from './cpio.ts';
import { BuildError, run } from './run.ts';

/** NICs and disk controllers common in racks and labs (and QEMU's virtio devices). */
export const DEFAULT_MODULES = [
  // NICs: virtio, Intel 1G/10G/25-100G, Mellanox ConnectX-4+, Broadcom NetXtreme-C/E and tg3, Realtek
  'virtio_net', 'virtio_pci', 'e1000', 'e1000e', 'igb', 'igc', 'ixgbe', 'i40e', 'ice', 'mlx5_core', 'bnxt_en', 'r8169', 'tg3',
  // disks: virtio, NVMe, AHCI SATA, SCSI disks behind virtio-scsi
  'virtio_blk', 'virtio_scsi', 'nvme', 'ahci', 'sd_mod',
  // loop devices: the filesystem tools reach one partition through losetup --offset --sizelimit
  'loop',
  // Not in the default set: SAS/RAID HBAs (LSI/Broadcom mpt3sas, MegaRAID/PERC megaraid_sas).
  // They cost 0.29 MB compressed, which the 35 MB initrd budget has no room for next to Node 24:
  // `npm run build:boot-env -- --modules mpt3sas,megaraid_sas` adds them.
];

export interface ModuleSet {
  kver: string;
  /** paths relative to /lib/modules/<kver>, in load order */
  order: string[];
  builtin: string[];
  missing: string[];
  bytes: number;
  entries: Entry[];
}

/** Module name from a path: basename without .ko[.xz|.zst|.gz], '-' → '_' (as the kernel does). */
export function moduleName(path: string): string {
  return basename(path).replace(/\.ko(\.(xz|zst|gz))?$/, '').replaceAll('-', '_');
}

/** Parse modules.dep ("kernel/a.ko: kernel/b.ko kernel/c.ko") into name → {path, deps}. */
export function parseModulesDep(text: string): Map<string, { path: string; deps: string[] }> {
  const out = new Map<string, { path: string; deps: string[] }>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i < 0) continue;
    const path = line.slice(0, i).trim();
    const deps = line.slice(i + 1).trim().split(/\s+/).filter(Boolean).map(moduleName);
    out.set(moduleName(path), { path, deps });
  }
  return out;
}

/**
 * The wanted modules and everything they need, ordered so each module comes after its
 * dependencies (depth-first post-order; modules.dep lists the transitive closure, which is fine).
 */
export function loadOrder(wanted: string[], dep: Map<string, { path: string; deps: string[] }>, builtin: Set<string>): { order: string[]; builtin: string[]; missing: string[] } {
  const order: string[] = [];
  const seen = new Set<string>();
  const inBuiltin: string[] = [];
  const missing: string[] = [];
  const visit = (name: string, chain: string[]): void => {
    if (seen.has(name)) return;
    if (chain.includes(name)) throw new BuildError(`module dependency loop: ${[...chain, name].join(' → ')}`);
    const m = dep.get(name);
    if (!m) {
      if (builtin.has(name)) inBuiltin.push(name); else missing.push(name);
      seen.add(name);
      return;
    }
    for (const d of m.deps) visit(d, [...chain, name]);
    seen.add(name);
    order.push(m.path);
  };
  for (const w of wanted) visit(w.replaceAll('-', '_'), []);
  return { order, builtin: inBuiltin, missing };
}

/** Generate modules.dep (and modules.alias) for an unpacked kernel tree unless an earlier build already did. */
export async function ensureModulesDep(root: string, kver: string, busybox: string): Promise<string> {
  const dir = join(root, 'lib/modules', kver);
  const marker = join(dir, '.rackcast-depmod');
  if (!existsSync(marker) || !existsSync(join(dir, 'modules.dep')) || !existsSync(join(dir, 'modules.alias'))) {
    await run(busybox, ['depmod', '-b', root, kver]);
    writeFileSync(marker, 'busybox depmod\n');
  }
  return readFileSync(join(dir, 'modules.dep'), 'utf8');
}

async function decompressed(src: string, workDir: string): Promise<{ source: string; suffix: string }> {
  const m = /\.(xz|zst|gz)$/.exec(src);
  if (!m) return { source: src, suffix: '' };
  const out = join(workDir, `${moduleName(src)}.ko`);
  const tool = { xz: 'xz', zst: 'zstd', gz: 'gzip' }[m[1] as 'xz' | 'zst' | 'gz'];
  await run('sh', ['-c', `${tool} -dc "$1" > "$2"`, 'sh', src, out]);
  return { source: out, suffix: `.${m[1]}` };
}

/**
 * The lines of modules.alias ("alias PATTERN module") whose module is one of `selected` (names as
 * moduleName gives them): busybox modprobe then resolves a device's modalias to our modules only.
 */
export function trimAliases(text: string, selected: Set<string>): string[] {
  return text.split('\n').filter((line) => {
    const m = /^alias\s+\S+\s+(\S+)\s*$/.exec(line);
    return m !== null && selected.has(moduleName(m[1] as string));
  });
}

/** Select, resolve, order and package the modules; the entries go into the big initramfs. */
export async function kernelModules(root: string, kver: string, wanted: string[], busybox: string, workDir: string): Promise<ModuleSet> {
  const dir = join(root, 'lib/modules', kver);
  const dep = parseModulesDep(await ensureModulesDep(root, kver, busybox));
  const builtinText = readFileSync(join(dir, 'modules.builtin'), 'utf8');
  const builtin = new Set(builtinText.split('\n').filter(Boolean).map(moduleName));
  const r = loadOrder(wanted, dep, builtin);
  const entries: Entry[] = [];
  const order: string[] = [];
  let bytes = 0;
  for (const rel of r.order) {
    const { source, suffix } = await decompressed(join(dir, rel), workDir);
    const path = suffix ? rel.slice(0, -suffix.length) : rel;
    const size = statSync(source).size;
    bytes += size;
    order.push(path);
    entries.push({ type: 'file', path: `lib/modules/${kver}/${path}`, mode: 0o644, source, size });
  }
  // A modules.dep for just these modules lets busybox modprobe work in the rescue shell.
  const selected = new Set(r.order.map(moduleName));
  const depLines = order.map((p) => {
    const deps = (dep.get(moduleName(p))?.deps ?? []).filter((d) => selected.has(d));
    return `${p}: ${deps.map((d) => order.find((q) => moduleName(q) === d)).join(' ')}`.trimEnd();
  });
  const aliases = trimAliases(readFileSync(join(dir, 'modules.alias'), 'utf8'), selected);
  entries.push(
    { type: 'data', path: `lib/modules/${kver}/modules.dep`, mode: 0o644, data: Buffer.from(`${depLines.join('\n')}\n`) },
    { type: 'data', path: `lib/modules/${kver}/modules.alias`, mode: 0o644, data: Buffer.from(`${aliases.join('\n')}\n`) },
    { type: 'data', path: `lib/modules/${kver}/modules.builtin`, mode: 0o644, data: Buffer.from(builtinText) },
    { type: 'data', path: 'etc/rackcast/modules.load', mode: 0o644, data: Buffer.from(`${order.join('\n')}\n`) },
  );
  return { kver, order, builtin: r.builtin, missing: r.missing, bytes, entries };
}
