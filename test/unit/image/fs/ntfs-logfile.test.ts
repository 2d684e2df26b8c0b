// NTFS $LogFile (issue 7): a volume whose journal Windows left unclean (fast startup, hibernation,
// a crash) has a $Bitmap that may be stale, so it is captured raw unless forced. Real mkntfs
// volumes; restart pages crafted after ntfs-3g's logfile.h layout and written where the
// $LogFile's first cluster lies (ntfsinfo -i 2 -v). Where ntfs-3g decides the same thing, its own
// read-write open (ntfscp) is the oracle: it refuses an unclean journal and accepts a clean one.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { closeSync, copyFileSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Allocation } from '../../../../services/image/fs/index.ts';
import { applyFixups, checkLogFile, decodeNtfsBoot, decodeRuns, recordAttributes, type LogVerdict } from '../../../../services/image/fs/ntfs.ts';
import { MiB, fileSet, hasTool, makeNtfs, markNtfsDirty, sh, shAll, tempDir, expectMarkersCovered, allocFile as alloc } from './helpers.ts';

const tools = hasTool('mkntfs') && hasTool('ntfscp') && hasTool('ntfsinfo') && hasTool('ntfscat') && hasTool('ntfstruncate');
const d = tools ? describe : describe.skip;

const SIZE = 48 * MiB;
const PAGE = 4096;

let work: string;
beforeAll(() => { work = tempDir('ntfslog'); });
afterAll(() => { rmSync(work, { recursive: true, force: true }); });

interface PageSpec {
  magic?: string;
  systemPageSize?: number;
  logPageSize?: number;
  major?: number;
  minor?: number;
  usaOfs?: number;
  usaCount?: number;
  usn?: number;
  chkdskLsn?: bigint;
  raOfs?: number;
  lsn?: bigint;
  clients?: number;
  freeList?: number;
  inUse?: number;
  flags?: number;
  raLength?: number;
  caOfs?: number;
  fileSize?: bigint;
  seqBits?: number;
  /** client record 0: prev / next */
  prev?: number;
  next?: number;
  /** protect the page with its update sequence (false: leave the sector ends as they are) */
  protect?: boolean;
}

const bitLength = (v: bigint): number => (v === 0n ? 0 : v.toString(2).length);

/**
 * A restart page as Windows writes one (update sequence at 0x1e, restart area at 0x30, one
 * client named "NTFS" whose record follows the 0x30-byte restart area), then `spec`'s changes,
 * then the update sequence applied: the last two bytes of every 512-byte stride saved in the
 * array and replaced by the sequence number.
 */
