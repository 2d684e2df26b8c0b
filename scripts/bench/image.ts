// Benchmark: rackcast capture/restore against the usual tools on one realistic disk: a sparse
// 1 GiB file with a GPT and one ext4 partition (1 MiB to the end) holding ~600 MB copied from /usr.
//   rivals: zstd -3 -T2 of the raw disk (capture) and zstd -d of that (restore);
//           partclone.ext4 -c | zstd -3 -T2 (capture; reads only the filesystem's used blocks).
// Every timed step starts cold (sync + drop_caches) and ends with its output on stable storage:
// rackcast syncs its store / fsyncs its target itself, so the rivals get `sync FILE` in their step.
// Usage: node scripts/bench.ts image [--fill-mb 600] [--repeat 1] [--json FILE]
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore, captureImage, restoreImage } from '../../services/image/index.ts';
import { ZSTD_VERSION } from '../../services/image/zstd.ts';
import { MB, dropCaches, mb, printTable, q, rate, run, sh, stageFiles, timed } from './lib.ts';

const DISK_BYTES = 1 << 30;
const PART_START = 1 << 20;

const { values: v } = parseArgs({
  args: process.argv.slice(2),
  options: { 'fill-mb': { type: 'string', default: '600' }, repeat: { type: 'string', default: '1' }, json: { type: 'string' } },
  strict: true,
});
const fillMb = Number(v['fill-mb']);
const repeat = Number(v.repeat);
if (!(fillMb > 0 && fillMb < 950) || !(Number.isInteger(repeat) && repeat >= 1)) {
  console.error('usage: node scripts/bench.ts image [--fill-mb 1…949 (default 600)] [--repeat N (default 1)] [--json FILE]');
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), 'rc-bench-'));
const cleanup = (): void => { rmSync(dir, { recursive: true, force: true }); };
for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => { cleanup(); process.exit(130); });
const p = {
  stage: join(dir, 'stage'), disk: join(dir, 'disk.img'), fs: join(dir, 'fs.img'), store: join(dir, 'store'),
  out: join(dir, 'restored.img'), zst: join(dir, 'disk.img.zst'), pcl: join(dir, 'out.pcl.zst'), log: join(dir, 'partclone.log'),
};
const size = (f: string): number => statSync(f).size;
const allocated = (f: string): number => statSync(f).blocks * 512;

/** Build the test disk; returns the filesystem's used bytes (what partclone reads). */
async function buildDisk(): Promise<{ files: number; staged: number; fsUsed: number; partBytes: number }> {
  const st = stageFiles('/usr', p.stage, fillMb * MB);
  await run('truncate', ['-s', String(DISK_BYTES), p.disk]);
  await run('sfdisk', ['-q', p.disk], { input: `label: gpt\nstart=${PART_START / 512}, type=linux\n` });
  const pt = JSON.parse(await run('sfdisk', ['--json', p.disk], { stdout: true })) as { partitiontable: { partitions: { start: number; size: number }[] } };
  const part = pt.partitiontable.partitions[0];
  if (!part || part.start * 512 !== PART_START) throw new Error('sfdisk did not make the partition at 1 MiB');
  const partBytes = part.size * 512;
  await run('mkfs.ext4', ['-q', '-F', '-d', p.stage, p.fs, `${Math.floor(partBytes / 4096) * 4}k`]);
  rmSync(p.stage, { recursive: true, force: true });
  await run('dd', [`if=${p.fs}`, `of=${p.disk}`, 'bs=1M', `seek=${PART_START}`, 'oflag=seek_bytes', 'conv=notrunc,sparse', 'status=none']);
  const h = await run('dumpe2fs', ['-h', p.fs], { stdout: true });
  const field = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(h)?.[1] ?? NaN);
  return { files: st.files, staged: st.bytes, fsUsed: (field('Block count') - field('Free blocks')) * field('Block size'), partBytes };
}

