// House rule: error codes are unique, documented, and every code the source raises is defined.
import { describe, it, expect } from '@jest/globals';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES, RackcastError, isRackcastError } from '../../services/errors.ts';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('error codes', () => {
  const codes = Object.keys(ERROR_CODES);

  it('are all RC_ERR_ names with a meaning', () => {
    for (const c of codes) {
      expect(c).toMatch(/^RC_ERR_[A-Z0-9_]+$/);
      expect((ERROR_CODES as Record<string, string>)[c]!.length).toBeGreaterThan(10);
    }
  });

  it('are documented in docs/errors.md exactly once each, and the doc names no other', () => {
    const doc = readFileSync('docs/errors.md', 'utf8');
    const rows = [...doc.matchAll(/^\| `(RC_ERR_[A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
    expect([...rows].sort()).toEqual([...codes].sort());
    expect(new Set(rows).size).toBe(rows.length);
  });

  it('cover every code the source uses', () => {
    const used = new Set<string>();
    for (const f of ['services', 'appliance', 'boot-env'].flatMap((d) => sources(d))) {
      for (const m of readFileSync(f, 'utf8').matchAll(/'(RC_ERR_[A-Z0-9_]+)'/g)) used.add(m[1] as string);
    }
    expect([...used].filter((c) => !codes.includes(c))).toEqual([]);
  });

  it('carry code and frozen fields', () => {
    const e = new RackcastError('RC_ERR_CHUNK_MISSING', 'gone', { chunk: 'ab' });
    expect(isRackcastError(e, 'RC_ERR_CHUNK_MISSING')).toBe(true);
    expect(isRackcastError(e, 'RC_ERR_IO')).toBe(false);
    expect(Object.isFrozen(e.fields)).toBe(true);
    expect(e).toBeInstanceOf(Error);
  });
});
