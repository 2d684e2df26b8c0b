import { describe, it, expect, beforeEach, afterEach } from '@jest/globals';
import { readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { LEASE_FILE, LeaseStore, clientKey } from '../../../services/dhcp/leases.ts';
import { FakeClock, tempDir } from './helpers.ts';

let tmp: ReturnType<typeof tempDir>;
let clock: FakeClock;
const open = (over: Partial<ConstructorParameters<typeof LeaseStore>[0]> = {}): LeaseStore => new LeaseStore({
  dataDir: tmp.dir, rangeStart: '10.77.0.100', rangeEnd: '10.77.0.103', exclude: ['10.77.0.101'],
  offerHoldMs: 30_000, declineHoldMs: 600_000, now: () => clock.now(), ...over,
});
const A = clientKey(undefined, '52:54:00:00:00:0a');
const B = clientKey(undefined, '52:54:00:00:00:0b');

beforeEach(() => { tmp = tempDir(); clock = new FakeClock(); });
afterEach(() => tmp.remove());

describe('lease store', () => {
  it('keys clients by option 61 when present, else by MAC', () => {
    expect(clientKey(Buffer.from([1, 2, 3]), 'aa')).toBe('id:010203');
    expect(clientKey(undefined, '52:54:00:00:00:0a')).toBe('mac:52:54:00:00:00:0a');
    expect(clientKey(Buffer.alloc(0), 'x')).toBe('mac:x');
  });

  it('treats a client id of hardware type 1 + the same MAC as the MAC (EDK2 then iPXE: one lease)', () => {
    const mac = '52:54:00:AB:cd:0e';
    expect(clientKey(Buffer.from('01525400abcd0e', 'hex'), mac)).toBe(clientKey(undefined, mac));
    expect(clientKey(Buffer.from('01525400abcd0f', 'hex'), mac)).toBe('id:01525400abcd0f'); // another MAC: opaque id
    expect(clientKey(Buffer.from('00525400abcd0e', 'hex'), mac)).toBe('id:00525400abcd0e'); // another type: opaque id
  });

  it('offers in order, skips excluded addresses, holds offers briefly, and runs out', () => {
    const s = open();
    expect(s.offer(A, 'a')?.ip).toBe('10.77.0.100');
    expect(s.offer(B, 'b')?.ip).toBe('10.77.0.102'); // .101 excluded
    expect(s.offer(A, 'a')?.ip).toBe('10.77.0.100'); // same client, same offer
    expect(s.offer('mac:c', 'c')?.ip).toBe('10.77.0.103');
    expect(s.offer('mac:d', 'd')).toBeUndefined(); // pool exhausted while offers are held
    clock.advance(30_001);
    expect(s.offer('mac:d', 'd')?.ip).toBe('10.77.0.100'); // A's offer lapsed
  });

  it('honours a requested address when free; binds, refuses a held one, and expires leases', () => {
    const s = open();
    expect(s.offer(A, 'a', '10.77.0.103')?.ip).toBe('10.77.0.103');
    expect(s.bind(A, 'a', '10.77.0.103', 600)?.state).toBe('bound');
    expect(s.bind(B, 'b', '10.77.0.103', 600)).toBeUndefined();
    expect(s.bind(B, 'b', '10.77.0.101', 600)).toBeUndefined(); // excluded
    expect(s.bind(B, 'b', '10.77.0.99', 600)).toBeUndefined(); // out of range
    clock.advance(600_001);
    expect(s.bind(B, 'b', '10.77.0.103', 600)?.client).toBe(B); // A's lease expired
    expect(s.get(A)).toBeUndefined();
  });

  it('survives a restart: bound leases and declines come back, offers do not', () => {
    const s = open();
    s.bind(A, 'a', '10.77.0.102', 3600);
    s.offer(B, 'b');
    s.decline('mac:x', '10.77.0.103');
    const file = JSON.parse(readFileSync(join(tmp.dir, LEASE_FILE), 'utf8'));
    expect(file.leases).toHaveLength(1);
    expect(readdirSync(tmp.dir)).toEqual([LEASE_FILE]); // temp file renamed away
    const t = open();
    expect(t.get(A)).toMatchObject({ ip: '10.77.0.102', state: 'bound' });
    expect(t.get(B)).toBeUndefined();
    expect(t.offer(A, 'a')?.ip).toBe('10.77.0.102');
    expect(t.available('10.77.0.103', B)).toBe(false);
  });

  it('DECLINE keeps an address out of the pool for a while', () => {
    const s = open();
    s.bind(A, 'a', '10.77.0.100', 600);
    expect(s.decline(A, '10.77.0.100')).toBe(true);
    expect(s.get(A)).toBeUndefined();
    expect(s.offer(A, 'a')?.ip).toBe('10.77.0.102');
    clock.advance(600_001);
    expect(s.available('10.77.0.100', B)).toBe(true);
    expect(s.decline(A, '192.168.1.1')).toBe(false);
  });

  it('RELEASE frees the address but the client gets it back; others prefer never-used ones', () => {
    const s = open();
    s.bind(A, 'a', '10.77.0.100', 600);
    expect(s.release(A, '10.77.0.102')).toBe(false); // not its address
    expect(s.release(A, '10.77.0.100')).toBe(true);
    expect(s.offer(B, 'b')?.ip).toBe('10.77.0.102');
    expect(s.offer(A, 'a')?.ip).toBe('10.77.0.100');
  });

  it('a cancelled offer frees the address at once; a bound client re-discovering keeps its lease', () => {
    const s = open({ rangeEnd: '10.77.0.100' });
    s.offer(A, 'a');
    s.cancelOffer(A);
    expect(s.offer(B, 'b')?.ip).toBe('10.77.0.100');
    s.bind(B, 'b', '10.77.0.100', 600);
    expect(s.offer(B, 'b')).toMatchObject({ state: 'bound', ip: '10.77.0.100' });
    s.cancelOffer(B); // not an offer: nothing happens
    expect(s.get(B)?.state).toBe('bound');
  });

  it('starts empty on a corrupt file (kept aside) and drops entries outside a changed range', () => {
    writeFileSync(join(tmp.dir, LEASE_FILE), '{"leases": [');
    const s = open();
    expect(s.list()).toEqual([]);
    expect(readdirSync(tmp.dir).some((f) => f.startsWith(`${LEASE_FILE}.corrupt-`))).toBe(true);
    s.bind(A, 'a', '10.77.0.103', 600);
    const narrower = open({ rangeEnd: '10.77.0.102' });
    expect(narrower.get(A)).toBeUndefined();
    writeFileSync(join(tmp.dir, LEASE_FILE), JSON.stringify({ leases: [{ ip: 5 }, null, { ip: '10.77.0.100', client: A, mac: 'a', state: 'bound', expires: 1 }] }));
    expect(open().list()).toHaveLength(1);
  });
});