interface Contender { key: string; label: string; kind: 'capture' | 'restore'; runs: number[]; read: number; output?: number; note: string }
const C: Record<string, Contender> = {};
const add = (key: string, label: string, kind: Contender['kind'], note: string): void => { C[key] = { key, label, kind, runs: [], read: 0, note }; };
add('rc', 'rackcast capture', 'capture', 'reads the whole disk, zero blocks become holes');
add('zc', 'zstd -3 -T2 disk.img', 'capture', 'raw disk, one stream');
add('pc', 'partclone.ext4 | zstd -3 -T2', 'capture', 'ext4 partition only, reads used blocks only');
add('rr', 'rackcast restore', 'restore', 'pre-verify pass reads+hashes every chunk first');
add('rn', 'rackcast restore --no-preverify', 'restore', 'single pass');
add('zd', 'zstd -d disk.img.zst', 'restore', 'sparse output');
const best = (k: string): number => Math.min(...(C[k] as Contender).runs);
let allCold = true;

async function step(key: string, rep: number, fn: () => Promise<unknown>): Promise<void> {
  const c = C[key] as Contender;
  allCold = (await dropCaches()) && allCold;
  const s = await timed(fn);
  c.runs.push(s);
  console.log(`  [${rep + 1}/${repeat}] ${c.label.padEnd(32)} ${s.toFixed(2).padStart(7)} s`);
}
async function identical(a: string, b: string): Promise<boolean> {
  try { await run('cmp', ['-s', a, b]); return true; } catch { return false; }
}

