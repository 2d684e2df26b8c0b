import { describe, it, expect } from '@jest/globals';
import { DEFAULT_BOOT_FILES, archFamily, archFromVendorClass, chooseBootFile, type BootTable } from '../../../services/dhcp/arch.ts';

const MAC = Buffer.from('525400abcdef', 'hex');
const table: BootTable = { httpBase: 'http://10.77.0.1:8080', files: DEFAULT_BOOT_FILES, hosts: {} };
const pick = (arches: number[], over: Partial<Parameters<typeof chooseBootFile>[0]> = {}, t: BootTable = table) =>
  chooseBootFile({ arches, vendorClass: '', chaddr: MAC, isIpxe: false, ...over }, t);

describe('architecture → boot file', () => {
  it('maps the RFC 4578 types we serve', () => {
    expect(pick([0])).toEqual({ kind: 'tftp', family: 'bios', file: 'undionly.kpxe' });
    expect(pick([7])).toEqual({ kind: 'tftp', family: 'efi-x64', file: 'ipxe.efi' });
    expect(pick([9])).toEqual({ kind: 'tftp', family: 'efi-x64', file: 'ipxe.efi' }); // x64 firmware that says EBC
    expect(pick([6])).toEqual({ kind: 'tftp', family: 'efi-ia32', file: 'ipxe-ia32.efi' });
    expect(pick([11])).toEqual({ kind: 'tftp', family: 'efi-arm64', file: 'ipxe-arm64.efi' });
    expect(pick([10])).toEqual({ kind: 'tftp', family: 'efi-arm32', file: 'ipxe-arm32.efi' });
    expect(pick([16])).toEqual({ kind: 'http', family: 'http-x64', url: 'http://10.77.0.1:8080/boot/bin/ipxe.efi' });
    expect(pick([19])).toEqual({ kind: 'http', family: 'http-arm64', url: 'http://10.77.0.1:8080/boot/bin/ipxe-arm64.efi' });
  });

  it('takes the first known type of the list, falls back to option 60, then to BIOS', () => {
    expect(pick([2, 7, 0])).toMatchObject({ family: 'efi-x64' }); // Itanium unknown, x64 next
    expect(pick([], { vendorClass: 'PXEClient:Arch:00007:UNDI:003016' })).toMatchObject({ family: 'efi-x64' });
    expect(pick([], { vendorClass: 'HTTPClient:Arch:00016:UNDI:003001' })).toMatchObject({ family: 'http-x64' });
    expect(pick([], { vendorClass: 'PXEClient' })).toMatchObject({ family: 'bios' });
    expect(pick([14])).toEqual({ kind: 'none', family: 'unknown', reason: 'no known architecture in [14]' });
    expect(archFromVendorClass('PXEClient:Arch:00011:UNDI:003000')).toBe(11);
    expect(archFromVendorClass('udhcp 1.35.0')).toBeUndefined();
    expect(archFamily({ arches: [], vendorClass: '' })).toBe('bios');
  });

  it('gives iPXE its per-machine script, whatever the architecture (no chainload loop)', () => {
    for (const a of [0, 7, 11]) {
      expect(pick([a], { isIpxe: true })).toEqual({ kind: 'http', family: 'ipxe', url: 'http://10.77.0.1:8080/boot/52:54:00:ab:cd:ef.ipxe' });
    }
  });

  it('honours config overrides and per-host files (snponly.efi), null disables a family', () => {
    const t: BootTable = {
      httpBase: 'http://boot.example:80/', hosts: { '52:54:00:ab:cd:ef': 'snponly.efi' },
      files: { ...DEFAULT_BOOT_FILES, 'bios': 'custom.kpxe', 'efi-arm64': null, 'http-x64': 'https://cdn.example/ipxe.efi' },
    };
    expect(pick([7], {}, t)).toEqual({ kind: 'tftp', family: 'efi-x64', file: 'snponly.efi' });
    const other = { chaddr: Buffer.from('525400000001', 'hex') };
    expect(pick([0], other, t)).toEqual({ kind: 'tftp', family: 'bios', file: 'custom.kpxe' });
    expect(pick([11], other, t)).toEqual({ kind: 'none', family: 'efi-arm64', reason: 'no boot file configured for efi-arm64' });
    expect(pick([16], other, t)).toEqual({ kind: 'http', family: 'http-x64', url: 'https://cdn.example/ipxe.efi' });
    expect(pick([0], { ...other, isIpxe: true }, t)).toMatchObject({ url: 'http://boot.example:80/boot/52:54:00:00:00:01.ipxe' });
  });
});
