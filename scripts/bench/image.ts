// Benchmark: rackcast capture/restore against the usual tools on one realistic disk: a sparse
// 1 GiB file with a GPT and one ext4 partition (1 MiB to the end) holding ~600 MB copied from /usr.
//   rivals: zstd -3 -T2 of the raw disk (capture) and zstd -d of that (restore);
//           partclone.ext4 -c | zstd -3 -T2 (capture; reads only the filesystem's used blocks).
// Every timed step starts cold (sync + drop_caches) and ends with its output on stable storage:
// rackcast syncs its store / fsyncs its target itself, so the rivals get `sync FILE` in their step.
// Second part, "used blocks" (issue 7): the same files on ext4, FAT32 and NTFS filesystems made in
// this run; rackcast reading only the blocks services/image/fs says are used (4 MiB blocks, the
// capture's worker pool: zero test, SHA-256, zstd -3, chunk files) against
// `partclone.<fs> -c | zstd -3 -T2`, side by side. Capture itself does not plan used blocks yet;
// this part drives the same workers directly and says so.
// Usage: node scripts/bench.ts image [--fill-mb 600] [--repeat 1] [--json FILE] [--used-only]
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'node:fs/promises';
import { ImageStore, STORE_DEFAULTS, captureImage, restoreImage } from '../../services/image/index.ts';
import { ZSTD_VERSION } from '../../services/image/zstd.ts';
import { WorkerPool } from '../../services/image/worker-pool.ts';
import { readAhead } from '../../services/image/chunk-reader.ts';
import { allocationFor, type Allocation } from '../../services/image/fs/index.ts';
import { MB, dropCaches, mb, printTable, q, rate, run, sh, stageFiles, timed } from './lib.ts';

const DISK_BYTES = 1 << 30;
const PART_START = 1 << 20;

