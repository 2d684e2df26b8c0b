// CPU seconds per thread of this process, by thread name (Linux: /proc/self/task/*/stat), so a
// receiver can report where its data phase went: the JS thread, the chunk workers, the rcudp
// receive thread, V8's and libuv's helpers. Threads of one name are summed; threads that ended
// are not counted. Elsewhere (or if /proc is not readable) it is empty.
import { readdirSync, readFileSync } from 'node:fs';

export type ThreadCpu = Record<string, number>;

/** Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on Linux). */
const HZ = 100;

export function threadCpu(): ThreadCpu {
  const out: ThreadCpu = {};
  let tasks: string[];
  try { tasks = readdirSync('/proc/self/task'); } catch { return out; }
  for (const t of tasks) {
    let st: string;
    try { st = readFileSync(`/proc/self/task/${t}/stat`, 'latin1'); } catch { continue; }
    const close = st.lastIndexOf(')');
    const name = st.slice(st.indexOf('(') + 1, close);
    const f = st.slice(close + 2).split(' '); // fields from 3 (state) on: utime is 14, stime 15
    out[name] = (out[name] ?? 0) + (Number(f[11]) + Number(f[12])) / HZ;
  }
  return out;
}

/** after − before, per name, rounded to 10 ms (the ticks' resolution); names under 10 ms left out. */
export function cpuSince(before: ThreadCpu, after: ThreadCpu = threadCpu()): ThreadCpu {
  const out: ThreadCpu = {};
  for (const [k, v] of Object.entries(after)) {
    const d = Math.round((v - (before[k] ?? 0)) * 100) / 100;
    if (d >= 0.01) out[k] = d;
  }
  return out;
}
