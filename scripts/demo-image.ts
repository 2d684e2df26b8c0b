// The main job, as far as rackcast goes today: make a real disk (GPT, ext4 + FAT32 with files),
// capture it, restore it bit-exact, show dedup, move the image to a second appliance's store with
// export/import, and show that a damaged chunk is caught before anything is written.
// Usage: npm run demo:image [-- --keep]   (--keep leaves the work directory for a look)
import { spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeTree, makeGptDisk, extractPart, sh } from './lab/disks.ts';

const BIN = resolve(import.meta.dirname, '..', 'bin', 'rackcast.js');
const keep = process.argv.includes('--keep');
const work = mkdtempSync(join(tmpdir(), 'rc-demo-'));
const storeA = join(work, 'appliance-a');
const storeB = join(work, 'appliance-b');

function step(title: string): void {
  process.stdout.write(`\n\x1b[1m== ${title}\x1b[0m\n`);
}

function rackcast(store: string, ...args: string[]): number {
  process.stdout.write(`$ rackcast ${args.join(' ')}\n`);
  const r = spawnSync(process.execPath, [BIN, ...args, '--store', store], { stdio: 'inherit' });
  return r.status ?? 1;
}

function must(code: number, what: string): void {
  if (code !== 0) throw new Error(`demo failed at: ${what}`);
}

try {
  step('Make a 256 MiB disk: GPT, ext4 "root" and FAT32 "esp", filled with files');
  const disk = makeGptDisk(work, makeTree(join(work, 'tree')), 256 << 20);
  process.stdout.write(sh('sfdisk', ['--list', disk.path]));

  step('Capture it');
  must(rackcast(storeA, 'image', 'capture', disk.path, '--name', 'web-2026-11'), 'capture');
  must(rackcast(storeA, 'image', 'info', 'web-2026-11'), 'info');

  step('Restore onto a new disk file and compare');
  const target = join(work, 'restored.img');
  must(rackcast(storeA, 'image', 'restore', 'web-2026-11', target), 'restore');
  execFileSync('cmp', [disk.path, target]);
  process.stdout.write('cmp: restored disk is bit-identical to the source\n');
  sh('e2fsck', ['-fn', extractPart(target, disk.parts[0]!, join(work, 'root.ext4'))]);
  sh('fsck.vfat', ['-n', extractPart(target, disk.parts[1]!, join(work, 'esp.vfat'))]);
  process.stdout.write('e2fsck -fn and fsck.vfat -n: both filesystems clean\n');

  step('Capture the same disk again: dedup stores nothing new');
  must(rackcast(storeA, 'image', 'capture', disk.path, '--name', 'web-2026-11-b'), 'second capture');
  must(rackcast(storeA, 'image', 'list'), 'list');

  step('Move the image to another appliance: export, import, verify');
  const exp = join(work, 'web-2026-11.rcimg');
  must(rackcast(storeA, 'image', 'export', 'web-2026-11', exp), 'export');
  must(rackcast(storeB, 'image', 'import', exp), 'import');
  must(rackcast(storeB, 'image', 'verify', 'web-2026-11'), 'verify');

  step('Damage one stored chunk on appliance B: verify names it, restore refuses before writing');
  const sub = readdirSync(join(storeB, 'chunks')).sort()[0] as string;
  const chunk = join(storeB, 'chunks', sub, readdirSync(join(storeB, 'chunks', sub)).filter((f) => f.endsWith('.zst')).sort()[0] as string);
  const bytes = readFileSync(chunk);
  bytes[bytes.length >> 1]! ^= 0x01;
  writeFileSync(chunk, bytes);
  if (rackcast(storeB, 'image', 'verify', 'web-2026-11') === 0) throw new Error('verify missed a corrupt chunk');
  const untouched = join(work, 'untouched.img');
  writeFileSync(untouched, Buffer.alloc(disk.size, 0xab));
  if (rackcast(storeB, 'image', 'restore', 'web-2026-11', untouched) === 0) throw new Error('restore used a corrupt chunk');
  if (!readFileSync(untouched).equals(Buffer.alloc(disk.size, 0xab))) throw new Error('refused restore changed the target');
  process.stdout.write('target unchanged: not one byte written\n');

  step('Done');
  process.stdout.write(`everything above ran for real in ${work}${keep ? ' (kept)' : ' (removed)'}\n`);
} finally {
  if (!keep) rmSync(work, { recursive: true, force: true });
}
