// A minimal receiver for the sender's tail repairs (peer.ts): once the sender says it is idle
// (everything sent) it NACKs fragment 5 of chunk 0. When the repair has come and the sender says
// it is idle again, it NACKs the same fragment once more, as a receiver that lost the repair on
// the way does, a few ms after the repair left (inside the sender's repairHoldMs). The NACKs carry
// afterIdle when argv[5] is "idle". It then waits 400 ms, reports DONE and prints one JSON line:
// how many copies of the fragment came after each NACK. Bounded: it gives up after argv[4] seconds.
// Usage: node tail-peer.ts IFADDR GROUP PORT SECONDS idle|plain
import { HEADER_LENGTH, TYPE } from '../../../services/multicast/wire.ts';
import { decodeAnnounce } from '../../../services/multicast/messages.ts';
import { startPeer, type Peer } from './peer.ts';

const [ifaddr, group, port, seconds, mode] = process.argv.slice(2) as [string, string, string, string, string];
let nacks = 0;
const copies = [0, 0]; // copies of chunk 0 fragment 5 after the first and after the second NACK
const nack = (p: Peer): void => {
  nacks++;
  p.nack([{ index: 0, first: 5, count: 1 }], mode === 'idle');
};

startPeer({
  ifaddr, group, port: Number(port), seconds: Number(seconds), receiver: 0x7a11,
  giveUp: () => ({ nacks, copies }),
  onDatagram: (h, msg, p) => {
    if (h.type === TYPE.ANNOUNCE) {
      if (decodeAnnounce(msg.subarray(HEADER_LENGTH)).state !== 2) return;
      if (nacks === 0) nack(p);
      else if (nacks === 1 && copies[0]) {
        nack(p);
        setTimeout(() => p.finish({ copies }), 400);
      }
    } else if (h.type === TYPE.DATA && nacks > 0 && h.index === 0 && h.fragIndex === 5) copies[nacks - 1] = (copies[nacks - 1] ?? 0) + 1;
  },
});
