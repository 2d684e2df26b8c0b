// Per-machine iPXE scripts (GET /boot/<mac>.ipxe). iPXE asks for this after its own DHCP (the
// DHCP service hands iPXE clients this URL instead of a boot file, so there is no chainload loop).
//
//   task pending → kernel + initrds over HTTP; kernel args carry the appliance URL and the task
//                  token (iPXE's UEFI build needs initrd=NAME for each initrd: LAB-NOTES)
//   no task      → boot the local disk: sanboot 0x80 on BIOS, exit (back to firmware) on UEFI
//   unknown MAC  → policy: register (boot the environment to report inventory, then power off)
//                  or ignore (local disk, and the machine is listed as seen)
import type { Assignment } from '../store/db.ts';

export interface BootArtifacts { kernel: string; initrds: string[] }
export const DEFAULT_ARTIFACTS: BootArtifacts = { kernel: 'vmlinuz', initrds: ['initrd.zst', 'client.cpio.zst'] };
/** The filesystem tools (boot-env/build/fstools.ts): a third initrd for deploys that grow a partition. */
export const FSTOOLS_INITRD = 'fstools.cpio.zst';

/** The artifacts plus the filesystem tools when the task grows partitions and the build made them. */
export function withFsTools(art: BootArtifacts, grow: boolean, built: boolean): BootArtifacts {
  return grow && built ? { ...art, initrds: [...art.initrds, FSTOOLS_INITRD] } : art;
}

export function localDiskScript(mac: string, reason: string): string {
  return `#!ipxe
echo rackcast: ${reason} for ${mac}: booting the local disk
iseq \${platform} efi && goto efi ||
sanboot --no-describe --drive 0x80 || goto failed
:efi
exit 0
:failed
echo rackcast: no bootable local disk on ${mac}
sleep 10
exit 1
`;
}

export function environmentScript(base: string, mac: string, a: Pick<Assignment, 'kind' | 'taskId' | 'token'>, art: BootArtifacts = DEFAULT_ARTIFACTS, extraArgs = ''): string {
  const files = `${base}/boot/files`;
  const initrdArgs = art.initrds.map((n) => `initrd=${n}`).join(' ');
  const args = `${initrdArgs} console=tty0 console=ttyS0,115200 rackcast.url=${base} rackcast.token=${a.token} rackcast.mode=${a.kind} rackcast.mac=${mac}${extraArgs ? ` ${extraArgs}` : ''}`;
  return `#!ipxe
echo rackcast: ${a.kind} task ${a.taskId} for ${mac}
kernel ${files}/${art.kernel} ${args} || goto failed
${art.initrds.map((n) => `initrd ${files}/${n} || goto failed`).join('\n')}
boot || goto failed
:failed
echo rackcast: could not load the boot environment from ${base}; retrying in 10 s
sleep 10
chain ${base}/boot/${mac}.ipxe
`;
}
