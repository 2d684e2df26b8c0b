// The CLI over the API of a running appliance (rackcast serve on 127.0.0.1, DHCP off, no WoL) with
// the admin token, and on the data directory directly (the first CLI's forms keep working):
// machine/group set, task deploy to a group tonight, capture (both spellings), list, watch with
// per-machine bars until the task ends, report, token rotation.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { ImageStore, captureImage } from '../../../services/image/index.ts';
import { Store } from '../../../appliance/store/db.ts';
import { prng } from '../../helpers/disks.ts';

const BIN = resolve('bin/rackcast.js');
let work: string;
let data: string;
let url: string;
let server: ChildProcess | undefined;
const A = '52:54:00:00:03:0a';
const B = '52:54:00:00:03:0b';
const C = '52:54:00:00:03:0c';

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  return new Promise((res) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, RACKCAST_URL: '', ...env }, timeout: 60000 }, (e, out, err) => {
      res({ code: e ? (typeof e.code === 'number' ? e.code : 99) : 0, out, err });
    });
  });
}
const freePort = (): Promise<number> => new Promise((res) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => res(p)); }); });

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'rc-test-cli-'));
  data = join(work, 'data');
  const disk = join(work, 'disk.img');
  const b = Buffer.alloc(4 << 20);
  prng(21, 1 << 20).copy(b, 1 << 20);
  writeFileSync(disk, b);
  await captureImage({ store: ImageStore.open(data), source: disk, name: 'web', blockSize: 1 << 20 });
  const port = await freePort();
  const tftp = await freePort();
  url = `http://127.0.0.1:${port}`;
  const srv = spawn(process.execPath, [BIN, 'serve', '--address', '127.0.0.1', '--dhcp', 'off', '--http-port', String(port), '--tftp-port', String(tftp), '--wol', 'off', '--data', data, '--ipxe-dir', work], { stdio: ['ignore', 'pipe', 'pipe'] });
  server = srv;
  let out = '';
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`serve did not start: ${out}`)), 30000);
    srv.stdout?.on('data', (c: Buffer) => { out += c.toString(); if (out.includes('rackcast serve: ready')) { clearTimeout(t); res(); } });
    srv.stderr?.on('data', (c: Buffer) => { out += c.toString(); });
    srv.once('exit', (code) => { clearTimeout(t); rej(new Error(`serve exited ${code}: ${out}`)); });
  });
}, 60000);

