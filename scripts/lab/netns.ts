// A network lab made of Linux network namespaces, for tests, benchmarks and the demo. Nothing
// touches the machine's own interfaces: a "switch" namespace holds a bridge, and every host is a
// namespace whose eth0 is one end of a veth pair whose other end is a bridge port. Everything is
// named with a prefix this lab chose and is removed by destroy() (also on process exit).
//
//   ns <prefix>sw : bridge "br0" (no IP), ports p0 … pN
//   ns <prefix>h0 : eth0 10.77.0.1/24  (h0 = the appliance / sender by convention)
//   ns <prefix>hK : eth0 10.77.0.(K+1)/24, route for 224.0.0.0/4 on eth0
import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface LabHost { index: number; ns: string; ip: string; mac: string; port: string }
export interface LabOptions { hosts: number; prefix?: string; subnet?: string; mtu?: number; snooping?: boolean }

const live = new Set<Lab>();
process.once('exit', () => { for (const l of live) l.destroySync(); });

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export class Lab {
  readonly prefix: string;
  readonly sw: string;
  readonly hosts: LabHost[] = [];
  readonly subnet: string;
  #children = new Set<ChildProcess>();
  #created: string[] = []; // only these are ever deleted
  #destroyed = false;

  constructor(opts: LabOptions) {
    // random: labs of concurrent test files and processes never share a name
    this.prefix = opts.prefix ?? `rc${randomBytes(4).toString('hex')}`;
    this.subnet = opts.subnet ?? '10.77.0';
    this.sw = `${this.prefix}sw`;
    live.add(this);
    try {
      ip(['netns', 'add', this.sw]);
      this.#created.push(this.sw);
      ip(['-n', this.sw, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', opts.snooping ? '1' : '0']);
      ip(['-n', this.sw, 'link', 'set', 'br0', 'up']);
      for (let i = 0; i < opts.hosts; i++) this.#addHost(i, opts.mtu ?? 1500);
    } catch (e) {
      this.destroySync();
      throw e;
    }
  }

  #addHost(i: number, mtu: number): void {
    const ns = `${this.prefix}h${i}`;
    const port = `p${i}`;
    const mac = `02:72:63:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}:01`;
    const addr = `${this.subnet}.${i + 1}`;
    ip(['netns', 'add', ns]);
    this.#created.push(ns);
    ip(['-n', this.sw, 'link', 'add', port, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    ip(['-n', this.sw, 'link', 'set', port, 'master', 'br0', 'up']);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    ip(['-n', ns, 'link', 'set', 'eth0', 'address', mac, 'mtu', String(mtu), 'up']);
    ip(['-n', ns, 'addr', 'add', `${addr}/24`, 'brd', '+', 'dev', 'eth0']);
    ip(['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
    this.hosts.push({ index: i, ns, ip: addr, mac, port });
  }

  host(i: number): LabHost {
    const h = this.hosts[i];
    if (!h) throw new Error(`lab has no host ${i}`);
    return h;
  }

  /** Run a command inside a host's namespace and wait for it. */
  exec(i: number, cmd: string, args: string[], input?: string): string {
    return execFileSync('ip', ['netns', 'exec', this.host(i).ns, cmd, ...args], { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  }

  /** Start a process inside a host's namespace; it is killed (by PID) on destroy(). */
  spawn(i: number, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.host(i).ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }

  /**
   * A persistent tap device in the switch namespace, attached to the lab's bridge and up: the NIC
   * of a QEMU VM started in that namespace (`-netdev tap,ifname=NAME,script=no,downscript=no`).
   * It disappears with the switch namespace on destroy(). Names are at most 15 characters.
   */
  addTap(name: string, mtu = 1500): string {
    if (!/^[A-Za-z0-9_-]{1,15}$/.test(name)) throw new Error(`bad tap name "${name}"`);
    ip(['-n', this.sw, 'tuntap', 'add', 'dev', name, 'mode', 'tap']);
    ip(['-n', this.sw, 'link', 'set', name, 'mtu', String(mtu), 'master', 'br0', 'up']);
    return name;
  }

  /** Run a command inside the switch namespace (the bridge, its ports and taps) and wait for it. */
  execSwitch(cmd: string, args: string[], input?: string): string {
    return execFileSync('ip', ['netns', 'exec', this.sw, cmd, ...args], { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  }

  /** Start a process inside the switch namespace (tcpdump on br0, QEMU on a tap); killed (by PID) on destroy(). */
  spawnSwitch(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.sw, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }

  /** Limit the rate of traffic towards host i (egress of its bridge port) with tc tbf. */
  rateLimit(i: number, mbit: number): void {
    execFileSync('ip', ['netns', 'exec', this.sw, 'tc', 'qdisc', 'replace', 'dev', this.host(i).port, 'root', 'tbf',
      'rate', `${mbit}mbit`, 'burst', `${Math.max(32, Math.ceil(mbit * 1000 / 8 / 100))}kb`, 'latency', '50ms']);
  }

  /** Drop `permille`/1000 of the UDP packets arriving at host i (nftables numgen; netem is absent). */
  loss(i: number, permille: number): void {
    this.#nft(i, `meta l4proto udp numgen random mod 1000 < ${permille} drop`);
  }

  /** Arbitrary nftables rule in host i's ingress (prerouting) chain, e.g. to drop multicast. */
  #nft(i: number, rule: string): void {
    const ns = this.host(i).ns;
    const script = `table inet rclab {\n chain pre {\n  type filter hook prerouting priority -300; policy accept;\n  ${rule}\n }\n}\n`;
    execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: script });
  }

  /**
   * Deliver `permille`/1000 of the UDP datagrams host `from` sends twice to host i: in the switch,
   * an nftables netdev rule on `from`'s port copies them (`dup`) straight out of i's port, and
   * the bridge forwards the original as usual.
   */
  duplicate(i: number, permille: number, from = 0): void {
    const inPort = this.host(from).port;
    const script = `table netdev rclabdup${i} {\n chain in {\n  type filter hook ingress device "${inPort}" priority 0; policy accept;\n` +
      `  ip protocol udp numgen random mod 1000 < ${permille} dup to "${this.host(i).port}"\n }\n}\n`;
    execFileSync('ip', ['netns', 'exec', this.sw, 'nft', '-f', '-'], { input: script });
  }

  dropMulticast(i: number): void {
    this.#nft(i, 'ip daddr 224.0.0.0/4 drop');
  }

  clearRules(i: number): void {
    spawnSync('ip', ['netns', 'exec', this.host(i).ns, 'nft', 'delete', 'table', 'inet', 'rclab'], { stdio: 'ignore' });
  }

  /** Kill our children (by PID), delete every namespace we made. Safe to call twice. */
  destroySync(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const c of this.#children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
    for (const ns of this.#created.reverse()) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    live.delete(this);
  }

  async destroy(): Promise<void> {
    const waits = [...this.#children].map((c) => new Promise<void>((r) => { if (c.exitCode !== null || c.signalCode !== null) r(); else c.once('exit', () => r()); }));
    for (const c of this.#children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
    await Promise.all(waits);
    this.destroySync();
  }
}

export function canMakeLab(): boolean {
  if (process.getuid?.() !== 0) return false;
  const r = spawnSync('ip', ['netns', 'list'], { stdio: 'ignore' });
  return r.status === 0;
}
