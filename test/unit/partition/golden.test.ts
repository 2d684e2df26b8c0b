// Golden vectors from real partition tables written by util-linux sfdisk.
//
// With sfdisk installed, each case writes a table to a sparse file and checks readPartitionTable
// against `sfdisk --json`. The stored fixtures in test/fixtures/partition (the table's sectors
// plus the expected parse and sfdisk's own view) make the same check without sfdisk.
// UPDATE_GOLDEN=1 regenerates the fixtures from sfdisk.

import { describe, it, expect, afterAll } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readPartitionTable, type PartitionTable, type ReadAt } from '../../../services/image/partition/table.ts';
import { memDisk } from './helpers.ts';

const FIXTURES = fileURLToPath(new URL('../../fixtures/partition/', import.meta.url));
const UPDATE = process.env['UPDATE_GOLDEN'] === '1';
const DISK_SIZE = 64 * 1024 * 1024;

interface SfdiskPartition { index: number; start: number; size: number; type: string; uuid?: string; name?: string; attrs?: string; bootable?: boolean }
interface SfdiskView { label: string; id: string; sectorsize: number; partitions: SfdiskPartition[] }
interface Fixture { source: string; diskSize: number; sectorSize: number; regions: Array<{ offset: number; length: number }>; sfdisk: SfdiskView; expected: unknown }

interface Case {
  name: string;
  sectorSize: number;
  script: (file: string) => string;
  /** Which byte ranges of the disk the fixture keeps. */
  regions: (t: PartitionTable) => Array<{ offset: number; length: number }>;
}

const gptScript = (sectorHeader: string, unit: number) => (file: string): string => [
  'label: gpt', 'label-id: 5C2F1E40-8A3B-4D6E-9F10-1A2B3C4D5E6F', sectorHeader,
  `${file}1 : start=${2048 / unit}, size=${8192 / unit}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=11111111-2222-3333-4444-555555555555, name="EFI System", attrs="RequiredPartition LegacyBIOSBootable GUID:60"`,
  `${file}2 : start=${10240 / unit}, size=${20480 / unit}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=22222222-3333-4444-5555-666666666666, name="rootfs"`,
  // Slot 3 left empty on purpose: Linux numbering keeps the gap.
  `${file}4 : start=${30720 / unit}, size=${4096 / unit}, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, uuid=33333333-4444-5555-6666-777777777777, name="données swap"`,
  '',
].join('\n');

/** GPT fixture: LBA 0..(2 + array) at the start and array + header at the end. */
const gptRegions = (ss: number) => (): Array<{ offset: number; length: number }> => {
  const array = Math.ceil((128 * 128) / ss);
  return [{ offset: 0, length: (2 + array) * ss }, { offset: DISK_SIZE - (1 + array) * ss, length: (1 + array) * ss }];
};

const CASES: Case[] = [
  { name: 'gpt-512', sectorSize: 512, script: gptScript('', 1), regions: gptRegions(512) },
  {
    name: 'mbr-512',
    sectorSize: 512,
    script: () => [
      'label: dos', 'label-id: 0x1234abcd',
      'start=2048, size=20480, type=83, bootable',
      'start=22528, size=81920, type=5',
      'start=24576, size=10240, type=83',
      'start=36864, size=20480, type=82',
      'start=104448, size=8192, type=c',
      '',
    ].join('\n'),
    regions: (t) => t.raw.map((r) => ({ offset: r.offset, length: r.data.length })), // sector 0 + EBRs
  },
  { name: 'gpt-4096', sectorSize: 4096, script: gptScript('sector-size: 4096', 8), regions: gptRegions(4096) },
];

const haveSfdisk = spawnSync('sfdisk', ['--version'], { encoding: 'utf8' }).status === 0;
const tmp = haveSfdisk ? fs.mkdtempSync(path.join(os.tmpdir(), 'rc-test-')) : '';
afterAll(() => { if (tmp !== '') fs.rmSync(tmp, { recursive: true, force: true }); });

