// Golden TFTP exchange of real firmware with rackcast's TFTP server: OVMF's EDK2 PXE client
// fetching ipxe.efi, captured on the lab bridge by test/e2e/pxe/boot.test.ts (UPDATE_GOLDEN=1;
// see test/fixtures/pcap/README.md). Every TFTP datagram is decoded with packet.ts. DATA payloads
// are cut after the 4-byte TFTP header in the fixture; the pcap record's original length still
// gives each payload's size on the wire.
//
// What EDK2 does (LAB-NOTES): one RRQ that asks only for the size (tsize) and aborts after the
// OACK with ERROR 8, then a second RRQ that downloads the file; both with blksize and windowsize.
import { describe, it, expect } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TFTP_DEFAULTS } from '../../../services/tftp/config.ts';
import { negotiate } from '../../../services/tftp/options.ts';
import { TFTP_ERROR, decode, type TftpPacket } from '../../../services/tftp/packet.ts';
import { TFTP_DATA_KEEP, isTftp, udpFrames, type Frame } from '../../fixtures/pcap/pcap.ts';

const FIXTURES = fileURLToPath(new URL('../../fixtures/pcap/', import.meta.url));
const SERVER = '10.77.0.1';

interface Pkt { f: Frame; p: TftpPacket; fromClient: boolean; wireLength: number }
const PKTS: Pkt[] = udpFrames(readFileSync(`${FIXTURES}uefi-edk2.pcap`)).filter(isTftp).map((f) => ({
  f, p: decode(f.payload).value, fromClient: f.dst === SERVER, wireLength: f.payloadLength,
}));

interface Transfer { rrq: Pkt; serverPort: number; clientPort: number; pkts: Pkt[] }
/** RFC 1350 §4: each transfer runs between the client's port and a new server port (its TID). */
function transfers(): Transfer[] {
  return PKTS.filter((x) => x.f.dport === 69).map((rrq) => {
    const clientPort = rrq.f.sport;
    const pkts = PKTS.filter((x) => x !== rrq && (x.fromClient ? x.f.sport === clientPort : x.f.dport === clientPort) && x.f.ts >= rrq.f.ts);
    const first = pkts.find((x) => !x.fromClient);
    return { rrq, clientPort, serverPort: first?.f.sport ?? -1, pkts };
  });
}
const T = transfers();
const opts = (p: TftpPacket): Record<string, string> => ('options' in p ? Object.fromEntries(p.options) : {});

describe('uefi-edk2.pcap: EDK2 PXE fetching ipxe.efi from rackcast', () => {
  it('every TFTP datagram decodes; only DATA is cut in the fixture', () => {
    expect(PKTS.length).toBeGreaterThan(10);
    for (const x of PKTS) {
      if (x.p.type === 'data') expect(x.f.payload.length).toBe(Math.min(TFTP_DATA_KEEP, x.wireLength));
      else expect(x.f.payload.length).toBe(x.wireLength);
      expect(x.f.src === SERVER || x.f.dst === SERVER).toBe(true);
    }
    expect(PKTS.filter((x) => x.p.type === 'wrq')).toHaveLength(0);
  });

  it('two read requests for ipxe.efi (octet): a size probe (tsize 0), then the download', () => {
    expect(T).toHaveLength(2);
    const [probe, get] = T.map((t) => t.rrq.p);
    expect(probe).toMatchObject({ type: 'rrq', filename: 'ipxe.efi', mode: 'octet' });
    expect(get).toMatchObject({ type: 'rrq', filename: 'ipxe.efi', mode: 'octet' });
    expect(opts(probe!)['tsize']).toBe('0');
    expect(opts(probe!)).toHaveProperty('blksize');
    expect(opts(get!)).not.toHaveProperty('tsize');
    expect(opts(get!)['blksize']).toBe(opts(probe!)['blksize']);
  });

  it('each transfer comes from its own new server port, never 69, to the requesting port', () => {
    const ports = T.map((t) => t.serverPort);
    for (const p of ports) expect(p).not.toBe(69);
    expect(new Set(ports).size).toBe(2);
    for (const t of T) for (const x of t.pkts) expect(x.fromClient ? x.f.dport : x.f.sport).toBe(t.serverPort);
  });

  it('our OACKs are what negotiate() grants for the captured requests', () => {
    const size = Number(opts(T[0]!.pkts.find((x) => x.p.type === 'oack')!.p)['tsize']);
    for (const t of T) {
      const oack = t.pkts.find((x) => x.p.type === 'oack');
      expect(oack).toBeDefined();
      const req = t.rrq.p;
      if (req.type !== 'rrq') throw new Error('not a read request');
      const n = negotiate(req.options, size, TFTP_DEFAULTS);
      expect(opts(oack!.p)).toEqual(Object.fromEntries(n.oack ?? []));
    }
  });

  it('the probe: OACK with tsize, then EDK2 ends it with ERROR 8 and no DATA is sent', () => {
    const probe = T[0]!.pkts;
    expect(probe.map((x) => `${x.fromClient ? 'c' : 's'}:${x.p.type}`)).toEqual(['s:oack', 'c:error']);
    const err = probe[1]!.p as Extract<TftpPacket, { type: 'error' }>;
    expect(err.code).toBe(TFTP_ERROR.OPTION_REFUSED);
    expect(Number(opts(probe[0]!.p)['tsize'])).toBeGreaterThan(100_000);
  });

  it('the download: ACK 0 of the OACK, DATA 1..N in full blocks but the last, tsize bytes in all, every window ACKed', () => {
    const t = T[1]!;
    const oack = opts(t.pkts.find((x) => x.p.type === 'oack')!.p);
    const blksize = Number(oack['blksize'] ?? 512);
    const window = Number(oack['windowsize'] ?? 1);
    const size = Number(opts(T[0]!.pkts[0]!.p)['tsize']);
    const data = t.pkts.filter((x) => x.p.type === 'data');
    const acks = t.pkts.filter((x) => x.p.type === 'ack').map((x) => (x.p as Extract<TftpPacket, { type: 'ack' }>).block);
    expect(acks[0]).toBe(0);
    // blocks in order; a retransmitted window would repeat numbers, so take each block once
    const sizes = new Map<number, number>();
    for (const x of data) sizes.set((x.p as Extract<TftpPacket, { type: 'data' }>).block, x.wireLength - 4);
    const n = Math.ceil((size + 1) / blksize); // a file of k·blksize bytes ends with an empty block
    expect([...sizes.keys()]).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    for (const [block, len] of sizes) expect(len).toBe(block < n ? blksize : size - (n - 1) * blksize);
    expect([...sizes.values()].reduce((a, b) => a + b, 0)).toBe(size);
    // RFC 7440: the client ACKs the last block of each window and the final block
    expect(acks.at(-1)).toBe(n);
    for (let b = window; b < n; b += window) expect(acks).toContain(b);
    expect(t.pkts.at(-1)!.fromClient).toBe(true); // nothing from us after the final ACK
    expect(t.pkts.some((x) => x.p.type === 'error')).toBe(false);
  });
});
