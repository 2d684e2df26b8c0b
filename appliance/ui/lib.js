// Pure helpers of the web UI (no DOM): formatting, the inventory summary, progress parsing and
// rates, the server-sent-events parser, the task form → API body, and the plot's scales. app.js
// draws with them; test/unit/ui/lib.test.ts tests them under Node. Plain ES module, no build step.

/** 1536 → "1.5 KiB" (binary units, as the CLI prints sizes). */
export function fmtBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  const s = i === 0 ? String(Math.round(v)) : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  return `${n < 0 ? '-' : ''}${s} ${units[i]}`;
}

/** MB/s (decimal, as the reports and the CLI's bars say). */
export function fmtRate(mbps) {
  if (mbps === null || mbps === undefined || !Number.isFinite(mbps)) return '–';
  return `${mbps >= 100 ? mbps.toFixed(0) : mbps.toFixed(1)} MB/s`;
}

/** 75 → "1 min 15 s", 7300 → "2 h 1 min". */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '–';
  const s = Math.round(seconds);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** "3 min ago" for a timestamp (ISO) relative to now (ms). */
export function fmtAgo(iso, now) {
  const t = Date.parse(iso ?? '');
  if (Number.isNaN(t)) return '–';
  const d = Math.round((now - t) / 1000);
  if (d < -5) return `in ${fmtDuration(-d)}`;
  if (d < 5) return 'just now';
  return `${fmtDuration(d)} ago`;
}

/** An ISO time as local "YYYY-MM-DD HH:MM" (the admin's browser's time zone). */
export function fmtTime(iso) {
  const t = Date.parse(iso ?? '');
  if (Number.isNaN(t)) return '–';
  const d = new Date(t);
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/**
 * What deduplication and hole-skipping save for one image: the disk's data (its non-hole blocks)
 * and its raw size against the bytes the store holds for it.
 */
export function dedupSavings(img, blockSize) {
  const data = blockSize ? Math.min(img.diskSize, img.dataBlocks * blockSize) : null;
  const base = data ?? img.diskSize;
  const saved = Math.max(0, base - img.storedBytes);
  return {
    dataBytes: data,
    storedBytes: img.storedBytes,
    savedBytes: saved,
    savedPercent: base > 0 ? Math.round((saved / base) * 1000) / 10 : 0,
    ratio: img.storedBytes > 0 ? Math.round((base / img.storedBytes) * 100) / 100 : null,
  };
}

/** The few inventory facts a machine list shows (the client's hello: boot-env/client/inventory.ts). */
export function inventorySummary(inv) {
  if (!inv || typeof inv !== 'object') return { model: '–', firmware: '–', cpu: '–', memory: '–', disks: [] };
  const dmi = inv.dmi && typeof inv.dmi === 'object' ? inv.dmi : {};
  const model = [dmi.sys_vendor, dmi.product_name].filter(Boolean).join(' ') || '–';
  const fw = [inv.firmware ? String(inv.firmware).toUpperCase() : '', dmi.bios_version ? `(${dmi.bios_version})` : ''].filter(Boolean).join(' ') || '–';
  const cpu = inv.cpu && inv.cpu.model ? `${inv.cpu.count ?? '?'}× ${inv.cpu.model}` : '–';
  const disks = Array.isArray(inv.disks) ? inv.disks.map((d) => `${d.name} ${fmtBytes(d.size)}${d.model ? ` ${d.model}` : ''}${d.transport && d.transport !== 'other' ? ` (${d.transport})` : ''}`) : [];
  return { model, firmware: fw, cpu, memory: inv.memoryBytes ? fmtBytes(inv.memoryBytes) : '–', disks };
}

/** A client's running-report detail "have/total" (chunks; boot-env/client/deploy.ts) → numbers. */
export function parseProgressDetail(detail) {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(detail ?? '');
  if (!m) return null;
  const done = Number(m[1]);
  const total = Number(m[2]);
  if (total <= 0 || done > total) return null;
  return { done, total };
}

/** Fraction 0…1 → a whole percent, clamped. */
export function percent(done, total) {
  if (!total || total <= 0 || !Number.isFinite(done)) return 0;
  return Math.max(0, Math.min(100, Math.floor((done / total) * 100)));
}

/**
 * Turns successive cumulative byte counts of one machine into MB/s samples. A sample closer than
 * minGapMs to the previous one is folded into the next (rates over tiny gaps are noise); a count
 * that goes backwards (a retry restarted the machine) starts over.
 */
export class RateMeter {
  constructor(minGapMs = 250) {
    this.minGapMs = minGapMs;
    this.last = null;
  }

  /** Returns the MB/s since the previous accepted count, or null for the first count. */
  push(tMs, bytes) {
    if (this.last === null || bytes < this.last.bytes) { this.last = { t: tMs, bytes }; return null; }
    const dt = tMs - this.last.t;
    if (dt < this.minGapMs) return null;
    const rate = (bytes - this.last.bytes) / (dt / 1000) / 1e6;
    this.last = { t: tMs, bytes };
    return rate;
  }
}

/**
 * The text/event-stream parser (WHATWG HTML §9.2.6): feed it decoded text as it arrives, get the
 * complete events back. A browser's EventSource cannot send the admin token as a header, so the
 * UI reads the stream with fetch() and parses it here.
 */
export class SseParser {
  constructor() {
    this.buf = '';
    this.reset();
  }

  reset() {
    this.event = '';
    this.data = [];
    this.id = undefined;
  }

  feed(text) {
    this.buf += text;
    const out = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buf);
      // a lone \r at the end may be the first half of \r\n: wait for more
      if (!m || (m[0] === '\r' && m.index === this.buf.length - 1)) break;
      const line = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      if (line === '') {
        if (this.data.length) out.push({ event: this.event || 'message', data: this.data.join('\n'), ...(this.id !== undefined ? { id: this.id } : {}) });
        this.reset();
        continue;
      }
      if (line.startsWith(':')) continue;
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      let value = c < 0 ? '' : line.slice(c + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') this.event = value;
      else if (field === 'data') this.data.push(value);
      else if (field === 'id' && !value.includes('\0')) this.id = value;
    }
    return out;
  }
}

