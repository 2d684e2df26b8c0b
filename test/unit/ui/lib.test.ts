// The web UI's pure helpers (appliance/ui/lib.js, the same file the browser loads): formatting,
// the inventory summary, progress parsing and rates, the event-stream parser, the task form's
// body with messages that name the field, and the plot's scales.
import { describe, it, expect } from '@jest/globals';
import {
  fmtBytes, fmtRate, fmtDuration, fmtAgo, fmtTime, dedupSavings, inventorySummary, parseProgressDetail, percent,
  RateMeter, SseParser, taskBody, startRule, describeRule, niceTicks, plotLayout, sumSeries,
} from '../../../appliance/ui/lib.js';

const MiB = 1 << 20;

describe('formatting', () => {
  it('sizes in binary units, rates, durations', () => {
    expect(fmtBytes(0)).toBe('0 B');
    expect(fmtBytes(1023)).toBe('1023 B');
    expect(fmtBytes(1536)).toBe('1.50 KiB');
    expect(fmtBytes(8 * MiB)).toBe('8.00 MiB');
    expect(fmtBytes(15.5 * MiB)).toBe('15.5 MiB');
    expect(fmtBytes(480 * 1024 * MiB)).toBe('480 GiB');
    expect(fmtBytes(null)).toBe('–');
    expect(fmtBytes(Number.NaN)).toBe('–');
    expect(fmtRate(8.46)).toBe('8.5 MB/s');
    expect(fmtRate(112.4)).toBe('112 MB/s');
    expect(fmtRate(undefined)).toBe('–');
    expect(fmtDuration(7)).toBe('7 s');
    expect(fmtDuration(75)).toBe('75 s');
    expect(fmtDuration(125)).toBe('2 min 5 s');
    expect(fmtDuration(7300)).toBe('2 h 1 min');
    expect(fmtDuration(-1)).toBe('–');
  });

  it('relative and local times', () => {
    const now = Date.parse('2026-11-25T14:00:00Z');
    expect(fmtAgo('2026-11-25T13:59:58Z', now)).toBe('just now');
    expect(fmtAgo('2026-11-25T13:57:00Z', now)).toBe('3 min 0 s ago');
    expect(fmtAgo('2026-11-25T14:00:30Z', now)).toBe('in 30 s');
    expect(fmtAgo(null, now)).toBe('–');
    const local = new Date(2026, 10, 26, 2, 0, 0);
    expect(fmtTime(local.toISOString())).toBe('2026-11-26 02:00');
    expect(fmtTime('nonsense')).toBe('–');
  });
});

describe('images and machines', () => {
  it('dedup savings: the disk\'s data against what the store holds', () => {
    const s = dedupSavings({ diskSize: 8 * MiB, dataBlocks: 6, storedBytes: 4 * MiB }, MiB);
    expect(s).toEqual({ dataBytes: 6 * MiB, storedBytes: 4 * MiB, savedBytes: 2 * MiB, savedPercent: 33.3, ratio: 1.5 });
    // without the block size: against the raw disk size; never negative
    expect(dedupSavings({ diskSize: 8 * MiB, dataBlocks: 6, storedBytes: 2 * MiB }, null)).toMatchObject({ dataBytes: null, savedBytes: 6 * MiB, savedPercent: 75, ratio: 4 });
    expect(dedupSavings({ diskSize: MiB, dataBlocks: 1, storedBytes: MiB + 100 }, MiB)).toMatchObject({ savedBytes: 0, savedPercent: 0 });
    expect(dedupSavings({ diskSize: 0, dataBlocks: 0, storedBytes: 0 }, MiB)).toMatchObject({ savedPercent: 0, ratio: null });
  });

  it('inventory summary from a client\'s hello; missing parts are dashes', () => {
    const inv = {
      firmware: 'uefi', dmi: { sys_vendor: 'Dell Inc.', product_name: 'PowerEdge R640', bios_version: '2.19.1' },
      cpu: { model: 'Xeon Gold 6230', count: 80 }, memoryBytes: 192 * 1024 * MiB,
      disks: [{ name: 'nvme0n1', size: 960 * 1024 * MiB, model: 'Dell Ent NVMe', transport: 'nvme' }, { name: 'sda', size: 4 * 1024 * 1024 * MiB, transport: 'other' }],
    };
    expect(inventorySummary(inv)).toEqual({
      model: 'Dell Inc. PowerEdge R640', firmware: 'UEFI (2.19.1)', cpu: '80× Xeon Gold 6230', memory: '192 GiB',
      disks: ['nvme0n1 960 GiB Dell Ent NVMe (nvme)', 'sda 4.00 TiB'],
    });
    expect(inventorySummary(null)).toEqual({ model: '–', firmware: '–', cpu: '–', memory: '–', disks: [] });
    expect(inventorySummary({ firmware: 'bios' })).toMatchObject({ model: '–', firmware: 'BIOS', disks: [] });
  });
});

