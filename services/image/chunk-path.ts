// Chunk naming in the store: chunks/<first two hex digits>/<sha256 hex>.zst (docs/image-format.md),
// and beside each its seal, <sha256 hex>.seal: the SHA-256 of the frame's bytes, written once the
// frame was known to decompress to its hash (when it was stored, or verified), so that a later
// check of the same frame (the multicast sender's) can hash ~3× fewer bytes and skip zstd.
// Two-level fan-out keeps directories small (256 of them; ~4,000 files each per TB of unique data).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const HASH_HEX = /^[0-9a-f]{64}$/;

export function chunkPath(root: string, hash: string): string {
  return join(root, 'chunks', hash.slice(0, 2), `${hash}.zst`);
}

export function sealPath(root: string, hash: string): string {
  return join(root, 'chunks', hash.slice(0, 2), `${hash}.seal`);
}

/** Whether the frame's bytes are the ones sealed for this chunk (no seal, or another: no). */
export function frameSealed(root: string, hash: string, frame: Uint8Array): boolean {
  let seal: string;
  try { seal = readFileSync(sealPath(root, hash), 'latin1').trim(); } catch { return false; }
  return seal === createHash('sha256').update(frame).digest('hex');
}
