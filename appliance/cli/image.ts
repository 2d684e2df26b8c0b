// `rackcast image …`: capture, restore, fit, verify, list, info, rm, gc, export, import.
import { parseArgs } from 'node:util';
import { RackcastError } from '../../services/errors.ts';
import { ImageStore, captureImage, restoreImage, verifyChunks } from '../../services/image/index.ts';
import { exportImage, importImage } from '../../services/image/export.ts';
import { fitImage } from '../../services/image/fit.ts';
import { fmtBytes, fmtRate, progressBar } from './progress.ts';
import { dataDirFrom } from './main.ts';

export const IMAGE_USAGE = `  image capture SOURCE --name NAME [--block-size 4M] [--level 3] [--raw] [--force]
                                capture a disk (block device or file) into a new image: only what
                                ext2/3/4, FAT and NTFS use (--raw: every byte); --force: a mounted
                                source, and the allocation maps of filesystems that are not clean
  image restore NAME TARGET [--discard] [--delta] [--grow] [--no-preverify]
                                write an image onto a disk or file, bit-exact; --delta: hash
                                the target first and write only the blocks that differ;
                                --grow: on a larger disk, grow the last partition and its
                                filesystem (ext2/3/4, NTFS) to fill it
  image fit NAME --size SIZE [--as NEW]
                                make a variant of an image for a smaller disk (e.g. 20G): the
                                last partition's filesystem is shrunk and the table rewritten;
                                refused, saying the bytes needed, when the data does not fit
  image verify NAME [--json]    check signature and every chunk of an image
  image list [--json]           list images
  image info NAME [--json]      show an image's disk, partitions and storage
  image rm NAME                 delete an image (its chunks go at the next gc)
  image gc [--grace SECONDS]    delete chunks no image uses (default grace 3600 s)
  image export NAME FILE        write an image and its chunks into one file (- = stdout)
  image import FILE [--name N] [--trusted-only]
                                add an exported image to this store (- = stdin)`;

