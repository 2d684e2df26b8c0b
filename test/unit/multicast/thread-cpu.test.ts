// Per-thread CPU from /proc/self/task: the thread that burns CPU shows it, by name.
import { describe, it, expect } from '@jest/globals';
import { cpuSince, threadCpu } from '../../../services/multicast/thread-cpu.ts';

const linux = process.platform === 'linux';

describe('threadCpu', () => {
  (linux ? it : it.skip)('names this process\'s threads and charges a busy loop to the thread that ran it', () => {
    const before = threadCpu();
    expect(Object.keys(before).length).toBeGreaterThan(1); // the JS thread and V8's/libuv's helpers
    const spent0 = process.cpuUsage();
    let x = 0;
    while ((process.cpuUsage(spent0).user + process.cpuUsage(spent0).system) < 200_000) x += Math.sqrt(x + 1); // 0.2 s of CPU
    const d = cpuSince(before);
    const top = Object.entries(d).sort((a, b) => b[1] - a[1])[0] as [string, number];
    expect(top[1]).toBeGreaterThanOrEqual(0.15); // ticks are 10 ms: most of the 0.2 s, on one thread
    expect(x).toBeGreaterThan(0);
  });

  it('cpuSince leaves out what did not grow and rounds to the ticks', () => {
    expect(cpuSince({ a: 1, b: 2 }, { a: 1.004, b: 2.5, c: 0.3 })).toEqual({ b: 0.5, c: 0.3 });
  });
});
