// Golden DISCOVERs, byte for byte.
//
// - iPXE (SeaBIOS + the iPXE option ROM of QEMU's virtio-net) and OVMF (EDK2's own PXE client)
//   are written out by hand below, field by field, in the option order those clients use
//   (iPXE src/net/udp/dhcp.c; EDK2 NetworkPkg/UefiPxeBcDxe/PxeBcDhcp4.c).
// - busybox udhcpc and ISC dhclient are real captures from the namespace lab
//   (fixtures/*.hex); `UPDATE_GOLDEN=1` on the integration tests re-captures them.
import { describe, it, expect, afterAll } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { validateConfig } from '../../../services/dhcp/config.ts';
import { LeaseStore } from '../../../services/dhcp/leases.ts';
import { OPT, getOption, tryOption } from '../../../services/dhcp/options.ts';
import { decode, encode } from '../../../services/dhcp/packet.ts';
import { respond } from '../../../services/dhcp/responder.ts';
import { tempDir } from './helpers.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

/** Hex with spaces, newlines and `#` comments; `"text"` inserts ASCII; `zN` inserts N zero bytes. */
function hex(src: string): Buffer {
  const parts: Buffer[] = [];
  for (const line of src.split('\n')) {
    const body = line.replace(/#.*$/, '');
    for (const tok of body.match(/"[^"]*"|z\d+|[0-9a-f]{2}/gi) ?? []) {
      if (tok.startsWith('"')) parts.push(Buffer.from(tok.slice(1, -1), 'latin1'));
      else if (tok.startsWith('z')) parts.push(Buffer.alloc(Number(tok.slice(1))));
      else parts.push(Buffer.from(tok, 'hex'));
    }
  }
  return Buffer.concat(parts);
}

const UUID = '78 56 34 12 bc 9a f0 de 01 23 45 67 89 ab cd ef';

const IPXE_BIOS = hex(`
  01 01 06 00             # BOOTREQUEST, Ethernet, hlen 6, hops 0
  3c 4d 5e 6f             # xid
  00 04 80 00             # secs 4, flags BROADCAST (iPXE always asks for broadcast replies)
  z16                     # ciaddr yiaddr siaddr giaddr
  52 54 00 12 34 56 z10   # chaddr
  z64 z128                # sname, file
  63 82 53 63             # magic cookie
  35 01 01                # 53 DISCOVER
  39 02 05 c0             # 57 max message size 1472
  5d 02 00 00             # 93 arch 0 = BIOS
  5e 03 01 02 01          # 94 NII: UNDI 2.1
  3c 20 "PXEClient:Arch:00000:UNDI:002001"
  4d 04 "iPXE"            # 77 user class, plain string (not RFC 3004)
  37 17 01 03 06 07 0c 0f 11 1a 2b 3c 42 43 77 80 81 82 83 84 85 86 87 af cb
  af 24                   # 175 iPXE encapsulated: its feature list
     b1 05 01 1a f4 10 00 #   177 bus id: PCI 1af4:1000 (virtio-net)
     eb 03 01 15 01       #   235 version 1.21.1
     10 01 02 13 01 01 15 01 01 17 01 01 18 01 01 21 01 01 22 01 01 27 01 01
  3d 07 01 52 54 00 12 34 56   # 61 client id: Ethernet + MAC
  61 11 00 ${UUID}        # 97 type 0 + SMBIOS UUID
  ff`);

const OVMF_X64 = hex(`
  01 01 06 00  7a 1b 2c 3d  00 00 80 00  z16
  52 54 00 ab cd ef z10  z64 z128  63 82 53 63
  35 01 01                # 53 DISCOVER
  39 02 05 a4             # 57 max message size
  37 23 01 02 03 04 05 06 0c 0d 0f 11 12 16 17 1c 28 29 2a 2b 32 33 36 3a 3b 3c 42 43 61 80 81 82 83 84 85 86 87
  61 11 00 ${UUID}        # 97 client UUID
  5e 03 01 03 10          # 94 NII: UNDI 3.16
  5d 02 00 07             # 93 arch 7 = x64 UEFI
  3c 20 "PXEClient:Arch:00007:UNDI:003016"
  ff`);

const UDHCPC = Buffer.from(readFileSync(`${FIXTURES}udhcpc-discover.hex`, 'utf8').trim(), 'hex');
const DHCLIENT = Buffer.from(readFileSync(`${FIXTURES}dhclient-discover.hex`, 'utf8').trim(), 'hex');

const tmp = tempDir();
afterAll(() => tmp.remove());
const cfg = validateConfig({
  mode: 'full', interfaceAddress: '10.77.0.1', bindAddress: '0.0.0.0', subnet: '10.77.0.0/24',
  range: { start: '10.77.0.100', end: '10.77.0.120' }, dataDir: tmp.dir, httpBase: 'http://10.77.0.1:8080',
});
const leases = new LeaseStore({ dataDir: tmp.dir, rangeStart: '10.77.0.100', rangeEnd: '10.77.0.120' });

function offerFor(buf: Buffer) {
  const out = respond({ cfg, leases }, decode(buf).value, 'dhcp', { address: '0.0.0.0', port: 68 });
  if ('drop' in out) throw new Error(`dropped: ${out.drop}`);
  return out.replies[0]!.msg;
}

describe('golden DISCOVERs', () => {
  it('re-encode to the same bytes (option order kept, padding as the client sent it)', () => {
    for (const b of [IPXE_BIOS, OVMF_X64, UDHCPC, DHCLIENT]) expect(encode(decode(b).value).toString('hex')).toBe(b.toString('hex'));
  });

  it('iPXE on SeaBIOS: every option decodes; it gets its per-machine script URL, no chainload loop', () => {
    expect(IPXE_BIOS.length).toBe(388);
    const { value: m, bytes } = decode(IPXE_BIOS);
    expect(bytes).toBe(IPXE_BIOS.length);
    expect(m.flags).toBe(0x8000);
    expect(getOption(m.options, OPT.clientArch)).toEqual([0]);
    expect(getOption(m.options, OPT.clientNii)).toEqual({ type: 1, major: 2, minor: 1 });
    expect(getOption(m.options, OPT.userClass)).toEqual({ classes: ['iPXE'], format: 'plain' });
    expect(getOption(m.options, OPT.ipxeEncap)?.get(177)).toEqual(Buffer.from('011af41000', 'hex'));
    expect(getOption(m.options, OPT.clientUuid)?.uuid).toBe('12345678-9abc-def0-0123-456789abcdef');
    expect(getOption(m.options, OPT.maxMessageSize)).toBe(1472);
    const o = offerFor(IPXE_BIOS);
    expect(o.file).toBe('http://10.77.0.1:8080/boot/52:54:00:12:34:56.ipxe');
    expect(getOption(o.options, OPT.bootFile)).toBe(o.file);
    expect(getOption(o.options, OPT.ipxeEncap)?.get(176)).toEqual(Buffer.from([1])); // no-pxedhcp
    expect(o.options.get(OPT.clientUuid)).toEqual(m.options.get(OPT.clientUuid));
    expect(o.options.has(OPT.vendorSpecific)).toBe(false); // iPXE needs no PXE menu control
  });

  it('OVMF (EDK2 PXE, arch 7): gets ipxe.efi over TFTP with PXEClient and its UUID echoed', () => {
    const { value: m } = decode(OVMF_X64);
    expect(getOption(m.options, OPT.clientNii)).toEqual({ type: 1, major: 3, minor: 16 });
    expect(getOption(m.options, OPT.paramRequest)).toContain(97);
    expect(m.options.has(OPT.clientId)).toBe(false); // keyed by MAC
    const o = offerFor(OVMF_X64);
    expect([o.file, o.siaddr, getOption(o.options, OPT.tftpServer), getOption(o.options, OPT.vendorClass)])
      .toEqual(['ipxe.efi', '10.77.0.1', '10.77.0.1', 'PXEClient']);
    expect(o.options.get(OPT.clientUuid)).toEqual(m.options.get(OPT.clientUuid));
    expect(o.options.has(OPT.ipxeEncap)).toBe(false);
  });

  it('busybox udhcpc 1.35 (real capture, -V PXEClient arch 0, user class iPXE via -x 0x4d)', () => {
    const { value: m, bytes } = decode(UDHCPC);
    expect(bytes).toBe(UDHCPC.length);
    expect([...m.options.keys()]).toEqual([53, 57, 55, 60, 61, 77, 93]);
    expect(getOption(m.options, OPT.maxMessageSize)).toBe(576);
    expect(getOption(m.options, OPT.clientId)).toEqual(Buffer.from('01027263000101', 'hex'));
    expect(offerFor(UDHCPC).file).toBe('http://10.77.0.1:8080/boot/02:72:63:00:01:01.ipxe');
  });

  it('ISC dhclient 4.4 (real capture, vendor class and arch 7 from dhclient.conf)', () => {
    const { value: m } = decode(DHCLIENT);
    expect(m.flags).toBe(0);
    expect(getOption(m.options, OPT.vendorClass)).toBe('PXEClient:Arch:00007:UNDI:003016');
    expect(tryOption(m.options, OPT.clientArch)).toEqual([7]);
    const o = offerFor(DHCLIENT);
    expect(o.file).toBe('ipxe.efi');
    expect(o.yiaddr).toMatch(/^10\.77\.0\.1\d\d$/);
  });
});
