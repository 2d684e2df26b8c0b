// The `rackcast image` CLI as a sysadmin runs it: bin/rackcast.js as a child process. Success
// paths print a summary; failures print one line "rackcast: … [RC_ERR_…]" and exit 1 (2 = usage).
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { prng } from '../helpers/disks.ts';

const BIN = resolve('bin/rackcast.js');
let work: string;
let store: string;
let src: string;

function rc(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, RACKCAST_DATA_DIR: store } });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function expectOneLineError(r: { code: number; err: string }, code: string, exit = 1): void {
  expect(r.code).toBe(exit);
  const lines = r.err.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^rackcast: .+ \\[${code}\\]$`));
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'rc-test-cli-'));
  store = join(work, 'store');
  src = join(work, 'disk.img');
  const disk = Buffer.alloc(12 << 20);
  prng(7, 3 << 20).copy(disk, 1 << 20);
  Buffer.from('rackcast '.repeat(100000)).copy(disk, 6 << 20);
  writeFileSync(src, disk);
});
afterAll(() => { rmSync(work, { recursive: true, force: true }); });

describe('rackcast image (CLI)', () => {
  it('capture, list, info, verify, restore, export, import, rm, gc', () => {
    const cap = rc('image', 'capture', src, '--name', 'node-01');
    expect(cap.code).toBe(0);
    expect(cap.out).toMatch(/^captured node-01: 12\.0 MiB disk/m);
    expect(cap.err).toBe(''); // quiet when stderr is not a terminal
    expect(rc('image', 'list').out).toMatch(/^node-01\s+12\.0 MiB/m);
    const info = JSON.parse(rc('image', 'info', 'node-01', '--json').out);
    expect(info).toMatchObject({ name: 'node-01', diskSize: 12 << 20, manifest: { blockSize: 4 << 20, partitionTable: { kind: 'none' } } });
    expect(rc('image', 'verify', 'node-01').out).toMatch(/^node-01: OK/);
    const target = join(work, 'restored.img');
    expect(rc('image', 'restore', 'node-01', target).code).toBe(0);
    expect(readFileSync(target).equals(readFileSync(src))).toBe(true);
    const exp = join(work, 'node-01.rcimg');
    expect(rc('image', 'export', 'node-01', exp).code).toBe(0);
    expect(rc('image', 'import', exp, '--name', 'node-01-copy').code).toBe(0);
    expect(rc('image', 'rm', 'node-01').code).toBe(0);
    expect(rc('image', 'gc', '--grace', '0').out).toMatch(/^gc: removed 0 chunks/); // the copy shares every chunk
    expect(rc('image', 'rm', 'node-01-copy').code).toBe(0);
    expect(rc('image', 'gc', '--grace', '0').out).toMatch(/^gc: removed [1-9]\d* chunks/);
    expect(rc('image', 'list').out).toBe('no images\n');
  });

  it('one-line errors: missing image, too-small target, corrupt chunk, usage', () => {
    expectOneLineError(rc('image', 'info', 'nope'), 'RC_ERR_IMAGE_NOT_FOUND');
    expectOneLineError(rc('image', 'capture', join(work, 'absent.img'), '--name', 'x'), 'RC_ERR_SOURCE');
    expectOneLineError(rc('image', 'capture', src), 'RC_ERR_USAGE', 2);
    expectOneLineError(rc('image', 'frobnicate'), 'RC_ERR_USAGE', 2);
    expectOneLineError(rc('image', 'capture', src, '--name', '../evil'), 'RC_ERR_IMAGE_NAME');
    expect(rc('image', 'capture', src, '--name', 'ref').code).toBe(0);
    expectOneLineError(rc('image', 'capture', src, '--name', 'ref'), 'RC_ERR_IMAGE_EXISTS');
    const small = join(work, 'small.img');
    writeFileSync(small, Buffer.alloc(4 << 20, 0x5a));
    expectOneLineError(rc('image', 'restore', 'ref', small), 'RC_ERR_TARGET_TOO_SMALL');
    // corrupt one chunk: verify names it, restore refuses and leaves the target as it was
    const sub = readdirSync(join(store, 'chunks'))[0] as string;
    const chunk = readdirSync(join(store, 'chunks', sub)).find((f) => f.endsWith('.zst')) as string;
    const p = join(store, 'chunks', sub, chunk);
    const bytes = readFileSync(p);
    bytes[bytes.length >> 1]! ^= 0xff;
    writeFileSync(p, bytes);
    const v = rc('image', 'verify', 'ref');
    expect(v.code).toBe(1);
    expect(v.out).toContain(`CORRUPT chunk ${chunk.replace('.zst', '')}`);
    const target = join(work, 'keep.img');
    writeFileSync(target, Buffer.alloc(12 << 20, 0xab));
    expectOneLineError(rc('image', 'restore', 'ref', target), 'RC_ERR_CHUNK_CORRUPT');
    expect(readFileSync(target).equals(Buffer.alloc(12 << 20, 0xab))).toBe(true);
  });
});
