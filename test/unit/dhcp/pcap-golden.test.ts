// Golden DHCP exchanges of real firmware with `rackcast serve --dhcp full`, captured on the lab
// bridge by test/e2e/pxe/boot.test.ts (UPDATE_GOLDEN=1 rewrites them; see
// test/fixtures/pcap/README.md). No root, QEMU or network here: the pcap files are read with the
// tiny reader in test/fixtures/pcap/pcap.ts and every DHCP datagram is decoded with packet.ts.
//
//   bios-ipxe.pcap  SeaBIOS + the iPXE ROM of QEMU's virtio-net (iPXE 1.0.0+git-20190125, Debian)
//   uefi-edk2.pcap  OVMF 2022.11: EDK2's own PXE client (arch 7), then ipxe.efi DHCPing again
//
// Besides what the firmware sends and what we answered, every captured DISCOVER is replayed
// through respond() with the configuration `rackcast serve` used, and the boot fields of the
// answer must equal the captured OFFER: the capture pins what real firmware needs.
import { describe, it, expect, afterAll } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { validateConfig } from '../../../services/dhcp/config.ts';
import { LeaseStore } from '../../../services/dhcp/leases.ts';
import {
  DHCPACK, DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, OPT, getOption, macString, tryOption,
} from '../../../services/dhcp/options.ts';
import { decode, encode, type DhcpMessage } from '../../../services/dhcp/packet.ts';
import { respond } from '../../../services/dhcp/responder.ts';
import { isDhcp, udpFrames, type Frame } from '../../fixtures/pcap/pcap.ts';
import { tempDir } from './helpers.ts';

const FIXTURES = fileURLToPath(new URL('../../fixtures/pcap/', import.meta.url));
const SERVER = '10.77.0.1';
const BASE = `http://${SERVER}:8080`;
const BIOS_MAC = '52:54:00:72:63:01';
const UEFI_MAC = '52:54:00:72:63:02';

interface Pkt { f: Frame; m: DhcpMessage; type: number; bytes: number }
function load(name: string): Pkt[] {
  return udpFrames(readFileSync(`${FIXTURES}${name}`)).filter(isDhcp).map((f) => {
    const { value: m, bytes } = decode(f.payload);
    return { f, m, bytes, type: getOption(m.options, OPT.messageType) ?? 0 };
  });
}
const BIOS = load('bios-ipxe.pcap');
const UEFI = load('uefi-edk2.pcap');
const requests = (ps: Pkt[], type: number): Pkt[] => ps.filter((p) => p.m.op === 1 && p.type === type);
const replyTo = (ps: Pkt[], req: Pkt, type: number): Pkt => {
  const r = ps.find((p) => p.m.op === 2 && p.type === type && p.m.xid === req.m.xid && p.f.ts >= req.f.ts);
  if (!r) throw new Error(`no reply of type ${type} to xid ${req.m.xid.toString(16)}`);
  return r;
};
const isIpxe = (p: Pkt): boolean => tryOption(p.m.options, OPT.userClass)?.classes.includes('iPXE') ?? false;

// The configuration `rackcast serve --address 10.77.0.1 --dhcp full --subnet 10.77.0.0/24
// --range 10.77.0.100-10.77.0.150 --http-port 8080` gives the DHCP server (appliance/serve.ts).
const tmp = tempDir();
afterAll(() => tmp.remove());
const cfg = validateConfig({
  mode: 'full', interfaceAddress: SERVER, bindAddress: '0.0.0.0', subnet: '10.77.0.0/24',
  range: { start: '10.77.0.100', end: '10.77.0.150' }, dataDir: tmp.dir, httpBase: BASE,
});
function replay(req: DhcpMessage): DhcpMessage {
  const leases = new LeaseStore({ dataDir: tmp.dir, rangeStart: '10.77.0.100', rangeEnd: '10.77.0.150' });
  const out = respond({ cfg, leases }, req, 'dhcp', { address: '0.0.0.0', port: 68 });
  if ('drop' in out) throw new Error(`replay dropped: ${out.drop}`);
  return out.replies[0]!.msg;
}
/** What decides where a machine boots from, as raw bytes where an option is involved. */
function bootFields(m: DhcpMessage): Record<string, string | undefined> {
  const raw = (code: number): string | undefined => m.options.get(code)?.toString('hex');
  return {
    siaddr: m.siaddr, sname: m.sname, file: m.file, '60': raw(OPT.vendorClass), '66': raw(OPT.tftpServer), '67': raw(OPT.bootFile),
    '43': raw(OPT.vendorSpecific), '97': raw(OPT.clientUuid), '175': raw(OPT.ipxeEncap),
  };
}

