// Real TFTP clients (atftp 0.8, tftp-hpa 5.2, curl) against TftpServer in a 2-host lab: the
// server runs in host 0 (10.77.0.1:69, inside its namespace), clients in host 1. Bit-exact
// fetches, also with 1 % and 5 % of the packets dropped (nftables) at the client or at the server;
// refusals as a real client sees them. Needs root and the three clients; skipped otherwise.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Lab, canMakeLab } from '../../../scripts/lab/netns.ts';
import { seededBytes } from '../../helpers/rng.ts';

const SERVER = '10.77.0.1';
const have = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const ok = canMakeLab() && ['atftp', 'tftp', 'curl', 'nft'].every(have);
const d = ok ? describe : describe.skip;
if (!ok) console.warn('tftp clients.test: skipped (needs root, ip netns, nft, atftp, tftp-hpa and curl)');

let work: string;
let root: string;
let out: string;
let lab: Lab;
let server: ChildProcess;
let serverOut = '';
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const want = new Map<string, string>();

/** Runs a client in host 1 (bounded by `timeout`), resolves to its exit code and output. */
function client(cmd: string, args: string[], limitS = 90): Promise<{ code: number | null; text: string }> {
  return new Promise((res) => {
    const c = lab.spawn(1, 'timeout', [String(limitS), cmd, ...args]);
    let text = '';
    c.stdout?.on('data', (b: Buffer) => { text += b.toString(); });
    c.stderr?.on('data', (b: Buffer) => { text += b.toString(); });
    c.on('close', (code) => res({ code, text }));
  });
}

type Fetcher = (name: string, dest: string) => [string, string[]];
const CLIENTS: Array<[string, Fetcher]> = [
  ['atftp blksize 1468', (n, o) => ['atftp', ['--get', '-r', n, '-l', o, '--option', 'blksize 1468', SERVER]]],
  ['atftp blksize 1468 windowsize 16', (n, o) => ['atftp', ['--get', '-r', n, '-l', o, '--option', 'blksize 1468', '--option', 'windowsize 16', '--option', 'tsize 0', SERVER]]],
  ['tftp-hpa (512-byte blocks)', (n, o) => ['tftp', ['-m', 'binary', SERVER, '-c', 'get', n, o]]],
  ['curl', (n, o) => ['curl', ['-sS', `tftp://${SERVER}/${n}`, '-o', o]]],
  ['curl --tftp-blksize 1468', (n, o) => ['curl', ['-sS', '--tftp-blksize', '1468', `tftp://${SERVER}/${n}`, '-o', o]]],
];

async function fetchExact(label: string, fetcher: Fetcher, name: string, limitS = 90): Promise<void> {
  const dest = join(out, `${label.replace(/\W+/g, '_')}-${name.replace(/\W+/g, '_')}`);
  const [cmd, args] = fetcher(name, dest);
  let r = await client(cmd, args, limitS);
  // atftp aborts ("unexpected OACK") when its ACK of our OACK is lost and we send the OACK again,
  // as RFC 2347 has us do: its limitation, one case in twenty with 5% loss at the server. A user
  // runs it again; so does this test, once, and only for that.
  if (r.code !== 0 && cmd === 'atftp' && r.text.includes('unexpected OACK')) r = await client(cmd, args, limitS);
  expect([label, r.code, r.code === 0 ? '' : r.text]).toEqual([label, 0, '']);
  expect([label, sha(readFileSync(dest))]).toEqual([label, want.get(name.replace(/^\/+/, ''))]);
  rmSync(dest);
}

beforeAll(async () => {
  if (!ok) return;
  work = mkdtempSync(join(tmpdir(), 'rc-test-tftp-int-'));
  root = join(work, 'root');
  out = join(work, 'out');
  mkdirSync(join(root, 'boot'), { recursive: true });
  mkdirSync(out);
  mkdirSync(join(work, 'outside'));
  writeFileSync(join(work, 'outside', 'secret'), 'not for clients');
  symlinkSync(join(work, 'outside', 'secret'), join(root, 'escape'));
  for (const [name, size] of [['file.bin', 3 << 20], ['small.bin', 1 << 20], ['boot/ipxe.efi', 1_044_001]] as const) {
    const b = seededBytes(size, size);
    writeFileSync(join(root, name), b);
    want.set(name, sha(b));
  }
  lab = new Lab({ hosts: 2 });
  server = lab.spawn(0, process.execPath, [resolve('test/integration/tftp/serve.ts'), SERVER, '69', root]);
  server.stdout!.on('data', (b: Buffer) => { serverOut += b.toString(); });
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`server did not start: ${serverOut}`)), 20_000);
    server.stdout!.on('data', () => { if (serverOut.includes('listening')) { clearTimeout(t); res(); } });
    server.once('exit', (code) => { clearTimeout(t); rej(new Error(`server exited ${code}`)); });
  });
}, 60_000);

