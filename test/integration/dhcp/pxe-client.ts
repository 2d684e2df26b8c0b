// A scripted DHCP/PXE client for the integration tests, run inside a lab namespace whose host
// keeps its static address (node:dgram cannot send a broadcast out of a namespace with no
// address and no route). argv[2] is JSON:
//   mode      'discover'      DISCOVER, print every reply for our xid
//             'select-other'  DISCOVER, then a SELECTING REQUEST naming another server id for the
//                             address offered; print what answers the REQUEST (should be nothing)
//             'pxe4011'       boot-server REQUEST unicast to `to`:4011 (PXE spec §2.2.5)
//   mac, to (destination address), vendorClass, arch, uuid (hex, option 97 payload), ciaddr,
//   otherServer, waitMs
// stdout: one JSON line { replies: [...] }.
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { DHCPDISCOVER, DHCPREQUEST, MESSAGE_TYPE_NAMES, OPT, encodeIp, setOption, tryOption } from '../../../services/dhcp/options.ts';
import { FLAG_BROADCAST, decode, emptyMessage, encode, type DhcpMessage } from '../../../services/dhcp/packet.ts';

interface Args { mode: 'discover' | 'select-other' | 'pxe4011'; mac: string; to: string; vendorClass?: string; arch?: number; uuid?: string; ciaddr?: string; otherServer?: string; waitMs?: number }
const a = JSON.parse(process.argv[2] ?? '{}') as Args;
const xid = randomBytes(4).readUInt32BE(0);
const chaddr = Buffer.from(a.mac.split(':').map((x) => parseInt(x, 16)));
const wait = a.waitMs ?? 1500;

function message(type: number, extra: (m: DhcpMessage) => void = () => {}): Buffer {
  const m = emptyMessage({ xid, chaddr, flags: FLAG_BROADCAST });
  setOption(m.options, OPT.messageType, type);
  if (a.vendorClass) setOption(m.options, OPT.vendorClass, a.vendorClass);
  if (a.arch !== undefined) setOption(m.options, OPT.clientArch, [a.arch]);
  if (a.uuid) m.options.set(OPT.clientUuid, Buffer.from(a.uuid, 'hex'));
  extra(m);
  return encode(m);
}

function summary(m: DhcpMessage, from: string) {
  return {
    from, type: MESSAGE_TYPE_NAMES[tryOption(m.options, OPT.messageType) ?? 0] ?? '?', yiaddr: m.yiaddr, siaddr: m.siaddr, file: m.file,
    serverId: tryOption(m.options, OPT.serverId) ?? null, vendorClass: tryOption(m.options, OPT.vendorClass) ?? null,
    bootFile: tryOption(m.options, OPT.bootFile) ?? null, pxeDiscoveryControl: tryOption(m.options, OPT.vendorSpecific)?.get(6)?.[0] ?? null,
    uuid: m.options.get(OPT.clientUuid)?.toString('hex') ?? null,
  };
}

const sock = createSocket({ type: 'udp4', reuseAddr: true });
const replies: Array<ReturnType<typeof summary>> = [];
let phase = 0;
let offered: { yiaddr: string } | null = null;
sock.on('message', (buf, r) => {
  let m: DhcpMessage;
  try { m = decode(buf).value; } catch { return; }
  if (m.xid !== xid || m.op !== 2) return;
  if (a.mode === 'select-other' && phase === 0) { offered ??= { yiaddr: m.yiaddr }; return; }
  replies.push(summary(m, `${r.address}:${r.port}`));
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const send = (b: Buffer, port: number): Promise<void> => new Promise((res, rej) => sock.send(b, port, a.to, (e) => (e ? rej(e) : res())));

await new Promise<void>((r) => sock.bind(68, a.mode === 'pxe4011' ? a.ciaddr! : '0.0.0.0', () => { sock.setBroadcast(true); r(); }));
if (a.mode === 'pxe4011') {
  await send(message(DHCPREQUEST, (m) => { m.ciaddr = a.ciaddr!; m.flags = 0; }), 4011);
  await sleep(wait);
} else {
  await send(message(DHCPDISCOVER), 67);
  await sleep(wait);
  if (a.mode === 'select-other') {
    if (!offered) throw new Error('no offer to select');
    const ip = (offered as { yiaddr: string }).yiaddr;
    phase = 1;
    await send(message(DHCPREQUEST, (m) => { m.options.set(OPT.serverId, encodeIp(a.otherServer!)); m.options.set(OPT.requestedIp, encodeIp(ip)); }), 67);
    await sleep(wait);
    process.stdout.write(`${JSON.stringify({ offered: ip, replies })}\n`);
    sock.close();
    process.exit(0);
  }
}
process.stdout.write(`${JSON.stringify({ replies })}\n`);
sock.close();
