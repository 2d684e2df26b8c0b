// Address pool and lease store for full-mode DHCP (RFC 2131 §4.3.1 address choice, §4.4.6
// DECLINE, §4.4.6 RELEASE). One JSON file in the data directory, rewritten whole (temp file +
// rename, so a crash leaves the old or the new file, never half of one) after every change that
// must survive a restart: bound leases, releases, declines. Offers are short reservations held
// only in memory. Clients are keyed by client identifier (option 61) when they send one, else by
// hardware address (RFC 2131 §4.2). Time comes from an injectable clock (ms since the epoch).
//
// Address choice for a client, in order: its current or last lease (even expired, if nobody took
// the address since), the address it asks for (option 50) when free, an address never leased,
// then the address whose lease expired longest ago. A declined address is kept out for a while.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { intToIp, ipToInt, isIpv4 } from './options.ts';

export const LEASE_FILE = 'dhcp-leases.json';

export interface Lease {
  ip: string;
  client: string;
  mac: string;
  state: 'offered' | 'bound' | 'released';
  /** ms since the epoch; for 'released' the time of release. */
  expires: number;
}

export interface LeaseStoreOptions {
  dataDir: string;
  rangeStart: string;
  rangeEnd: string;
  /** Addresses inside the range that are never handed out (the server, the router …). */
  exclude?: readonly string[];
  offerHoldMs?: number;
  declineHoldMs?: number;
  now?: () => number;
}

/**
 * The key a client's lease is kept under: option 61 when present, else the MAC (RFC 2131 §4.2).
 * A client id that is just hardware type 1 + this MAC counts as the MAC: on one boot EDK2 sends no
 * option 61 and iPXE then sends 01+MAC, and they are the same machine wanting the same address
 * (seen in the QEMU lab: a UEFI machine held two leases).
 */
export function clientKey(clientId: Buffer | undefined, mac: string): string {
  if (!clientId || !clientId.length) return `mac:${mac}`;
  const hex = clientId.toString('hex');
  if (hex === `01${mac.replaceAll(':', '').toLowerCase()}`) return `mac:${mac}`;
  return `id:${hex}`;
}

export class LeaseStore {
  readonly file: string;
  readonly #start: number;
  readonly #end: number;
  readonly #exclude: Set<string>;
  readonly #offerHold: number;
  readonly #declineHold: number;
  readonly #now: () => number;
  readonly #byIp = new Map<string, Lease>();
  readonly #byClient = new Map<string, Lease>();
  readonly #declined = new Map<string, number>();

  constructor(opts: LeaseStoreOptions) {
    this.#start = ipToInt(opts.rangeStart);
    this.#end = ipToInt(opts.rangeEnd);
    this.#exclude = new Set(opts.exclude ?? []);
    this.#offerHold = opts.offerHoldMs ?? 60_000;
    this.#declineHold = opts.declineHoldMs ?? 600_000;
    this.#now = opts.now ?? Date.now;
    this.file = join(opts.dataDir, LEASE_FILE);
    mkdirSync(opts.dataDir, { recursive: true });
    this.#load();
  }

  inRange(ip: string): boolean {
    if (!isIpv4(ip)) return false;
    const n = ipToInt(ip);
    return n >= this.#start && n <= this.#end && !this.#exclude.has(ip);
  }

  #isBad(ip: string): boolean {
    const until = this.#declined.get(ip);
    if (until === undefined) return false;
    if (until > this.#now()) return true;
    this.#declined.delete(ip);
    return false;
  }

