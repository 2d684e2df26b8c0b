// Live updates: the appliance's server-sent events (/api/v1/events/stream) read with fetch(),
// because a browser's EventSource cannot send the admin token as a header; reconnects with
// Last-Event-ID so nothing stored is missed. From them, per machine of a task, the progress and
// throughput samples that the task view draws: from `progress` events (bytes and MB/s) when the
// appliance sends them, else from the client's running reports ("have/total" chunks × block size).
import { $ } from './dom.js';
import { getToken } from './api.js';
import { RateMeter, SseParser, parseProgressDetail, percent } from './lib.js';

export const FINISHED = new Set(['done', 'failed', 'cancelled']);
const MAX_POINTS = 5000;
const RECONNECT_MS = 2000;

/** `${taskId}/${mac}` → { taskId, mac, pct, mbps, bytesSeen, meter, points: [{ t, v }] } */
export const live = new Map();
/** task id → the block size of its image (a chunk count times this is bytes) */
export const blockSizes = new Map();

let abort = null;
let lastEventId = null;

function setLive(on, text) {
  const el = $('#live');
  el.className = `live ${on ? 'on' : 'off'}`;
  el.textContent = text;
}

export function stopStream() {
  abort?.abort();
  abort = null;
  setLive(false, 'offline');
}

/** h: { onEvent(kind, data), onProgress(taskId), onUnauthorized(message) } */
export function startStream(h) {
  stopStream();
  const ctl = new AbortController();
  abort = ctl;
  void (async () => {
    while (!ctl.signal.aborted) {
      try {
        const res = await fetch('/api/v1/events/stream', {
          headers: { authorization: `Bearer ${getToken()}`, accept: 'text/event-stream', ...(lastEventId ? { 'last-event-id': lastEventId } : {}) },
          signal: ctl.signal,
        });
        if (res.status === 401) { h.onUnauthorized('the admin token was refused by the event stream'); return; }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        setLive(true, 'live');
        const parser = new SseParser();
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const ev of parser.feed(value)) {
            if (ev.id) lastEventId = ev.id;
            let data;
            try { data = JSON.parse(ev.data); } catch { continue; }
            if (track(ev.event, data)) h.onProgress(data.taskId);
            else h.onEvent(ev.event, data);
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
        console.warn('rackcast: event stream:', e.message);
      }
      setLive(false, 'reconnecting…');
      await new Promise((r) => setTimeout(r, RECONNECT_MS));
    }
  })();
}

function liveOf(taskId, mac) {
  const k = `${taskId}/${mac}`;
  let r = live.get(k);
  if (!r) { r = { taskId, mac, pct: null, mbps: null, bytesSeen: false, meter: new RateMeter(), points: [] }; live.set(k, r); }
  return r;
}

function addPoint(r, v) {
  r.mbps = v;
  r.points.push({ t: Date.now(), v });
  if (r.points.length > MAX_POINTS) r.points.splice(0, r.points.length - MAX_POINTS);
}

/** Update the progress model from one event; true for a `progress` event (nothing else to do). */
function track(kind, d) {
  if (!d?.taskId || !d.mac) return false;
  if (kind === 'progress') {
    const r = liveOf(d.taskId, d.mac);
    r.bytesSeen = true;
    r.pct = percent(d.done, d.total);
    const rate = Number.isFinite(d.mbps) && d.mbps > 0 ? d.mbps : r.meter.push(Date.now(), d.done);
    if (rate !== null) addPoint(r, rate);
    return true;
  }
  if (kind === 'machine-state') {
    const r = liveOf(d.taskId, d.mac);
    const st = d.detail?.state;
    const p = parseProgressDetail(d.detail?.detail);
    if (st === 'running' && p && !r.bytesSeen) {
      r.pct = percent(p.done, p.total);
      const rate = r.meter.push(Date.now(), p.done * (blockSizes.get(d.taskId) ?? 1 << 20));
      if (rate !== null) addPoint(r, rate);
    } else if (FINISHED.has(st)) {
      if (st === 'done') r.pct = 100;
      if (r.points.length) addPoint(r, 0);
    }
  } else if (kind === 'machine-retry') {
    const r = liveOf(d.taskId, d.mac); // the machine starts over at its next boot
    r.pct = null;
    r.meter = new RateMeter();
    if (r.points.length) addPoint(r, 0);
  }
  return false;
}

/** A machine's progress in percent: live if known, else from what the task says. */
export function machinePct(taskId, m) {
  if (m.state === 'done') return 100;
  const r = live.get(`${taskId}/${m.mac}`);
  if (r?.pct !== null && r?.pct !== undefined) return r.pct;
  if (m.bytesTotal) return percent(m.bytesDone ?? 0, m.bytesTotal);
  const p = parseProgressDetail(m.detail);
  return p ? percent(p.done, p.total) : 0;
}