afterAll(async () => {
  await lab?.destroy();
  if (work && existsSync(work)) rmSync(work, { recursive: true, force: true });
});

d('real clients against TftpServer in a lab', () => {
  it.each(CLIENTS)('%s fetches a 3 MiB file bit-exact', async (label, f) => {
    await fetchExact(label, f, 'file.bin');
    await fetchExact(label, f, '/boot/ipxe.efi'); // the leading slash PXE ROMs send
  });

  // Loss at the client drops DATA (and OACKs); at the server it drops ACKs and requests. 512-byte
  // clients fetch 1 MiB to stay quick. With ACKs lost, atftp in lock-step may stall ~5 s a few
  // times (it ignores repeated DATA until its own timer fires, see transfer.ts), so it fetches
  // 1 MiB too there; tftpd-hpa does not get 3 MiB through that at all within 100 s.
  describe.each([
    ['1 % loss at the client', 1, 10],
    ['5 % loss at the client', 1, 50],
    ['5 % loss at the server', 0, 50],
  ] as const)('%s', (_, host, permille) => {
    beforeAll(() => lab.loss(host, permille));
    afterAll(() => lab.clearRules(host));
    it.each(CLIENTS)('%s is bit-exact', async (label, f) => {
      await fetchExact(label, f, label.includes('1468') && host === 1 ? 'file.bin' : 'small.bin', 150);
    }, 240_000);
  });

  it('traversal is refused to every client', async () => {
    const hpa = await client('tftp', ['-m', 'binary', SERVER, '-c', 'get', '../etc/passwd', join(out, 'x')]);
    expect(hpa.text).toMatch(/Error code 2/);
    const at = await client('atftp', ['--get', '-r', '/../../etc/passwd', '-l', join(out, 'y'), SERVER]);
    expect(at.code).not.toBe(0);
    expect(at.text).toMatch(/access violation/i);
    const cu = await client('curl', ['-sS', '--path-as-is', `tftp://${SERVER}/a/../../x`, '-o', join(out, 'z')]);
    expect(cu.code).toBe(69); // CURLE_TFTP_PERM: the server said "access violation"
    const esc = await client('atftp', ['--get', '-r', 'escape', '-l', join(out, 'w'), SERVER]);
    expect(esc.code).not.toBe(0);
    expect(esc.text).toMatch(/access violation/i);
    const missing = await client('curl', ['-sS', `tftp://${SERVER}/nope`, '-o', join(out, 'v')]);
    expect(missing.code).toBe(68); // CURLE_TFTP_NOTFOUND
  });

  it('uploads are refused to every client', async () => {
    const src = join(root, 'small.bin');
    const hpa = await client('tftp', ['-m', 'binary', SERVER, '-c', 'put', src, 'upload.bin']);
    expect(hpa.text).toMatch(/Error code 2/);
    const at = await client('atftp', ['--put', '-r', 'upload.bin', '-l', src, SERVER]);
    expect(at.code).not.toBe(0);
    const cu = await client('curl', ['-sS', '-T', src, `tftp://${SERVER}/upload.bin`]);
    expect(cu.code).toBe(69);
    expect(existsSync(join(root, 'upload.bin'))).toBe(false);
  });

  it('the server is still up and has counted what happened', async () => {
    const stats = new Promise<Record<string, number>>((res) => {
      server.stdout!.on('data', () => {
        const m = /stats (\{.*\})/.exec(serverOut);
        if (m) res(JSON.parse(m[1]!) as Record<string, number>);
      });
    });
    expect(server.exitCode).toBeNull();
    server.kill('SIGTERM');
    const s = await stats;
    // every fetch above succeeded at the client; with ACKs dropped at the server a final ACK may be
    // lost, and the server then retransmits the last block until it gives up (the client has the
    // file): those 5 fetches are not all counted as completed yet
    expect(s.completed).toBeGreaterThanOrEqual(CLIENTS.length * 4);
    expect(s.retransmits).toBeGreaterThan(0); // the loss runs needed them
    expect(s.errors).toBeGreaterThanOrEqual(7); // the refusals above
  });
});
