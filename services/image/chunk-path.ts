// Chunk naming in the store: chunks/<first two hex digits>/<sha256 hex>.zst (docs/image-format.md).
// Two-level fan-out keeps directories small (256 of them; ~4,000 files each per TB of unique data).
import { join } from 'node:path';

export const HASH_HEX = /^[0-9a-f]{64}$/;

export function chunkPath(root: string, hash: string): string {
  return join(root, 'chunks', hash.slice(0, 2), `${hash}.zst`);
}
