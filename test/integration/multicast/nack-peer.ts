// A minimal receiver for tests of the sender's repair scheduling (peer.ts): it records every
// DATA datagram in arrival order, and once the pass is part-way through a large chunk (fragment
// ≥ 50 of a chunk of ≥ 400 fragments) NACKs fragment 0 of the chunk before it. Once it has seen
// that repair and every fragment of the large chunk, it reports DONE and prints one JSON line:
// the large chunk, its fragment count, how many of its fragments came before the repair, and its
// fragments' indexes in arrival order. Bounded: it gives up after argv[4] seconds.
// Usage: node nack-peer.ts IFADDR GROUP PORT SECONDS
import { TYPE } from '../../../services/multicast/wire.ts';
import { startPeer } from './peer.ts';

const [ifaddr, group, port, seconds] = process.argv.slice(2) as [string, string, string, string];
let big: { index: number; count: number; before?: number; order: number[] } | undefined;
let nacked: number | undefined; // the chunk NACKed
let repaired = false;
let prev: number | undefined; // the chunk of the previous DATA datagram

startPeer({
  ifaddr, group, port: Number(port), seconds: Number(seconds), receiver: 0x7e57ab1e,
  giveUp: () => ({ nacked, repaired, seen: big?.order.length ?? 0, count: big?.count ?? 0 }),
  onDatagram: (h, _msg, p) => {
    if (h.type !== TYPE.DATA) return;
    if (!big && prev !== undefined && h.index !== prev && h.fragCount >= 400) big = { index: h.index, count: h.fragCount, order: [] };
    if (big && h.index === big.index) big.order.push(h.fragIndex);
    if (big && nacked === undefined && h.index === big.index && h.fragIndex >= 50 && prev === big.index) {
      nacked = big.index - 1;
      p.nack([{ index: nacked, first: 0, count: 1 }]);
    } else if (big && nacked !== undefined && !repaired && h.index === nacked) {
      repaired = true;
      big.before = big.order.length;
    }
    prev = h.index;
    if (big && repaired && new Set(big.order).size >= big.count) p.finish({ index: big.index, count: big.count, before: big.before, order: big.order });
  },
});
