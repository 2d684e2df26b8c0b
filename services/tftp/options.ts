// Option negotiation for a read request (RFC 2347). The server answers with an OACK holding only
// the options it understood and accepted; anything else is silently left out, which RFC 2347 §3
// allows and which keeps old clients working. If nothing is accepted there is no OACK and the
// transfer starts with DATA 1 as in plain RFC 1350.
//
//   option      RFC        request value      answer
//   ----------  ---------  -----------------  ---------------------------------------------------
//   blksize     2348       8..65464           min(requested, maxBlksize); below 8 → ignored
//   tsize       2349 §2    "0" (any decimal)  the file's size in bytes
//   timeout     2349 §1    1..255 seconds     echoed unchanged (the RFC lets the server only
//                                             accept or ignore it); outside 1..255 → ignored
//   windowsize  7440       1..65535           min(requested, maxWindowsize); 0 → ignored
import type { TftpOptions } from './packet.ts';

export const DEFAULT_BLKSIZE = 512; // RFC 1350
export const MIN_BLKSIZE = 8;
export const MAX_BLKSIZE = 65464;

export interface Negotiated {
  blksize: number;
  windowsize: number;
  /** The client's `timeout` option in ms, when it sent an acceptable one. */
  timeoutMs: number | undefined;
  /** Options to acknowledge, in the client's order; undefined → no OACK, start with DATA 1. */
  oack: Map<string, string> | undefined;
}

export interface NegotiationLimits { maxBlksize: number; maxWindowsize: number }

/** A plain decimal integer of at most 10 digits, else undefined (no signs, spaces, hex or exponents). */
function decimal(v: string): number | undefined {
  return /^[0-9]{1,10}$/.test(v) ? Number(v) : undefined;
}

export function negotiate(requested: TftpOptions, fileSize: number, limits: NegotiationLimits): Negotiated {
  const out: Negotiated = { blksize: DEFAULT_BLKSIZE, windowsize: 1, timeoutMs: undefined, oack: undefined };
  const ack = new Map<string, string>();
  for (const [name, value] of requested) {
    const n = decimal(value);
    if (n === undefined) continue;
    switch (name) {
      case 'blksize':
        if (n < MIN_BLKSIZE) break;
        out.blksize = Math.min(n, MAX_BLKSIZE, limits.maxBlksize);
        ack.set(name, String(out.blksize));
        break;
      case 'tsize':
        ack.set(name, String(fileSize));
        break;
      case 'timeout':
        if (n < 1 || n > 255) break;
        out.timeoutMs = n * 1000;
        ack.set(name, String(n));
        break;
      case 'windowsize':
        if (n < 1 || n > 65535) break;
        out.windowsize = Math.min(n, limits.maxWindowsize);
        ack.set(name, String(out.windowsize));
        break;
      default:
        break; // unknown (e.g. "multicast", "rollover"): not acknowledged
    }
  }
  if (ack.size > 0) out.oack = ack;
  return out;
}