describe.each([['bios-ipxe.pcap', BIOS, BIOS_MAC], ['uefi-edk2.pcap', UEFI, UEFI_MAC]] as const)('%s', (_name, pkts, mac) => {
  it('holds whole DHCP datagrams that decode, all about the VM, between its port 68 and our port 67', () => {
    expect(pkts.length).toBeGreaterThanOrEqual(4);
    for (const p of pkts) {
      expect(p.f.payload.length).toBe(p.f.payloadLength); // fixtures never cut DHCP
      expect(p.bytes).toBeLessThanOrEqual(p.f.payload.length);
      expect(macString(p.m.chaddr)).toBe(mac);
      expect([DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, DHCPACK]).toContain(p.type);
      if (p.m.op === 1) {
        expect([p.f.sport, p.f.dport, p.f.dst, p.f.srcMac]).toEqual([68, 67, '255.255.255.255', mac]);
      } else {
        // replies leave from interfaceAddress:67 as broadcasts (docs/dhcp.md "Replies")
        expect([p.f.src, p.f.sport, p.f.dport, p.f.dst]).toEqual([SERVER, 67, 68, '255.255.255.255']);
        expect(getOption(p.m.options, OPT.serverId)).toBe(SERVER);
        expect(p.m.yiaddr).toMatch(/^10\.77\.0\.(1[0-4]\d|150)$/);
        const req = pkts.filter((q) => q.m.op === 1 && q.m.xid === p.m.xid && q.f.ts <= p.f.ts).at(-1);
        expect(p.m.flags).toBe(req?.m.flags); // the BROADCAST flag is copied from the request
      }
    }
    expect(pkts.some((p) => p.f.dport === 4011 || p.f.sport === 4011)).toBe(false); // no boot-server (BINL) round
  });

  it('client messages re-encode to the same bytes up to END', () => {
    for (const p of pkts.filter((q) => q.m.op === 1)) {
      const again = encode(p.m);
      expect(again.subarray(0, p.bytes).toString('hex')).toBe(p.f.payload.subarray(0, p.bytes).toString('hex'));
    }
  });

  it('every captured DISCOVER replayed through respond() gets the boot fields that were captured', () => {
    const discovers = requests(pkts, DHCPDISCOVER);
    expect(discovers.length).toBeGreaterThanOrEqual(1);
    for (const d of discovers) expect(bootFields(replay(d.m))).toEqual(bootFields(replyTo(pkts, d, DHCPOFFER).m));
  });

  it('each REQUEST is ACKed with the offered address and the same boot fields', () => {
    for (const r of requests(pkts, DHCPREQUEST)) {
      const ack = replyTo(pkts, r, DHCPACK);
      const offer = replyTo(pkts, requests(pkts, DHCPDISCOVER).find((d) => d.m.xid === r.m.xid)!, DHCPOFFER);
      expect(getOption(r.m.options, OPT.serverId)).toBe(SERVER);
      expect(getOption(r.m.options, OPT.requestedIp)).toBe(offer.m.yiaddr);
      expect(ack.m.yiaddr).toBe(offer.m.yiaddr);
      expect(bootFields(ack.m)).toEqual(bootFields(offer.m));
      expect(getOption(ack.m.options, OPT.leaseTime)).toBe(3600);
    }
  });
});

