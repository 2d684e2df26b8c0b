// rackcast.mode=selftest: prove the real data path works inside the boot environment. A small
// deterministic disk (MBR, random blocks, a duplicate block, zero blocks) is captured into an
// image store in tmpfs with the image code the deploys use (workers, zstd addon, signing), then
// restored onto a real disk, read back past the page cache and compared. It exercises what a
// bundling or packaging mistake would break: worker threads, the native addons (zstd; rcudp, whose
// absence a deploy's multicast receiver would only notice as a quiet fallback to node:dgram), sync,
// O_EXCL opens of a block device, holes that must be zeroed on the target.
import { createCipheriv, createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, existsSync, fsyncSync, mkdirSync, openSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { DiskWriter, ImageStore, captureImage, restoreImage } from '../../services/image/index.ts';
import { nativeIo } from '../../services/multicast/batch-io.ts';

/** Present only inside the boot environment (written by the build into the base initramfs). */
const BOOT_ENV_MARK = '/etc/rackcast/build-id';

export const BLOCK = 1 << 20;
/** 11 blocks and a partial one: the last block of a disk need not be whole. */
export const DISK_SIZE = 11 * BLOCK + 64 * 1024;
const ZERO_BLOCKS = [2, 7];
const DUPLICATE = { of: 1, at: 3 };

export interface SelftestResult { bytes: number; sha256: string; holes: number; chunks: number; captureSeconds: number; restoreSeconds: number }

/** The test disk: deterministic (AES-CTR keystream), so the host can check what landed on disk. */
export function selftestDisk(): Buffer {
  const key = createHash('sha256').update('rackcast-selftest').digest();
  const disk = Buffer.alloc(DISK_SIZE);
  createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(disk).copy(disk);
  for (const z of ZERO_BLOCKS) disk.fill(0, z * BLOCK, (z + 1) * BLOCK);
  disk.copy(disk, DUPLICATE.at * BLOCK, DUPLICATE.of * BLOCK, (DUPLICATE.of + 1) * BLOCK);
  disk.fill(0, 4 * BLOCK, 5 * BLOCK - 1); // all zero but its last byte: must not become a hole
  // An MBR with one Linux partition from sector 2048 to the end, so capture sees a real table.
  disk.fill(0, 0, 512);
  const sectors = DISK_SIZE / 512;
  disk[446] = 0x80;
  disk[446 + 4] = 0x83;
  disk.writeUInt32LE(2048, 446 + 8);
  disk.writeUInt32LE(sectors - 2048, 446 + 12);
  disk.writeUInt32LE(0x52434b54, 440);
  disk[510] = 0x55;
  disk[511] = 0xaa;
  return disk;
}

function readRange(path: string, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const fd = openSync(path, 'r');
  try {
    let done = 0;
    while (done < length) {
      const n = readSync(fd, buf, done, length - done, done);
      if (n === 0) throw new Error(`${path} ended after ${done} bytes`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return buf;
}

/** Make the region non-zero first, so a restore that forgot to zero holes is caught. */
function scribble(path: string, length: number): void {
  // O_EXCL on a block device: the kernel refuses while anything has it mounted or held.
  const fd = openSync(path, constants.O_RDWR | constants.O_EXCL);
  try {
    const junk = Buffer.alloc(BLOCK, 0xa5);
    for (let off = 0; off < length; off += BLOCK) writeSync(fd, junk, 0, Math.min(BLOCK, length - off), off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export async function runSelftest(o: { disk: string; tmpDir: string; log: (line: string) => void }): Promise<SelftestResult> {
  const io = nativeIo();
  if (io.error) throw new Error(io.error);
  o.log('selftest: rcudp datagram I/O addon loaded');
  const st = statSync(o.disk, { throwIfNoEntry: false });
  if (!st) throw new Error(`${o.disk} does not exist (no virtio disk attached, or its driver did not load?)`);
  if (!st.isBlockDevice() && !st.isFile()) throw new Error(`${o.disk} is neither a block device nor a file`);
  // The self-test overwrites the start of the disk: never a real machine's disk by accident.
  if (st.isBlockDevice() && !existsSync(BOOT_ENV_MARK)) {
    throw new Error(`refusing to overwrite block device ${o.disk} outside the boot environment (no ${BOOT_ENV_MARK}); give a scratch file as rackcast.selftest.disk`);
  }
  const work = join(o.tmpDir, 'rackcast-selftest');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    const source = join(work, 'source.raw');
    const disk = selftestDisk();
    writeFileSync(source, disk);
    const store = ImageStore.open(join(work, 'store'));
    const cap = await captureImage({ store, source, name: 'selftest', blockSize: BLOCK });
    const m = cap.image.manifest;
    o.log(`selftest: captured ${m.stats.blocks} blocks (${m.stats.dataBlocks} data, ${m.stats.holeBlocks} holes, ${m.stats.uniqueChunks} chunks, table ${m.partitionTable.kind}) in ${cap.seconds.toFixed(2)} s`);
    const blocks = Math.ceil(DISK_SIZE / BLOCK);
    if (m.stats.holeBlocks !== ZERO_BLOCKS.length) throw new Error(`capture found ${m.stats.holeBlocks} holes, expected ${ZERO_BLOCKS.length}`);
    if (m.stats.uniqueChunks !== blocks - ZERO_BLOCKS.length - 1) throw new Error(`capture stored ${m.stats.uniqueChunks} chunks, expected ${blocks - ZERO_BLOCKS.length - 1} (one duplicate block)`);
    if (m.partitionTable.kind !== 'mbr') throw new Error(`capture read a partition table of kind ${m.partitionTable.kind}, expected mbr`);

    if (st.isBlockDevice()) {
      DiskWriter.check(o.disk, m); // mounted, held, too small, wrong sector size: refuse before writing
      scribble(o.disk, DISK_SIZE);
    } else {
      writeFileSync(o.disk, Buffer.alloc(DISK_SIZE, 0xa5));
    }
    const res = await restoreImage({ store, name: 'selftest', target: o.disk });
    o.log(`selftest: restored ${res.bytesWritten} bytes and ${res.holes} holes onto ${o.disk} in ${res.seconds.toFixed(2)} s`);

    // Read what the device holds, not what the page cache remembers writing.
    if (st.isBlockDevice()) execFileSync('blockdev', ['--flushbufs', o.disk]);
    const back = readRange(o.disk, DISK_SIZE);
    if (!back.equals(disk)) {
      let i = 0;
      while (i < DISK_SIZE && back[i] === disk[i]) i++;
      throw new Error(`read-back differs from the captured disk at byte ${i} (block ${Math.floor(i / BLOCK)})`);
    }
    return {
      bytes: DISK_SIZE,
      sha256: createHash('sha256').update(back).digest('hex'),
      holes: res.holes,
      chunks: m.stats.uniqueChunks,
      captureSeconds: cap.seconds,
      restoreSeconds: res.seconds,
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
