// What the server refuses, over the wire: uploads, names that leave the root (.., absolute paths,
// backslashes, symlinks out), non-files, unsupported modes, too many transfers; garbage on the
// request port; and its lifecycle and configuration checks.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRackcastError } from '../../../services/errors.ts';
import { TftpServer, type TftpServerOptions } from '../../../services/tftp/server.ts';
import { FakeClock, fetchFile, TestClient, tempRoot, until } from './helpers.ts';

const root = tempRoot();
const outside = tempRoot(); // a sibling directory with a secret: nothing in it may be served
let server: TftpServer;
let port: number;
const warnings: object[] = [];

beforeAll(async () => {
  writeFileSync(join(outside.dir, 'secret'), 'outside the root');
  mkdirSync(join(root.dir, 'a', 'b'), { recursive: true });
  writeFileSync(join(root.dir, 'a', 'b', 'ok'), 'inside');
  writeFileSync(join(root.dir, 'top'), 'top');
  symlinkSync(join(outside.dir, 'secret'), join(root.dir, 'to-secret')); // absolute, out
  symlinkSync('../' + outside.dir.split('/').pop() + '/secret', join(root.dir, 'rel-out')); // relative, out
  symlinkSync(outside.dir, join(root.dir, 'dir-out')); // a directory out
  symlinkSync('/etc/passwd', join(root.dir, 'passwd'));
  symlinkSync('a/b/ok', join(root.dir, 'to-ok')); // inside: allowed
  symlinkSync('a/b', join(root.dir, 'dir-in')); // a directory inside: allowed
  symlinkSync('loop', join(root.dir, 'loop'));
  execFileSync('mkfifo', [join(root.dir, 'fifo')]);
  server = new TftpServer({
    root: root.dir, address: '127.0.0.1', port: 0, clock: new FakeClock(), maxTransfers: 3, maxTransfersPerClient: 2,
    logger: { info() {}, debug() {}, warn: (o) => warnings.push(o) },
  });
  port = (await server.listen()).port;
});

afterAll(async () => {
  await server.close();
  root.cleanup();
  outside.cleanup();
});

async function ask(filename: string, type: 'rrq' | 'wrq' = 'rrq', mode = 'octet', from = '127.0.0.1'): Promise<{ type: string; code?: number; message?: string }> {
  const c = await TestClient.open(from);
  try {
    c.send({ type, filename, mode, options: new Map() }, port);
    const p = (await c.next()).packet;
    return p.type === 'error' ? { type: p.type, code: p.code, message: p.message } : { type: p.type };
  } finally {
    await c.close();
  }
}

