// The sender's scheduling priority (services/multicast/priority.ts). The autogroup file is a
// stand-in here (a temporary file in the same format as /proc/self/autogroup); the thread's own
// nice value is asked for at its current value, so the test process's priority does not change.
import { describe, it, expect, afterAll } from '@jest/globals';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { raisePriority, readAutogroupNice } from '../../../services/multicast/priority.ts';

const dir = mkdtempSync(join(tmpdir(), 'rc-test-prio-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const ag = (text: string): string => { const p = join(dir, `ag${Math.random().toString(36).slice(2)}`); writeFileSync(p, text); return p; };

describe('readAutogroupNice', () => {
  it('parses the kernel format; null without autogroups', () => {
    expect(readAutogroupNice(ag('/autogroup-123 nice 0\n'))).toBe(0);
    expect(readAutogroupNice(ag('/autogroup-7 nice -10\n'))).toBe(-10);
    expect(readAutogroupNice(join(dir, 'absent'))).toBeNull();
    expect(readAutogroupNice(ag('garbage'))).toBeNull();
  });
});

describe('raisePriority', () => {
  const cur = getPriority(0);

  it('raises the autogroup to the asked value and restore() puts the old one back', () => {
    const p = ag('/autogroup-9 nice 5\n');
    const r = raisePriority(cur, p);
    expect(r.errors).toEqual([]);
    expect(r.nice).toBe(cur);
    expect(r.autogroup).toEqual({ nice: cur, was: 5 });
    expect(readFileSync(p, 'utf8')).toBe(String(cur));
    expect(r.summary()).toEqual({ nice: cur, autogroup: cur, errors: [] });
    r.restore();
    expect(readFileSync(p, 'utf8')).toBe('5');
    writeFileSync(p, 'changed');
    r.restore(); // once only
    expect(readFileSync(p, 'utf8')).toBe('changed');
  });

  it('never lowers a priority: an autogroup already higher is left alone (and not restored)', () => {
    const p = ag(`/autogroup-9 nice ${cur - 5}\n`);
    const r = raisePriority(cur, p);
    expect(r.autogroup).toEqual({ nice: cur - 5, was: cur - 5 });
    r.restore();
    expect(readFileSync(p, 'utf8')).toBe(`/autogroup-9 nice ${cur - 5}\n`);
  });

  it('without autogroups only the thread counts', () => {
    const r = raisePriority(cur, join(dir, 'none'));
    expect(r.autogroup).toBeNull();
    expect(r.errors).toEqual([]);
  });

  it('refuses a nice value out of range', () => {
    expect(() => raisePriority(-21)).toThrow(RangeError);
    expect(() => raisePriority(1.5)).toThrow(RangeError);
  });
});
