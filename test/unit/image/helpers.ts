// Shared helpers for the image tests: error assertions, temp dirs, a valid manifest builder.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from '@jest/globals';
import { isRackcastError, type ErrorCode, type RackcastError } from '../../../services/errors.ts';

/**
 * Runs `fn` (sync or async) and returns the RackcastError it throws. Anything else that is
 * thrown is re-thrown, so a TypeError / RangeError fails the test with its own stack; a normal
 * return fails the test too.
 */
export async function rcError(fn: () => unknown, code?: ErrorCode | readonly ErrorCode[]): Promise<RackcastError> {
  try {
    await fn();
  } catch (e) {
    if (!isRackcastError(e)) throw e;
    if (typeof code === 'string') expect(e.code).toBe(code);
    else if (code !== undefined) expect(code).toContain(e.code);
    return e;
  }
  throw new Error(`expected a RackcastError${code ? ` (${String(code)})` : ''}, got a result`);
}

/** Synchronous variant, for decoders: returns the RackcastError `fn` throws. */
export function rcErrorSync(fn: () => unknown, code?: ErrorCode): RackcastError {
  try {
    fn();
  } catch (e) {
    if (!isRackcastError(e)) throw e;
    if (code !== undefined) expect(e.code).toBe(code);
    return e;
  }
  throw new Error(`expected a RackcastError${code ? ` (${code})` : ''}, got a result`);
}

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'rc-test-'));
}

export function removeDir(dir: string | undefined): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

export function sha256hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A structured clone that keeps the static type, for mutating a copy of a fixture. */
export function clone<T>(v: T): T {
  return structuredClone(v);
}
