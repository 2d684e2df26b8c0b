// Which boot file a network-booting client gets, from what it says about itself.
//
// Option 93 (RFC 4578 §2.1; IANA "Processor Architecture Types") names the firmware type. When it
// is absent the architecture is read from option 60 ("PXEClient:Arch:00007:UNDI:003016", PXE
// spec §2.4.4 / RFC 4578 §2.1); with neither, a PXEClient is a legacy BIOS ROM (PXE 2.0 predates
// option 93 and was BIOS-only).
//
//   type  firmware                         family       default boot file (over TFTP unless URL)
//   0     x86 BIOS                         bios         undionly.kpxe (iPXE on the ROM's UNDI)
//   6     x86 UEFI (IA32)                  efi-ia32     ipxe-ia32.efi  (not in Debian's ipxe)
//   7     x64 UEFI                         efi-x64      ipxe.efi   (snponly.efi per host)
//   9     EBC; several x64 firmwares send it for x64 (dnsmasq's docs map 9 to x86-64 too)
//   10    ARM 32-bit UEFI                  efi-arm32    ipxe-arm32.efi (not in Debian's ipxe)
//   11    ARM 64-bit UEFI                  efi-arm64    ipxe-arm64.efi (only in the arm64 ipxe
//                                                       build; absent from the amd64 package)
//   15    x86 UEFI HTTP boot               http-ia32    <httpBase>/boot/bin/ipxe-ia32.efi
//   16    x64 UEFI HTTP boot               http-x64     <httpBase>/boot/bin/ipxe.efi
//   18    ARM 32 UEFI HTTP boot            http-arm32   <httpBase>/boot/bin/ipxe-arm32.efi
//   19    ARM 64 UEFI HTTP boot            http-arm64   <httpBase>/boot/bin/ipxe-arm64.efi
//
// iPXE itself (user class "iPXE" in option 77, or any option 175) is already running our boot
// loader: handing it undionly.kpxe again would loop forever. It gets the HTTP URL of its
// per-machine script instead: <httpBase>/boot/<mac>.ipxe, MAC lowercase and colon-separated.
import { macString } from './options.ts';

export type ArchFamily = 'bios' | 'efi-ia32' | 'efi-x64' | 'efi-arm32' | 'efi-arm64' | 'http-ia32' | 'http-x64' | 'http-arm32' | 'http-arm64';

export const ARCH_FAMILIES: Readonly<Record<number, ArchFamily>> = {
  0: 'bios', 6: 'efi-ia32', 7: 'efi-x64', 9: 'efi-x64', 10: 'efi-arm32', 11: 'efi-arm64',
  15: 'http-ia32', 16: 'http-x64', 18: 'http-arm32', 19: 'http-arm64',
};

/** Default boot file per family; HTTP-boot families are paths under httpBase. null = no answer. */
export const DEFAULT_BOOT_FILES: Readonly<Record<ArchFamily, string | null>> = Object.freeze({
  'bios': 'undionly.kpxe',
  'efi-ia32': 'ipxe-ia32.efi',
  'efi-x64': 'ipxe.efi',
  'efi-arm32': 'ipxe-arm32.efi',
  'efi-arm64': 'ipxe-arm64.efi',
  'http-ia32': '/boot/bin/ipxe-ia32.efi',
  'http-x64': '/boot/bin/ipxe.efi',
  'http-arm32': '/boot/bin/ipxe-arm32.efi',
  'http-arm64': '/boot/bin/ipxe-arm64.efi',
});

/** Families whose boot file is fetched over HTTP (UEFI HTTP Boot, UEFI 2.5+ §24.7). */
export function isHttpFamily(f: ArchFamily): boolean {
  return f.startsWith('http-');
}

export interface BootRequestInfo {
  /** Option 93 list (may be empty). */
  arches: readonly number[];
  /** Option 60 text, or '' when absent. */
  vendorClass: string;
  /** Client hardware address (chaddr, hlen bytes). */
  chaddr: Buffer;
  /** User class "iPXE" was sent (option 77) or option 175 is present. */
  isIpxe: boolean;
}

export interface BootTable {
  httpBase: string;
  files: Readonly<Record<ArchFamily, string | null>>;
  /** Per-host boot file by MAC (lowercase, colon-separated), e.g. snponly.efi for one NIC. */
  hosts: Readonly<Record<string, string>>;
}

export type BootChoice =
  | { kind: 'tftp'; family: ArchFamily; file: string }
  | { kind: 'http'; family: ArchFamily | 'ipxe'; url: string }
  | { kind: 'none'; family: ArchFamily | 'unknown'; reason: string };

/** Architecture from option 60's "Arch:NNNNN" field, for clients that do not send option 93. */
export function archFromVendorClass(vendorClass: string): number | undefined {
  const m = /^(?:PXEClient|HTTPClient):Arch:(\d{5})/.exec(vendorClass);
  return m ? Number(m[1]) : undefined;
}

/** The family of the first architecture we know, in the client's order of preference. */
export function archFamily(info: Pick<BootRequestInfo, 'arches' | 'vendorClass'>): ArchFamily | undefined {
  const fromVc = archFromVendorClass(info.vendorClass);
  const list = info.arches.length ? info.arches : fromVc !== undefined ? [fromVc] : [0];
  for (const a of list) {
    const f = ARCH_FAMILIES[a];
    if (f) return f;
  }
  return undefined;
}

function join(base: string, path: string): string {
  return /^[a-z]+:\/\//i.test(path) ? path : `${base.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
}

export function ipxeScriptUrl(httpBase: string, chaddr: Buffer): string {
  return join(httpBase, `/boot/${macString(chaddr)}.ipxe`);
}

/** Picks the boot file for one request. Pure: no I/O, no state. */
export function chooseBootFile(info: BootRequestInfo, table: BootTable): BootChoice {
  if (info.isIpxe) return { kind: 'http', family: 'ipxe', url: ipxeScriptUrl(table.httpBase, info.chaddr) };
  const family = archFamily(info);
  if (!family) return { kind: 'none', family: 'unknown', reason: `no known architecture in [${info.arches.join(', ')}]` };
  const host = table.hosts[macString(info.chaddr)];
  const file = host ?? table.files[family];
  if (file === null || file === undefined || file === '') return { kind: 'none', family, reason: `no boot file configured for ${family}` };
  if (isHttpFamily(family) || /^https?:\/\//i.test(file)) return { kind: 'http', family, url: join(table.httpBase, file) };
  return { kind: 'tftp', family, file };
}
