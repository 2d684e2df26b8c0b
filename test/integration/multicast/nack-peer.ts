// A minimal receiver for tests of the sender's repair scheduling: joins the group, tells the
// sender it is receiving (plain repairs: no PARITY), records every DATA datagram in arrival order,
// and once the pass is part-way through a large chunk (fragment ≥ 50 of a chunk of ≥ 400
// fragments) NACKs fragment 0 of the chunk before it. Once it has seen that repair and every
// fragment of the large chunk, it reports DONE and prints one JSON line: the large chunk, its
// fragment count, how many of its fragments came before the repair, and its fragments' indexes in
// arrival order. Bounded: it gives up after argv[4] seconds.
// Usage: node nack-peer.ts IFADDR GROUP PORT SECONDS
import { createSocket } from 'node:dgram';
import { decodeHeader, HEADER_LENGTH, TYPE } from '../../../services/multicast/wire.ts';
import { STATE, decodeAnnounce, encodeNack, encodeStatus } from '../../../services/multicast/messages.ts';

const [ifaddr, group, portS, secondsS] = process.argv.slice(2) as [string, string, string, string];
const port = Number(portS);
const RECEIVER = 0x7e57ab1e;
const listen = createSocket({ type: 'udp4', reuseAddr: true });
const ctl = createSocket('udp4');
let session: number | undefined;
let sender: string | undefined;
let total = 0;
let big: { index: number; count: number; before?: number; order: number[] } | undefined;
let nacked: number | undefined; // the chunk NACKed
let repaired = false;
let prev: number | undefined; // the chunk of the previous DATA datagram
let finished = false;

function status(state: 1 | 2): void {
  if (session === undefined || !sender) return;
  ctl.send(encodeStatus(session, { receiver: RECEIVER, state, have: 0, total, backlog: 0, drops: 0, written: 0 }), port, sender);
}

function finish(out: object, code = 0): void {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(out) + '\n');
  status(STATE.DONE);
  setTimeout(() => { listen.close(); ctl.close(); process.exit(code); }, 100);
}

listen.on('message', (msg, rinfo) => {
  try {
    const { value: h } = decodeHeader(msg);
    if (h.type === TYPE.ANNOUNCE && session === undefined) {
      session = h.session;
      sender = rinfo.address;
      total = decodeAnnounce(msg.subarray(HEADER_LENGTH)).chunks;
      status(STATE.RECEIVING);
      setInterval(() => status(STATE.RECEIVING), 200).unref();
      return;
    }
    if (h.type !== TYPE.DATA || h.session !== session) return;
    if (!big && prev !== undefined && h.index !== prev && h.fragCount >= 400) big = { index: h.index, count: h.fragCount, order: [] };
    if (big && h.index === big.index) big.order.push(h.fragIndex);
    if (big && nacked === undefined && h.index === big.index && h.fragIndex >= 50 && prev === big.index) {
      nacked = big.index - 1;
      ctl.send(encodeNack(session, { receiver: RECEIVER, entries: [{ index: nacked, first: 0, count: 1 }] }), port, sender as string);
    } else if (big && nacked !== undefined && !repaired && h.index === nacked) {
      repaired = true;
      big.before = big.order.length;
    }
    prev = h.index;
    if (big && repaired && new Set(big.order).size >= big.count) finish({ index: big.index, count: big.count, before: big.before, order: big.order });
  } catch { /* not a datagram of ours */ }
});
listen.bind(port, group, () => listen.addMembership(group, ifaddr));
ctl.bind(0, ifaddr);
setTimeout(() => finish({ error: `gave up after ${secondsS} s`, nacked, repaired, seen: big?.order.length ?? 0, count: big?.count ?? 0 }, 1), Number(secondsS) * 1000).unref();