const { values: v } = parseArgs({
  args: process.argv.slice(2),
  options: { 'fill-mb': { type: 'string', default: '600' }, repeat: { type: 'string', default: '1' }, json: { type: 'string' }, 'used-only': { type: 'boolean', default: false } },
  strict: true,
});
const fillMb = Number(v['fill-mb']);
const repeat = Number(v.repeat);
if (!(fillMb > 0 && fillMb < 950) || !(Number.isInteger(repeat) && repeat >= 1)) {
  console.error('usage: node scripts/bench.ts image [--fill-mb 1…949 (default 600)] [--repeat N (default 1)] [--json FILE] [--used-only]');
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), 'rc-bench-'));
const cleanup = (): void => { rmSync(dir, { recursive: true, force: true }); };
for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => { cleanup(); process.exit(130); });
const p = {
  stage: join(dir, 'stage'), disk: join(dir, 'disk.img'), fs: join(dir, 'fs.img'), store: join(dir, 'store'),
  out: join(dir, 'restored.img'), zst: join(dir, 'disk.img.zst'), pcl: join(dir, 'out.pcl.zst'), log: join(dir, 'partclone.log'),
  vfat: join(dir, 'fs.vfat'), ntfs: join(dir, 'fs.ntfs'), tar: join(dir, 'stage.tar'), ustore: join(dir, 'ustore'),
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

/** Part one: the whole 1 GiB disk, capture and restore, against zstd and partclone|zstd. */
async function diskPart(d: Awaited<ReturnType<typeof buildDisk>>, nproc: string, zstdCli: string): Promise<Record<string, unknown>> {
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
  const json = {
    machine: { nproc: Number(nproc), zstdCli, libzstd: ZSTD_VERSION, node: process.version },
    disk: { bytes: DISK_BYTES, allocated: allocated(p.disk), partitionBytes: d.partBytes, files: d.files, stagedBytes: d.staged, fsUsedBytes: d.fsUsed },
    repeat, coldCache: allCold, identical: same, image: rcImage,
    contenders: Object.values(C).map((c) => ({ ...c, seconds: best(c.key), diskMBps: DISK_BYTES / MB / best(c.key), readMBps: c.read / MB / best(c.key) })),
    ratios: goals,
    goalsMet: { captureVsPartclone: goals.captureVsPartclone >= 1, captureVsZstd: goals.captureVsZstd >= 1, restoreVsZstdD: goals.restoreVsZstdD >= 1, sizeWithin5pct: goals.sizeVsZstd <= 1.05 },
  };
  return json;
}

// ------------------------------------------------------------------- part two: used blocks

const USED_BLOCK = STORE_DEFAULTS.blockSize; // 4 MiB, capture's default
type Range = [number, number];

interface UsedCapture { alloc: Allocation; planSeconds: number; stored: number; chunks: number; dataBlocks: number; holeBlocks: number; readBytes: number }

/**
 * What capture will do with used blocks (until it does): plan with services/image/fs, then read
 * only the 4 MiB blocks that hold used bytes, sequentially, with the unused parts of each block
 * zeroed (a block mostly used is read whole and its gaps zeroed; a sparse one piece by piece);
 * the capture's chunk workers drop zero blocks and hash, compress (zstd -3) and store the rest.
 */
async function captureUsed(file: string, root: string): Promise<UsedCapture> {
  rmSync(root, { recursive: true, force: true });
  const store = ImageStore.open(root);
  const fh = await open(file, 'r');
  const pool = new WorkerPool({ root, level: STORE_DEFAULTS.level });
  try {
    const size = (await fh.stat()).size;
    let readBytes = 0;
    const readAt = async (o: number, l: number): Promise<Buffer> => {
      const b = Buffer.alloc(l);
      const { bytesRead } = await fh.read(b, 0, l, o);
      readBytes += bytesRead;
      return b.subarray(0, bytesRead);
    };
    const t0 = performance.now();
    const alloc = await allocationFor(readAt, { start: 0, size });
    const planSeconds = (performance.now() - t0) / 1000;
    const pieces = new Map<number, Range[]>(); // block → used pieces inside it, block-relative
    for (const [a, b] of alloc.ranges) {
      for (let i = Math.floor(a / USED_BLOCK); i * USED_BLOCK < b; i++) {
        const base = i * USED_BLOCK;
        const piece: Range = [Math.max(a, base) - base, Math.min(b, base + USED_BLOCK) - base];
        const l = pieces.get(i);
        if (l) l.push(piece); else pieces.set(i, [piece]);
      }
    }
    const free: ArrayBuffer[] = [];
    let reading = Promise.resolve();
    const read = (i: number): Promise<ArrayBuffer> => {
      const next = reading.then(async () => {
        const buf = free.pop() ?? new ArrayBuffer(USED_BLOCK);
        const u8 = new Uint8Array(buf);
        const len = Math.min(USED_BLOCK, size - i * USED_BLOCK);
        const ps = pieces.get(i) ?? [];
        const used = ps.reduce((n, [a, b]) => n + b - a, 0);
        if (used * 2 >= len || ps.length > 32) {
          const { bytesRead } = await fh.read(u8, 0, len, i * USED_BLOCK);
          readBytes += bytesRead;
          let pos = 0;
          for (const [a, b] of ps) { u8.fill(0, pos, a); pos = b; }
          u8.fill(0, pos, len);
        } else {
          u8.fill(0, 0, len);
          for (const [a, b] of ps) { const { bytesRead } = await fh.read(u8, a, b - a, i * USED_BLOCK + a); readBytes += bytesRead; }
        }
        return buf;
      });
      reading = next.then(() => undefined, () => undefined);
      return next;
    };
    const r = { stored: 0, chunks: 0, dataBlocks: 0 };
    const order = [...pieces.keys()].sort((x, y) => x - y);
    await readAhead(order, read, async (i, buf, err) => {
      if (err) throw err;
      const len = Math.min(USED_BLOCK, size - i * USED_BLOCK);
      const rep = await pool.run({ op: 'store', buf: buf as ArrayBuffer, length: len }, [buf as ArrayBuffer]);
      if (!rep.hole) { r.dataBlocks++; if (!rep.existed) { r.chunks++; r.stored += rep.stored ?? 0; } }
      free.push(rep.buf as ArrayBuffer);
    }, pool.size * 3);
    store.syncChunks();
    return { alloc, planSeconds, ...r, holeBlocks: Math.ceil(size / USED_BLOCK) - r.dataBlocks, readBytes };
  } finally {
    await pool.close();
    await fh.close();
  }
}

/** Build FAT32 and NTFS filesystems of the ext4 partition's size holding the same staged files. */
async function buildOtherFs(partBytes: number): Promise<void> {
  await run('mkfs.fat', ['-F', '32', '-C', p.vfat, String(Math.floor(partBytes / 1024))]);
  await sh(`cd ${q(p.stage)} && mcopy -s -D o -i ${q(p.vfat)} * ::/`);
  await run('truncate', ['-s', String(partBytes), p.ntfs]);
  await run('mkntfs', ['-F', '-Q', '-q', p.ntfs]);
  // ntfscp copies one file per run (no mounting): the staged tree goes in as one tar file
  await run('tar', ['-cf', p.tar, '-C', p.stage, '.']);
  await run('ntfscp', ['-q', p.ntfs, p.tar, 'stage.tar']);
  rmSync(p.tar, { force: true });
}

async function usedBlocksPart(d: Awaited<ReturnType<typeof buildDisk>>): Promise<Record<string, unknown>[]> {
  console.log(`\n== used blocks: the same ${mb(d.staged)} MB on ext4, FAT32 and NTFS (${mb(d.partBytes)} MB each) …`);
  await buildOtherFs(d.partBytes);
  rmSync(p.stage, { recursive: true, force: true });
  const fss = [
    { fs: 'ext4', file: p.fs, tool: 'partclone.ext4' },
    { fs: 'vfat (FAT32)', file: p.vfat, tool: 'partclone.vfat' },
    { fs: 'ntfs', file: p.ntfs, tool: 'partclone.ntfs' },
  ];
  const results: Record<string, unknown>[] = [];
  for (const f of fss) {
    const ours: number[] = [];
    const theirs: number[] = [];
    let cap: UsedCapture | undefined;
    let pcUsed = NaN;
    for (let rep = 0; rep < repeat; rep++) {
      allCold = (await dropCaches()) && allCold;
      let c: UsedCapture | undefined;
      ours.push(await timed(async () => { c = await captureUsed(f.file, p.ustore); }));
      cap = c;
      allCold = (await dropCaches()) && allCold;
      theirs.push(await timed(() => sh(`${f.tool} -c -s ${q(f.file)} -o - -L ${q(p.log)} 2>/dev/null | zstd -3 -T2 -q -f -o ${q(p.pcl)} && sync ${q(p.pcl)}`)));
      const log = await run('cat', [p.log], { stdout: true });
      const used = /Space in use:.*=\s*(\d+) Blocks/.exec(log);
      const bs = /Block size:\s*(\d+) Byte/.exec(log);
      pcUsed = used && bs ? Number(used[1]) * Number(bs[1]) : NaN;
      console.log(`  [${rep + 1}/${repeat}] ${f.fs.padEnd(13)} rackcast used blocks ${ours[rep]!.toFixed(2).padStart(6)} s   ${f.tool} | zstd ${theirs[rep]!.toFixed(2).padStart(6)} s`);
    }
    const c = cap as UsedCapture;
    const row = {
      fs: f.fs, policy: c.alloc.policy, reason: c.alloc.reason, fsBytes: d.partBytes,
      usedBytes: c.alloc.usedBytes, partcloneUsedBytes: pcUsed,
      rackcast: { seconds: Math.min(...ours), planSeconds: c.planSeconds, storedBytes: c.stored, chunks: c.chunks, dataBlocks: c.dataBlocks, holeBlocks: c.holeBlocks, readBytes: c.readBytes },
      partclone: { seconds: Math.min(...theirs), bytes: size(p.pcl) },
    };
    results.push(row);
    rmSync(p.ustore, { recursive: true, force: true });
    rmSync(p.pcl, { force: true });
  }
  console.log(`\nbest of ${repeat}; MB = 10^6 bytes; rackcast = plan (services/image/fs) + read used 4 MiB blocks + chunk workers (SHA-256, zstd -3, chunk files) + sync;`);
  console.log('capture.ts does not plan used blocks yet, so this drives its worker pool directly; rival = partclone.<fs> -c | zstd -3 -T2 + sync');
  const rows = [['filesystem', 'used MB', 'partclone used MB', 'rackcast s', 'partclone|zstd s', 'rackcast MB', 'partclone|zstd MB', 'size ratio', 'speed ratio']];
  for (const r of results) {
    const rc = r.rackcast as { seconds: number; storedBytes: number };
    const pc = r.partclone as { seconds: number; bytes: number };
    rows.push([String(r.fs), mb(r.usedBytes as number), mb(r.partcloneUsedBytes as number), rc.seconds.toFixed(2), pc.seconds.toFixed(2), mb(rc.storedBytes), mb(pc.bytes),
      `${(rc.storedBytes / pc.bytes).toFixed(3)}×`, `${(pc.seconds / rc.seconds).toFixed(2)}×`]);
  }
  printTable(rows);
  for (const r of results) {
    const rc = r.rackcast as { seconds: number; storedBytes: number; planSeconds: number; dataBlocks: number; holeBlocks: number; readBytes: number };
    const pc = r.partclone as { seconds: number; bytes: number };
    const sizeOk = rc.storedBytes <= 1.05 * pc.bytes;
    const timeOk = rc.seconds <= pc.seconds;
    console.log(`  ${String(r.fs).padEnd(13)} size ${sizeOk ? 'goal met' : 'goal MISSED'} (≤ 1.05× partclone|zstd), time ${timeOk ? 'goal met' : 'goal MISSED'} (≤ 1.0×); ` +
      `plan ${rc.planSeconds.toFixed(2)} s, read ${mb(rc.readBytes)} MB, ${rc.dataBlocks} data + ${rc.holeBlocks} hole blocks; ${String(r.reason)}`);
  }
  console.log('speed ratio > 1.00× means rackcast is faster; size ratio < 1.00× means rackcast is smaller. NTFS holds the files as one tar (ntfscp, no mount).');
  if (!allCold) console.log('note: the page cache could not be dropped before every step; some timings may be warm');
  return results;
}


try {
  const nproc = (await run('nproc', [], { stdout: true })).trim();
  const zstdCli = /v[\d.]+/.exec(await run('zstd', ['--version'], { stdout: true }))?.[0] ?? '?';
  console.log(`machine: nproc ${nproc}; zstd CLI ${zstdCli}; rackcast's libzstd (zstd-napi) v${ZSTD_VERSION}; node ${process.version}`);
  console.log(`building the disk in ${dir} (copying ~${fillMb} MB from /usr) …`);
  const d = await buildDisk();
  console.log(`disk: ${mb(DISK_BYTES)} MB (1 GiB) sparse, ${mb(allocated(p.disk))} MB allocated; GPT + ext4 partition of ${mb(d.partBytes)} MB at 1 MiB; ` +
    `${d.files} files, ${mb(d.staged)} MB copied from /usr; ext4 uses ${mb(d.fsUsed)} MB`);
  const diskJson = v['used-only'] ? undefined : await diskPart(d, nproc, zstdCli);
  const usedJson = await usedBlocksPart(d);
  if (v.json) {
    writeFileSync(v.json, JSON.stringify({ ...(diskJson ?? {}), usedBlocks: usedJson }, null, 2) + '\n');
    console.log(`results written to ${v.json}`);
  }
} finally {
  cleanup();
}
