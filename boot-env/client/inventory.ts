// What the machine is, from /sys and /proc only (no dmidecode, lshw or udev in the boot
// environment): NICs and their MACs, disks with size/model/serial, DMI identity, firmware type,
// CPU and memory. The hello request will carry this to the appliance; today it is printed.
// `root` lets tests point it at a fake tree.
import { existsSync, readFileSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { basename, join } from 'node:path';

export interface Nic { name: string; mac: string; driver?: string; carrier?: boolean; speedMbps?: number; ipv4: string[] }
export interface Disk {
  name: string; size: number; model?: string; vendor?: string; serial?: string; wwid?: string;
  rotational: boolean; removable: boolean; transport: string;
}
export interface Inventory {
  firmware: 'uefi' | 'bios';
  dmi: Record<string, string>;
  cpu: { model: string; count: number };
  memoryBytes: number;
  nics: Nic[];
  disks: Disk[];
  bootEnv?: Record<string, unknown>;
}

const DMI_FIELDS = ['sys_vendor', 'product_name', 'product_serial', 'product_uuid', 'product_version', 'board_vendor', 'board_name', 'board_serial', 'bios_vendor', 'bios_version', 'bios_date', 'chassis_type', 'chassis_serial', 'chassis_asset_tag'];

function read(path: string): string | undefined {
  try {
    const s = readFileSync(path, 'latin1').replace(/\0+$/, '').trim();
    return s === '' ? undefined : s;
  } catch {
    return undefined;
  }
}

function ls(dir: string): string[] {
  try { return readdirSync(dir).sort(); } catch { return []; }
}

/** SCSI/SATA unit serial number from VPD page 0x80 (SPC-4 §7.8.15): 4-byte header, then ASCII. */
function vpdSerial(path: string): string | undefined {
  try {
    const b = readFileSync(path);
    if (b.length < 4) return undefined;
    const s = b.subarray(4, 4 + b.readUInt16BE(2)).toString('latin1').trim();
    return s || undefined;
  } catch {
    return undefined;
  }
}

function transportOf(sysPath: string): string {
  for (const [needle, name] of [['/nvme', 'nvme'], ['/virtio', 'virtio'], ['/usb', 'usb'], ['/ata', 'sata'], ['/mmc', 'mmc'], ['/target', 'scsi']] as const) {
    if (sysPath.includes(needle)) return name;
  }
  return 'other';
}

function disks(root: string): Disk[] {
  const out: Disk[] = [];
  for (const name of ls(join(root, 'sys/block'))) {
    const dir = join(root, 'sys/block', name);
    // Only disks behind a device (skips loop, ram, zram, dm-*, md*: they have no device link).
    if (!existsSync(join(dir, 'device'))) continue;
    let real = dir;
    try { real = realpathSync(dir); } catch { /* keep the /sys/block path */ }
    const d: Disk = {
      name,
      size: Number(read(join(dir, 'size')) ?? 0) * 512,
      rotational: read(join(dir, 'queue/rotational')) === '1',
      removable: read(join(dir, 'removable')) === '1',
      transport: transportOf(real),
    };
    const model = read(join(dir, 'device/model'));
    const vendor = read(join(dir, 'device/vendor'));
    const serial = read(join(dir, 'serial')) ?? read(join(dir, 'device/serial')) ?? vpdSerial(join(dir, 'device/vpd_pg80'));
    const wwid = read(join(dir, 'wwid')) ?? read(join(dir, 'device/wwid'));
    if (model) d.model = model;
    if (vendor) d.vendor = vendor;
    if (serial) d.serial = serial;
    if (wwid) d.wwid = wwid;
    out.push(d);
  }
  return out;
}

function nics(root: string): Nic[] {
  const addrs = root === '/' ? networkInterfaces() : {};
  const out: Nic[] = [];
  for (const name of ls(join(root, 'sys/class/net'))) {
    const dir = join(root, 'sys/class/net', name);
    // Physical Ethernet only: type 1 (ARPHRD_ETHER) with a device behind it (not bridges, veth, lo).
    if (read(join(dir, 'type')) !== '1' || !existsSync(join(dir, 'device'))) continue;
    const nic: Nic = { name, mac: read(join(dir, 'address')) ?? '', ipv4: (addrs[name] ?? []).filter((a) => a.family === 'IPv4').map((a) => a.cidr ?? a.address) };
    try { nic.driver = basename(readlinkSync(join(dir, 'device/driver'))); } catch { /* no driver bound */ }
    const carrier = read(join(dir, 'carrier')); // EINVAL while the link is down administratively
    if (carrier !== undefined) nic.carrier = carrier === '1';
    const speed = Number(read(join(dir, 'speed')) ?? NaN);
    if (Number.isFinite(speed) && speed > 0) nic.speedMbps = speed;
    out.push(nic);
  }
  return out;
}

function cpu(root: string): { model: string; count: number } {
  const text = read(join(root, 'proc/cpuinfo')) ?? '';
  const model = /^model name\s*:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? 'unknown';
  return { model, count: (text.match(/^processor\s*:/gm) ?? []).length };
}

export function collectInventory(root = '/'): Inventory {
  const dmi: Record<string, string> = {};
  for (const f of DMI_FIELDS) {
    const v = read(join(root, 'sys/class/dmi/id', f));
    if (v !== undefined) dmi[f] = v;
  }
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(read(join(root, 'proc/meminfo')) ?? '')?.[1] ?? 0);
  const inv: Inventory = {
    firmware: existsSync(join(root, 'sys/firmware/efi')) ? 'uefi' : 'bios',
    dmi,
    cpu: cpu(root),
    memoryBytes: memKb * 1024,
    nics: nics(root),
    disks: disks(root),
  };
  try { inv.bootEnv = JSON.parse(readFileSync(join(root, 'etc/rackcast/boot-env.json'), 'utf8')) as Record<string, unknown>; } catch { /* not in the boot environment */ }
  return inv;
}

export function fmtSize(n: number): string {
  if (n >= 2 ** 40) return `${(n / 2 ** 40).toFixed(1)} TiB`;
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GiB`;
  return `${(n / 2 ** 20).toFixed(1)} MiB`;
}

/** A few human-readable lines for the console. */
export function formatInventory(inv: Inventory): string[] {
  const d = inv.dmi;
  const ident = [d.sys_vendor, d.product_name].filter(Boolean).join(' ') || 'unknown machine';
  const lines = [
    `machine  ${ident}  serial=${d.product_serial ?? '-'} uuid=${d.product_uuid ?? '-'}  firmware=${inv.firmware}${d.bios_version ? ` (${d.bios_vendor ?? ''} ${d.bios_version})` : ''}`,
    `cpu      ${inv.cpu.count} × ${inv.cpu.model}  memory=${fmtSize(inv.memoryBytes)}`,
  ];
  if (!inv.nics.length) lines.push('nic      (none)');
  for (const n of inv.nics) {
    lines.push(`nic      ${n.name} ${n.mac} driver=${n.driver ?? '-'} carrier=${n.carrier === undefined ? '-' : n.carrier ? 'up' : 'down'}${n.speedMbps ? ` ${n.speedMbps} Mb/s` : ''}${n.ipv4.length ? ` ${n.ipv4.join(',')}` : ''}`);
  }
  if (!inv.disks.length) lines.push('disk     (none)');
  for (const k of inv.disks) {
    lines.push(`disk     ${k.name} ${fmtSize(k.size)} ${k.transport} model=${k.model ?? '-'} serial=${k.serial ?? '-'} rotational=${k.rotational ? 1 : 0} removable=${k.removable ? 1 : 0}`);
  }
  return lines;
}