describe('SeaBIOS + iPXE ROM (bios-ipxe.pcap)', () => {
  const [discover] = requests(BIOS, DHCPDISCOVER);

  it('DISCOVER: arch 0, PXEClient, UNDI 2.1, user class iPXE (plain string), iPXE options, UUID', () => {
    const o = discover!.m.options;
    expect(getOption(o, OPT.clientArch)).toEqual([0]);
    expect(getOption(o, OPT.vendorClass)).toBe('PXEClient:Arch:00000:UNDI:002001');
    expect(getOption(o, OPT.clientNii)).toEqual({ type: 1, major: 2, minor: 1 });
    expect(getOption(o, OPT.userClass)).toEqual({ classes: ['iPXE'], format: 'plain' });
    expect(getOption(o, OPT.ipxeEncap)?.get(177)).toEqual(Buffer.from('011af41000', 'hex')); // bus id: PCI virtio-net 1af4:1000
    expect(getOption(o, OPT.clientId)).toEqual(Buffer.from(`01${BIOS_MAC.replaceAll(':', '')}`, 'hex'));
    expect(getOption(o, OPT.maxMessageSize)).toBe(1472);
    expect(getOption(o, OPT.paramRequest)).toEqual(expect.arrayContaining([1, 3, 6, 43, 60, 66, 67, 175]));
    // option 97 when present: SeaBIOS passes QEMU's SMBIOS UUID (all zero without -uuid)
    const uuid = tryOption(o, OPT.clientUuid);
    if (uuid) expect([uuid.type, uuid.id.length]).toEqual([0, 16]);
  });

  it('OFFER and ACK: the per-machine script URL, no PXE menu control, no-pxedhcp, UUID echoed', () => {
    for (const r of [replyTo(BIOS, discover!, DHCPOFFER), replyTo(BIOS, requests(BIOS, DHCPREQUEST)[0]!, DHCPACK)]) {
      expect(r.m.file).toBe(`${BASE}/boot/${BIOS_MAC}.ipxe`);
      expect(getOption(r.m.options, OPT.bootFile)).toBe(r.m.file);
      expect(r.m.siaddr).toBe(SERVER);
      expect(getOption(r.m.options, OPT.vendorClass)).toBe('PXEClient');
      expect(r.m.options.has(OPT.vendorSpecific)).toBe(false);
      expect(getOption(r.m.options, OPT.ipxeEncap)?.get(176)).toEqual(Buffer.from([1]));
      expect(r.m.options.get(OPT.clientUuid)).toEqual(discover!.m.options.get(OPT.clientUuid));
    }
  });
});

