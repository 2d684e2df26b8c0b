// Read-only TFTP server (RFC 1350, options RFC 2347/2348/2349, windowsize RFC 7440) on node:dgram.
// It serves the boot binaries of the PXE chain (undionly.kpxe, ipxe.efi, snponly.efi) from one
// root directory and refuses everything else: uploads (WRQ → ERROR 2), names that leave the root
// (root.ts), netascii/mail modes. The listening socket only takes requests; each transfer gets its
// own socket on an ephemeral port of the same address (RFC 1350 §4, the server's TID), so a slow
// or hostile client can never stall the request loop. Bad datagrams are counted and dropped.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { realpath, stat } from 'node:fs/promises';
import { configError, resolveConfig, type TftpClock, type TftpConfig, type TftpLogger, type TftpServerOptions, type TftpStats } from './config.ts';
import { negotiate } from './options.ts';
import { decode, encode, TFTP_ERROR, type TftpPacket } from './packet.ts';
import { BlockReader } from './reader.ts';
import { openInRoot } from './root.ts';
import { Transfer, type TransferEnd } from './transfer.ts';

export { TFTP_DEFAULTS } from './config.ts';
export type { TftpClock, TftpLogger, TftpServerOptions, TftpStats } from './config.ts';

type Request = Extract<TftpPacket, { type: 'rrq' | 'wrq' }>;

export class TftpServer {
  readonly stats: TftpStats = {
    requests: 0, transfers: 0, completed: 0, aborted: 0, errors: 0,
    malformed: 0, retransmits: 0, duplicates: 0, unknownTid: 0, bytesSent: 0,
  };
  readonly config: TftpConfig;
  readonly #log: TftpLogger;
  readonly #clock: TftpClock;
  #socket: Socket | undefined;
  #root = '';
  #listening: Promise<{ address: string; port: number }> | undefined;
  #closing: Promise<void> | undefined;
  readonly #active = new Set<Transfer>();
  /** Requests admitted and not yet ended (opening or transferring): by "ip:port", and per ip. */
  readonly #tids = new Set<string>();
  readonly #perClient = new Map<string, number>();

  constructor(opts: TftpServerOptions) {
    const { config, logger, clock } = resolveConfig(opts);
    this.config = config;
    this.#log = logger;
    this.#clock = clock;
  }

  /** Transfers admitted and not yet ended. */
  get activeTransfers(): number {
    return this.#tids.size;
  }

  /** Binds the request socket. Resolves to the bound address (port 0 → the one the OS chose). */
  listen(): Promise<{ address: string; port: number }> {
    this.#listening ??= this.#listen();
    return this.#listening;
  }

