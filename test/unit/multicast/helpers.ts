// Assertions shared by the multicast codec tests.
import { expect } from '@jest/globals';
import { RackcastError, type ErrorCode } from '../../../services/errors.ts';

export function caught(fn: () => unknown): unknown {
  try { fn(); } catch (e) { return e; }
  return undefined;
}

/** fn must throw a RackcastError with code c (and fields.offset, if given). */
export function fails(fn: () => unknown, c: ErrorCode, offset?: number): RackcastError {
  const err = caught(fn);
  expect(err).toBeInstanceOf(RackcastError);
  const e = err as RackcastError;
  expect(e.code).toBe(c);
  if (offset !== undefined) expect(e.fields.offset).toBe(offset);
  return e;
}
