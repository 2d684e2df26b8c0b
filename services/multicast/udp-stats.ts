// Receive-buffer overruns of this network namespace (/proc/net/snmp, "Udp:" RcvbufErrors): the
// signal that a receiver cannot keep up, as opposed to loss on the wire.
import { readFileSync } from 'node:fs';

export function udpRcvbufErrors(): number {
  try {
    return rcvbufErrorsIn(readFileSync('/proc/net/snmp', 'utf8'));
  } catch {
    return 0;
  }
}

/** RcvbufErrors from the text of a /proc/net/snmp (this host's, or one read in another namespace). */
export function rcvbufErrorsIn(snmp: string): number {
  const lines = snmp.split('\n').filter((l) => l.startsWith('Udp:'));
  const [names, values] = lines.map((l) => l.split(/\s+/).slice(1));
  const i = names?.indexOf('RcvbufErrors') ?? -1;
  return i >= 0 ? Number(values?.[i] ?? 0) : 0;
}