try {
  const nproc = (await run('nproc', [], { stdout: true })).trim();
  const zstdCli = /v[\d.]+/.exec(await run('zstd', ['--version'], { stdout: true }))?.[0] ?? '?';
  console.log(`machine: nproc ${nproc}; zstd CLI ${zstdCli}; rackcast's libzstd (zstd-napi) v${ZSTD_VERSION}; node ${process.version}`);
  console.log(`building the disk in ${dir} (copying ~${fillMb} MB from /usr) …`);
  const d = await buildDisk();
  console.log(`disk: ${mb(DISK_BYTES)} MB (1 GiB) sparse, ${mb(allocated(p.disk))} MB allocated; GPT + ext4 partition of ${mb(d.partBytes)} MB at 1 MiB; ` +
    `${d.files} files, ${mb(d.staged)} MB copied from /usr; ext4 uses ${mb(d.fsUsed)} MB`);
  const same: Record<string, boolean> = {};
  let rcImage = { storedBytes: 0, manifestBytes: 0, chunks: 0 };
  for (let r = 0; r < repeat; r++) {
    rmSync(p.store, { recursive: true, force: true }); // a fresh store each time: no chunk reuse
    const store = ImageStore.open(p.store);
    await step('rc', r, () => captureImage({ store, source: p.disk, name: 'bench' }));
    const sum = store.summary('bench');
    rcImage = { storedBytes: sum.storedBytes, manifestBytes: store.open('bench').bytes.length, chunks: sum.uniqueChunks };
    for (const [key, preverify] of [['rr', true], ['rn', false]] as const) {
      rmSync(p.out, { force: true });
      await step(key, r, () => restoreImage({ store, name: 'bench', target: p.out, preverify }));
      if (r === 0) same[key] = await identical(p.disk, p.out);
    }
    rmSync(p.out, { force: true });
    await step('zc', r, () => sh(`zstd -3 -T2 -q -f ${q(p.disk)} -o ${q(p.zst)} && sync ${q(p.zst)}`));
    await step('zd', r, () => sh(`zstd -d -q -f ${q(p.zst)} -o ${q(p.out)} && sync ${q(p.out)}`));
    if (r === 0) same.zd = await identical(p.disk, p.out);
    rmSync(p.out, { force: true });
    await step('pc', r, () => sh(`partclone.ext4 -c -s ${q(p.fs)} -o - -L ${q(p.log)} 2>/dev/null | zstd -3 -T2 -q -f -o ${q(p.pcl)} && sync ${q(p.pcl)}`));
  }
  const zstdSize = size(p.zst);
  Object.assign(C.rc as Contender, { read: DISK_BYTES, output: rcImage.storedBytes });
  Object.assign(C.zc as Contender, { read: DISK_BYTES, output: zstdSize });
  Object.assign(C.pc as Contender, { read: d.fsUsed, output: size(p.pcl) });
  Object.assign(C.rr as Contender, { read: 2 * rcImage.storedBytes });
  Object.assign(C.rn as Contender, { read: rcImage.storedBytes });
  Object.assign(C.zd as Contender, { read: zstdSize });

  console.log(`\nbest of ${repeat}; MB = 10^6 bytes; disk MB/s = the 1 GiB disk (${DISK_BYTES} bytes) / seconds for every contender;`);
  console.log('read MB = data the contender actually reads (restore with pre-verify reads each chunk twice, the 2nd time mostly from cache)');
  const rows = [['contender', 'seconds', 'disk MB/s', 'read MB', 'read MB/s', 'size MB', 'note']];
  for (const c of Object.values(C)) {
    rows.push([c.label, best(c.key).toFixed(2), rate(DISK_BYTES, best(c.key)), mb(c.read), rate(c.read, best(c.key)),
      c.output === undefined ? '-' : mb(c.output), c.note]);
  }
  printTable(rows);
  console.log(`rackcast image: ${rcImage.chunks} chunks, ${mb(rcImage.storedBytes)} MB of chunk files (+ ${(rcImage.manifestBytes / 1024).toFixed(0)} KiB manifest, not counted)`);

  const ratio = (a: string, b: string): number => best(b) / best(a); // speed of a relative to b
  const goals = {
    captureVsPartclone: ratio('rc', 'pc'),
    captureVsZstd: ratio('rc', 'zc'),
    restoreVsZstdD: ratio('rr', 'zd'),
    restoreNoPreverifyVsZstdD: ratio('rn', 'zd'),
    sizeVsZstd: rcImage.storedBytes / zstdSize,
  };
  const met = (ok: boolean): string => (ok ? 'goal met' : 'goal MISSED');
  console.log('\nratios (speed: > 1.00× means rackcast is faster):');
  console.log(`  capture speed vs partclone|zstd     ${goals.captureVsPartclone.toFixed(2)}×   ${met(goals.captureVsPartclone >= 1)} (capture ≥ partclone|zstd)`);
  console.log(`  capture speed vs zstd -3 -T2        ${goals.captureVsZstd.toFixed(2)}×   ${met(goals.captureVsZstd >= 1)} (capture ≥ zstd)`);
  console.log(`  restore speed vs zstd -d            ${goals.restoreVsZstdD.toFixed(2)}×   ${met(goals.restoreVsZstdD >= 1)} (restore ≥ zstd -d; default, with pre-verify)`);
  console.log(`  restore --no-preverify vs zstd -d   ${goals.restoreNoPreverifyVsZstdD.toFixed(2)}×   ${met(goals.restoreNoPreverifyVsZstdD >= 1)} (same goal, information)`);
  const pct = (goals.sizeVsZstd - 1) * 100;
  console.log(`  image size vs zstd -3 of raw disk   ${pct >= 0 ? '+' : ''}${pct.toFixed(1)}%   ${met(goals.sizeVsZstd <= 1.05)} (within 5%)`);
  console.log(`restored disks identical to the source: ${Object.entries(same).map(([k, ok]) => `${(C[k] as Contender).label}: ${ok ? 'yes' : 'NO'}`).join('; ')}`);
  if (!allCold) console.log('note: the page cache could not be dropped before every step; some timings may be warm');
  if (v.json) {
    const json = {
      machine: { nproc: Number(nproc), zstdCli, libzstd: ZSTD_VERSION, node: process.version },
      disk: { bytes: DISK_BYTES, allocated: allocated(p.disk), partitionBytes: d.partBytes, files: d.files, stagedBytes: d.staged, fsUsedBytes: d.fsUsed },
      repeat, coldCache: allCold, identical: same, image: rcImage,
      contenders: Object.values(C).map((c) => ({ ...c, seconds: best(c.key), diskMBps: DISK_BYTES / MB / best(c.key), readMBps: c.read / MB / best(c.key) })),
      ratios: goals,
      goalsMet: { captureVsPartclone: goals.captureVsPartclone >= 1, captureVsZstd: goals.captureVsZstd >= 1, restoreVsZstdD: goals.restoreVsZstdD >= 1, sizeWithin5pct: goals.sizeVsZstd <= 1.05 },
    };
    writeFileSync(v.json, JSON.stringify(json, null, 2) + '\n');
    console.log(`results written to ${v.json}`);
  }
} finally {
  cleanup();
}