  /** Whether `ip` may go to `client`: in range, not declined, not held by someone else. */
  available(ip: string, client: string): boolean {
    if (!this.inRange(ip) || this.#isBad(ip)) return false;
    const l = this.#byIp.get(ip);
    return !l || l.client === client || l.state === 'released' || l.expires <= this.#now();
  }

  get(client: string): Lease | undefined {
    return this.#byClient.get(client);
  }

  /** Reserves an address for an OFFER; undefined when the pool is exhausted. */
  offer(client: string, mac: string, requested?: string): Lease | undefined {
    const prev = this.#byClient.get(client);
    let ip: string | undefined;
    if (prev && this.available(prev.ip, client)) ip = prev.ip;
    else if (requested !== undefined && this.available(requested, client)) ip = requested;
    else ip = this.#pick(client);
    if (ip === undefined) return undefined;
    if (prev?.state === 'bound' && prev.ip === ip && prev.expires > this.#now()) return prev; // keep the binding
    return this.#set({ ip, client, mac, state: 'offered', expires: this.#now() + this.#offerHold }, false);
  }

  #pick(client: string): string | undefined {
    let oldest: Lease | undefined;
    for (let n = this.#start; n <= this.#end; n++) { // bounded by the range size (validated ≤ 65536)
      const ip = intToIp(n);
      if (!this.available(ip, client)) continue;
      const l = this.#byIp.get(ip);
      if (!l || l.state === 'offered') return ip; // never leased, or an offer nobody took
      if (!oldest || l.expires < oldest.expires) oldest = l;
    }
    return oldest?.ip;
  }

  /** Binds `ip` to `client` for `seconds` (ACK); undefined when it may not (→ NAK). */
  bind(client: string, mac: string, ip: string, seconds: number): Lease | undefined {
    if (!this.available(ip, client)) return undefined;
    return this.#set({ ip, client, mac, state: 'bound', expires: this.#now() + seconds * 1000 }, true);
  }

  /** Drops an offer the client did not take (it chose another server, RFC 2131 §4.3.2). */
  cancelOffer(client: string): void {
    const l = this.#byClient.get(client);
    if (l?.state === 'offered') { this.#delete(l); }
  }

  /** RELEASE: the address is free again; the record stays so the client gets it back next time. */
  release(client: string, ip: string): boolean {
    const l = this.#byClient.get(client);
    if (!l || l.ip !== ip || l.state !== 'bound') return false;
    this.#set({ ...l, state: 'released', expires: this.#now() }, true);
    return true;
  }

  /** DECLINE: another host uses the address (ARP conflict); keep it out of the pool for a while. */
  decline(client: string, ip: string): boolean {
    if (!this.inRange(ip)) return false;
    const l = this.#byIp.get(ip);
    if (l && l.client === client) this.#delete(l);
    this.#declined.set(ip, this.#now() + this.#declineHold);
    this.#save();
    return true;
  }

  list(): Lease[] {
    return [...this.#byIp.values()].map((l) => ({ ...l }));
  }

  #set(l: Lease, persist: boolean): Lease {
    const old = this.#byClient.get(l.client);
    if (old && old.ip !== l.ip) this.#byIp.delete(old.ip);
    const other = this.#byIp.get(l.ip);
    if (other && other.client !== l.client) this.#byClient.delete(other.client);
    this.#byIp.set(l.ip, l);
    this.#byClient.set(l.client, l);
    if (persist || old?.state === 'bound') this.#save();
    return l;
  }

  #delete(l: Lease): void {
    this.#byIp.delete(l.ip);
    this.#byClient.delete(l.client);
    if (l.state !== 'offered') this.#save();
  }

  #save(): void {
    const leases = this.list().filter((l) => l.state !== 'offered');
    const declined = [...this.#declined].map(([ip, until]) => ({ ip, until }));
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ version: 1, leases, declined }, null, 1)}\n`);
    renameSync(tmp, this.file);
  }

  /** Loads the file; entries that no longer fit the range (config changed) are dropped. */
  #load(): void {
    let raw: string;
    try { raw = readFileSync(this.file, 'utf8'); } catch { return; }
    let doc: { leases?: unknown; declined?: unknown };
    try { doc = JSON.parse(raw) as typeof doc; } catch {
      renameSync(this.file, `${this.file}.corrupt-${this.#now()}`); // keep it for a human, start empty
      return;
    }
    for (const l of Array.isArray(doc.leases) ? doc.leases as Partial<Lease>[] : []) {
      if (typeof l?.ip !== 'string' || typeof l.client !== 'string' || typeof l.mac !== 'string' || typeof l.expires !== 'number') continue;
      if ((l.state !== 'bound' && l.state !== 'released') || !this.inRange(l.ip) || this.#byIp.has(l.ip) || this.#byClient.has(l.client)) continue;
      const lease: Lease = { ip: l.ip, client: l.client, mac: l.mac, state: l.state, expires: l.expires };
      this.#byIp.set(lease.ip, lease);
      this.#byClient.set(lease.client, lease);
    }
    for (const d of Array.isArray(doc.declined) ? doc.declined as Array<{ ip?: unknown; until?: unknown }> : []) {
      if (typeof d?.ip === 'string' && typeof d.until === 'number' && this.inRange(d.ip)) this.#declined.set(d.ip, d.until);
    }
  }
}