function sfdisk(args: string[], input?: string): string {
  return execFileSync('sfdisk', args, { input, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' }, stdio: ['pipe', 'pipe', 'pipe'] });
}

/**
 * sfdisk on a regular file uses 512-byte sectors whatever the script says (util-linux ≤ 2.39), so
 * a 4K case is written through a loop device with 4096-byte logical sectors (root; this test
 * attaches it and detaches it again).
 */
function onDevice<T>(file: string, sectorSize: number, f: (dev: string) => T): T {
  if (sectorSize === 512) return f(file);
  const dev = execFileSync('losetup', ['--find', '--show', '--sector-size', String(sectorSize), file], { encoding: 'utf8' }).trim();
  try { return f(dev); } finally { execFileSync('losetup', ['-d', dev]); }
}

function makeDisk(c: Case): { file: string; view: SfdiskView } {
  const file = path.join(tmp, `${c.name}.img`);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, DISK_SIZE); // sparse
  const json = onDevice(file, c.sectorSize, (dev) => {
    sfdisk(['--no-reread', '--no-tell-kernel', '-q', dev], c.script(dev));
    return sfdisk(['--json', dev]);
  });
  const pt = JSON.parse(json).partitiontable as Omit<SfdiskView, 'partitions'> & { partitions: Array<Omit<SfdiskPartition, 'index'> & { node: string }> };
  const partitions = pt.partitions.map(({ node, ...p }) => ({ ...p, index: Number(/(\d+)$/.exec(node)?.[1]) }));
  return { file, view: { label: pt.label, id: pt.id, sectorsize: pt.sectorsize, partitions } };
}

const canLoop = process.getuid?.() === 0 && spawnSync('losetup', ['-f'], { stdio: 'ignore' }).status === 0;
const sfdisk4k = ((): { ok: boolean; why: string } => {
  if (!haveSfdisk) return { ok: false, why: 'sfdisk is not installed' };
  if (!canLoop) return { ok: false, why: '4K sectors need a loop device with --sector-size 4096 (root)' };
  const { view } = makeDisk(CASES.find((x) => x.name === 'gpt-4096')!);
  return view.sectorsize === 4096 ? { ok: true, why: '' } : { ok: false, why: `sfdisk reported ${view.sectorsize}-byte sectors on a 4K loop device` };
})();

function fileReader(file: string): { read: ReadAt; close: () => void } {
  const fd = fs.openSync(file, 'r');
  return {
    read: async (offset, length) => {
      const buf = Buffer.alloc(length);
      return buf.subarray(0, fs.readSync(fd, buf, 0, length, offset));
    },
    close: () => fs.closeSync(fd),
  };
}

const GPT_ATTR_NAMES: Record<string, number> = { RequiredPartition: 0, NoBlockIOProtocol: 1, LegacyBIOSBootable: 2 };
function attrsHex(attrs: string | undefined): string {
  let v = 0n;
  for (const word of (attrs ?? '').split(/\s+/).filter(Boolean)) {
    if (word.startsWith('GUID:')) for (const bit of word.slice(5).split(',')) v |= 1n << BigInt(bit);
    else v |= 1n << BigInt(GPT_ATTR_NAMES[word] ?? NaN);
  }
  return '0x' + v.toString(16).padStart(16, '0');
}

function expectMatchesSfdisk(t: PartitionTable, sf: SfdiskView): void {
  const gpt = sf.label === 'gpt';
  expect(t.kind).toBe(gpt ? 'gpt' : 'mbr');
  expect(t.sectorSize).toBe(sf.sectorsize);
  expect(t.diskId).toBe(sf.id.toLowerCase());
  const ss = t.sectorSize;
  expect(t.partitions.map((p) => ({ ...p, start: p.start / ss, size: p.size / ss }))).toEqual(sf.partitions.map((p) => ({
    index: p.index,
    start: p.start,
    size: p.size,
    type: gpt ? p.type.toLowerCase() : '0x' + p.type.padStart(2, '0').toLowerCase(),
    uuid: p.uuid?.toLowerCase(),
    name: p.name,
    attributes: gpt ? attrsHex(p.attrs) : undefined,
    bootable: gpt ? undefined : p.bootable === true,
  })));
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const summary = (t: PartitionTable): unknown => ({ ...t, raw: t.raw.map((r) => ({ offset: r.offset, length: r.data.length, sha256: sha256(r.data) })) });

describe('golden: live sfdisk disks', () => {
  for (const c of CASES) {
    const skip = !haveSfdisk ? 'sfdisk is not installed' : c.sectorSize === 4096 && !sfdisk4k.ok ? sfdisk4k.why : '';
    const title = `${c.name} matches sfdisk --json${skip ? ` — SKIPPED: ${skip}` : ''}`;
    (skip ? it.skip : it)(title, async () => {
      const { file, view } = makeDisk(c);
      const r = fileReader(file);
      try {
        const t = await readPartitionTable(r.read, DISK_SIZE, c.sectorSize);
        expect(t.warnings).toEqual([]);
        expectMatchesSfdisk(t, view);
        if (UPDATE) {
          const regions = c.regions(t);
          const bin = Buffer.concat(await Promise.all(regions.map((g) => r.read(g.offset, g.length))));
          const fixture: Fixture = { source: c.script('DISK'), diskSize: DISK_SIZE, sectorSize: c.sectorSize, regions, sfdisk: view, expected: summary(t) };
          fs.mkdirSync(FIXTURES, { recursive: true });
          fs.writeFileSync(path.join(FIXTURES, `${c.name}.bin`), bin);
          fs.writeFileSync(path.join(FIXTURES, `${c.name}.json`), JSON.stringify(fixture, null, 2) + '\n');
        }
      } finally {
        r.close();
      }
    });
  }
});

describe('golden: stored fixtures (no sfdisk needed)', () => {
  for (const c of CASES) {
    // The 4K fixture exists only if it was generated where sfdisk can write 4K labels.
    const present = fs.existsSync(path.join(FIXTURES, `${c.name}.json`)) || (UPDATE && (c.sectorSize !== 4096 || sfdisk4k.ok));
    const run = present || c.sectorSize !== 4096 ? it : it.skip;
    run(`${c.name} parses to the stored result and to what sfdisk said${present ? '' : ' — SKIPPED: no fixture'}`, async () => {
      const fixture = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${c.name}.json`), 'utf8')) as Fixture;
      const bin = fs.readFileSync(path.join(FIXTURES, `${c.name}.bin`));
      expect(bin.length).toBeLessThan(64 * 1024); // table sectors only (a 4K GPT with both arrays is 44 KiB)
      let at = 0;
      const regions = fixture.regions.map((g) => ({ offset: g.offset, data: bin.subarray(at, (at += g.length)) }));
      expect(at).toBe(bin.length);
      const t = await readPartitionTable(memDisk(fixture.diskSize, regions), fixture.diskSize, fixture.sectorSize);
      expect(summary(t)).toEqual(fixture.expected);
      expectMatchesSfdisk(t, fixture.sfdisk);
    });
  }
});
