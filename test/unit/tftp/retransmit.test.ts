// Retransmission, duplicate ACKs, window restarts and client aborts, driven packet by packet with
// the hand-written client; time moves only through the fake clock.
import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from '@jest/globals';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TftpServer, TFTP_DEFAULTS } from '../../../services/tftp/server.ts';
import type { TftpPacket } from '../../../services/tftp/packet.ts';
import { QUICK_RETRIES } from '../../../services/tftp/transfer.ts';
import { seededBytes } from '../../helpers/rng.ts';
import { FakeClock, fetchFile, TestClient, tempRoot, until } from './helpers.ts';

const root = tempRoot();
const FILE = seededBytes(3, 512 * 20 + 5); // 21 blocks of 512
let clock: FakeClock;
let server: TftpServer;
let port: number;
let c: TestClient;

beforeAll(() => writeFileSync(join(root.dir, 'f'), FILE));
afterAll(() => root.cleanup());
beforeEach(async () => {
  clock = new FakeClock();
  server = new TftpServer({ root: root.dir, address: '127.0.0.1', port: 0, clock });
  port = (await server.listen()).port;
  c = await TestClient.open();
});
afterEach(async () => {
  await c.close();
  await server.close();
});

async function data(block: number): Promise<number> {
  const r = await c.next();
  expect(r.packet).toMatchObject({ type: 'data', block });
  return r.rinfo.port;
}
const blockOf = (p: TftpPacket): number => (p.type === 'data' ? p.block : -1);

