// A minimal receiver for the sender's tail repairs: joins the group, tells the sender it is
// receiving, and once the sender says it is idle (everything sent) NACKs fragment 5 of chunk 0.
// When the repair has come and the sender says it is idle again, it NACKs the same fragment
// once more, as a receiver that lost the repair on the way does, a few ms after the repair left
// (inside the sender's repairHoldMs). The NACKs carry afterIdle when argv[5] is "idle". It then
// waits 400 ms, reports DONE and prints one JSON line: how many copies of the fragment came after
// each NACK. Bounded: it gives up after argv[4] seconds.
// Usage: node tail-peer.ts IFADDR GROUP PORT SECONDS idle|plain
import { createSocket } from 'node:dgram';
import { decodeHeader, HEADER_LENGTH, TYPE } from '../../../services/multicast/wire.ts';
import { STATE, decodeAnnounce, encodeNack, encodeStatus } from '../../../services/multicast/messages.ts';

const [ifaddr, group, portS, secondsS, mode] = process.argv.slice(2) as [string, string, string, string, string];
const port = Number(portS);
const RECEIVER = 0x7a11;
const afterIdle = mode === 'idle';
const listen = createSocket({ type: 'udp4', reuseAddr: true });
const ctl = createSocket('udp4');
let session: number | undefined;
let sender: string | undefined;
let total = 0;
let nacks = 0;
const copies = [0, 0]; // copies of chunk 0 fragment 5 after the first and after the second NACK
let finished = false;

function status(state: 1 | 2): void {
  if (session === undefined || !sender) return;
  ctl.send(encodeStatus(session, { receiver: RECEIVER, state, have: 0, total, backlog: 0, drops: 0, written: 0 }), port, sender);
}

function nack(): void {
  nacks++;
  ctl.send(encodeNack(session as number, { receiver: RECEIVER, entries: [{ index: 0, first: 5, count: 1 }], afterIdle }), port, sender as string);
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
    if (h.type === TYPE.ANNOUNCE) {
      const a = decodeAnnounce(msg.subarray(HEADER_LENGTH));
      if (session === undefined) {
        session = h.session;
        sender = rinfo.address;
        total = a.chunks;
        status(STATE.RECEIVING);
        setInterval(() => status(STATE.RECEIVING), 200).unref();
        return;
      }
      if (h.session !== session || a.state !== 2) return;
      if (nacks === 0) nack();
      else if (nacks === 1 && copies[0]) {
        nack();
        setTimeout(() => finish({ copies }), 400);
      }
      return;
    }
    if (h.type === TYPE.DATA && h.session === session && nacks > 0 && h.index === 0 && h.fragIndex === 5) copies[nacks - 1] = (copies[nacks - 1] ?? 0) + 1;
  } catch { /* not a datagram of ours */ }
});
listen.bind(port, group, () => listen.addMembership(group, ifaddr));
ctl.bind(0, ifaddr);
setTimeout(() => finish({ error: `gave up after ${secondsS} s`, nacks, copies }, 1), Number(secondsS) * 1000).unref();