  async #listen(): Promise<{ address: string; port: number }> {
    if (this.#closing) throw configError('listen() after close()', {});
    const { root, address, port } = this.config;
    try {
      this.#root = await realpath(root);
      if (!(await stat(this.#root)).isDirectory()) throw new Error('not a directory');
    } catch (e) {
      throw configError(`root ${root} is not a usable directory (${(e as Error).message})`, { option: 'root', root }, { cause: e });
    }
    const socket = this.#newSocket();
    this.#socket = socket;
    socket.on('message', (msg, rinfo) => {
      try { this.#onRequest(msg, rinfo); } catch (e) { this.#log.warn({ client: rinfo.address, err: (e as Error).message }, 'tftp: request dropped'); }
    });
    await bind(socket, address, port);
    socket.on('error', (e) => this.#log.warn({ err: e.message }, 'tftp: request socket error'));
    const a = socket.address();
    this.#log.info({ address: a.address, port: a.port, root: this.#root }, 'tftp: listening');
    return { address: a.address, port: a.port };
  }

  /** Stops listening and ends every transfer (no ERROR is sent). Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#listening?.catch(() => {});
      try { this.#socket?.close(); } catch { /* never bound */ }
      await Promise.all([...this.#active].map((t) => t.close()));
      this.#active.clear();
    })();
    return this.#closing;
  }

  // Peers are always IP literals of the socket's family (rinfo.address): a synchronous lookup that
  // returns them as they are spares every send a tick and a parse.
  #newSocket(): Socket {
    const lookup = (address: string, family: number, cb: (err: null, address: string, family: number) => void): void => cb(null, address, family);
    return createSocket({ type: isIPv6(this.config.address) ? 'udp6' : 'udp4', lookup: lookup as never });
  }

  #onRequest(msg: Buffer, rinfo: RemoteInfo): void {
    let req: TftpPacket;
    try {
      req = decode(msg).value;
    } catch (e) {
      this.stats.malformed++;
      this.#log.debug({ client: rinfo.address, err: (e as Error).message }, 'tftp: malformed request dropped');
      return;
    }
    if (req.type !== 'rrq' && req.type !== 'wrq') {
      this.stats.malformed++;
      this.#log.debug({ client: rinfo.address, type: req.type }, 'tftp: non-request on the request port dropped');
      return;
    }
    this.stats.requests++;
    if (this.#closing) return;
    const tid = `${rinfo.address}:${rinfo.port}`;
    if (req.type === 'wrq') return this.#refuse(rinfo, req, TFTP_ERROR.ACCESS_VIOLATION, 'read-only server: uploads are refused');
    if (req.mode !== 'octet') {
      return this.#refuse(rinfo, req, req.mode === 'netascii' ? TFTP_ERROR.UNDEFINED : TFTP_ERROR.ILLEGAL_OPERATION,
        req.mode === 'netascii' ? 'netascii mode is not supported, use octet (binary)' : `mode "${req.mode}" is not supported`);
    }
    if (this.#tids.has(tid)) { this.stats.duplicates++; return; } // the client re-sent its RRQ: already under way
    const perClient = this.#perClient.get(rinfo.address) ?? 0;
    if (this.#tids.size >= this.config.maxTransfers) return this.#refuse(rinfo, req, TFTP_ERROR.UNDEFINED, 'server busy, try again later');
    if (perClient >= this.config.maxTransfersPerClient) return this.#refuse(rinfo, req, TFTP_ERROR.UNDEFINED, 'too many transfers from this client');
    this.#tids.add(tid);
    this.#perClient.set(rinfo.address, perClient + 1);
    this.#start(req, rinfo, tid).catch((e: Error) => {
      this.#release(rinfo, tid);
      this.stats.errors++;
      this.#log.warn({ client: rinfo.address, file: req.filename, err: e.message }, 'tftp: could not start transfer');
    });
  }

  async #start(req: Request, rinfo: RemoteInfo, tid: string): Promise<void> {
    const opened = await openInRoot(this.#root, req.filename);
    if (!opened.ok) {
      this.#release(rinfo, tid);
      if (!this.#closing) this.#refuse(rinfo, req, opened.code, opened.reason);
      return;
    }
    const negotiated = negotiate(req.options, opened.size, this.config);
    const reader = new BlockReader(opened.file, opened.size, negotiated.blksize, this.config.readAheadBytes, negotiated.windowsize);
    const firstRead = reader.load(1, negotiated.windowsize).catch(() => {}); // overlaps the bind
    const socket = this.#newSocket();
    socket.on('error', (e) => this.#log.warn({ client: rinfo.address, err: e.message }, 'tftp: transfer socket error'));
    try {
      await bind(socket, this.config.address, 0);
      if (this.#closing) throw new Error('server closing');
    } catch (e) {
      try { socket.close(); } catch { /* not bound */ }
      await firstRead;
      await reader.close().catch(() => {});
      throw e;
    }
    const t = new Transfer({
      socket, reader, negotiated, peer: { address: rinfo.address, port: rinfo.port }, filename: req.filename,
      config: this.config, clock: this.#clock, logger: this.#log, stats: this.stats,
      onEnd: (x, how) => this.#ended(x, how, rinfo, tid),
    });
    this.#active.add(t);
    this.stats.transfers++;
    this.#log.info({
      client: rinfo.address, file: req.filename, size: opened.size, blksize: negotiated.blksize,
      windowsize: negotiated.windowsize, options: Object.fromEntries(req.options),
    }, 'tftp: transfer started');
    t.start();
  }

  #ended(t: Transfer, how: TransferEnd, rinfo: RemoteInfo, tid: string): void {
    this.#active.delete(t);
    this.#release(rinfo, tid);
    if (how === 'completed') this.stats.completed++;
    else if (how === 'aborted') this.stats.aborted++;
    else this.stats.errors++;
  }

  #release(rinfo: RemoteInfo, tid: string): void {
    if (!this.#tids.delete(tid)) return;
    const n = (this.#perClient.get(rinfo.address) ?? 1) - 1;
    if (n > 0) this.#perClient.set(rinfo.address, n);
    else this.#perClient.delete(rinfo.address);
  }

  /** Answers a request with an ERROR from the request socket; nothing else is kept about it. */
  #refuse(rinfo: RemoteInfo, req: Request, code: number, reason: string): void {
    this.stats.errors++;
    const fields = { client: rinfo.address, file: req.filename, type: req.type, code, reason };
    if (code === TFTP_ERROR.ACCESS_VIOLATION) this.#log.warn(fields, 'tftp: request refused');
    else this.#log.info(fields, 'tftp: request refused');
    const message = code === TFTP_ERROR.NOT_FOUND ? 'file not found' : code === TFTP_ERROR.ACCESS_VIOLATION ? `access violation: ${reason}` : reason;
    this.#socket?.send(encode({ type: 'error', code, message }), rinfo.port, rinfo.address, (err) => {
      if (err) this.#log.debug({ client: rinfo.address, err: err.message }, 'tftp: send failed');
    });
  }
}

/** Binds a socket; a bind error rejects instead of reaching the socket's 'error' listeners. */
function bind(socket: Socket, address: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address, port, exclusive: true }, () => { socket.off('error', reject); resolve(); });
  });
}
