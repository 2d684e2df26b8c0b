// The sender's scheduling priority. Pacing keeps time only if the sender runs when its timer
// fires: a sender not scheduled for longer than the pacer's carry window (20 ms) loses that link
// time for good (pacer.ts lostSeconds; the link idles). On a busy appliance host (a capture
// compressing, HTTP fallback serving, the lab's receivers on the same two cores) that cost 0.1–0.33 s
// of a 6 s session (docs/decisions.md, "Multicast, session 7"). So the sender raises its own
// priority where it may (root: CAP_SYS_NICE):
// - the nice value of the calling thread (Linux: setpriority on the main thread; threads it
//   starts later inherit it);
// - the nice value of its autogroup (/proc/self/autogroup): with autogroups on (the default on
//   desktop and many server kernels), the CPU is shared between sessions first, and a thread's
//   nice value only ranks it within its own session. An autogroup is a whole terminal session, so
//   restore() puts its old value back when the sender is done.
import { getPriority, setPriority } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';

export interface Priority {
  /** the thread's nice value now, and before */
  nice: number; was: number;
  /** the autogroup's nice value now and before (null: no autogroups on this kernel) */
  autogroup: { nice: number; was: number } | null;
  /** why a step was not taken (not root, …) */
  errors: string[];
  /** what a log line or a report says: the nice values now, and any errors */
  summary(): { nice: number; autogroup: number | null; errors: string[] };
  /** put back what was changed */
  restore(): void;
}

const AUTOGROUP = '/proc/self/autogroup';

/** "/autogroup-123 nice 0" → 0 (null when the file is absent: autogroups off or not Linux). */
export function readAutogroupNice(path = AUTOGROUP): number | null {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch { return null; }
  const m = /\bnice\s+(-?\d+)/.exec(text);
  return m ? Number(m[1]) : null;
}

/** Raise the calling thread's (and its autogroup's) priority to `nice` (−20…19) if that is higher than now; never lowers it. */
export function raisePriority(nice: number, autogroupPath = AUTOGROUP): Priority {
  if (!Number.isInteger(nice) || nice < -20 || nice > 19) throw new RangeError(`nice must be an integer from -20 to 19, not ${nice}`);
  const errors: string[] = [];
  const was = getPriority(0);
  let now = was;
  if (nice < was) {
    try { setPriority(0, nice); now = nice; } catch (e) { errors.push(`nice ${nice}: ${(e as Error).message}`); }
  }
  const agWas = readAutogroupNice(autogroupPath);
  let autogroup: Priority['autogroup'] = agWas === null ? null : { nice: agWas, was: agWas };
  if (agWas !== null && nice < agWas) {
    try { writeFileSync(autogroupPath, String(nice)); autogroup = { nice, was: agWas }; } catch (e) { errors.push(`autogroup nice ${nice}: ${(e as Error).message}`); }
  }
  let restored = false;
  return {
    nice: now, was, autogroup, errors,
    summary: () => ({ nice: now, autogroup: autogroup?.nice ?? null, errors }),
    restore(): void {
      if (restored) return;
      restored = true;
      // the thread's own value needs no restoring (it ends with the process); the autogroup outlives it
      if (autogroup && autogroup.nice !== autogroup.was) {
        try { writeFileSync(autogroupPath, String(autogroup.was)); } catch { /* the session may be gone */ }
      }
    },
  };
}