function restartPage(logSize: number, spec: PageSpec = {}): Buffer {
  const sps = spec.systemPageSize ?? PAGE;
  const p = Buffer.alloc(sps);
  p.write(spec.magic ?? 'RSTR', 0, 'latin1');
  const usaOfs = spec.usaOfs ?? 0x1e;
  const usaCount = spec.usaCount ?? 1 + sps / 512;
  p.writeUInt16LE(usaOfs, 4);
  p.writeUInt16LE(usaCount, 6);
  p.writeBigInt64LE(spec.chkdskLsn ?? 0n, 8);
  p.writeUInt32LE(sps, 0x10);
  p.writeUInt32LE(spec.logPageSize ?? PAGE, 0x14);
  const ra = spec.raOfs ?? 0x30;
  p.writeUInt16LE(ra, 0x18);
  p.writeInt16LE(spec.minor ?? 1, 0x1a);
  p.writeInt16LE(spec.major ?? 1, 0x1c);
  const fileSize = spec.fileSize ?? BigInt(logSize);
  const caOfs = spec.caOfs ?? 0x30;
  const clients = spec.clients ?? 1;
  const w16 = (at: number, v: number): void => { if (at + 2 <= sps) p.writeUInt16LE(v, at); };
  if (ra + 48 <= sps) {
    p.writeBigInt64LE(spec.lsn ?? 0x100000n, ra);
    w16(ra + 8, clients);
    w16(ra + 10, spec.freeList ?? 0xffff);
    w16(ra + 12, spec.inUse ?? 0);
    w16(ra + 14, spec.flags ?? 0);
    p.writeUInt32LE(spec.seqBits ?? 67 - bitLength(fileSize), ra + 16);
    w16(ra + 20, spec.raLength ?? (caOfs + clients * 160) & 0xffff);
    w16(ra + 22, caOfs);
    p.writeBigInt64LE(fileSize, ra + 24);
    w16(ra + 36, 0x30);
    w16(ra + 38, 0x40);
    const cr = ra + caOfs;
    if (cr + 160 <= sps) {
      p.writeBigInt64LE(0x0ff000n, cr);
      p.writeBigInt64LE(0x0ff000n, cr + 8);
      w16(cr + 16, spec.prev ?? 0xffff);
      w16(cr + 18, spec.next ?? 0xffff);
      p.writeUInt32LE(8, cr + 28);
      p.write('NTFS', cr + 32, 'utf16le');
    }
  }
  if (spec.protect !== false && usaOfs + usaCount * 2 <= sps) {
    const usn = spec.usn ?? 7;
    p.writeUInt16LE(usn, usaOfs);
    for (let i = 1; i < usaCount && i * 512 <= sps; i++) {
      p.writeUInt16LE(p.readUInt16LE(i * 512 - 2), usaOfs + 2 * i);
      p.writeUInt16LE(usn, i * 512 - 2);
    }
  }
  return p;
}

/** Tear a protected page: its third sector was not written (its sequence number is stale). */
function tear(p: Buffer): Buffer {
  p.writeUInt16LE(p.readUInt16LE(3 * 512 - 2) ^ 0x5555, 3 * 512 - 2);
  return p;
}

interface LogFileInfo { lcn: number; clusters: number; dataSize: number; clusterSize: number; recordAt: number; recordSize: number }

/** Where $LogFile lies, from ntfsinfo; checked against our own decode of MFT record 2. */
function locateLogFile(img: string): LogFileInfo {
  const out = sh('ntfsinfo', ['-i', '2', '-v', img]);
  const data = out.slice(out.indexOf('Dumping attribute $DATA (0x80)'));
  const m = /Runlist:\s+VCN\s+LCN\s+Length\s+0x0\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)/i.exec(data);
  const size = /Data size:\s+(\d+)/.exec(data);
  if (!m || !size) throw new Error(`cannot parse ntfsinfo:\n${out}`);
  expect(/Total runs: 1\b/.test(data)).toBe(true); // mkntfs writes it contiguously
  const disk = readFileSync(img);
  const boot = decodeNtfsBoot(disk.subarray(0, 512), disk.length);
  const recordAt = boot.mftLcn * boot.clusterSize + 2 * boot.recordSize;
  const rec = Buffer.from(disk.subarray(recordAt, recordAt + boot.recordSize));
  applyFixups(rec, 'record 2');
  const a = recordAttributes(rec, 'record 2').find((x) => x.type === 0x80 && x.nameLength === 0);
  if (!a) throw new Error('no $DATA in record 2');
  const runs = decodeRuns(rec, a, boot.clusters, '$LogFile');
  const info = { lcn: parseInt(m[1] as string, 16), clusters: parseInt(m[2] as string, 16), dataSize: Number(size[1]), clusterSize: boot.clusterSize, recordAt, recordSize: boot.recordSize };
  expect(runs.runs).toEqual([{ vcn: 0, lcn: info.lcn, length: info.clusters }]);
  expect(runs.dataSize).toBe(info.dataSize);
  return info;
}