afterAll(async () => {
  if (server && server.exitCode === null) {
    const gone = new Promise((r) => server?.once('exit', r));
    server.kill('SIGTERM');
    await gone;
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('rackcast CLI over the API', () => {
  it('machine set, group set, machine list/show', async () => {
    expect((await run(['group', 'set', 'rack3', '--machines', `${A},${B}`, '--url', url, '--data-dir', data])).out).toBe(`group rack3: 2 machine(s) ${A} ${B}\n`);
    const set = await run(['machine', 'set', A.toUpperCase(), '--name', 'web-01', '--disk-serial', 'S3XYZ', '--url', url, '--data-dir', data]);
    expect(set.out).toBe(`${A}: name web-01, group rack3, boot policy (group/auto), disk S3XYZ\n`);
    const list = JSON.parse((await run(['machine', 'list', '--json', '--url', url, '--data-dir', data])).out) as { mac: string; name: string | null }[];
    expect(list.map((m) => [m.mac, m.name])).toEqual([[A, 'web-01'], [B, null]]);
    const show = JSON.parse((await run(['machine', 'show', A, '--url', url, '--data-dir', data])).out) as { boot: unknown };
    expect(show.boot).toEqual({ policy: 'auto', diskSerial: 'S3XYZ', diskWwn: null });
    const bad = await run(['machine', 'set', A, '--group', 'nope', '--url', url, '--data-dir', data]);
    expect([bad.code, bad.err]).toEqual([1, expect.stringMatching(/no group named "nope".*\[RC_ERR_API\]/)]);
  });

  it('task deploy to a group tonight and capture (both forms); list; a bad schedule is refused', async () => {
    const d = await run(['task', 'deploy', 'web', '--group', 'rack3', '--at', '02:00', '--start', 'grace=300', '--retries', '1', '--wol', '--url', url, '--data-dir', data]);
    expect(d.out).toMatch(/^task 1: deploy web to group rack3 at \d{4}-\d\d-\d\dT\d\d:00:00\.000Z\n$/);
    const c = await run(['task', 'capture', C, '--name', 'ref', '--url', url, '--data-dir', data]);
    expect(c.out).toBe(`task 2: capture ${C} as ref at its next network boot\n`);
    const old = await run(['task', 'capture', 'ref2', '--machine', '52:54:00:00:03:0d', '--url', url, '--data-dir', data]);
    expect(old.out).toBe('task 3: capture 52:54:00:00:03:0d as ref2 at its next network boot\n');
    const ts = JSON.parse((await run(['task', 'list', '--json', '--url', url, '--data-dir', data])).out) as { id: number; state: string; startRule: unknown; retries: number; wol: boolean }[];
    expect(ts.map((t) => [t.id, t.state])).toEqual([[1, 'scheduled'], [2, 'pending'], [3, 'pending']]);
    expect(ts[0]).toMatchObject({ startRule: { kind: 'grace', seconds: 300 }, retries: 1, wol: true });
    const bad = await run(['task', 'deploy', 'web', '--group', 'rack3', '--cron', 'nightly', '--url', url, '--data-dir', data]);
    expect([bad.code, bad.err]).toEqual([1, expect.stringMatching(/cron expression "nightly" is not valid/)]);
    expect((await run(['task', 'cancel', '1', '--url', url, '--data-dir', data])).out).toBe('task 1: cancelled\n');
  });

  it('task watch draws per-machine progress until the task ends; task report shows the result', async () => {
    const d = await run(['task', 'deploy', 'web', '--machines', `${A},${B}`, '--url', url, '--data-dir', data]);
    const id = Number(/^task (\d+)/.exec(d.out)?.[1]);
    const child = spawn(process.execPath, [BIN, 'task', 'watch', String(id), '--interval', '0.2', '--timeout', '60', '--url', url, '--data-dir', data], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RACKCAST_URL: '' } });
    let text = '';
    child.stdout.on('data', (c: Buffer) => { text += c.toString(); });
    const exited = new Promise<number>((r) => child.once('exit', (code) => r(code ?? 99)));
    const seen = async (what: string): Promise<void> => {
      for (let i = 0; i < 300 && !text.includes(what); i++) await new Promise((r) => setTimeout(r, 100));
      expect(text).toContain(what);
    };
    const s = Store.open(data);
    try {
      await seen(`${A} pending`);
      s.setMachineState(id, A, 'running');
      s.setMachineProgress(id, A, { done: 2 << 20, total: 4 << 20, mbps: 33.3 });
      await seen(`${A} running`);
      s.setMachineProgress(id, A, { done: 4 << 20, total: 4 << 20, mbps: 35, verify: 'ok' });
      s.setMachineState(id, A, 'done');
      s.setMachineState(id, B, 'failed', 'no disk found');
    } finally { s.close(); }
    const w = { code: await exited, out: text };
    expect(w.code).toBe(1); // the task failed
    expect(w.out).toContain(`${A} running   [############            ]  50% 2.0 MiB/4.0 MiB 33.3 MB/s`);
    expect(w.out).toContain(`${A} done      [########################] 100% 4.0 MiB/4.0 MiB`);
    expect(w.out).toContain(`${B} failed    [                        ]   0% no disk found`);
    const rep = await run(['task', 'report', String(id), '--url', url, '--data-dir', data]);
    expect(rep.code).toBe(1);
    expect(rep.out).toContain(`task ${id}: deploy web — failed (1 of 2 machine(s) failed); 1 done, 1 failed, 0 open of 2`);
    expect(rep.out).toMatch(new RegExp(`${A} done attempts 1 .*verify ok`));
    expect(JSON.parse((await run(['task', 'report', String(id), '--json', '--url', url, '--data-dir', data])).out).machines[1]).toMatchObject({ mac: B, result: 'failed', detail: 'no disk found' });
  });

  it('token rotate: the CLI with the old token is refused (RC_ERR_AUTH); it reads the new one from the data directory', async () => {
    const old = readFileSync(join(data, 'admin.token'), 'utf8').trim();
    const r = await run(['token', 'rotate', '--data-dir', data]);
    expect(r.out.trim()).toMatch(/^[0-9a-f]{64}$/);
    const refused = await run(['task', 'list', '--url', url, '--token', old, '--data-dir', data]);
    expect([refused.code, refused.err]).toEqual([1, expect.stringMatching(/admin token is wrong.*\[RC_ERR_AUTH\]/)]);
    expect((await run(['task', 'list', '--url', url, '--data-dir', data])).code).toBe(0);
  });
});

describe('rackcast CLI on the data directory (no --url)', () => {
  it('the first forms still work: task deploy --machines, task list, machine list', async () => {
    const dir = join(work, 'local');
    await captureImage({ store: ImageStore.open(dir), source: join(work, 'disk.img'), name: 'web', blockSize: 1 << 20 });
    expect((await run(['task', 'deploy', 'web', '--machines', '52-54-00-00-04-0A', '--data-dir', dir])).out).toBe('task 1: deploy web to 1 machine(s) at their next network boot\n');
    expect((await run(['task', 'list', '--data-dir', dir])).out).toBe('1 deploy web pending 52:54:00:00:04:0a:pending\n');
    const missing = await run(['task', 'deploy', 'nope', '--machines', C, '--data-dir', dir]);
    expect([missing.code, missing.err]).toEqual([1, expect.stringMatching(/no image named "nope".*\[RC_ERR_IMAGE_NOT_FOUND\]/)]);
    expect((await run(['machine', 'list', '--data-dir', dir])).code).toBe(0);
  });
});
