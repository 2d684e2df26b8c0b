// Benchmark: rackcast capture/restore against the usual tools on one realistic disk: a sparse
// 1 GiB file with a GPT and one ext4 partition (1 MiB to the end) holding ~600 MB copied from /usr.
//   rivals: zstd -3 -T2 of the raw disk (capture) and zstd -d of that (restore);
//           partclone.ext4 -c | zstd -3 -T2 (capture; reads only the filesystem's used blocks).
// rackcast capture is captureImage into an ImageStore, what `rackcast image capture` runs: it plans
// the disk with services/image/fs (partition table, ext4 block bitmaps) and reads only the used
// 4 MiB blocks; unused and all-zero blocks become holes.
// Every timed step starts cold (sync + drop_caches) and ends with its output on stable storage:
// rackcast syncs its store / fsyncs its target itself, so the rivals get `sync FILE` in their step.
// Second part, "used blocks" (issue 7): the same files on ext4, FAT32 and NTFS filesystems made in
// this run (bare filesystem images, which capture plans as one whole-disk filesystem); captureImage
// into a fresh store against `partclone.<fs> -c | zstd -3 -T2`, side by side, alternating, each
// step cold. The image's used bytes (its manifest's usedBlocks) are compared with partclone's
// "Space in use"; the first repetition's image is restored (untimed) and compared with the source.
// Prints best and median of --repeat runs and the load average before and after each part: on a
// shared machine the times are only as good as the load lets them be.
// Usage: node scripts/bench.ts image [--fill-mb 600] [--repeat 1] [--json FILE] [--used-only]
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore, captureImage, restoreImage } from '../../services/image/index.ts';
import { ZSTD_VERSION } from '../../services/image/zstd.ts';
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
add('rc', 'rackcast capture', 'capture', 'plans used blocks (GPT, ext4 bitmaps), reads only those; unused and zero blocks become holes');
add('zc', 'zstd -3 -T2 disk.img', 'capture', 'raw disk, one stream');
add('pc', 'partclone.ext4 | zstd -3 -T2', 'capture', 'ext4 partition only, reads used blocks only');
add('rr', 'rackcast restore', 'restore', 'pre-verify pass reads+hashes every chunk first');
add('rn', 'rackcast restore --no-preverify', 'restore', 'single pass');
add('zd', 'zstd -d disk.img.zst', 'restore', 'sparse output');
const best = (k: string): number => Math.min(...(C[k] as Contender).runs);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const med = (k: string): number => median((C[k] as Contender).runs);
/** The 1, 5 and 15 minute load averages, for the record: other work on the machine skews times. */
const load = (): number[] => loadavg().map((x) => Math.round(x * 100) / 100);
const loadText = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
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
  let rcImage = { storedBytes: 0, manifestBytes: 0, chunks: 0, readBytes: DISK_BYTES };
  const loadBefore = load();
  console.log(`\n== whole disk: capture and restore (load average ${loadText(loadBefore)}) …`);
  for (let r = 0; r < repeat; r++) {
    rmSync(p.store, { recursive: true, force: true }); // a fresh store each time: no chunk reuse
    const store = ImageStore.open(p.store);
    await step('rc', r, () => captureImage({ store, source: p.disk, name: 'bench' }));
    const img = store.open('bench');
    const sum = store.summary('bench', img);
    rcImage = { storedBytes: sum.storedBytes, manifestBytes: img.bytes.length, chunks: sum.uniqueChunks, readBytes: img.manifest.usedBlocks?.readBytes ?? DISK_BYTES };
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
  const loadAfter = load();
  const zstdSize = size(p.zst);
  Object.assign(C.rc as Contender, { read: rcImage.readBytes, output: rcImage.storedBytes });
  Object.assign(C.zc as Contender, { read: DISK_BYTES, output: zstdSize });
  Object.assign(C.pc as Contender, { read: d.fsUsed, output: size(p.pcl) });
  Object.assign(C.rr as Contender, { read: 2 * rcImage.storedBytes });
  Object.assign(C.rn as Contender, { read: rcImage.storedBytes });
  Object.assign(C.zd as Contender, { read: zstdSize });

  console.log(`\nload average before ${loadText(loadBefore)}, after ${loadText(loadAfter)} (1, 5, 15 min; nproc ${nproc})`);
  console.log(`best of ${repeat} (and median); MB = 10^6 bytes; disk MB/s = the 1 GiB disk (${DISK_BYTES} bytes) / seconds for every contender;`);
  console.log('read MB = data the contender actually reads (restore with pre-verify reads each chunk twice, the 2nd time mostly from cache)');
  const rows = [['contender', 'seconds', 'median s', 'disk MB/s', 'read MB', 'read MB/s', 'size MB', 'note']];
  for (const c of Object.values(C)) {
    rows.push([c.label, best(c.key).toFixed(2), med(c.key).toFixed(2), rate(DISK_BYTES, best(c.key)), mb(c.read), rate(c.read, best(c.key)),
      c.output === undefined ? '-' : mb(c.output), c.note]);
  }
  printTable(rows);
  console.log(`rackcast image: read ${mb(rcImage.readBytes)} MB of the disk (its plan), ${rcImage.chunks} chunks, ${mb(rcImage.storedBytes)} MB of chunk files (+ ${(rcImage.manifestBytes / 1024).toFixed(0)} KiB manifest, not counted)`);

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
    repeat, coldCache: allCold, identical: same, image: rcImage, load: { before: loadBefore, after: loadAfter },
    contenders: Object.values(C).map((c) => ({ ...c, seconds: best(c.key), medianSeconds: med(c.key), diskMBps: DISK_BYTES / MB / best(c.key), readMBps: c.read / MB / best(c.key) })),
    ratios: goals,
    goalsMet: { captureVsPartclone: goals.captureVsPartclone >= 1, captureVsZstd: goals.captureVsZstd >= 1, restoreVsZstdD: goals.restoreVsZstdD >= 1, sizeWithin5pct: goals.sizeVsZstd <= 1.05 },
  };
  return json;
}