/**
 * The create-task form's fields → the body of POST /api/v1/tasks, or an Error naming the field.
 * f: { kind, image, target: 'group'|'machines', group, machines[], when: 'now'|'at'|'cron', at,
 *      cron, rule: 'all'|'deadline'|'grace', deadline (datetime-local value), grace, retries, wol,
 *      delta, grow (deploy options) }
 */
export function taskBody(f) {
  const body = { kind: f.kind };
  const image = (f.image ?? '').trim();
  if (!image) throw new Error(f.kind === 'capture' ? 'name: give the new image a name' : 'image: choose an image');
  body.image = image;
  if (f.kind === 'capture' || f.target === 'machines') {
    const macs = (f.machines ?? []).filter(Boolean);
    if (!macs.length) throw new Error('machines: choose at least one machine');
    if (f.kind === 'capture' && macs.length !== 1) throw new Error('machine: a capture takes exactly one machine');
    body.machines = macs;
  } else {
    if (!f.group) throw new Error('group: choose a group');
    body.group = f.group;
  }
  if (f.when === 'at') {
    const at = (f.at ?? '').trim();
    if (!at) throw new Error('time: give HH:MM (e.g. 02:00) or an ISO date-time');
    body.at = at;
  } else if (f.when === 'cron') {
    const cron = (f.cron ?? '').trim();
    if (!cron) throw new Error('cron: give a cron expression, e.g. 0 2 * * *');
    body.cron = cron;
  }
  if (f.kind === 'deploy') body.startRule = startRule(f);
  if (f.retries !== undefined && f.retries !== '') {
    const r = Number(f.retries);
    if (!Number.isInteger(r) || r < 0 || r > 10) throw new Error('retries: a whole number from 0 to 10');
    body.retries = r;
  }
  if (f.wol) body.wol = true;
  if (f.kind === 'deploy' && f.delta) body.delta = true;
  if (f.kind === 'deploy' && f.grow) body.grow = true;
  return body;
}

