// Benchmark: node:zlib's built-in zstd against zstd-napi on the same 1 MiB blocks, with the
// zstd CLI (single thread) on the same bytes as the yardstick. Prints MB/s and ratios.
// Usage: node scripts/bench/zstd.ts [MiB of sample data, default 64]
import { createRequire } from 'node:module';
import * as zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readdirSync, statSync, openSync, readSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const BLOCK = 1 << 20;
const LEVEL = 3;

/** Sample real data: regular files under /usr, concatenated, cut into 1 MiB blocks. */
function sample(totalMiB: number): Buffer[] {
  const out = Buffer.alloc(totalMiB * BLOCK);
  let off = 0;
  const walk = (dir: string): void => {
    let names: string[];
    try { names = readdirSync(dir); } catch { return; }
    for (const n of names) {
      if (off >= out.length) return;
      const p = join(dir, n);
      let st;
      try { st = statSync(p, { throwIfNoEntry: false }); } catch { continue; }
      if (!st) continue;
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && st.size > 0) {
        try {
          const fd = openSync(p, 'r');
          off += readSync(fd, out, off, Math.min(st.size, out.length - off), 0);
          closeSync(fd);
        } catch { /* unreadable: skip */ }
      }
    }
  };
  walk('/usr/lib');
  walk('/usr/share');
  const blocks: Buffer[] = [];
  for (let i = 0; i + BLOCK <= off; i += BLOCK) blocks.push(out.subarray(i, i + BLOCK));
  return blocks;
}

function time(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function best(runs: number, fn: () => void): number {
  let b = Infinity;
  for (let i = 0; i < runs; i++) b = Math.min(b, time(fn));
  return b;
}

const mib = Number(process.argv[2] ?? 64);
const blocks = sample(mib);
const bytes = blocks.length * BLOCK;
const mb = bytes / 1e6;
console.log(`sample: ${blocks.length} blocks of 1 MiB from /usr (level ${LEVEL}, single thread)`);

const zopts = { params: { [zlib.constants.ZSTD_c_compressionLevel]: LEVEL } };
const dopts = { chunkSize: BLOCK + 4096 };
const napi = require('zstd-napi') as typeof import('zstd-napi');
const comp = new napi.Compressor();
comp.setParameters({ compressionLevel: LEVEL });
const decomp = new napi.Decompressor();

let zc: Buffer[] = [];
let nc: Buffer[] = [];
const tZc = best(3, () => { zc = blocks.map((b) => zlib.zstdCompressSync(b, zopts)); });
const tNc = best(3, () => { nc = blocks.map((b) => comp.compress(b)); });
const tZd = best(3, () => { for (const c of zc) zlib.zstdDecompressSync(c, dopts); });
const tZdDefault = best(3, () => { for (const c of zc) zlib.zstdDecompressSync(c); });
const tNd = best(3, () => { for (const c of nc) decomp.decompress(c); });
const size = (a: Buffer[]): number => a.reduce((s, b) => s + b.length, 0);

// The CLI on the same bytes, as one file; best of 3 (includes process start, ~ms).
const dir = mkdtempSync(join(tmpdir(), 'rc-bench-zstd-'));
try {
  const raw = join(dir, 'raw');
  writeFileSync(raw, Buffer.concat(blocks));
  const tCc = best(3, () => execFileSync('zstd', ['-q', '-f', `-${LEVEL}`, '-T1', raw, '-o', `${raw}.zst`]));
  const tCd = best(3, () => execFileSync('zstd', ['-q', '-f', '-d', `${raw}.zst`, '-o', `${raw}.out`]));
  const csize = statSync(`${raw}.zst`).size;
  const row = (name: string, c: number, d: number, s: number): void =>
    console.log(`${name.padEnd(28)} compress ${(mb / c).toFixed(0).padStart(5)} MB/s (${(tCc / c).toFixed(2)}× CLI)` +
      `  decompress ${(mb / d).toFixed(0).padStart(5)} MB/s (${(tCd / d).toFixed(2)}× CLI)  ratio ${(bytes / s).toFixed(2)}`);
  row('zstd CLI -T1 (one stream)', tCc, tCd, csize);
  row('node:zlib sync', tZc, tZd, size(zc));
  console.log(`${'node:zlib sync, default chunk'.padEnd(28)} decompress ${(mb / tZdDefault).toFixed(0).padStart(5)} MB/s (${(tCd / tZdDefault).toFixed(2)}× CLI)`);
  row('zstd-napi', tNc, tNd, size(nc));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