describe('OVMF: EDK2 PXE, then ipxe.efi (uefi-edk2.pcap)', () => {
  const discovers = requests(UEFI, DHCPDISCOVER);
  const edk2 = discovers.filter((p) => !isIpxe(p));
  const ipxe = discovers.filter(isIpxe);

  it('two clients DHCP in turn: EDK2 first, then iPXE (ipxe.efi) with a new transaction', () => {
    expect(edk2.length).toBeGreaterThanOrEqual(1);
    expect(ipxe.length).toBeGreaterThanOrEqual(1);
    expect(ipxe[0]!.f.ts).toBeGreaterThan(edk2.at(-1)!.f.ts);
    expect(ipxe[0]!.m.xid).not.toBe(edk2[0]!.m.xid);
  });

  it('EDK2 DISCOVER: arch 7, PXEClient:Arch:00007, UNDI 3.x, UUID (97), BROADCAST, no user class', () => {
    const o = edk2[0]!.m.options;
    expect(getOption(o, OPT.clientArch)).toEqual([7]);
    expect(getOption(o, OPT.vendorClass)).toMatch(/^PXEClient:Arch:00007:UNDI:003\d{3}$/);
    expect(getOption(o, OPT.clientNii)).toMatchObject({ type: 1, major: 3 });
    expect(getOption(o, OPT.clientUuid)?.type).toBe(0);
    expect(getOption(o, OPT.clientUuid)?.id.length).toBe(16);
    expect(getOption(o, OPT.paramRequest)).toEqual(expect.arrayContaining([43, 60, 66, 67, 97]));
    expect(o.has(OPT.userClass)).toBe(false);
    expect(o.has(OPT.ipxeEncap)).toBe(false);
    expect(o.has(OPT.clientId)).toBe(false); // leases keyed by MAC
    expect(edk2[0]!.m.flags).toBe(0x8000);
  });

  it('our OFFER to EDK2: ipxe.efi over TFTP from us (siaddr, sname, 66), PXEClient, UUID echoed, no iPXE option', () => {
    const r = replyTo(UEFI, edk2[0]!, DHCPOFFER);
    expect([r.m.file, r.m.siaddr, r.m.sname]).toEqual(['ipxe.efi', SERVER, SERVER]);
    expect([getOption(r.m.options, OPT.bootFile), getOption(r.m.options, OPT.tftpServer)]).toEqual(['ipxe.efi', SERVER]);
    expect(getOption(r.m.options, OPT.vendorClass)).toBe('PXEClient');
    expect(r.m.options.get(OPT.clientUuid)).toEqual(edk2[0]!.m.options.get(OPT.clientUuid));
    expect(r.m.options.has(OPT.ipxeEncap)).toBe(false);
    expect(r.m.flags).toBe(0x8000);
  });

  it('our OFFER to EDK2 carries option 43 PXE_DISCOVERY_CONTROL = 8, so EDK2 boots the offered file without a 4011 round', () => {
    // EDK2 (NetworkPkg/UefiPxeBcDxe/PxeBcDhcp4.c) files an offer with "PXEClient" but without
    // option 43 as a "BINL" offer and asks siaddr:4011 for the boot file instead of using it;
    // full mode does not listen on 4011, so the boot fails with PXE-E16.
    const r = replyTo(UEFI, edk2[0]!, DHCPOFFER);
    expect(getOption(r.m.options, OPT.vendorSpecific)?.get(6)).toEqual(Buffer.from([8]));
  });

  it('iPXE (ipxe.efi) DISCOVER: arch 7, user class iPXE, UNDI 3.10; it gets the script URL and no-pxedhcp', () => {
    const o = ipxe[0]!.m.options;
    expect(getOption(o, OPT.clientArch)).toEqual([7]);
    expect(getOption(o, OPT.vendorClass)).toBe('PXEClient:Arch:00007:UNDI:003010');
    expect(getOption(o, OPT.userClass)).toEqual({ classes: ['iPXE'], format: 'plain' });
    expect(o.has(OPT.ipxeEncap)).toBe(true);
    const r = replyTo(UEFI, ipxe[0]!, DHCPOFFER);
    expect(r.m.file).toBe(`${BASE}/boot/${UEFI_MAC}.ipxe`);
    expect(getOption(r.m.options, OPT.bootFile)).toBe(r.m.file);
    expect(r.m.options.has(OPT.vendorSpecific)).toBe(false);
    expect(getOption(r.m.options, OPT.ipxeEncap)?.get(176)).toEqual(Buffer.from([1]));
  });

  it('EDK2 sends no client identifier, iPXE sends 01+MAC: each gets a lease from the range', () => {
    const reqs = requests(UEFI, DHCPREQUEST);
    const e = reqs.find((r) => !isIpxe(r))!;
    const i = reqs.find(isIpxe)!;
    expect(e.m.options.has(OPT.clientId)).toBe(false);
    expect(getOption(i.m.options, OPT.clientId)).toEqual(Buffer.from(`01${UEFI_MAC.replaceAll(':', '')}`, 'hex'));
    // Leases are keyed by option 61, else by MAC (docs/dhcp.md), so one machine holds two leases.
    for (const r of [e, i]) expect(replyTo(UEFI, r, DHCPACK).m.yiaddr).toMatch(/^10\.77\.0\.(1[0-4]\d|150)$/);
  });
});
