// Task and machine states, and the deploy start rule: the pure part of the control plane's state
// machine (docs/control-plane.md draws it). The store (store/db.ts) persists every transition;
// the engine (engine.ts) drives the time-based ones.
//
// task:     scheduled ──(its time)──► pending ──(a machine boots)──► running ──► done | failed
//               │                        │                              │
//               └────────────── cancel ──┴──────────────────────────────┴──► cancelled
// machine:  pending ─(iPXE fetches its script)─► booting ─(client reports)─► running ─► done | failed
//           failed with retries left ─► pending again (attempts + 1); cancel ─► cancelled
import { RackcastError } from '../services/errors.ts';

export const TASK_STATES = ['scheduled', 'pending', 'running', 'done', 'failed', 'cancelled'] as const;
export type TaskState = typeof TASK_STATES[number];
export const MACHINE_STATES = ['pending', 'booting', 'running', 'done', 'failed', 'cancelled'] as const;
export type MachineState = typeof MACHINE_STATES[number];
export const FINISHED: ReadonlySet<string> = new Set(['done', 'failed', 'cancelled']);

/**
 * When a deploy task's multicast session may start:
 *  all      — every expected machine has joined (said hello)
 *  deadline — at a fixed time, with whoever has joined (or earlier, if all have)
 *  grace    — `seconds` after the first machine joined (or earlier, if all have)
 */
export type StartRule = { kind: 'all' } | { kind: 'deadline'; at: string } | { kind: 'grace'; seconds: number };

export function checkStartRule(r: unknown, field = 'startRule'): StartRule {
  const o = r as Record<string, unknown> | null;
  if (!o || typeof o !== 'object') throw new RackcastError('RC_ERR_TASK_INVALID', `${field} must be an object: {"kind":"all"}, {"kind":"deadline","at":ISO time} or {"kind":"grace","seconds":N}`);
  if (o.kind === 'all') return { kind: 'all' };
  if (o.kind === 'deadline') {
    if (typeof o.at !== 'string' || Number.isNaN(Date.parse(o.at))) throw new RackcastError('RC_ERR_TASK_INVALID', `${field}.at must be an ISO date-time, e.g. 2026-11-26T02:30:00Z`);
    return { kind: 'deadline', at: new Date(o.at).toISOString() };
  }
  if (o.kind === 'grace') {
    if (typeof o.seconds !== 'number' || !Number.isInteger(o.seconds) || o.seconds < 0 || o.seconds > 86400) throw new RackcastError('RC_ERR_TASK_INVALID', `${field}.seconds must be a whole number of seconds from 0 to 86400`);
    return { kind: 'grace', seconds: o.seconds };
  }
  throw new RackcastError('RC_ERR_TASK_INVALID', `${field}.kind must be all, deadline or grace`);
}

/** Parse the CLI's spelling: "all", "deadline=ISO", "grace=SECONDS". */
export function parseStartRule(s: string): StartRule {
  if (s === 'all') return { kind: 'all' };
  const [k, v] = s.split('=', 2);
  if (k === 'deadline' && v) return checkStartRule({ kind: 'deadline', at: v }, '--start');
  if (k === 'grace' && v) return checkStartRule({ kind: 'grace', seconds: Number(v) }, '--start');
  throw new RackcastError('RC_ERR_USAGE', '--start must be all, deadline=ISO-TIME or grace=SECONDS');
}

export interface StartInput { rule: StartRule; expected: number; joined: number; firstJoinAt: number | null; now: number }
export interface StartDecision { start: boolean; reason: string }

export function decideStart(i: StartInput): StartDecision {
  if (i.expected > 0 && i.joined >= i.expected) return { start: true, reason: `all ${i.expected} machine(s) joined` };
  const r = i.rule;
  if (r.kind === 'deadline' && i.now >= Date.parse(r.at)) {
    return i.joined > 0 ? { start: true, reason: `deadline ${r.at} reached with ${i.joined}/${i.expected} joined` } : { start: false, reason: `deadline ${r.at} passed; starting when the first machine joins` };
  }
  if (r.kind === 'grace' && i.firstJoinAt !== null && i.now >= i.firstJoinAt + r.seconds * 1000) {
    return { start: true, reason: `grace of ${r.seconds} s after the first join ran out with ${i.joined}/${i.expected} joined` };
  }
  return { start: false, reason: `waiting: ${i.joined}/${i.expected} joined (rule ${describeRule(r)})` };
}

/**
 * A deploy task's options: delta (each machine compares its disk with the image and only what
 * differs is sent and written) and grow (the last partition's filesystem is grown onto a larger
 * disk). Other kinds take neither.
 */
export interface DeployOptions { delta: boolean; grow: boolean }

export function checkDeployOptions(kind: string, o: { delta?: unknown; grow?: unknown }): DeployOptions {
  for (const k of ['delta', 'grow'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new RackcastError('RC_ERR_TASK_INVALID', `${k} must be true or false`);
    if (o[k] === true && kind !== 'deploy') throw new RackcastError('RC_ERR_TASK_INVALID', `${k} is an option of deploy tasks, not of ${kind} tasks`);
  }
  return { delta: o.delta === true, grow: o.grow === true };
}

export function describeRule(r: StartRule): string {
  return r.kind === 'all' ? 'all joined' : r.kind === 'deadline' ? `deadline ${r.at}` : `first join + ${r.seconds} s`;
}