// ------------------------------------------------------------------- part two: used blocks

interface UsedCapture {
  seconds: number; planSeconds: number; policy: string; reason: string; usedBytes: number;
  stored: number; chunks: number; dataBlocks: number; holeBlocks: number; readBytes: number; manifestBytes: number;
}

/**
 * `rackcast image capture FILE` as the CLI runs it: captureImage into a fresh store (plan with
 * services/image/fs, read the used 4 MiB blocks, chunk workers hash, compress with zstd -3 and
 * store, syncfs, signed manifest committed with fsync). Timed from the call to its return.
 */
async function captureUsed(file: string, root: string): Promise<UsedCapture> {
  rmSync(root, { recursive: true, force: true }); // a fresh store each time: no chunk reuse
  const store = ImageStore.open(root);
  allCold = (await dropCaches()) && allCold;
  let planSeconds = NaN;
  const t0 = performance.now();
  const r = await captureImage({ store, source: file, name: 'bench', onPlan: () => { planSeconds = (performance.now() - t0) / 1000; } });
  const seconds = (performance.now() - t0) / 1000;
  const m = r.image.manifest;
  const part = m.usedBlocks?.partitions[0];
  if (!m.usedBlocks || m.usedBlocks.partitions.length !== 1 || !part) throw new Error(`capture of ${file} did not plan one whole-disk filesystem`);
  return {
    seconds, planSeconds, policy: part.policy, reason: part.reason, usedBytes: part.usedBytes,
    stored: r.newBytes, chunks: r.newChunks, dataBlocks: m.stats.dataBlocks, holeBlocks: m.stats.holeBlocks,
    readBytes: m.usedBlocks.readBytes, manifestBytes: r.image.bytes.length,
  };
}

interface RestoreCheck { identical: boolean; differingBytes: number; differingNonZeroInRestore: number; fsckClean: boolean }

/**
 * Restore the image (untimed) and compare it with the source. Unused space may hold stale data
 * (mcopy leaves some in clusters the FAT marks free) that the image rightly does not keep, so a
 * difference is counted, the restore's side of it must be zeros (data we did not read, never
 * wrong data), and the restored filesystem must pass its checker (read-only).
 */
