// TFTP server configuration: defaults, the injectable logger and clock, and validation done once
// at construction (house rule 7: validated, frozen, passed inward; contradictions rejected).
import { isIP } from 'node:net';
import { RackcastError } from '../errors.ts';

export interface TftpTunables {
  port: number; maxBlksize: number; maxWindowsize: number; timeoutMs: number; minTimeoutMs: number;
  maxTimeoutMs: number; maxRetries: number; maxTransfers: number; maxTransfersPerClient: number; readAheadBytes: number;
}

export const TFTP_DEFAULTS: Readonly<TftpTunables> = Object.freeze({
  port: 69,
  /** Largest blksize granted (RFC 2348 allows 8..65464). 1468 = 1500 MTU − 20 IP − 8 UDP − 4 TFTP. */
  maxBlksize: 1468,
  /** Largest windowsize granted (RFC 7440 allows up to 65535; more than 64 buys nothing on a LAN). */
  maxWindowsize: 64,
  /** First retransmission timeout before the round trip is measured, and its ceiling afterwards. */
  timeoutMs: 1000,
  /** Floor of the measured (RFC 6298-style) retransmission timeout. */
  minTimeoutMs: 50,
  /**
   * Ceiling of the exponential backoff (raised to the client's `timeout` option if that is longer).
   * Above the 5 s most clients wait: atftp answers a repeated DATA with one extra ACK and then
   * ignores repeats until its own timer fires, so if that ACK is lost too, only a pause longer than
   * the client's timeout lets the transfer resume (seen under 5 % loss).
   */
  maxTimeoutMs: 8000,
  /** Consecutive timeouts without progress before a transfer is abandoned (≈40 s of silence). */
  maxRetries: 6,
  maxTransfers: 128,
  maxTransfersPerClient: 8,
  /** Bytes read ahead per positional read (whole blocks; at least one window). */
  readAheadBytes: 256 * 1024,
});

/** pino-compatible subset: an object first, then an optional message. */
export interface TftpLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** Time source and timers, injectable so retransmission tests run on fake time. */
export interface TftpClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface TftpServerOptions extends Partial<TftpTunables> {
  /** Directory served, read-only. Symlinks inside it are followed only while they stay inside. */
  root: string;
  /** Address to bind, e.g. the appliance's address on the boot network. */
  address: string;
  logger?: TftpLogger;
  clock?: TftpClock;
}

/** Counters kept by a server (`server.stats`); all only ever increase. */
export interface TftpStats {
  /** RRQ and WRQ datagrams decoded on the listening socket (retransmitted RRQs included). */
  requests: number;
  /** Transfers started (file opened, transfer socket bound). */
  transfers: number;
  /** Transfers whose last block was acknowledged. */
  completed: number;
  /** Transfers the client ended with an ERROR packet (e.g. EDK2's ERROR 8 after a tsize OACK). */
  aborted: number;
  /** Requests refused with an ERROR, and transfers that failed (timeout, read error). */
  errors: number;
  /** Datagrams that did not decode, or whose opcode made no sense where they arrived. */
  malformed: number;
  /** DATA and OACK datagrams sent again after a timeout or a window restart. */
  retransmits: number;
  /** Duplicate or stale ACKs (ignored: Sorcerer's Apprentice), and retransmitted RRQs. */
  duplicates: number;
  /** Datagrams on a transfer socket from another address/port (answered with ERROR 5). */
  unknownTid: number;
  /** DATA payload bytes sent, retransmissions included. */
  bytesSent: number;
}

export type TftpConfig = Readonly<TftpTunables & { root: string; address: string }>;

const silent: TftpLogger = { info() {}, warn() {}, debug() {} };

// `performance` is a lazily defined global getter: resolved once here, not on every ACK.
const perf = performance;

export const systemClock: TftpClock = {
  now: () => perf.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** The one error a server raises on purpose: it cannot start with this configuration. */
export function configError(message: string, fields: Record<string, unknown>, options?: ErrorOptions): RackcastError {
  return new RackcastError('RC_ERR_TFTP_CONFIG', `TFTP server: ${message}`, fields, options);
}

function bad(message: string, fields: Record<string, unknown>): never {
  throw configError(message, fields);
}

function int(name: keyof TftpTunables, v: number, min: number, max: number): number {
  if (!Number.isSafeInteger(v) || v < min || v > max) bad(`${name} must be an integer in ${min}..${max}, got ${v}`, { option: name, value: v });
  return v;
}

export function resolveConfig(opts: TftpServerOptions): { config: TftpConfig; logger: TftpLogger; clock: TftpClock } {
  if (typeof opts.root !== 'string' || opts.root === '') bad('root directory is required', { option: 'root' });
  if (typeof opts.address !== 'string' || isIP(opts.address) === 0) bad(`address must be an IP address, got ${String(opts.address)}`, { option: 'address', value: opts.address });
  const d = TFTP_DEFAULTS;
  const c = {
    root: opts.root,
    address: opts.address,
    port: int('port', opts.port ?? d.port, 0, 65535),
    maxBlksize: int('maxBlksize', opts.maxBlksize ?? d.maxBlksize, 512, 65464),
    maxWindowsize: int('maxWindowsize', opts.maxWindowsize ?? d.maxWindowsize, 1, 64),
    timeoutMs: int('timeoutMs', opts.timeoutMs ?? d.timeoutMs, 1, 255_000),
    minTimeoutMs: int('minTimeoutMs', opts.minTimeoutMs ?? d.minTimeoutMs, 1, 255_000),
    maxTimeoutMs: int('maxTimeoutMs', opts.maxTimeoutMs ?? d.maxTimeoutMs, 1, 255_000),
    maxRetries: int('maxRetries', opts.maxRetries ?? d.maxRetries, 1, 50),
    maxTransfers: int('maxTransfers', opts.maxTransfers ?? d.maxTransfers, 1, 10_000),
    maxTransfersPerClient: int('maxTransfersPerClient', opts.maxTransfersPerClient ?? d.maxTransfersPerClient, 1, 10_000),
    readAheadBytes: int('readAheadBytes', opts.readAheadBytes ?? d.readAheadBytes, 512, 64 << 20),
  };
  if (c.minTimeoutMs > c.timeoutMs) bad(`minTimeoutMs (${c.minTimeoutMs}) exceeds timeoutMs (${c.timeoutMs})`, { option: 'minTimeoutMs' });
  if (c.timeoutMs > c.maxTimeoutMs) bad(`timeoutMs (${c.timeoutMs}) exceeds maxTimeoutMs (${c.maxTimeoutMs})`, { option: 'timeoutMs' });
  if (c.maxTransfersPerClient > c.maxTransfers) bad(`maxTransfersPerClient (${c.maxTransfersPerClient}) exceeds maxTransfers (${c.maxTransfers})`, { option: 'maxTransfersPerClient' });
  return { config: Object.freeze(c), logger: opts.logger ?? silent, clock: opts.clock ?? systemClock };
}