describe('TftpServer refusals', () => {
  it('WRQ is refused with ERROR 2 (read-only server)', async () => {
    expect(await ask('top', 'wrq')).toMatchObject({ type: 'error', code: 2 });
    expect(await ask('new-file', 'wrq')).toMatchObject({ type: 'error', code: 2 });
  });

  it.each([
    '../etc/passwd', '/../../etc/passwd', 'a/../../x', 'a/../top', '..', '/..', 'a/b/../../../../../../etc/shadow',
    '..\\..\\etc\\passwd', 'a\\b\\ok', 'a/b/ok\r\n', 'top\u0001',
  ])('%j is refused with ERROR 2', async (name) => {
    expect(await ask(name)).toMatchObject({ type: 'error', code: 2 });
  });

  it('an absolute path is taken relative to the root, never the machine\'s /', async () => {
    expect(await ask('/etc/passwd')).toMatchObject({ type: 'error', code: 1 });
    expect((await fetchFile(port, '/a/b/ok')).data.toString()).toBe('inside');
  });

  it.each(['to-secret', 'rel-out', 'dir-out/secret', 'passwd', 'loop'])('symlink %j pointing outside (or looping) is refused with ERROR 2', async (name) => {
    expect(await ask(name)).toMatchObject({ type: 'error', code: 2 });
  });

  it('symlinks that stay inside the root are followed', async () => {
    expect((await fetchFile(port, 'to-ok')).data.toString()).toBe('inside');
    expect((await fetchFile(port, 'dir-in/ok')).data.toString()).toBe('inside');
  });

  it('missing → ERROR 1; a directory, a FIFO → ERROR 2 (and the FIFO does not block the server)', async () => {
    expect(await ask('nope')).toMatchObject({ type: 'error', code: 1 });
    expect(await ask('a/nope/deeper')).toMatchObject({ type: 'error', code: 1 });
    expect(await ask('top/below')).toMatchObject({ type: 'error', code: 1 });
    expect(await ask('a')).toMatchObject({ type: 'error', code: 2 });
    expect(await ask('fifo')).toMatchObject({ type: 'error', code: 2 });
    expect((await fetchFile(port, 'top')).data.toString()).toBe('top');
  });

  it('netascii and mail modes are refused with a clear message', async () => {
    expect(await ask('top', 'rrq', 'netascii')).toMatchObject({ type: 'error', code: 0, message: expect.stringContaining('octet') });
    expect(await ask('top', 'rrq', 'mail')).toMatchObject({ type: 'error', code: 4 });
  });

  it('escape attempts are logged as warnings with the client and the name', () => {
    expect(warnings).toEqual(expect.arrayContaining([expect.objectContaining({ client: '127.0.0.1', file: '../etc/passwd', code: 2 })]));
  });

  it('limits: per client and in total; a slot frees when a transfer ends', async () => {
    const hold = [await TestClient.open(), await TestClient.open(), await TestClient.open('127.0.0.2')];
    try {
      const tids: number[] = [];
      const open = async (h: TestClient): Promise<void> => {
        h.rrq('top', port); // never acknowledged: the transfer stays open (fake clock)
        const r = await h.next();
        expect(r.packet.type).toBe('data');
        tids.push(r.rinfo.port);
      };
      await open(hold[0]!);
      await open(hold[1]!);
      expect(await ask('top')).toMatchObject({ type: 'error', code: 0, message: expect.stringContaining('too many transfers from this client') });
      await open(hold[2]!);
      expect(server.activeTransfers).toBe(3);
      expect(await ask('top', 'rrq', 'octet', '127.0.0.3')).toMatchObject({ type: 'error', code: 0, message: expect.stringContaining('busy') });
      hold[0]!.rrq('top', port); // the same TID again: a retransmitted RRQ, ignored
      await until(() => server.stats.duplicates >= 1, 'the duplicate');
      hold.forEach((h, i) => h.send({ type: 'error', code: 0, message: 'bye' }, tids[i]!));
      await until(() => server.activeTransfers === 0, 'the slots to free');
      expect((await fetchFile(port, 'top')).data.toString()).toBe('top');
    } finally {
      for (const h of hold) await h.close();
    }
  });

  it('garbage on the request port is counted and dropped; the server keeps serving', async () => {
    const before = server.stats.malformed;
    const c = await TestClient.open();
    try {
      for (const junk of [Buffer.alloc(0), Buffer.from([0]), Buffer.from([0, 1]), Buffer.from([0, 4, 0, 1]), Buffer.from('\0\x01a\0octet\0x', 'latin1'), Buffer.alloc(9000, 0xff)]) c.send(junk, port);
      await until(() => server.stats.malformed === before + 6, 'six malformed datagrams');
    } finally {
      await c.close();
    }
    expect((await fetchFile(port, 'a/b/ok')).data.toString()).toBe('inside');
  });
});

describe('TftpServer lifecycle and configuration', () => {
  const make = (o: Partial<TftpServerOptions>): TftpServer => new TftpServer({ root: root.dir, address: '127.0.0.1', port: 0, ...o });
  const configCode = (fn: () => unknown): string => {
    try { fn(); return 'ok'; } catch (e) { return isRackcastError(e) ? e.code : String(e); }
  };

  it('listen() and close() are safe to call twice; close() before listen() is fine', async () => {
    const s = make({});
    const a = await s.listen();
    expect(await s.listen()).toEqual(a);
    await Promise.all([s.close(), s.close()]);
    await s.close();
    await make({}).close();
    await expect(s.listen()).resolves.toEqual(a); // the same (resolved) promise, not a new bind
    const fresh = make({});
    await fresh.close();
    await expect(fresh.listen()).rejects.toMatchObject({ code: 'RC_ERR_TFTP_CONFIG' });
  });

  it('bad configuration is refused at construction', () => {
    for (const o of [
      { address: '0.0.0.0.0' }, { address: 'localhost' }, { root: '' }, { port: 70000 }, { maxBlksize: 100 }, { maxBlksize: 65465 },
      { maxWindowsize: 0 }, { maxWindowsize: 65 }, { minTimeoutMs: 2000 }, { timeoutMs: 9000 }, { maxTransfersPerClient: 500 }, { maxRetries: 0 },
    ]) expect([o, configCode(() => make(o))]).toEqual([o, 'RC_ERR_TFTP_CONFIG']);
  });

  it('a root that is missing or not a directory makes listen() reject', async () => {
    await expect(make({ root: join(root.dir, 'missing') }).listen()).rejects.toMatchObject({ code: 'RC_ERR_TFTP_CONFIG' });
    const s = make({ root: join(root.dir, 'top') });
    await expect(s.listen()).rejects.toMatchObject({ code: 'RC_ERR_TFTP_CONFIG' });
    await s.close();
  });

  it('closing with transfers in flight ends them and frees their sockets', async () => {
    const clock = new FakeClock();
    const s = make({ clock });
    const p = (await s.listen()).port;
    const c = await TestClient.open();
    c.rrq('top', p);
    expect((await c.next()).packet.type).toBe('data');
    await s.close();
    expect(clock.pending).toBe(0);
    await c.close();
  });
});
