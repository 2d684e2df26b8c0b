// QEMU VMs for the namespace lab: bare machines that network-boot with real firmware.
//
//   bios : SeaBIOS + the iPXE option ROM QEMU loads for virtio-net (Debian's ipxe-qemu). The ROM's
//          DHCP already carries user class "iPXE" (and arch 0), so the machine goes straight to
//          its per-machine script.
//   uefi : OVMF (EDK2) from pflash, like a real server: the NIC gets `romfile=` (no iPXE ROM), so
//          EDK2's own PXE client boots (arch 7), fetches ipxe.efi over TFTP, and iPXE DHCPs again.
//
// The VM runs inside a network namespace (`ip netns exec NS qemu-system-x86_64 …`) on a tap
// device that lives in that namespace and is a port of the lab bridge (Lab.addTap): nothing
// touches the machine's own interfaces. Serial output is collected; waitFor() matches a regex
// against it (ANSI escapes removed) and says when the text appeared, in ms since power-on. Every
// VM has a hard timeout after which it is killed by PID; kill() does the same earlier.
//
// Measured (LAB-NOTES): TCG only (no KVM), -m 512 is enough for firmware and iPXE, and firmware
// output reaches the serial console only with -machine graphics=off.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

export const QEMU = 'qemu-system-x86_64';
export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';
/** Where Debian's ipxe-qemu puts the ROM QEMU loads for virtio-net-pci (BIOS + EFI in one file). */
export const VIRTIO_ROM = '/usr/lib/ipxe/qemu/efi-virtio.rom';

export type Firmware = 'bios' | 'uefi';

export interface VmOptions {
  /** Network namespace the tap device lives in (the lab's switch namespace). */
  ns: string;
  tap: string;
  /** Fixed MAC of the VM's NIC, e.g. 52:54:00:72:63:01. */
  mac: string;
  firmware: Firmware;
  /** A directory for the VM's files (the writable OVMF_VARS copy). */
  workDir: string;
  /** Hard limit: the VM is killed (SIGKILL, by PID) this long after power-on. */
  timeoutMs: number;
  /** Optional raw disk image, attached as a virtio disk. */
  disk?: string;
  memoryMb?: number;
  name?: string;
  extraArgs?: string[];
  /**
   * How to start the process (default: `ip netns exec NS …` with node's spawn). Pass the lab's
   * spawnSwitch so the lab's destroy() kills the VM too.
   */
  spawn?: (cmd: string, args: string[], opts: SpawnOptions) => ChildProcess;
}

export interface Availability { ok: boolean; reason: string }

/** Can VMs of this firmware kind be started here (QEMU, ROM, OVMF present)? */
export function qemuAvailable(firmware: Firmware): Availability {
  const r = spawnSync(QEMU, ['--version'], { stdio: 'ignore' });
  if (r.error || r.status !== 0) return { ok: false, reason: `${QEMU} not found (apt-get install qemu-system-x86)` };
  if (firmware === 'bios' && !existsSync(VIRTIO_ROM)) return { ok: false, reason: `${VIRTIO_ROM} missing (apt-get install ipxe-qemu)` };
  if (firmware === 'uefi' && !(existsSync(OVMF_CODE) && existsSync(OVMF_VARS))) return { ok: false, reason: `${OVMF_CODE} missing (apt-get install ovmf)` };
  return { ok: true, reason: '' };
}

/** The QEMU command line for `o` (the OVMF_VARS copy must already exist for uefi). */
export function qemuArgs(o: VmOptions, varsFile?: string): string[] {
  const nic = ['virtio-net-pci', 'netdev=n0', `mac=${o.mac}`, 'bootindex=1'];
  const args = [
    '-name', o.name ?? `rc-${o.firmware}`,
    '-accel', 'tcg', '-cpu', 'max', '-smp', '1', '-m', String(o.memoryMb ?? 512),
    '-display', 'none', '-machine', 'graphics=off', '-monitor', 'none', '-serial', 'stdio', '-no-reboot',
    '-netdev', `tap,id=n0,ifname=${o.tap},script=no,downscript=no`,
  ];
  if (o.firmware === 'uefi') {
    if (!varsFile) throw new Error('uefi VM needs a writable OVMF_VARS copy');
    nic.push('romfile='); // no iPXE ROM: EDK2's own PXE client boots, as on real servers
    args.push('-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`, '-drive', `if=pflash,format=raw,unit=1,file=${varsFile}`);
  }
  args.push('-device', nic.join(','));
  if (o.disk) args.push('-drive', `file=${o.disk},format=raw,if=virtio,cache=unsafe`);
  return [...args, ...(o.extraArgs ?? [])];
}

// CSI sequences (colours, cursor moves, ESC[?25l), two-byte escapes (ESC c, ESC 7 …), CR, and
// the other C0 controls except newline and tab: what iPXE, SeaBIOS and OVMF write to a terminal.
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?=]*[ -/]*[@-~]|\x1b[@-Z\\-_]|\x1b.|[\x00-\x08\x0b-\x1f\x7f]/g;
export function stripAnsi(s: string): string {
  return s.replace(/\r\n/g, '\n').replace(ANSI, (m) => (m === '\r' ? '\n' : ''));
}

