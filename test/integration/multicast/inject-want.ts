// Hostile peer for tests: listens for the session's ANNOUNCE, then sends the sender malformed
// WANT datagrams for that session (valid header, bad payload: truncated, impossible bit counts and
// ranges, the wrong chunk count, reserved or padding bits set, trailing bytes; the image must
// have at least 13 chunks), each variant ROUNDS times, and prints how many it sent. Bounded:
// exits after SECONDS at most.
// Usage: node inject-want.ts IFADDR GROUP PORT SENDER ROUNDS SECONDS
import { createSocket } from 'node:dgram';
import { decodeHeader, encodeHeader, HEADER_LENGTH, TYPE } from '../../../services/multicast/wire.ts';
import { decodeAnnounce, encodeWant, MAX_WANT_BITS } from '../../../services/multicast/messages.ts';

const [ifaddr, group, portS, sender, roundsS, secondsS] = process.argv.slice(2) as [string, string, string, string, string, string];
const port = Number(portS);
const listen = createSocket({ type: 'udp4', reuseAddr: true });
const out = createSocket('udp4');
let sent = 0;

/** A WANT datagram with this payload, the header's length field matching it. */
function datagram(session: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(HEADER_LENGTH + payload.length);
  encodeHeader({ type: TYPE.WANT, session, index: 0, fragIndex: 0, fragCount: 0, payloadLength: payload.length, fragSize: 0 }, b);
  payload.copy(b, HEADER_LENGTH);
  return b;
}

function variants(session: number, chunks: number): Buffer[] {
  const good = encodeWant(session, { receiver: 0x0bad0bad, chunks, first: 0, count: Math.min(chunks, 13), skipped: 1, needed: [] }).subarray(HEADER_LENGTH);
  const edit = (f: (p: Buffer) => void): Buffer => { const p = Buffer.from(good); f(p); return datagram(session, p); };
  return [
    datagram(session, good.subarray(0, 10)), // truncated
    edit((p) => p.writeUInt16BE(0, 12)), // no bits
    datagram(session, Buffer.concat([edit((p) => p.writeUInt16BE(MAX_WANT_BITS + 1, 12)).subarray(HEADER_LENGTH), Buffer.alloc(1400)])), // too many bits
    edit((p) => p.writeUInt32BE(chunks, 8)), // range beyond the image
    edit((p) => p.writeUInt32BE(chunks + 1, 4)), // not this image's chunk count
    edit((p) => p.writeUInt16BE(0x8000, 14)), // reserved bits
    edit((p) => p.writeBigUInt64BE(2n ** 60n, 16)), // bytes skipped out of range
    datagram(session, Buffer.concat([good, Buffer.alloc(3)])), // trailing bytes
    edit((p) => { p[25] = (p[25] as number) | 1; }), // padding bits (13 bits: the last 3 of byte 1)
  ];
}

listen.on('message', (msg) => {
  try {
    const { value: h } = decodeHeader(msg);
    if (h.type !== TYPE.ANNOUNCE || sent) return;
    const chunks = decodeAnnounce(msg.subarray(HEADER_LENGTH)).chunks;
    for (let r = 0; r < Number(roundsS); r++) for (const d of variants(h.session, chunks)) { out.send(d, port, sender); sent++; }
    setTimeout(() => { process.stdout.write(`${JSON.stringify({ sent, session: h.session })}\n`); process.exit(0); }, 300);
  } catch { /* not ours */ }
});
listen.bind(port, group, () => listen.addMembership(group, ifaddr));
out.bind(0, ifaddr);
setTimeout(() => { process.stdout.write(`${JSON.stringify({ sent })}\n`); process.exit(0); }, Number(secondsS) * 1000).unref();