describe('progress', () => {
  it('parses the client\'s "have/total" detail, nothing else', () => {
    expect(parseProgressDetail('3/10')).toEqual({ done: 3, total: 10 });
    expect(parseProgressDetail(' 10 / 10 ')).toEqual({ done: 10, total: 10 });
    expect(parseProgressDetail('target /dev/vda')).toBeNull();
    expect(parseProgressDetail('11/10')).toBeNull();
    expect(parseProgressDetail('0/0')).toBeNull();
    expect(parseProgressDetail(null)).toBeNull();
    expect(percent(31, 40)).toBe(77);
    expect(percent(5, 0)).toBe(0);
    expect(percent(50, 40)).toBe(100);
  });

  it('RateMeter: MB/s between counts; close counts fold into the next; a reset starts over', () => {
    const m = new RateMeter(250);
    expect(m.push(0, 0)).toBeNull();
    expect(m.push(100, 5e6)).toBeNull(); // too close to measure
    expect(m.push(1000, 10e6)).toBeCloseTo(10, 9);
    expect(m.push(3000, 30e6)).toBeCloseTo(10, 9);
    expect(m.push(4000, 1e6)).toBeNull(); // went backwards: a retry
    expect(m.push(4500, 3e6)).toBeCloseTo(4, 9);
  });
});

describe('SseParser', () => {
  it('events split anywhere across chunks, CRLF, comments, multi-line data, ids', () => {
    const text = ': rackcast events\r\n\r\nid: 7\r\nevent: machine-state\r\ndata: {"a":1}\r\n\r\nevent: progress\ndata: line1\ndata: line2\n\ndata:plain\n\n';
    for (const size of [1, 2, 3, 7, 1000]) {
      const p = new SseParser();
      const got = [];
      for (let i = 0; i < text.length; i += size) got.push(...p.feed(text.slice(i, i + size)));
      expect(got).toEqual([
        { event: 'machine-state', data: '{"a":1}', id: '7' },
        { event: 'progress', data: 'line1\nline2' },
        { event: 'message', data: 'plain' },
      ]);
    }
  });

  it('an event without data is dropped; an unfinished event waits for its blank line', () => {
    const p = new SseParser();
    expect(p.feed('event: x\n\n')).toEqual([]);
    expect(p.feed('event: y\ndata: 1\n')).toEqual([]);
    expect(p.feed('\n')).toEqual([{ event: 'y', data: '1' }]);
    expect(p.feed('data: 2\r')).toEqual([]); // \r may be half of \r\n
    expect(p.feed('\n\r\n')).toEqual([{ event: 'message', data: '2' }]);
  });
});

describe('taskBody: the create-task form → POST /api/v1/tasks', () => {
  it('a deploy for a group tonight at 02:00, all joined', () => {
    expect(taskBody({ kind: 'deploy', image: ' web-2026-11 ', target: 'group', group: 'rack3', when: 'at', at: '02:00', rule: 'all', retries: '', wol: true }))
      .toEqual({ kind: 'deploy', image: 'web-2026-11', group: 'rack3', at: '02:00', startRule: { kind: 'all' }, wol: true });
  });

  it('deploy options delta and grow go in when ticked, and only for a deploy', () => {
    const f = { image: 'web', target: 'machines' as const, machines: ['52:54:00:00:00:01'], when: 'now' as const, delta: true, grow: true };
    expect(taskBody({ ...f, kind: 'deploy' })).toMatchObject({ delta: true, grow: true });
    expect(taskBody({ ...f, kind: 'deploy', delta: false, grow: false })).not.toHaveProperty('delta');
    expect(taskBody({ ...f, kind: 'capture' })).not.toHaveProperty('grow');
  });

  it('machines, cron, grace and retries; deadline in ISO', () => {
    expect(taskBody({ kind: 'deploy', image: 'web', target: 'machines', machines: ['52:54:00:00:00:01', '52:54:00:00:00:02'], when: 'cron', cron: '0 2 * * 1-5', rule: 'grace', grace: '300', retries: '2' }))
      .toEqual({ kind: 'deploy', image: 'web', machines: ['52:54:00:00:00:01', '52:54:00:00:00:02'], cron: '0 2 * * 1-5', startRule: { kind: 'grace', seconds: 300 }, retries: 2 });
    const local = '2026-11-26T02:30';
    expect(startRule({ rule: 'deadline', deadline: local })).toEqual({ kind: 'deadline', at: new Date(local).toISOString() });
    expect(taskBody({ kind: 'deploy', image: 'web', target: 'group', group: 'g', when: 'now' })).toEqual({ kind: 'deploy', image: 'web', group: 'g', startRule: { kind: 'all' } });
  });

  it('a capture: one machine, no start rule', () => {
    expect(taskBody({ kind: 'capture', image: 'golden', target: 'machines', machines: ['52:54:00:00:00:01'], when: 'now' }))
      .toEqual({ kind: 'capture', image: 'golden', machines: ['52:54:00:00:00:01'] });
  });

  it('refusals name the field', () => {
    expect(() => taskBody({ kind: 'deploy', image: '', target: 'group', group: 'g' })).toThrow(/^image:/);
    expect(() => taskBody({ kind: 'capture', image: '', machines: ['x'] })).toThrow(/^name:/);
    expect(() => taskBody({ kind: 'deploy', image: 'w', target: 'group', group: '' })).toThrow(/^group:/);
    expect(() => taskBody({ kind: 'deploy', image: 'w', target: 'machines', machines: [] })).toThrow(/^machines:/);
    expect(() => taskBody({ kind: 'capture', image: 'w', target: 'machines', machines: ['a', 'b'] })).toThrow(/^machine: a capture takes exactly one/);
    expect(() => taskBody({ kind: 'deploy', image: 'w', target: 'group', group: 'g', when: 'at', at: ' ' })).toThrow(/^time:/);
    expect(() => taskBody({ kind: 'deploy', image: 'w', target: 'group', group: 'g', when: 'cron', cron: '' })).toThrow(/^cron:/);
    expect(() => taskBody({ kind: 'deploy', image: 'w', target: 'group', group: 'g', rule: 'grace', grace: '1.5' })).toThrow(/^grace:/);
    expect(() => taskBody({ kind: 'deploy', image: 'w', target: 'group', group: 'g', rule: 'grace', grace: '' })).toThrow(/^grace:/);
    expect(() => taskBody({ kind: 'deploy', image: 'w', target: 'group', group: 'g', rule: 'deadline', deadline: '' })).toThrow(/^deadline:/);
    expect(() => taskBody({ kind: 'deploy', image: 'w', target: 'group', group: 'g', retries: '11' })).toThrow(/^retries:/);
  });

  it('describes rules in words', () => {
    expect(describeRule({ kind: 'all' })).toBe('when all joined');
    expect(describeRule({ kind: 'grace', seconds: 300 })).toBe('300 s after the first join');
    expect(describeRule({ kind: 'deadline', at: new Date(2026, 10, 26, 2, 30).toISOString() })).toBe('at 2026-11-26 02:30 with whoever joined');
    expect(describeRule(null)).toBe('–');
  });
});

