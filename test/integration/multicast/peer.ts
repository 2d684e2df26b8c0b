// What the test peers (nack-peer.ts, tail-peer.ts) share: a minimal receiver in a lab namespace.
// It joins the group and, on the session's first ANNOUNCE, tells the sender it is receiving
// (STATUS every 200 ms, plain repairs: no PARITY); every later datagram of the group goes to
// `onDatagram`. finish() prints one JSON line, reports DONE and exits. Bounded: after `seconds`
// it finishes with { error, ...giveUp() } and exit code 1.
import { createSocket } from 'node:dgram';
import { decodeHeader, HEADER_LENGTH, TYPE, type Header } from '../../../services/multicast/wire.ts';
import { STATE, decodeAnnounce, encodeNack, encodeStatus, type NackEntry } from '../../../services/multicast/messages.ts';

export interface Peer {
  /** the session heard (0 before the first ANNOUNCE) */
  readonly session: number;
  nack(entries: NackEntry[], afterIdle?: boolean): void;
  finish(out: object, code?: number): void;
}

export function startPeer(o: { ifaddr: string; group: string; port: number; seconds: number; receiver: number; onDatagram(h: Header, msg: Buffer, p: Peer): void; giveUp(): object }): Peer {
  const listen = createSocket({ type: 'udp4', reuseAddr: true });
  const ctl = createSocket('udp4');
  let session: number | undefined;
  let sender: string | undefined;
  let total = 0;
  let finished = false;
  const status = (state: 1 | 2): void => {
    if (session === undefined || !sender) return;
    ctl.send(encodeStatus(session, { receiver: o.receiver, state, have: 0, total, backlog: 0, drops: 0, written: 0 }), o.port, sender);
  };
  const peer: Peer = {
    get session() { return session ?? 0; },
    nack: (entries, afterIdle) => { ctl.send(encodeNack(session as number, { receiver: o.receiver, entries, ...(afterIdle ? { afterIdle } : {}) }), o.port, sender as string); },
    finish: (out, code = 0) => {
      if (finished) return;
      finished = true;
      process.stdout.write(JSON.stringify(out) + '\n');
      status(STATE.DONE);
      setTimeout(() => { listen.close(); ctl.close(); process.exit(code); }, 100);
    },
  };
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
      if (h.session === session) o.onDatagram(h, msg, peer);
    } catch { /* not a datagram of ours */ }
  });
  listen.bind(o.port, o.group, () => listen.addMembership(o.group, o.ifaddr));
  ctl.bind(0, o.ifaddr);
  setTimeout(() => peer.finish({ error: `gave up after ${o.seconds} s`, ...o.giveUp() }, 1), o.seconds * 1000).unref();
  return peer;
}
