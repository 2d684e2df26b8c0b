// The result of reading one partition's allocation (docs/image-format.md, "Used blocks").
import type { Range } from './ranges.ts';

export type FsPolicy = 'ext4' | 'ext3' | 'ext2' | 'fat12' | 'fat16' | 'fat32' | 'ntfs' | 'raw';

export interface Allocation {
  /** how the partition is captured: by its filesystem's allocation map, or every byte ('raw') */
  policy: FsPolicy;
  /** one line a person can read: what was found, or why the partition is captured raw */
  reason: string;
  /** bytes inside `ranges` */
  usedBytes: number;
  /** absolute disk byte offsets [start, end) of the USED ranges; sorted, disjoint, merged */
  ranges: Range[];
}

export interface AllocationOptions {
  /** trust the allocation map of a filesystem that is not clean (dirty, needs recovery, errors) */
  force?: boolean;
}