/**
 * A regex for any of `literals` that tolerates a line break between any two characters: SeaBIOS's
 * serial console wraps iPXE's output at 80 columns, so "… booting the lo⏎cal disk" must match too.
 */
export function wrapTolerant(...literals: string[]): RegExp {
  const one = (s: string): string => [...s].map((ch) => ch.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('\n{0,2}');
  return new RegExp(`(?:${literals.map(one).join('|')})`);
}

export interface Match { match: RegExpExecArray; atMs: number }
export interface VmExit { code: number | null; signal: NodeJS.Signals | null; timedOut: boolean }

export class Vm {
  readonly options: VmOptions;
  readonly args: string[];
  readonly proc: ChildProcess;
  /** performance.now() at spawn: "power-on". */
  readonly startedAt: number;
  readonly exited: Promise<VmExit>;
  #raw = '';
  #text = '';
  /** [length of the cleaned text after a chunk, ms since power-on when it arrived] */
  #marks: [number, number][] = [];
  #waiters = new Set<() => void>();
  #timedOut = false;
  #timer: NodeJS.Timeout;

  private constructor(o: VmOptions) {
    this.options = o;
    let vars: string | undefined;
    if (o.firmware === 'uefi') {
      vars = join(o.workDir, `${o.name ?? 'vm'}-OVMF_VARS.fd`);
      copyFileSync(OVMF_VARS, vars);
    }
    this.args = qemuArgs(o, vars);
    const opts: SpawnOptions = { stdio: ['ignore', 'pipe', 'pipe'] };
    this.proc = o.spawn ? o.spawn(QEMU, this.args, opts) : spawn('ip', ['netns', 'exec', o.ns, QEMU, ...this.args], opts);
    this.startedAt = performance.now();
    const onData = (c: Buffer): void => {
      this.#raw += c.toString('latin1');
      this.#text = stripAnsi(this.#raw);
      this.#marks.push([this.#text.length, performance.now() - this.startedAt]);
      for (const w of [...this.#waiters]) w();
    };
    this.proc.stdout?.on('data', onData);
    this.proc.stderr?.on('data', onData); // QEMU's own warnings and errors
    this.#timer = setTimeout(() => { this.#timedOut = true; this.#killNow(); }, o.timeoutMs);
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null): void => {
        clearTimeout(this.#timer);
        for (const w of [...this.#waiters]) w();
        resolve({ code, signal, timedOut: this.#timedOut });
      };
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) done(this.proc.exitCode, this.proc.signalCode);
      else this.proc.once('exit', done);
    });
    this.proc.once('error', () => undefined); // spawn failures surface as an exit
  }

  static start(o: VmOptions): Vm {
    return new Vm(o);
  }

  get pid(): number | undefined { return this.proc.pid; }
  /** Serial output as the terminal would show it (escapes removed, CR as newline). */
  get serial(): string { return this.#text; }
  get rawSerial(): string { return this.#raw; }
  get running(): boolean { return this.proc.exitCode === null && this.proc.signalCode === null; }
  /** ms since power-on. */
  elapsed(): number { return performance.now() - this.startedAt; }
  /** The serial text, each line prefixed with when (s since power-on) its first byte arrived: for timing a boot. */
  timedSerial(): string {
    const out: string[] = [];
    let from = 0;
    let lineStart = true;
    for (const [end, ms] of this.#marks) {
      for (const ch of this.#text.slice(from, end)) {
        if (lineStart) out.push(`[${(ms / 1000).toFixed(2).padStart(7)}] `);
        out.push(ch);
        lineStart = ch === '\n';
      }
      from = end;
    }
    return out.join('');
  }

  #find(re: RegExp): Match | undefined {
    const r = new RegExp(re.source, re.flags.replace('g', ''));
    const m = r.exec(this.#text);
    if (!m) return undefined;
    const end = m.index + m[0].length;
    const mark = this.#marks.find(([len]) => len >= end);
    return { match: m, atMs: mark ? mark[1] : this.elapsed() };
  }

  /**
   * Resolves when the serial output matches `re` (already-seen output counts; atMs is when the
   * matching text arrived). Rejects after `timeoutMs`, or when the VM exits without a match, with
   * the tail of the serial output.
   */
  waitFor(re: RegExp, timeoutMs: number): Promise<Match> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const m = this.#find(re);
        if (m) { finish(); resolve(m); return; }
        if (!this.running) { finish(); reject(new Error(`VM exited before ${re} appeared; serial tail:\n${this.#text.slice(-3000)}`)); }
      };
      const timer = setTimeout(() => { finish(); reject(new Error(`${re} not seen within ${timeoutMs} ms; serial tail:\n${this.#text.slice(-3000)}`)); }, timeoutMs);
      const finish = (): void => { clearTimeout(timer); this.#waiters.delete(check); };
      this.#waiters.add(check);
      check();
    });
  }

  #killNow(): void {
    if (this.running && this.proc.pid !== undefined) {
      try { process.kill(this.proc.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }

  /** Power off: SIGKILL to QEMU's PID (ip netns exec execs QEMU in place), wait for the exit. */
  async kill(): Promise<VmExit> {
    this.#killNow();
    return this.exited;
  }
}