describe('plot scales', () => {
  it('nice ticks at 1/2/5 steps covering the maximum', () => {
    expect(niceTicks(17, 4)).toEqual({ max: 20, ticks: [0, 5, 10, 15, 20] });
    expect(niceTicks(112, 4)).toEqual({ max: 150, ticks: [0, 50, 100, 150] });
    expect(niceTicks(0.37, 4)).toEqual({ max: 0.4, ticks: [0, 0.1, 0.2, 0.3, 0.4] });
    expect(niceTicks(20, 4)).toEqual({ max: 20, ticks: [0, 5, 10, 15, 20] });
    expect(niceTicks(0)).toEqual({ max: 1, ticks: [0, 0.5, 1] });
  });

  it('lays points out inside the padded box: time left to right, 0 MB/s at the bottom', () => {
    const pad = { left: 40, right: 10, top: 10, bottom: 20 };
    const now = 100_000;
    const L = plotLayout([
      { key: 'a', points: [{ t: 40_000, v: 5 }, { t: 60_000, v: 0 }, { t: 100_000, v: 20 }] },
      { key: 'old', points: [{ t: 1_000, v: 1000 }] }, // outside a 60 s window: neither drawn nor scaling the axis
    ], { width: 440, height: 230, pad, nowMs: now, windowMs: 60_000 });
    expect(L.t0).toBe(40_000);
    expect(L.t1).toBe(100_000);
    expect(L.lines[0]?.points).toEqual([[40, 160], [170, 210], [430, 10]]);
    expect(L.lines[1]?.points).toEqual([]);
    expect(L.yTicks.map((t) => t.label)).toEqual(['0', '5', '10', '15', '20']);
    expect(L.yTicks[0]?.y).toBe(210);
    expect(L.xTicks[0]).toEqual({ x: 40, label: '0 s' });
    expect(L.xTicks.at(-1)?.label).toBe('1 min');
  });

  it('an empty plot still has axes', () => {
    const L = plotLayout([], { width: 300, height: 100, pad: { left: 0, right: 0, top: 0, bottom: 0 }, nowMs: 5000, windowMs: 60_000 });
    expect(L.lines).toEqual([]);
    expect(L.yTicks.length).toBeGreaterThan(1);
    expect(L.xTicks[0]?.label).toBe('0 s');
  });

  it('sums machines\' rates at every sample time, each with its latest value', () => {
    expect(sumSeries([
      { key: 'a', points: [{ t: 1, v: 10 }, { t: 3, v: 20 }, { t: 5, v: 0 }] },
      { key: 'b', points: [{ t: 2, v: 5 }, { t: 3, v: 7 }] },
    ])).toEqual([{ t: 1, v: 10 }, { t: 2, v: 15 }, { t: 3, v: 27 }, { t: 5, v: 7 }]);
    expect(sumSeries([])).toEqual([]);
  });
});