async function checkRestore(store: ImageStore, source: string, fsck: string[]): Promise<RestoreCheck> {
  rmSync(p.out, { force: true });
  await restoreImage({ store, name: 'bench', target: p.out });
  try {
    const out = await run('bash', ['-c', `cmp -l ${q(source)} ${q(p.out)} | awk '$3 != 0 { n++ } END { print NR, n + 0 }'`], { stdout: true });
    const [differingBytes, differingNonZeroInRestore] = out.trim().split(/\s+/).map(Number) as [number, number];
    let fsckClean = true;
    try { await run(fsck[0] as string, [...fsck.slice(1), p.out]); } catch { fsckClean = false; }
    return { identical: differingBytes === 0, differingBytes, differingNonZeroInRestore, fsckClean };
  } finally {
    rmSync(p.out, { force: true });
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

async function usedBlocksPart(d: Awaited<ReturnType<typeof buildDisk>>): Promise<{ rows: Record<string, unknown>[]; load: { before: number[]; after: number[] } }> {
  console.log(`\n== used blocks: the same ${mb(d.staged)} MB on ext4, FAT32 and NTFS (${mb(d.partBytes)} MB each) …`);
  await buildOtherFs(d.partBytes);
  rmSync(p.stage, { recursive: true, force: true });
  const fss = [
    { fs: 'ext4', file: p.fs, tool: 'partclone.ext4', fsck: ['e2fsck', '-fn'] },
    { fs: 'vfat (FAT32)', file: p.vfat, tool: 'partclone.vfat', fsck: ['fsck.fat', '-n'] },
    { fs: 'ntfs', file: p.ntfs, tool: 'partclone.ntfs', fsck: ['ntfsfix', '-n'] },
  ];
  const loadBefore = load();
  console.log(`load average ${loadText(loadBefore)} (1, 5, 15 min); each step cold; the two sides alternate which goes first`);
  const results: Record<string, unknown>[] = [];
  for (const f of fss) {
    const ours: number[] = [];
    const theirs: number[] = [];
    let cap: UsedCapture | undefined;
    let pcUsed = NaN;
    let restoreCheck: RestoreCheck | undefined;
    const partclone = async (): Promise<void> => {
      allCold = (await dropCaches()) && allCold;
      theirs.push(await timed(() => sh(`${f.tool} -c -s ${q(f.file)} -o - -L ${q(p.log)} 2>/dev/null | zstd -3 -T2 -q -f -o ${q(p.pcl)} && sync ${q(p.pcl)}`)));
      const log = await run('cat', [p.log], { stdout: true });
      const used = /Space in use:.*=\s*(\d+) Blocks/.exec(log);
      const bs = /Block size:\s*(\d+) Byte/.exec(log);
      pcUsed = used && bs ? Number(used[1]) * Number(bs[1]) : NaN;
    };
    const ourCapture = async (rep: number): Promise<void> => {
      cap = await captureUsed(f.file, p.ustore);
      ours.push(cap.seconds);
      if (rep === 0) restoreCheck = await checkRestore(ImageStore.open(p.ustore), f.file, f.fsck); // untimed
    };
    for (let rep = 0; rep < repeat; rep++) {
      if (rep % 2 === 0) { await ourCapture(rep); await partclone(); } else { await partclone(); await ourCapture(rep); }
      console.log(`  [${rep + 1}/${repeat}] ${f.fs.padEnd(13)} rackcast capture ${ours[rep]!.toFixed(2).padStart(6)} s   ${f.tool} | zstd ${theirs[rep]!.toFixed(2).padStart(6)} s   (load ${loadText(load())})`);
    }
    const c = cap as UsedCapture;
    const row = {
      fs: f.fs, policy: c.policy, reason: c.reason, fsBytes: d.partBytes,
      usedBytes: c.usedBytes, partcloneUsedBytes: pcUsed, usedMinusPartclone: c.usedBytes - pcUsed,
      identicalAfterRestore: restoreCheck?.identical, restoreCheck,
      rackcast: {
        seconds: Math.min(...ours), medianSeconds: median(ours), runs: ours, planSeconds: c.planSeconds, storedBytes: c.stored, chunks: c.chunks,
        dataBlocks: c.dataBlocks, holeBlocks: c.holeBlocks, readBytes: c.readBytes, manifestBytes: c.manifestBytes,
      },
      partclone: { seconds: Math.min(...theirs), medianSeconds: median(theirs), runs: theirs, bytes: size(p.pcl) },
    };
    results.push(row);
    rmSync(p.ustore, { recursive: true, force: true });
    rmSync(p.pcl, { force: true });
  }
  const loadAfter = load();
  console.log(`\nload average before ${loadText(loadBefore)}, after ${loadText(loadAfter)} (1, 5, 15 min)`);
  console.log(`best of ${repeat} (median in brackets); MB = 10^6 bytes; rackcast = captureImage into a fresh store (what \`rackcast image capture\` runs: plan, read the used 4 MiB blocks,`);
  console.log('SHA-256 + zstd -3 + chunk files in its workers, syncfs, signed manifest); rival = partclone.<fs> -c | zstd -3 -T2 + sync');
  const rows = [['filesystem', 'used MB', 'partclone used MB', 'rackcast s', 'partclone|zstd s', 'rackcast MB', 'partclone|zstd MB', 'size ratio', 'speed ratio']];
  const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
  const restoreText = (c: RestoreCheck): string => (c.identical ? 'identical to the source' :
    `${c.differingBytes} bytes differ from the source, ${c.differingNonZeroInRestore === 0 ? 'all zeros in the restore (unused space not kept)' : `${c.differingNonZeroInRestore} NOT zero in the restore`}`) +
    `, ${c.fsckClean ? 'fsck clean' : 'fsck FAILED'}`;
  for (const r of results) {
    const rc = r.rackcast as { seconds: number; medianSeconds: number; storedBytes: number };
    const pc = r.partclone as { seconds: number; medianSeconds: number; bytes: number };
    rows.push([String(r.fs), mb(r.usedBytes as number), mb(r.partcloneUsedBytes as number),
      `${rc.seconds.toFixed(2)} (${rc.medianSeconds.toFixed(2)})`, `${pc.seconds.toFixed(2)} (${pc.medianSeconds.toFixed(2)})`, mb(rc.storedBytes), mb(pc.bytes),
      `${(rc.storedBytes / pc.bytes).toFixed(3)}×`, `${ratio(pc.seconds, rc.seconds)} (${ratio(pc.medianSeconds, rc.medianSeconds)})`]);
  }
  printTable(rows);
  for (const r of results) {
    const rc = r.rackcast as { seconds: number; medianSeconds: number; storedBytes: number; planSeconds: number; dataBlocks: number; holeBlocks: number; readBytes: number };
    const pc = r.partclone as { seconds: number; medianSeconds: number; bytes: number };
    const sizeOk = rc.storedBytes <= 1.05 * pc.bytes;
    const time = (a: number, b: number): string => (a <= b ? 'met' : 'MISSED');
    console.log(`  ${String(r.fs).padEnd(13)} size goal ${sizeOk ? 'met' : 'MISSED'} (≤ 1.05× partclone|zstd); time goal (≤ 1.0×) best ${time(rc.seconds, pc.seconds)}, median ${time(rc.medianSeconds, pc.medianSeconds)}; ` +
      `used bytes − partclone's: ${String(r.usedMinusPartclone)}; restored: ${restoreText(r.restoreCheck as RestoreCheck)}; ` +
      `plan ready after ${rc.planSeconds.toFixed(2)} s, read ${mb(rc.readBytes)} MB, ${rc.dataBlocks} data + ${rc.holeBlocks} hole blocks; ${String(r.reason)}`);
  }
  console.log('speed ratio > 1.00× means rackcast is faster; size ratio < 1.00× means rackcast is smaller. NTFS holds the files as one tar (ntfscp, no mount);');
  console.log('used bytes − partclone\'s: we also keep what no allocation map describes and partclone does not count: on FAT the tail of the data area');
  console.log('shorter than one cluster, on NTFS the backup boot sector past the last cluster.');
  if (!allCold) console.log('note: the page cache could not be dropped before every step; some timings may be warm');
  return { rows: results, load: { before: loadBefore, after: loadAfter } };
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
  const used = await usedBlocksPart(d);
  if (v.json) {
    writeFileSync(v.json, JSON.stringify({ ...(diskJson ?? {}), usedBlocks: used.rows, usedBlocksLoad: used.load }, null, 2) + '\n');
    console.log(`results written to ${v.json}`);
  }
} finally {
  cleanup();
}
