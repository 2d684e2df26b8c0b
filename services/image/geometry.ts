// Disk geometry on restore (`image restore --grow`, DiskWriterOptions.grow): after the image is
// written onto a larger target and a GPT's backup moved to its end, the last partition grows to
// fill the disk (partition/grow.ts) and its filesystem with it (fs/resize.ts).
//
// Order: find the filesystem and check it on the partition as it is (e2fsck -f -p, ntfsresize
// --check); rewrite the table; grow the filesystem on the larger extent. If the grow tool fails
// the table change is undone, so the partition again has the size its filesystem was made for.
// Nothing here refuses the restore (the disk holds the image either way): a partition that cannot
// grow is left as it is, and the result says why.
import { allocationFor } from './fs/index.ts';
import { checkBeforeResize, growFs, resizable, withPartition } from './fs/resize.ts';
import { journaled, planLastPartition, type LastPartitionPlan } from './partition/grow.ts';
import type { SectorIo } from './partition/fit.ts';

export interface GrowResult {
  grown: boolean;
  /** one line: what was grown, or why nothing was */
  reason: string;
  partition?: number;
  /** the filesystem found there (ext4, ntfs, fat32, raw …) */
  filesystem?: string;
  oldSize?: number;
  newSize?: number;
  /** one summary line per tool run */
  tools?: string[];
}

/** The filesystem in a planned partition, as the capture planner sees it, and how to resize it. */
export async function filesystemOf(io: SectorIo, p: LastPartitionPlan): Promise<{ policy: string } & ReturnType<typeof resizable>> {
  const a = await allocationFor((o, l) => io.read(o, l), { start: p.start, size: p.oldSize, typeHint: p.type });
  return { policy: a.policy, ...resizable(a.policy, a.reason) };
}

/** Grow the last partition of the disk at `path` (size `diskSize`) and its filesystem; `io` writes the table. */
export async function growLastPartition(io: SectorIo, path: string, sectorSize: number, diskSize: number, signal?: AbortSignal): Promise<GrowResult> {
  const o = await planLastPartition(io, sectorSize, diskSize, diskSize, 'grow');
  if (!o.ok) return { grown: false, reason: `nothing grown: ${o.reason}` };
  const p = o.plan;
  const f = await filesystemOf(io, p);
  const base = { partition: p.index, filesystem: f.policy, oldSize: p.oldSize };
  if ('why' in f) return { grown: false, ...base, reason: `partition ${p.index} left as it is: ${f.why}` };
  const tools: string[] = [];
  try {
    tools.push(await withPartition(path, p.start, p.oldSize, (dev) => checkBeforeResize(f.fs, dev, 'preen', signal ? { signal } : {}), signal));
  } catch (e) {
    return { grown: false, ...base, tools, reason: `partition ${p.index} left as it is: the check before growing failed (${(e as Error).message})` };
  }
  const table = journaled(io);
  await p.apply(table);
  try {
    tools.push(await withPartition(path, p.start, p.newSize, (dev) => growFs(f.fs, dev, signal ? { signal } : {}), signal));
  } catch (e) {
    await table.undo();
    return { grown: false, ...base, tools, reason: `partition ${p.index} left as it is: growing its filesystem failed (${(e as Error).message}); the table change was undone` };
  }
  return { grown: true, ...base, newSize: p.newSize, tools, reason: `partition ${p.index} (${f.policy}) grown from ${p.oldSize} to ${p.newSize} bytes` };
}