/** The start-rule fields (rule, deadline as a datetime-local value, grace seconds) → the API's rule. */
export function startRule(f) {
  if (f.rule === 'deadline') {
    const t = Date.parse(f.deadline ?? '');
    if (Number.isNaN(t)) throw new Error('deadline: give the date and time the session starts at the latest');
    return { kind: 'deadline', at: new Date(t).toISOString() };
  }
  if (f.rule === 'grace') {
    const s = f.grace === '' || f.grace === undefined ? NaN : Number(f.grace);
    if (!Number.isInteger(s) || s < 0 || s > 86400) throw new Error('grace: whole seconds from 0 to 86400');
    return { kind: 'grace', seconds: s };
  }
  if (f.rule === undefined || f.rule === '' || f.rule === 'all') return { kind: 'all' };
  throw new Error(`start rule: "${f.rule}" is not all, grace or deadline`);
}

/** A start rule as words. */
export function describeRule(r) {
  if (!r) return '–';
  if (r.kind === 'all') return 'when all joined';
  if (r.kind === 'deadline') return `at ${fmtTime(r.at)} with whoever joined`;
  if (r.kind === 'grace') return `${r.seconds} s after the first join`;
  return String(r.kind);
}

/** Axis ticks at 1/2/5×10^n steps covering [0, max] with about `count` ticks. */
export function niceTicks(max, count = 5) {
  if (!(max > 0) || !Number.isFinite(max)) return { max: 1, ticks: [0, 0.5, 1] };
  const raw = max / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw) ?? 10 * mag;
  const top = Math.ceil(max / step - 1e-9) * step;
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { max: top, ticks };
}

/**
 * Lay out throughput series for a plot of width × height with the given padding: x is time over
 * the last windowMs up to nowMs (or since the first point, if shorter), y is MB/s from 0 to a nice
 * maximum. series: [{ key, points: [{ t, v }] }] → { yTicks, xTicks, lines: [{ key, points: [[x, y]] }] }.
 */
export function plotLayout(series, o) {
  const { width, height, pad, nowMs, windowMs } = o;
  const all = series.flatMap((s) => s.points);
  const first = all.length ? Math.min(...all.map((p) => p.t)) : nowMs;
  const t0 = Math.max(first, nowMs - windowMs);
  const t1 = Math.max(nowMs, t0 + 1000);
  const vmax = Math.max(0, ...all.filter((p) => p.t >= t0).map((p) => p.v));
  const y = niceTicks(vmax, 4);
  const iw = width - pad.left - pad.right;
  const ih = height - pad.top - pad.bottom;
  const sx = (t) => pad.left + ((t - t0) / (t1 - t0)) * iw;
  const sy = (v) => pad.top + ih - (v / y.max) * ih;
  const round = (n) => Math.round(n * 10) / 10;
  const lines = series.map((s) => ({ key: s.key, points: s.points.filter((p) => p.t >= t0 && p.t <= t1).map((p) => [round(sx(p.t)), round(sy(p.v))]) }));
  const spanS = (t1 - t0) / 1000;
  const stepS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].find((s) => spanS / s <= 6) ?? 7200;
  const xTicks = [];
  for (let s = 0; s <= spanS + 1e-9; s += stepS) xTicks.push({ x: round(sx(t0 + s * 1000)), label: `${s < 60 ? `${s} s` : `${Math.round(s / 60)} min`}` });
  return { yTicks: y.ticks.map((v) => ({ y: round(sy(v)), label: String(v) })), xTicks, lines, t0, t1 };
}

/**
 * The sum of several series at each of their sample times: each series counts with its latest
 * value at or before that time (nothing before its first point). Points must be in time order.
 */
export function sumSeries(series) {
  const times = [...new Set(series.flatMap((s) => s.points.map((p) => p.t)))].sort((a, b) => a - b);
  const at = series.map(() => -1); // per series, the index of its latest point so far
  return times.map((t) => {
    let v = 0;
    series.forEach((s, i) => {
      while (at[i] + 1 < s.points.length && s.points[at[i] + 1].t <= t) at[i]++;
      if (at[i] >= 0) v += s.points[at[i]].v;
    });
    return { t, v };
  });
}