describe('TFTP retransmission (fake clock)', () => {
  it('re-sends an unacknowledged DATA after the timeout, doubling it, then going quiet; gives up after maxRetries', async () => {
    c.rrq('f', port);
    await data(1);
    const { timeoutMs, maxTimeoutMs } = TFTP_DEFAULTS;
    const schedule = (k: number): number => (k >= QUICK_RETRIES ? maxTimeoutMs : Math.min(timeoutMs * 2 ** k, maxTimeoutMs));
    expect([0, 1, 2, 3, 4].map(schedule)).toEqual([1000, 2000, 4000, 8000, 8000]);
    let wait = schedule(0);
    for (let retry = 1; retry <= TFTP_DEFAULTS.maxRetries; retry++) {
      clock.advance(wait - 1);
      expect(server.stats.retransmits).toBe(retry - 1); // not yet
      clock.advance(1);
      expect(server.stats.retransmits).toBe(retry);
      await data(1);
      wait = schedule(retry);
    }
    clock.advance(wait);
    const last = await c.next();
    expect(last.packet).toMatchObject({ type: 'error', code: 0 });
    expect(server.stats.errors).toBe(1);
    expect(server.activeTransfers).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('re-sends an unacknowledged OACK, then carries on normally', async () => {
    c.rrq('f', port, { tsize: '0' });
    expect((await c.next()).packet).toMatchObject({ type: 'oack' });
    clock.advance(TFTP_DEFAULTS.timeoutMs);
    const again = await c.next();
    expect(again.packet.type).toBe('oack');
    c.send({ type: 'ack', block: 0 }, again.rinfo.port);
    await data(1);
    expect(server.stats.retransmits).toBe(1);
  });

  it('a measured round trip shortens the timeout, never below minTimeoutMs', async () => {
    c.rrq('f', port);
    const tid = await data(1);
    clock.advance(2); // a 2 ms round trip
    c.send({ type: 'ack', block: 1 }, tid);
    await data(2);
    clock.advance(TFTP_DEFAULTS.minTimeoutMs - 1);
    expect(server.stats.retransmits).toBe(0);
    clock.advance(1); // srtt + 4·rttvar = 2 + 4 = 6 ms, raised to the floor: due now
    await data(2);
    expect(server.stats.retransmits).toBe(1);
  });

  it('a duplicate ACK is ignored: no DATA re-sent (Sorcerer\'s Apprentice), the transfer goes on', async () => {
    c.rrq('f', port);
    const tid = await data(1);
    c.send({ type: 'ack', block: 1 }, tid);
    await data(2);
    const sent = server.stats.bytesSent;
    c.send({ type: 'ack', block: 1 }, tid);
    c.send({ type: 'ack', block: 1 }, tid);
    await until(() => server.stats.duplicates === 2, 'the duplicates');
    expect(server.stats.bytesSent).toBe(sent);
    c.send({ type: 'ack', block: 2 }, tid);
    await data(3);
    expect(c.queue).toEqual([]);
  });

  it('windowsize: a duplicate ACK of the window does not re-send the window', async () => {
    c.rrq('f', port, { windowsize: '4' });
    const tid = (await c.next()).rinfo.port;
    c.send({ type: 'ack', block: 0 }, tid);
    for (let b = 1; b <= 4; b++) await data(b);
    c.send({ type: 'ack', block: 4 }, tid);
    for (let b = 5; b <= 8; b++) await data(b);
    const sent = server.stats.bytesSent;
    c.send({ type: 'ack', block: 4 }, tid);
    c.send({ type: 'ack', block: 0 }, tid); // stale, from long ago
    await until(() => server.stats.duplicates === 2, 'the duplicates');
    expect(server.stats.bytesSent).toBe(sent);
    expect(server.stats.retransmits).toBe(0);
  });

  it('windowsize: an ACK for block n < last sent restarts the window at n+1 (RFC 7440 §4)', async () => {
    c.rrq('f', port, { windowsize: '4' });
    const tid = (await c.next()).rinfo.port;
    c.send({ type: 'ack', block: 0 }, tid);
    for (let b = 1; b <= 4; b++) await data(b);
    c.send({ type: 'ack', block: 2 }, tid); // 3 went missing
    const next: number[] = [];
    for (let i = 0; i < 4; i++) next.push(blockOf((await c.next()).packet));
    expect(next).toEqual([3, 4, 5, 6]);
    expect(server.stats.retransmits).toBe(2); // 3 and 4 were sent before
  });

  it('windowsize: a timeout re-sends the window from the first unacknowledged block', async () => {
    c.rrq('f', port, { windowsize: '4' });
    const tid = (await c.next()).rinfo.port;
    c.send({ type: 'ack', block: 0 }, tid);
    for (let b = 1; b <= 4; b++) await data(b);
    clock.advance(TFTP_DEFAULTS.minTimeoutMs); // the OACK's round trip (0 on this clock) was measured
    for (let b = 1; b <= 4; b++) await data(b);
    expect(server.stats.retransmits).toBe(4);
  });

  it('ERROR 8 after the OACK ends the transfer quietly (EDK2 asks for tsize, aborts, asks again)', async () => {
    c.rrq('f', port, { tsize: '0', blksize: '1468' });
    const oack = await c.next();
    expect(oack.packet).toEqual({ type: 'oack', options: new Map([['tsize', String(FILE.length)], ['blksize', '1468']]) });
    c.send({ type: 'error', code: 8, message: 'User aborted the transfer' }, oack.rinfo.port);
    await until(() => server.activeTransfers === 0, 'the abort');
    expect(server.stats).toMatchObject({ aborted: 1, errors: 0, transfers: 1, completed: 0 });
    clock.advance(60_000);
    expect(c.queue).toEqual([]);
    expect(clock.pending).toBe(0);
    const r = await fetchFile(port, 'f', { blksize: '1468' }); // the real fetch that follows
    expect(r.data.equals(FILE)).toBe(true);
  });

  it('an ERROR from the client mid-transfer ends it; other datagrams from it are counted, not fatal', async () => {
    c.rrq('f', port);
    const tid = await data(1);
    c.send(Buffer.from([0, 3, 0, 1, 9]), tid); // DATA on a read transfer
    c.send(Buffer.from([0, 9]), tid); // garbage
    c.send({ type: 'ack', block: 1 }, tid);
    await data(2);
    expect(server.stats.malformed).toBe(2);
    c.send({ type: 'error', code: 0, message: 'disk full' }, tid);
    await until(() => server.activeTransfers === 0, 'the abort');
    expect(server.stats.aborted).toBe(1);
  });

  it('a datagram from another port gets ERROR 5 and does not disturb the transfer (RFC 1350 §4)', async () => {
    c.rrq('f', port);
    const tid = await data(1);
    const stranger = await TestClient.open();
    try {
      stranger.send({ type: 'ack', block: 1 }, tid);
      const reply = await stranger.next();
      expect(reply.packet).toMatchObject({ type: 'error', code: 5 });
      expect(reply.rinfo.port).toBe(tid); // from the transfer's own port
      stranger.send({ type: 'error', code: 5, message: 'x' }, tid); // never answer an ERROR
      await until(() => server.stats.unknownTid === 2, 'the second stray datagram');
      c.send({ type: 'ack', block: 1 }, tid);
      await data(2);
      expect(stranger.queue).toEqual([]);
    } finally {
      await stranger.close();
    }
  });

  it('a retransmitted RRQ does not start a second transfer', async () => {
    c.rrq('f', port);
    c.rrq('f', port);
    await data(1);
    await until(() => server.stats.requests === 2, 'both requests');
    expect(server.stats.duplicates).toBe(1);
    expect(server.stats.transfers).toBe(1);
  });
});