const common = {
  store: { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean' },
  name: { type: 'string' },
  'block-size': { type: 'string' },
  level: { type: 'string' },
  force: { type: 'boolean' },
  raw: { type: 'boolean' },
  delta: { type: 'boolean' },
  grow: { type: 'boolean' },
  size: { type: 'string' },
  as: { type: 'string' },
  discard: { type: 'boolean' },
  'no-preverify': { type: 'boolean' },
  grace: { type: 'string' },
  'trusted-only': { type: 'boolean' },
} as const;

export function parseSize(s: string): number {
  const m = /^(\d+)\s*([kmgt]?)(i?b)?$/i.exec(s.trim());
  if (!m) throw new RackcastError('RC_ERR_USAGE', `not a size: "${s}" (e.g. 1M, 4096)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Number(m[1]) * mult;
}

function positional(args: string[], n: number, usage: string): string[] {
  if (args.length !== n) throw new RackcastError('RC_ERR_USAGE', `usage: rackcast image ${usage}`);
  return args;
}

const out = (s: string): void => { process.stdout.write(s + '\n'); };

export async function imageCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = argv;
  const { values: v, positionals: pos } = parseArgs({ args: rest, options: common, allowPositionals: true, strict: true });
  const store = (): ImageStore => ImageStore.open(dataDirFrom(v, env));
  const bar = progressBar();
  switch (sub) {
    case 'capture': {
      const [source] = positional(pos, 1, 'capture SOURCE --name NAME');
      if (!v.name) throw new RackcastError('RC_ERR_USAGE', 'image capture needs --name NAME');
      const level = v.level ? Number(v.level) : undefined;
      if (level !== undefined && !(Number.isInteger(level) && level >= 1 && level <= 19)) throw new RackcastError('RC_ERR_USAGE', '--level must be 1…19');
      const r = await captureImage({
        store: store(), source: source as string, name: v.name, force: v.force ?? false, usedOnly: !v.raw,
        ...(v['block-size'] ? { blockSize: parseSize(v['block-size']) } : {}), ...(level ? { level } : {}),
        onPlan: (plan) => {
          if (!plan) return;
          for (const p of plan.partitions) out(`  partition ${String(p.index).padStart(2)}  ${p.policy.padEnd(6)} ${fmtBytes(p.usedBytes).padStart(10)} used  ${p.reason}`);
          out(`  reading ${fmtBytes(plan.readBytes)} of the disk`);
        },
        onProgress: (p) => bar.update(p.done, p.total, 'capture'),
      });
      bar.done();
      const m = r.image.manifest;
      out(`captured ${m.name}: ${fmtBytes(m.disk.size)} disk, ${m.stats.dataBlocks} data blocks, ${m.stats.holeBlocks} holes; ` +
        `${r.newChunks} new chunks (${fmtBytes(r.newBytes)}), ${r.reusedChunks} already stored; ${r.seconds.toFixed(1)} s, ${fmtRate(m.disk.size / r.seconds)}`);
      out(`digest ${r.image.digest}`);
      return 0;
    }
    case 'restore': {
      const [name, target] = positional(pos, 2, 'restore NAME TARGET');
      const r = await restoreImage({
        store: store(), name: name as string, target: target as string, discard: v.discard ?? false, preverify: !v['no-preverify'], delta: v.delta ?? false, grow: v.grow ?? false,
        onProgress: (p) => bar.update(p.done, p.total, p.phase),
      });
      bar.done();
      out(`restored ${r.image} onto ${r.target}: ${fmtBytes(r.bytesWritten)} of data, ${r.holes} holes ${v.discard ? 'discarded' : 'zeroed'}; ${r.seconds.toFixed(1)} s`);
      if (r.skippedBytes !== undefined) out(`delta: ${fmtBytes(r.skippedBytes)} already matched the image and were not written`);
      if (r.table) out(`partition table: ${r.table}`);
      if (r.grow) out(`grow: ${r.grow.reason}${r.grow.tools?.length ? ` (${r.grow.tools.join('; ')})` : ''}`);
      if (r.discard) out(`note: ${r.discard}`);
      return 0;
    }
    case 'fit': {
      const [name] = positional(pos, 1, 'fit NAME --size SIZE [--as NEW]');
      if (!v.size) throw new RackcastError('RC_ERR_USAGE', 'image fit needs --size SIZE (bytes, or e.g. 20G)');
      const ac = new AbortController();
      const onSig = (): void => ac.abort();
      process.once('SIGINT', onSig);
      process.once('SIGTERM', onSig);
      try {
        const r = await fitImage({ store: store(), name: name as string, size: parseSize(v.size), ...(v.as ? { as: v.as } : {}), signal: ac.signal, onProgress: (p) => bar.update(p.done, p.total, p.phase) });
        bar.done();
        for (const t of r.tools) out(`  ${t}`);
        out(`fitted ${r.from} to ${fmtBytes(r.size)} as ${r.image.manifest.name}: partition ${r.partition} ${fmtBytes(r.oldSize)} → ${fmtBytes(r.newSize)}` +
          `${r.minimum !== undefined ? ` (${r.filesystem} minimum ${fmtBytes(r.minimum)})` : ''}; ${r.newChunks} new chunks (${fmtBytes(r.newBytes)}); ${r.seconds.toFixed(1)} s`);
        out(`digest ${r.image.digest}`);
        return 0;
      } finally {
        process.off('SIGINT', onSig);
        process.off('SIGTERM', onSig);
      }
    }
    case 'verify': {
      const [name] = positional(pos, 1, 'verify NAME');
      const s = store();
      const img = s.open(name as string);
      const r = await verifyChunks(s, img, { onProgress: (p) => bar.update(p.done, p.total, 'verify') });
      bar.done();
      if (v.json) out(JSON.stringify({ ...r, ok: r.problems.length === 0 }, null, 2));
      else if (r.problems.length === 0) out(`${r.image}: OK (signature by ${img.sig.keyId}, ${r.chunks} chunks verified)`);
      else for (const p of r.problems) out(`${r.image}: ${p.code === 'RC_ERR_CHUNK_MISSING' ? 'MISSING' : 'CORRUPT'} chunk ${p.chunk}: ${p.message}`);
      if (r.problems.length) process.stderr.write(`rackcast: image ${r.image} has ${r.problems.length} bad chunk(s) [RC_ERR_CHUNK_CORRUPT]\n`);
      return r.problems.length ? 1 : 0;
    }
    case 'list': {
      positional(pos, 0, 'list');
      const s = store();
      const list = s.names().map((n) => s.summary(n));
      if (v.json) { out(JSON.stringify(list, null, 2)); return 0; }
      if (!list.length) { out('no images'); return 0; }
      out(`${'NAME'.padEnd(24)} ${'DISK'.padStart(10)} ${'STORED'.padStart(10)} ${'CREATED'.padEnd(24)} DIGEST`);
      for (const i of list) out(`${i.name.padEnd(24)} ${fmtBytes(i.diskSize).padStart(10)} ${fmtBytes(i.storedBytes).padStart(10)} ${i.createdAt.padEnd(24)} ${i.digest.slice(0, 19)}`);
      return 0;
    }
    case 'info': {
      const [name] = positional(pos, 1, 'info NAME');
      const s = store();
      const img = s.open(name as string);
      const sum = s.summary(name as string, img);
      const m = img.manifest;
      if (v.json) { out(JSON.stringify({ ...sum, signature: { keyId: img.sig.keyId, importedFrom: img.sig.importedFrom }, manifest: { ...m, extents: undefined } }, null, 2)); return 0; }
      out(`image      ${m.name}\ndigest     ${img.digest}\nsigned by  ${img.sig.keyId}${img.sig.importedFrom ? ` (imported; originally ${img.sig.importedFrom.keyId})` : ''}`);
      out(`created    ${m.createdAt} from ${m.source.path} (${m.source.kind})`);
      if (m.derivedFrom) out(`derived    from ${m.derivedFrom.image} (${m.derivedFrom.digest.slice(0, 19)}): ${m.derivedFrom.note}`);
      out(`disk       ${fmtBytes(m.disk.size)} (${m.disk.size} bytes), ${m.disk.sectorSize}-byte sectors`);
      out(`blocks     ${m.stats.blocks} × ${fmtBytes(m.blockSize)}: ${m.stats.dataBlocks} data, ${m.stats.holeBlocks} holes, ${m.stats.uniqueChunks} unique`);
      out(`stored     ${fmtBytes(sum.storedBytes)} (zstd level ${m.compression.level}; ${(m.disk.size / Math.max(1, sum.storedBytes)).toFixed(1)}× smaller than the disk)`);
      out(`table      ${m.partitionTable.kind}${m.partitionTable.diskId ? ` ${m.partitionTable.diskId}` : ''}`);
      for (const p of m.partitionTable.partitions) out(`  ${String(p.index).padStart(2)}  start ${String(p.start).padStart(12)}  size ${fmtBytes(p.size).padStart(10)}  type ${p.type}${p.name ? `  "${p.name}"` : ''}${p.bootable ? '  boot' : ''}`);
      for (const w of m.partitionTable.warnings) out(`  warning: ${w}`);
      return 0;
    }
    case 'rm': {
      const [name] = positional(pos, 1, 'rm NAME');
      store().remove(name as string);
      out(`removed ${name} (run "rackcast image gc" to free its chunks)`);
      return 0;
    }
    case 'gc': {
      positional(pos, 0, 'gc');
      const grace = v.grace === undefined ? undefined : Number(v.grace);
      if (grace !== undefined && !(grace >= 0)) throw new RackcastError('RC_ERR_USAGE', '--grace must be a number of seconds ≥ 0');
      const r = store().gc(grace === undefined ? {} : { graceMs: grace * 1000 });
      out(`gc: removed ${r.removedChunks} chunks (${fmtBytes(r.removedBytes)}), kept ${r.keptChunks}, removed ${r.removedTemp} leftovers`);
      return 0;
    }
    case 'export': {
      const [name, file] = positional(pos, 2, 'export NAME FILE');
      const r = await exportImage(store(), name as string, file as string, (p) => bar.update(p.done, p.total, 'export'));
      bar.done();
      if (file !== '-') out(`exported ${name} to ${file}: ${fmtBytes(r.bytes)}, ${r.chunks} chunks`);
      return 0;
    }
    case 'import': {
      const [file] = positional(pos, 1, 'import FILE [--name NEW]');
      const img = await importImage(store(), file as string, { ...(v.name ? { name: v.name } : {}), trustedOnly: v['trusted-only'] ?? false, onProgress: (p) => bar.update(p.done, p.total, 'import') });
      bar.done();
      out(`imported ${img.manifest.name}: digest ${img.digest}`);
      return 0;
    }
    default:
      throw new RackcastError('RC_ERR_USAGE', `unknown image command "${sub ?? ''}" (capture, restore, fit, verify, list, info, rm, gc, export, import)`);
  }
}
