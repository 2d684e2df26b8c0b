// Hostile peer for tests: listens for the session's ANNOUNCE, then sends forged DATA datagrams
// with VALID headers for that session (right magic, version, session id, plausible index,
// fragment fields) and random payloads into the group; every fourth is a PARITY, with the
// fragment count of the real chunk once the sender's own DATA for it has been seen, so that
// receivers rebuild garbage from it and must reject the chunk by its hash. Bounded: argv[4] datagrams at most, for
// argv[5] seconds from the first ANNOUNCE (a loaded machine may take seconds to start the
// sender), and it gives up WAIT_S after starting if no ANNOUNCE came.
// Usage: node inject.ts IFADDR GROUP PORT COUNT SECONDS
import { createSocket } from 'node:dgram';
import { randomBytes, randomInt } from 'node:crypto';
import { decodeHeader, encodeHeader, HEADER_LENGTH, TYPE } from '../../../services/multicast/wire.ts';
import { decodeAnnounce } from '../../../services/multicast/messages.ts';
import { FEC_MAX_BLOCKS, FEC_MAX_PARITY, codedBlocks, parityFragIndex } from '../../../services/multicast/fec.ts';

const [ifaddr, group, portS, countS, secondsS] = process.argv.slice(2) as [string, string, string, string, string];
const port = Number(portS);
const WAIT_S = 60;
let deadline = Infinity;
const listen = createSocket({ type: 'udp4', reuseAddr: true });
const send = createSocket('udp4');
let session: number | undefined;
let chunks = 1;
let sent = 0;

const counts = new Map<number, number>(); // chunk → its fragment count, from the sender's DATA
listen.on('message', (msg, rinfo) => {
  try {
    const { value: h } = decodeHeader(msg);
    if (h.type === TYPE.DATA && h.session === session && rinfo.address !== ifaddr) counts.set(h.index, h.fragCount);
    if (h.type === TYPE.ANNOUNCE && session === undefined) {
      session = h.session;
      chunks = decodeAnnounce(msg.subarray(HEADER_LENGTH)).chunks;
      deadline = Date.now() + Number(secondsS) * 1000;
      void blast();
    }
  } catch { /* not ours */ }
});
listen.bind(port, group, () => listen.addMembership(group, ifaddr));
send.bind(0, ifaddr, () => send.setMulticastInterface(ifaddr));

function parity(fragSize: number): void {
  const known = [...counts.entries()];
  const [index, count] = known.length ? known[randomInt(0, known.length)] as [number, number] : [randomInt(0, chunks), randomInt(2, 800)];
  const blocks = Math.min(codedBlocks(count), FEC_MAX_BLOCKS);
  const out = Buffer.alloc(HEADER_LENGTH + fragSize);
  encodeHeader({ type: TYPE.PARITY, session: session as number, index, fragIndex: parityFragIndex(randomInt(0, blocks), randomInt(0, FEC_MAX_PARITY)), fragCount: count, payloadLength: fragSize, fragSize }, out);
  randomBytes(fragSize).copy(out, HEADER_LENGTH);
  send.send(out, port, group);
  sent++;
}

async function blast(): Promise<void> {
  const fragSize = 1448;
  while (sent < Number(countS) && Date.now() < deadline) {
    for (let k = 0; k < 20; k++) {
      if (k % 4 === 3) { parity(fragSize); continue; }
      const count = randomInt(1, 800);
      const frag = randomInt(0, count);
      const len = frag === count - 1 ? randomInt(1, fragSize + 1) : fragSize;
      const out = Buffer.alloc(HEADER_LENGTH + len);
      encodeHeader({ type: TYPE.DATA, session: session as number, index: randomInt(0, chunks), fragIndex: frag, fragCount: count, payloadLength: len, fragSize }, out);
      randomBytes(len).copy(out, HEADER_LENGTH);
      send.send(out, port, group);
      sent++;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  process.stdout.write(`${JSON.stringify({ sent, session })}\n`);
  listen.close();
  send.close();
}

setTimeout(() => { process.stdout.write(`${JSON.stringify({ sent, session })}\n`); process.exit(0); }, (WAIT_S + Number(secondsS)) * 1000 + 5000).unref();
