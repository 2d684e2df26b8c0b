// The native GroupSender's stage (batch-io.ts) when the kernel does not take a whole burst: a
// stand-in for the addon plays a socket buffer that takes only some datagrams per sendmmsg, or
// fails one. Nothing staged may be lost, reordered or corrupted unless it is counted as dropped.
import { describe, it, expect } from '@jest/globals';
import { openGroupSender, STAGE_BYTES, STAGE_DATAGRAMS, type Binding } from '../../../services/multicast/batch-io.ts';

/** A kernel that accepts `take()` datagrams per call (or fails the first with an errno). */
function fakeKernel(take: () => number | { errno: number }): { binding: Binding; wire: Buffer[]; calls: number } {
  const k = { wire: [] as Buffer[], calls: 0, binding: undefined as unknown as Binding };
  k.binding = {
    txOpen: () => ({}),
    txClose: () => undefined,
    txSend: (_h: unknown, buf: Buffer, offs: Uint32Array, lens: Uint32Array, count: number): number => {
      k.calls++;
      const t = take();
      if (typeof t !== 'number') return -t.errno;
      const n = Math.min(t, count);
      for (let i = 0; i < n; i++) k.wire.push(Buffer.from(buf.subarray(offs[i] as number, (offs[i] as number) + (lens[i] as number))));
      return n;
    },
  } as unknown as Binding;
  return k;
}

const open = (binding: Binding): ReturnType<typeof openGroupSender> =>
  openGroupSender({ group: '239.255.77.1', port: 9700, iface: '10.0.0.1', sndbuf: 1 << 20, io: 'native', binding });

/** Datagram i: a 24-byte head carrying i, and a body of `size` bytes of a pattern of i. */
function datagram(i: number, size = 1448): [Buffer, Buffer] {
  const head = Buffer.alloc(24);
  head.writeUInt32BE(i, 0);
  return [head, Buffer.alloc(size, i & 0xff)];
}

function expectInOrder(wire: Buffer[], ids: number[], size = 1448): void {
  expect(wire.map((d) => d.readUInt32BE(0))).toEqual(ids);
  for (const d of wire) {
    expect(d.length).toBe(24 + size);
    expect(d.subarray(24).every((b) => b === (d.readUInt32BE(0) & 0xff))).toBe(true);
  }
}

describe('GroupSender stage (native path, kernel stand-in)', () => {
  it('a burst the kernel takes whole leaves in one call, in order', async () => {
    const k = fakeKernel(() => 1e9);
    const tx = await open(k.binding);
    for (let i = 0; i < 50; i++) tx.push(...datagram(i));
    tx.flush();
    expect(k.calls).toBe(1);
    expectInOrder(k.wire, [...Array(50).keys()]);
    expect(tx.dropped).toBe(0);
  });

  it('what a full socket buffer refuses stays staged and leaves first at the next flush', async () => {
    const takes = [3, 0, 4, 1e9];
    const k = fakeKernel(() => takes.shift() ?? 1e9);
    const tx = await open(k.binding);
    for (let i = 0; i < 10; i++) tx.push(...datagram(i));
    tx.flush(); // 3
    tx.flush(); // 0
    for (let i = 10; i < 15; i++) tx.push(...datagram(i));
    tx.flush(); // 4
    tx.flush(); // the rest
    expectInOrder(k.wire, [...Array(15).keys()]);
    expect(tx.dropped).toBe(0);
  });

  it('an error on one datagram drops that one alone; the rest of the burst goes', async () => {
    const takes: (number | { errno: number })[] = [2, { errno: 90 /* EMSGSIZE */ }, 1e9];
    const k = fakeKernel(() => takes.shift() ?? 1e9);
    const tx = await open(k.binding);
    for (let i = 0; i < 6; i++) tx.push(...datagram(i));
    // the addon stops at an error after some datagrams went (it reports those); the next flush
    // meets the error on its first datagram
    tx.flush();
    expectInOrder(k.wire, [0, 1]);
    tx.flush();
    expectInOrder(k.wire, [0, 1, 3, 4, 5]);
    expect(tx.dropped).toBe(1);
  });

  it('a stage the kernel cut short is compacted for new datagrams; only what finds no room is dropped', async () => {
    let take = 0;
    const k = fakeKernel(() => take);
    const tx = await open(k.binding);
    const size = 1448;
    const fit = Math.min(STAGE_DATAGRAMS, Math.floor(STAGE_BYTES / (24 + size)));
    for (let i = 0; i < fit; i++) tx.push(...datagram(i, size));
    take = 100; // the kernel takes 100 at the next flush (made by the push that finds the stage full)
    tx.push(...datagram(fit, size)); // fits after compaction
    take = 0; // then nothing: the stage fills again and the next push is dropped
    for (let i = fit + 1; i < fit + 101; i++) tx.push(...datagram(i, size));
    expect(tx.dropped).toBe(1); // datagram fit + 100: no room
    take = 1e9;
    tx.flush();
    expectInOrder(k.wire, [...Array(fit + 100).keys()], size);
  });

  it('close() sends what is staged first', async () => {
    const k = fakeKernel(() => 1e9);
    const tx = await open(k.binding);
    for (let i = 0; i < 5; i++) tx.push(...datagram(i));
    await tx.close();
    await tx.close();
    expectInOrder(k.wire, [0, 1, 2, 3, 4]);
  });
});