d('NTFS $LogFile: unclean journals are captured raw unless forced', () => {
  let img: string;
  let log: LogFileInfo;
  let base: Allocation;
  let files: ReturnType<typeof fileSet>;
  let n = 0;

  beforeAll(async () => {
    img = join(work, 'base.img');
    files = fileSet('lg', 2, 1);
    makeNtfs(work, img, SIZE, [], files);
    log = locateLogFile(img);
    base = await alloc(img);
  });

  /** A copy of the volume with `pages` written into its $LogFile at their log offsets. */
  function withPages(pages: [number, Buffer][]): string {
    const copy = join(work, `v${n++}.img`);
    copyFileSync(img, copy);
    const fd = openSync(copy, 'r+');
    for (const [pos, page] of pages) {
      expect(pos + page.length).toBeLessThanOrEqual(log.dataSize);
      writeSync(fd, page, 0, page.length, log.lcn * log.clusterSize + pos);
    }
    closeSync(fd);
    return copy;
  }

  /** Does ntfs-3g open the volume read-write (its $LogFile check passes)? Uses a throwaway copy. */
  function ntfs3gAccepts(vol: string): { ok: boolean; out: string } {
    const copy = `${vol}.ntfs3g`;
    copyFileSync(vol, copy);
    const f = join(work, 'probe.txt');
    writeFileSync(f, 'probe\n');
    const r = shAll('ntfscp', [copy, f, 'probe.txt']);
    rmSync(copy);
    rmSync(f);
    return { ok: r.status === 0, out: r.out };
  }

  function expectRaw(a: Allocation, reason: RegExp): void {
    expect(a.policy).toBe('raw');
    expect(a.usedBytes).toBe(SIZE);
    expect(a.ranges).toEqual([[0, SIZE]]);
    expect(a.reason).toMatch(reason);
    expect(a.reason).toMatch(/cannot be trusted.*force to use it anyway/);
  }

  function expectBitmap(a: Allocation): void {
    expect(a.policy).toBe('ntfs');
    expect(a.usedBytes).toBe(base.usedBytes);
    expect(a.ranges).toEqual(base.ranges);
  }

  const FAST_STARTUP = /fast startup.*hibernation.*shutdown \/s \/f \/t 0/;

  it('mkntfs leaves $LogFile emptied (all 0xff): used-block policy as before', async () => {
    // what ntfs-3g reads as the file's content is what lies at the cluster ntfsinfo names
    const content = execFileSync('ntfscat', [img, '$LogFile'], { stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20 });
    const raw = readFileSync(img).subarray(log.lcn * log.clusterSize, log.lcn * log.clusterSize + log.dataSize);
    expect(content.length).toBe(log.dataSize);
    expect(content.equals(raw)).toBe(true);
    expect(raw.every((b) => b === 0xff)).toBe(true);
    expect((await checkLogFile(async (p, l) => raw.subarray(p, p + l), raw.length)).verdict).toBe('empty');
    expect(base.policy).toBe('ntfs');
    expect(base.reason).not.toMatch(/FORCED|LogFile/);
    expectMarkersCovered(img, base.ranges, files);
    expect(ntfs3gAccepts(img).ok).toBe(true);
  });

  it('an unclean restart page (a client in use, not marked clean) → raw with the fast-startup reason; force → the bitmap', async () => {
    const vol = withPages([[0, restartPage(log.dataSize, { inUse: 0, flags: 0 })]]);
    const oracle = ntfs3gAccepts(vol);
    expect(oracle.ok).toBe(false);
    expect(oracle.out).toMatch(/unclean file system \(0, 0\)/);
    const a = await alloc(vol);
    expectRaw(a, FAST_STARTUP);
    expect(a.reason).toMatch(/\$LogFile is unclean .*client_in_use_list 0, flags 0x0/);
    const forced = await alloc(vol, true);
    expectBitmap(forced);
    expect(forced.reason).toMatch(/FORCED although its \$LogFile is unclean/);
    expect(forced.reason).not.toMatch(/marked dirty/);
  });

  it('RESTART_VOLUME_IS_CLEAN set, or no client in use → clean (ntfs-3g agrees)', async () => {
    for (const spec of [{ inUse: 0, flags: 0x0002 }, { inUse: 0xffff, freeList: 0, flags: 0 }]) {
      const vol = withPages([[0, restartPage(log.dataSize, spec)]]);
      expect(ntfs3gAccepts(vol).ok).toBe(true);
      expectBitmap(await alloc(vol));
    }
  });

  it('version 2.0 (Windows 8+ keeps metadata cached) → raw even when marked clean, as ntfs-3g refuses it', async () => {
    const vol = withPages([[0, restartPage(log.dataSize, { major: 2, minor: 0, inUse: 0xffff, flags: 0x0002 })]]);
    const oracle = ntfs3gAccepts(vol);
    expect(oracle.ok).toBe(false);
    expect(oracle.out).toMatch(/Metadata kept in Windows cache/);
    expectRaw(await alloc(vol), FAST_STARTUP);
  });

  it('the two restart pages: the valid one with the higher LSN is current', async () => {
    const clean = (lsn: bigint): Buffer => restartPage(log.dataSize, { inUse: 0, flags: 2, lsn });
    const unclean = (lsn: bigint): Buffer => restartPage(log.dataSize, { inUse: 0, flags: 0, lsn });
    // first page torn, restart area inside the first sector, older than the second (clean): clean
    let vol = withPages([[0, tear(unclean(100n))], [PAGE, clean(200n)]]);
    expect(ntfs3gAccepts(vol).ok).toBe(true);
    expectBitmap(await alloc(vol));
    // torn page with a restart area past the first sector's fixup: invalid, the second is used
    vol = withPages([[0, tear(restartPage(log.dataSize, { inUse: 0, flags: 0, lsn: 300n, raLength: 0x400 }))], [PAGE, clean(200n)]]);
    expect(ntfs3gAccepts(vol).ok).toBe(true);
    expectBitmap(await alloc(vol));
    // the torn page is the newer one: not vouched for (ntfs-3g sees a BAAD current page)
    vol = withPages([[0, tear(clean(300n))], [PAGE, clean(200n)]]);
    expect(ntfs3gAccepts(vol).ok).toBe(false);
    expectRaw(await alloc(vol), /torn/);
    // both valid: the newer decides, whichever slot it is in
    vol = withPages([[0, clean(100n)], [PAGE, unclean(200n)]]);
    expect(ntfs3gAccepts(vol).ok).toBe(false);
    expectRaw(await alloc(vol), /restart page at 4096, LSN 200/);
    vol = withPages([[0, unclean(100n)], [PAGE, clean(200n)]]);
    expect(ntfs3gAccepts(vol).ok).toBe(true);
    expectBitmap(await alloc(vol));
  });

  it('no valid restart page → raw (the journal cannot be read); force → the bitmap', async () => {
    const bad = restartPage(log.dataSize, { inUse: 0, flags: 2, raLength: 0x400 });
    const vol = withPages([[0, tear(Buffer.from(bad))], [PAGE, tear(Buffer.from(bad))]]);
    expect(ntfs3gAccepts(vol).ok).toBe(false);
    const a = await alloc(vol);
    expectRaw(a, /\$LogFile cannot be read \(no valid restart page .*update sequence mismatch in sector 2/);
    const forced = await alloc(vol, true);
    expectBitmap(forced);
    expect(forced.reason).toMatch(/FORCED although its \$LogFile is unreadable/);
  });

  it('"CHKD" (chkdsk rewrote the restart page) → raw', async () => {
    for (const spec of [{ magic: 'CHKD', chkdskLsn: 500n, inUse: 0xffff, flags: 2 }, { magic: 'CHKD', chkdskLsn: 500n, usaCount: 0, protect: false, inUse: 0xffff, flags: 2 }]) {
      const vol = withPages([[0, restartPage(log.dataSize, spec)]]);
      expectRaw(await alloc(vol), /rewritten by chkdsk \(CHKD\)/);
    }
  });

  it('dirty $Volume and unclean journal: the dirty reason first; force names both', async () => {
    const vol = withPages([[0, restartPage(log.dataSize, { inUse: 0, flags: 0 })]]);
    markNtfsDirty(vol);
    expect((await alloc(vol)).reason).toMatch(/marked dirty/);
    const forced = await alloc(vol, true);
    expectBitmap(forced);
    expect(forced.reason).toMatch(/FORCED although marked dirty, FORCED although its \$LogFile is unclean/);
  });

  it('hostile restart pages: no crash, no huge allocation, raw with a reason', async () => {
    const ls = log.dataSize;
    const hostile: [string, Buffer, string][] = [
      ['system page size 0', restartPage(ls, { systemPageSize: PAGE, inUse: 0 }).fill(0, 0x10, 0x14), 'page sizes 0/4096 unsupported'],
      ['system page size 2^31', (() => { const p = restartPage(ls, { inUse: 0 }); p.writeUInt32LE(2 ** 31, 0x10); return p; })(), 'system page size 2147483648 larger than 65536'],
      ['system page size 1 GiB', (() => { const p = restartPage(ls, { inUse: 0 }); p.writeUInt32LE(1 << 30, 0x10); return p; })(), 'system page size 1073741824 larger'],
      ['system page size not a power of two', (() => { const p = restartPage(ls, { inUse: 0 }); p.writeUInt32LE(3000, 0x10); return p; })(), 'page sizes 3000/4096 unsupported'],
      ['log page size 0xffffffff', (() => { const p = restartPage(ls, { inUse: 0 }); p.writeUInt32LE(0xffffffff, 0x14); return p; })(), 'page sizes 4096/4294967295 unsupported'],
      ['restart area offset 0xfff8', restartPage(ls, { raOfs: 0xfff8, inUse: 0 }), 'restart area offset 65528'],
      ['restart area offset at the page end', restartPage(ls, { raOfs: PAGE, inUse: 0 }), 'restart area offset 4096'],
      ['restart area offset past the first sector', restartPage(ls, { raOfs: 0x1f0, inUse: 0 }), 'restart area offset 496 leaves no room in the first sector'],
      ['restart area offset unaligned', restartPage(ls, { raOfs: 0x34, inUse: 0 }), 'restart area offset 52'],
      ['65535 clients', restartPage(ls, { clients: 0xffff, inUse: 0 }), 'restart area of 65424 bytes (65535 clients) does not fit the 4096-byte page'],
      ['restart area length 0xffff', restartPage(ls, { raLength: 0xffff, inUse: 0 }), 'restart area of 65535 bytes (1 clients) does not fit'],
      ['client array offset 0xfff8', restartPage(ls, { caOfs: 0xfff8, inUse: 0 }), 'client array offset 65528'],
      ['in-use list past the clients', restartPage(ls, { inUse: 5 }), 'client lists (65535, 5) past 1 clients'],
      ['client list loops', restartPage(ls, { clients: 1, inUse: 0, next: 0 }), 'log client array is corrupt'],
      ['first client has a predecessor', restartPage(ls, { inUse: 0, prev: 0 }), 'log client array is corrupt'],
      ['update sequence count 0xffff', restartPage(ls, { usaCount: 0xffff, protect: false, inUse: 0 }), 'update sequence of 65535 entries'],
      ['update sequence offset 0xfffe', restartPage(ls, { usaOfs: 0xfffe, protect: false, inUse: 0 }), 'update sequence offset 65534'],
      ['version 7.7', restartPage(ls, { major: 7, minor: 7, inUse: 0 }), 'version 7.7 unsupported'],
      ['sequence number bits wrong', restartPage(ls, { seqBits: 3, inUse: 0, flags: 2 }), 'sequence number bits disagree'],
      ['chkdsk LSN on an RSTR page', restartPage(ls, { chkdskLsn: 9n, inUse: 0, flags: 2 }), 'chkdsk LSN set on a page chkdsk did not write'],
    ];
    for (const [name, page, problem] of hostile) {
      const vol = withPages([[0, page.subarray(0, Math.min(page.length, PAGE))]]);
      const a = await alloc(vol);
      expect([name, a.policy]).toEqual([name, 'raw']);
      expect(a.reason).toMatch(/\$LogFile cannot be read \(no valid restart page/);
      expect([name, a.reason.includes(`RSTR page at 0: ${problem}`)]).toEqual([name, true]);
      rmSync(vol);
    }
  });

  it('hostile $LogFile sizes in MFT record 2: raw with a reason, never a crash', async () => {
    const rec = Buffer.from(readFileSync(img).subarray(log.recordAt, log.recordAt + log.recordSize));
    applyFixups(rec, 'record 2');
    const a = recordAttributes(rec, 'record 2').find((x) => x.type === 0x80 && x.nameLength === 0);
    if (!a) throw new Error('no $DATA');
    const sizeAt = a.offset + 0x30;
    expect(sizeAt % 512).toBeLessThan(510 - 8); // not under a fixup word
    const initAt = a.offset + 0x38;
    expect(initAt % 512).toBeLessThan(510 - 8);
    // [data size, initialized size (undefined: unchanged)]
    const cases: [bigint, bigint | undefined, RegExp][] = [
      [4096n, undefined, /\$LogFile of 4096 bytes is too small/], // the journal check itself
      [2n ** 40n, 2n ** 40n, /\$LogFile: byte \d+ is not mapped by its data runs/], // probes past the runs
      [2n ** 40n, undefined, /\$LogFile cannot be read/], // past the initialized size: zeros, not a journal
      [2n ** 60n, undefined, /non-resident header out of range/],
      [BigInt(log.dataSize), 2n ** 63n, /\$LogFile \$DATA initialized size out of range/],
    ];
    for (const [size, init, reason] of cases) {
      const vol = join(work, `size${n++}.img`);
      copyFileSync(img, vol);
      const fd = openSync(vol, 'r+');
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(size);
      writeSync(fd, b, 0, 8, log.recordAt + sizeAt);
      if (init !== undefined) {
        b.writeBigUInt64LE(init);
        writeSync(fd, b, 0, 8, log.recordAt + initAt);
      }
      closeSync(fd);
      const got = await alloc(vol);
      expect(got.policy).toBe('raw');
      expect(got.reason).toMatch(reason);
      rmSync(vol);
    }
  });
});

describe('NTFS $LogFile check on random damage', () => {
  it('never throws and only ever answers with a verdict', async () => {
    const size = 64 * PAGE;
    const verdicts: LogVerdict[] = ['empty', 'clean', 'unclean', 'cached', 'chkdsk', 'torn', 'unreadable'];
    const seen = new Set<LogVerdict>();
    let x = 12345;
    const rnd = (n: number): number => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x % n; };
    for (let i = 0; i < 3000; i++) {
      const log = Buffer.alloc(size, 0xff);
      restartPage(size, { inUse: rnd(2) ? 0 : 0xffff, flags: rnd(2) * 2, lsn: 100n }).copy(log, 0);
      if (rnd(2)) restartPage(size, { inUse: 0, flags: 2, lsn: 200n }).copy(log, PAGE);
      for (let k = 1 + rnd(6); k > 0; k--) log[rnd(2 * PAGE)] = rnd(256);
      if (rnd(4) === 0) log.writeUInt16LE(rnd(0x10000), [0x04, 0x06, 0x18, 0x30 + 8, 0x30 + 20, 0x30 + 22][rnd(6)] as number);
      const reads: number[] = [];
      const s = await checkLogFile(async (p, l) => {
        reads.push(l);
        if (p < 0 || p + l > size) throw new Error(`read ${l} at ${p} outside the log`);
        return log.subarray(p, p + l);
      }, size);
      expect(verdicts).toContain(s.verdict);
      expect(Math.max(...reads)).toBeLessThanOrEqual(64 * 1024);
      seen.add(s.verdict);
    }
    for (const v of ['clean', 'unclean', 'unreadable', 'torn'] as LogVerdict[]) expect(seen).toContain(v);
  });
});
