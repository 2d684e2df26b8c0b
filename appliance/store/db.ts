// The appliance's state: one SQLite file (node:sqlite) in the data directory, WAL, versioned
// migrations. Machines the network has seen, groups, tasks and the machines in them (state,
// attempts, progress), events. Every state change is a row update inside a transaction, so a
// restarted appliance knows exactly where each task was (docs/control-plane.md).
import { DatabaseSync } from 'node:sqlite';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { RackcastError } from '../../services/errors.ts';
import { FINISHED, checkDeployOptions, checkStartRule, type StartRule, type TaskState } from '../tasks.ts';
import { MIGRATION_1, MIGRATION_2 } from './migrations.ts';

export const MIGRATIONS: string[] = [
  `create table machines (
     mac text primary key, uuid text, arch text, first_seen text not null, last_seen text not null,
     inventory text, boot_count integer not null default 0);
   create table tasks (
     id integer primary key, kind text not null check (kind in ('deploy', 'capture', 'register')),
     image text, state text not null default 'pending', created_at text not null, updated_at text not null);
   create table task_machines (
     task_id integer not null references tasks(id), mac text not null, token text not null unique,
     state text not null default 'pending', detail text, updated_at text not null, primary key (task_id, mac));
   create table events (id integer primary key, at text not null, kind text not null, mac text, task_id integer, detail text);`,
  MIGRATION_1,
  MIGRATION_2,
];

export const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
export const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** disk serials and WWNs travel on the kernel command line: no spaces or quotes */
export const DISK_ID = /^[A-Za-z0-9._:-]{1,128}$/;

function checkSettings(s: { bootPolicy?: string | null; diskSerial?: string | null; diskWwn?: string | null }): void {
  if (s.bootPolicy && s.bootPolicy !== 'auto' && s.bootPolicy !== 'local') throw new RackcastError('RC_ERR_MACHINE_INVALID', `bootPolicy must be auto or local (got ${s.bootPolicy})`);
  for (const k of ['diskSerial', 'diskWwn'] as const) {
    const v = s[k];
    if (v && !DISK_ID.test(v)) throw new RackcastError('RC_ERR_MACHINE_INVALID', `${k} may hold only letters, digits and . _ : - (at most 128): got "${v}"`);
  }
}
export type TaskKind = 'deploy' | 'capture' | 'register';
export type BootPolicy = 'auto' | 'local';
export interface Machine {
  mac: string; uuid: string | null; arch: string | null; firstSeen: string; lastSeen: string; bootCount: number;
  name: string | null; group: string | null; bootPolicy: BootPolicy | null; diskSerial: string | null; diskWwn: string | null;
}
export interface MachineSettings { name?: string | null; group?: string | null; bootPolicy?: BootPolicy | null; diskSerial?: string | null; diskWwn?: string | null }
export interface Group { name: string; description: string | null; bootPolicy: BootPolicy; diskSerial: string | null; diskWwn: string | null; createdAt: string; machines: string[] }
export interface GroupSettings { description?: string | null; bootPolicy?: BootPolicy; diskSerial?: string | null; diskWwn?: string | null }
export interface Assignment { taskId: number; kind: TaskKind; image: string | null; mac: string; token: string; state: string }
export interface TaskMachine {
  mac: string; state: string; detail: string | null; attempts: number; bytesDone: number | null; bytesTotal: number | null; mbps: number | null;
  verify: string | null; joinedAt: string | null; startedAt: string | null; endedAt: string | null; updatedAt: string;
}
export interface Task {
  id: number; kind: TaskKind; image: string | null; state: TaskState; createdAt: string; updatedAt: string;
  target: { machines?: string[]; group?: string } | null; parentId: number | null; scheduleAt: string | null; cron: string | null; nextRunAt: string | null;
  startRule: StartRule; retries: number; wol: boolean; armedAt: string | null; session: { state: string; reason: string | null } | null;
  /** deploy options (appliance/tasks.ts DeployOptions) */
  delta: boolean; grow: boolean;
  startedAt: string | null; endedAt: string | null; reason: string | null; notifiedAt: string | null; machines: TaskMachine[];
}
export interface TaskSpec {
  kind: TaskKind; image: string | null; machines?: string[]; group?: string;
  /** arm at this time (ISO) instead of now */
  at?: string;
  /** a recurring schedule: each firing creates a child task */
  cron?: string; nextRunAt?: string;
  startRule?: StartRule; retries?: number; wol?: boolean;
  delta?: boolean; grow?: boolean;
}
export interface EventRow { id: number; at: string; kind: string; mac: string | null; taskId: number | null; detail: Record<string, unknown> }
export interface Progress { done: number; total: number; mbps: number; verify?: 'ok' | 'failed' | 'skipped' }
export type Change = { type: 'event'; event: EventRow } | { type: 'progress'; taskId: number; mac: string; progress: Progress };
export interface StoreOptions { now?: () => number }

/** "52-54-00-AB-CD-EF" / "5254.00ab.cdef" / "52:54:00:ab:cd:ef" → "52:54:00:ab:cd:ef", or undefined. */
export function normalizeMac(s: string): string | undefined {
  const hex = s.toLowerCase().replace(/[^0-9a-f]/g, '');
  if (hex.length !== 12 || !/^[0-9a-f:.-]+$/i.test(s)) return undefined;
  return hex.match(/../g)?.join(':');
}

type Row = Record<string, unknown>;
const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const OPEN = `state not in ('done', 'failed', 'cancelled')`;

export class Store {
  readonly db: DatabaseSync;
  readonly now: () => number;
  #listeners = new Set<(c: Change) => void>();

  private constructor(db: DatabaseSync, now: () => number) {
    this.db = db;
    this.now = now;
  }

  static open(dataDir: string, o: StoreOptions = {}): Store {
    mkdirSync(dataDir, { recursive: true });
    const db = new DatabaseSync(join(dataDir, 'rackcast.db'));
    db.exec('pragma journal_mode = wal; pragma synchronous = normal; pragma foreign_keys = on; pragma busy_timeout = 5000;');
    db.exec('create table if not exists schema_version (version integer not null)');
    const row = db.prepare('select version from schema_version').get() as { version: number } | undefined;
    let v = row?.version ?? 0;
    if (v > MIGRATIONS.length) throw new RackcastError('RC_ERR_IO', `the data directory's database is schema ${v}, newer than this rackcast (${MIGRATIONS.length}): upgrade rackcast`);
    for (; v < MIGRATIONS.length; v++) {
      db.exec('begin immediate');
      try {
        // another process may have migrated between our read and our lock
        const cur = (db.prepare('select version from schema_version').get() as { version: number } | undefined)?.version ?? 0;
        if (cur > v) { db.exec('commit'); v = cur - 1; continue; }
        db.exec(MIGRATIONS[v] as string);
        db.exec('delete from schema_version');
        db.prepare('insert into schema_version (version) values (?)').run(v + 1);
        db.exec('commit');
      } catch (e) {
        db.exec('rollback');
        throw e;
      }
    }
    return new Store(db, o.now ?? Date.now);
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }

  #iso(): string {
    return new Date(this.now()).toISOString();
  }

  /** Run fn in one transaction (nested calls join the outer one). */
  tx<T>(fn: () => T): T {
    if (this.db.isTransaction) return fn();
    this.db.exec('begin immediate');
    try {
      const r = fn();
      this.db.exec('commit');
      return r;
    } catch (e) {
      this.db.exec('rollback');
      throw e;
    }
  }

  /** Subscribe to events and progress (server-sent events, webhooks); returns the unsubscribe. */
  onChange(f: (c: Change) => void): () => void {
    this.#listeners.add(f);
    return () => { this.#listeners.delete(f); };
  }

  #emit(c: Change): void {
    for (const f of this.#listeners) { try { f(c); } catch { /* a listener never breaks a state change */ } }
  }

  event(kind: string, detail: Record<string, unknown> = {}, mac?: string, taskId?: number): void {
    const at = this.#iso();
    const id = Number(this.db.prepare('insert into events (at, kind, mac, task_id, detail) values (?, ?, ?, ?, ?)').run(at, kind, mac ?? null, taskId ?? null, JSON.stringify(detail)).lastInsertRowid);
    // a client's hello is its join: the deploy start rule counts these
    if (kind === 'client-hello' && mac && taskId !== undefined) {
      this.db.prepare('update task_machines set joined_at = coalesce(joined_at, ?) where task_id = ? and mac = ?').run(at, taskId, mac);
    }
    this.#emit({ type: 'event', event: { id, at, kind, mac: mac ?? null, taskId: taskId ?? null, detail } });
  }

  events(q: { taskId?: number; mac?: string; after?: number; kind?: string; limit?: number } = {}): EventRow[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.taskId !== undefined) { where.push('task_id = ?'); args.push(q.taskId); }
    if (q.mac) { where.push('mac = ?'); args.push(q.mac); }
    if (q.after !== undefined) { where.push('id > ?'); args.push(q.after); }
    if (q.kind) { where.push('kind = ?'); args.push(q.kind); }
    const sql = `select * from events ${where.length ? `where ${where.join(' and ')}` : ''} order by id limit ?`;
    return (this.db.prepare(sql).all(...args, Math.min(q.limit ?? 1000, 10000)) as Row[]).map((r) => ({
      id: Number(r.id), at: String(r.at), kind: String(r.kind), mac: str(r.mac), taskId: num(r.task_id), detail: r.detail ? JSON.parse(String(r.detail)) as Record<string, unknown> : {},
    }));
  }

  // ---- machines and groups ----

  /** Record that a machine asked to boot; returns whether it was new. */
  sawMachine(mac: string, info: { uuid?: string; arch?: string } = {}): boolean {
    const now = this.#iso();
    // a machine the admin added by MAC before it ever booted is known, not new
    const isNew = !this.db.prepare('select 1 from machines where mac = ?').get(mac);
    this.db.prepare(`insert into machines (mac, uuid, arch, first_seen, last_seen, boot_count) values (?, ?, ?, ?, ?, 1)
      on conflict(mac) do update set last_seen = excluded.last_seen, boot_count = boot_count + 1,
        uuid = coalesce(excluded.uuid, uuid), arch = coalesce(excluded.arch, arch)`).run(mac, info.uuid ?? null, info.arch ?? null, now, now);
    if (isNew) this.event('machine-seen', {}, mac);
    return isNew;
  }

  /** The inventory a booted client reported (hello), as JSON in machines.inventory. */
  setInventory(mac: string, inventory: unknown): void {
    const now = this.#iso();
    this.db.prepare(`insert into machines (mac, first_seen, last_seen, inventory) values (?, ?, ?, ?)
      on conflict(mac) do update set last_seen = excluded.last_seen, inventory = excluded.inventory`).run(mac, now, now, JSON.stringify(inventory));
  }

  inventory(mac: string): unknown {
    const r = this.db.prepare('select inventory from machines where mac = ?').get(mac) as { inventory: string | null } | undefined;
    return r?.inventory ? JSON.parse(r.inventory) as unknown : undefined;
  }

  static #machine(r: Row): Machine {
    return {
      mac: String(r.mac), uuid: str(r.uuid), arch: str(r.arch), firstSeen: String(r.first_seen), lastSeen: String(r.last_seen), bootCount: Number(r.boot_count),
      name: str(r.name), group: str(r.group_name), bootPolicy: str(r.boot_policy) as BootPolicy | null, diskSerial: str(r.disk_serial), diskWwn: str(r.disk_wwn),
    };
  }

  machines(q: { group?: string } = {}): Machine[] {
    const rows = q.group !== undefined ? this.db.prepare('select * from machines where group_name = ? order by mac').all(q.group) : this.db.prepare('select * from machines order by mac').all();
    return (rows as Row[]).map((r) => Store.#machine(r));
  }

  machine(mac: string): Machine | undefined {
    const r = this.db.prepare('select * from machines where mac = ?').get(mac) as Row | undefined;
    return r && Store.#machine(r);
  }

  /** Register or change a machine (an admin may add one by MAC before it ever booted, e.g. for Wake-on-LAN). */
  setMachine(mac: string, s: MachineSettings): Machine {
    if (!MAC.test(mac)) throw new RackcastError('RC_ERR_MACHINE_INVALID', `not a MAC address: ${mac}`);
    checkSettings(s);
    if (s.group && !this.group(s.group)) throw new RackcastError('RC_ERR_GROUP_NOT_FOUND', `no group named "${s.group}": create it first (rackcast group set / PUT /api/v1/groups/${s.group})`);
    return this.tx(() => {
      const now = this.#iso();
      this.db.prepare('insert into machines (mac, first_seen, last_seen, boot_count) values (?, ?, ?, 0) on conflict(mac) do nothing').run(mac, now, now);
      const cols: [string, keyof MachineSettings][] = [['name', 'name'], ['group_name', 'group'], ['boot_policy', 'bootPolicy'], ['disk_serial', 'diskSerial'], ['disk_wwn', 'diskWwn']];
      for (const [col, key] of cols) if (s[key] !== undefined) this.db.prepare(`update machines set ${col} = ? where mac = ?`).run(s[key] ?? null, mac);
      this.event('machine-set', { ...s }, mac);
      return this.machine(mac) as Machine;
    });
  }

  groups(): Group[] {
    return (this.db.prepare('select name from groups order by name').all() as { name: string }[]).map((r) => this.group(r.name) as Group);
  }

  group(name: string): Group | undefined {
    const r = this.db.prepare('select * from groups where name = ?').get(name) as Row | undefined;
    if (!r) return undefined;
    const machines = (this.db.prepare('select mac from machines where group_name = ? order by mac').all(name) as { mac: string }[]).map((m) => m.mac);
    return { name, description: str(r.description), bootPolicy: String(r.boot_policy) as BootPolicy, diskSerial: str(r.disk_serial), diskWwn: str(r.disk_wwn), createdAt: String(r.created_at), machines };
  }

  setGroup(name: string, s: GroupSettings = {}): Group {
    if (!GROUP_NAME.test(name)) throw new RackcastError('RC_ERR_GROUP_INVALID', `group name "${name}" is not allowed: use letters, digits, . _ -, at most 64 characters`);
    checkSettings(s);
    return this.tx(() => {
      this.db.prepare('insert into groups (name, created_at) values (?, ?) on conflict(name) do nothing').run(name, this.#iso());
      const cols: [string, keyof GroupSettings][] = [['description', 'description'], ['boot_policy', 'bootPolicy'], ['disk_serial', 'diskSerial'], ['disk_wwn', 'diskWwn']];
      for (const [col, key] of cols) if (s[key] !== undefined) this.db.prepare(`update groups set ${col} = ? where name = ?`).run(s[key] ?? null, name);
      this.event('group-set', { name, ...s });
      return this.group(name) as Group;
    });
  }

  deleteGroup(name: string): void {
    if (!this.group(name)) throw new RackcastError('RC_ERR_GROUP_NOT_FOUND', `no group named "${name}"`);
    const waiting = this.db.prepare(`select id from tasks where state = 'scheduled' and json_extract(target, '$.group') = ?`).get(name) as { id: number } | undefined;
    if (waiting) throw new RackcastError('RC_ERR_GROUP_INVALID', `scheduled task ${waiting.id} targets group "${name}": cancel it first`);
    this.tx(() => {
      this.db.prepare('update machines set group_name = null where group_name = ?').run(name);
      this.db.prepare('delete from groups where name = ?').run(name);
      this.event('group-deleted', { name });
    });
  }

  /** The machine's effective boot settings: its own, else its group's, else auto. */
  bootSettings(mac: string): { policy: BootPolicy; diskSerial: string | null; diskWwn: string | null } {
    const m = this.machine(mac);
    const g = m?.group ? this.group(m.group) : undefined;
    return { policy: m?.bootPolicy ?? g?.bootPolicy ?? 'auto', diskSerial: m?.diskSerial ?? g?.diskSerial ?? null, diskWwn: m?.diskWwn ?? g?.diskWwn ?? null };
  }

  // ---- tasks ----

  /** The original form: a task for these machines, armed now. */
  createTask(kind: TaskKind, image: string | null, macs: string[]): Task {
    if (!macs.length) throw new RackcastError('RC_ERR_USAGE', 'a task needs at least one machine');
    return this.create({ kind, image, machines: macs });
  }

  create(spec: TaskSpec): Task {
    const targets = [spec.machines?.length ? 1 : 0, spec.group ? 1 : 0].reduce((a, b) => a + b, 0);
    if (targets !== 1) throw new RackcastError('RC_ERR_TASK_INVALID', 'a task targets either machines or a group (exactly one of them)');
    if (spec.at && spec.cron) throw new RackcastError('RC_ERR_TASK_INVALID', 'a task has either a time (at) or a cron schedule, not both');
    if (spec.kind === 'capture' && (spec.group || (spec.machines?.length ?? 0) !== 1)) throw new RackcastError('RC_ERR_TASK_INVALID', 'a capture task takes exactly one machine');
    if ((spec.kind === 'deploy' || spec.kind === 'capture') && !spec.image) throw new RackcastError('RC_ERR_TASK_INVALID', `a ${spec.kind} task needs an image name`);
    if (spec.group && !this.group(spec.group)) throw new RackcastError('RC_ERR_GROUP_NOT_FOUND', `no group named "${spec.group}"`);
    if (spec.cron && !spec.nextRunAt) throw new RackcastError('RC_ERR_TASK_INVALID', 'a cron task needs its next run time (the scheduler computes it)');
    const macs = spec.machines && [...new Set(spec.machines.map((m) => {
      const n = normalizeMac(m);
      if (!n) throw new RackcastError('RC_ERR_MACHINE_INVALID', `not a MAC address: ${m}`);
      return n;
    }))];
    const rule = checkStartRule(spec.startRule ?? { kind: 'all' });
    const retries = spec.retries ?? 0;
    if (!Number.isInteger(retries) || retries < 0 || retries > 10) throw new RackcastError('RC_ERR_TASK_INVALID', 'retries must be a whole number from 0 to 10');
    const opts = checkDeployOptions(spec.kind, spec);
    const scheduled = Boolean(spec.at || spec.cron);
    return this.tx(() => {
      const now = this.#iso();
      const target = JSON.stringify(macs ? { machines: macs } : { group: spec.group });
      const next = spec.at ? new Date(spec.at).toISOString() : spec.nextRunAt ? new Date(spec.nextRunAt).toISOString() : null;
      const id = Number(this.db.prepare(`insert into tasks (kind, image, state, created_at, updated_at, target, schedule_at, schedule_cron, next_run_at, start_rule, retries, wol, delta, grow)
        values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(spec.kind, spec.image, scheduled ? 'scheduled' : 'pending', now, now, target, spec.at ? next : null, spec.cron ?? null, next, JSON.stringify(rule), retries, spec.wol ? 1 : 0, opts.delta ? 1 : 0, opts.grow ? 1 : 0).lastInsertRowid);
      this.event('task-created', { kind: spec.kind, image: spec.image, ...(macs ? { machines: macs } : { group: spec.group }), ...(next ? { runAt: next } : {}), ...(spec.cron ? { cron: spec.cron } : {}) }, undefined, id);
      if (!scheduled) this.#arm(id, true);
      return this.task(id) as Task;
    });
  }

  /**
   * scheduled → pending: resolve the target to machines and give each a token. `strict` (a task
   * created for now) refuses busy machines; a scheduled one records them as failed with the reason.
   */
  #arm(id: number, strict: boolean): void {
    const t = this.task(id) as Task;
    const macs = t.target?.machines ?? this.machines({ group: t.target?.group ?? '' }).map((m) => m.mac);
    const now = this.#iso();
    this.db.prepare(`update tasks set state = 'pending', armed_at = ?, updated_at = ?, session_state = ? where id = ?`).run(now, now, t.kind === 'deploy' ? 'waiting' : null, id);
    if (!macs.length) {
      this.#finishTask(id, 'failed', `group "${t.target?.group ?? ''}" has no machines`);
      return;
    }
    for (const mac of macs) {
      const busy = this.assignment(mac);
      const local = this.bootSettings(mac).policy === 'local';
      const why = busy ? `machine ${mac} already has ${busy.kind} task ${busy.taskId} pending` : local ? `machine ${mac} has boot policy "local" (never network-boots a task): change it with rackcast machine set` : undefined;
      if (why && strict) throw new RackcastError(busy ? 'RC_ERR_USAGE' : 'RC_ERR_TASK_INVALID', why);
      this.db.prepare('insert into task_machines (task_id, mac, token, state, detail, updated_at, ended_at) values (?, ?, ?, ?, ?, ?, ?)')
        .run(id, mac, randomBytes(24).toString('hex'), why ? 'failed' : 'pending', why ?? null, now, why ? now : null);
      if (why) this.event('machine-state', { state: 'failed', detail: why }, mac, id);
    }
    this.event('task-armed', { machines: macs }, undefined, id);
    this.#recompute(id);
  }

  /** Arm a scheduled one-shot task (the scheduler calls this at its time). */
  arm(id: number): Task {
    return this.tx(() => {
      const t = this.task(id);
      if (!t || t.state !== 'scheduled' || t.cron) throw new RackcastError('RC_ERR_TASK_STATE', `task ${id} is not a scheduled one-shot task`);
      this.#arm(id, false);
      return this.task(id) as Task;
    });
  }

  /** A cron task fires: a child task armed now; the parent waits for `nextRunAt`. */
  fire(parentId: number, nextRunAt: string | null): Task {
    return this.tx(() => {
      const p = this.task(parentId);
      if (!p || p.state !== 'scheduled' || !p.cron) throw new RackcastError('RC_ERR_TASK_STATE', `task ${parentId} is not a scheduled cron task`);
      const now = this.#iso();
      const id = Number(this.db.prepare(`insert into tasks (kind, image, state, created_at, updated_at, target, parent_id, start_rule, retries, wol, delta, grow) values (?, ?, 'scheduled', ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(p.kind, p.image, now, now, JSON.stringify(p.target), parentId, JSON.stringify(p.startRule), p.retries, p.wol ? 1 : 0, p.delta ? 1 : 0, p.grow ? 1 : 0).lastInsertRowid);
      this.db.prepare('update tasks set next_run_at = ?, updated_at = ? where id = ?').run(nextRunAt, now, parentId);
      this.event('task-fired', { child: id, nextRunAt }, undefined, parentId);
      this.event('task-created', { kind: p.kind, image: p.image, parent: parentId }, undefined, id);
      this.#arm(id, false);
      return this.task(id) as Task;
    });
  }

  /** The unfinished task this machine is part of, if any (armed tasks only). */
  assignment(mac: string): Assignment | undefined {
    const r = this.db.prepare(`select t.id, t.kind, t.image, m.mac, m.token, m.state from task_machines m join tasks t on t.id = m.task_id
      where m.mac = ? and m.state not in ('done', 'failed', 'cancelled') and t.state in ('pending', 'running') order by t.id limit 1`).get(mac) as Row | undefined;
    return r && { taskId: Number(r.id), kind: r.kind as TaskKind, image: str(r.image), mac: String(r.mac), token: String(r.token), state: String(r.state) };
  }

  /** Find an assignment by its client token (the only credential a booted client has). */
  byToken(token: string): Assignment | undefined {
    const r = this.db.prepare(`select t.id, t.kind, t.image, m.mac, m.token, m.state from task_machines m join tasks t on t.id = m.task_id where m.token = ?`).get(token) as Row | undefined;
    return r && { taskId: Number(r.id), kind: r.kind as TaskKind, image: str(r.image), mac: String(r.mac), token: String(r.token), state: String(r.state) };
  }

  /**
   * A machine's part of a task moves on. A failure with retries left sends the machine back to
   * pending (its next network boot tries again); the task's own state follows its machines.
   */
  setMachineState(taskId: number, mac: string, state: string, detail?: string): void {
    this.tx(() => {
      const now = this.#iso();
      const t = this.db.prepare('select retries from tasks where id = ?').get(taskId) as { retries: number } | undefined;
      const m = this.db.prepare('select attempts, state from task_machines where task_id = ? and mac = ?').get(taskId, mac) as { attempts: number; state: string } | undefined;
      if (!t || !m) return;
      if (state === m.state && state === 'running') {
        // a running machine's progress line: the state is unchanged, so no event per report
        this.db.prepare(`update task_machines set detail = coalesce(?, detail), updated_at = ? where task_id = ? and mac = ?`).run(detail ?? null, now, taskId, mac);
        return;
      }
      if (state === 'failed' && m.attempts < t.retries) {
        this.db.prepare(`update task_machines set state = 'pending', detail = ?, attempts = attempts + 1, updated_at = ?, joined_at = null, bytes_done = null, mbps = null where task_id = ? and mac = ?`)
          .run(detail ?? null, now, taskId, mac);
        this.event('machine-retry', { attempt: m.attempts + 2, of: t.retries + 1, detail }, mac, taskId);
      } else {
        const end = FINISHED.has(state) ? now : null;
        this.db.prepare(`update task_machines set state = ?, detail = ?, updated_at = ?, started_at = coalesce(started_at, case when ? != 'pending' then ? end), ended_at = ? where task_id = ? and mac = ?`)
          .run(state, detail ?? null, now, state, now, end, taskId, mac);
        this.event('machine-state', { state, detail }, mac, taskId);
      }
      this.#recompute(taskId);
    });
  }

  /** Bytes written/received so far, total, current MB/s (and the verify result at the end). */
  setMachineProgress(taskId: number, mac: string, p: Progress): void {
    const r = this.db.prepare(`update task_machines set bytes_done = ?, bytes_total = ?, mbps = ?, verify = coalesce(?, verify), updated_at = ? where task_id = ? and mac = ? and ${OPEN}`)
      .run(Math.max(0, Math.floor(p.done)), Math.max(0, Math.floor(p.total)), Number.isFinite(p.mbps) ? p.mbps : 0, p.verify ?? null, this.#iso(), taskId, mac);
    if (r.changes) this.#emit({ type: 'progress', taskId, mac, progress: p });
  }

  #recompute(taskId: number): void {
    const t = this.db.prepare('select state from tasks where id = ?').get(taskId) as { state: string } | undefined;
    if (!t || FINISHED.has(t.state) || t.state === 'scheduled') return;
    const counts = this.db.prepare(`select sum(case when ${OPEN} then 1 else 0 end) open, sum(case when state = 'failed' then 1 else 0 end) failed,
      sum(case when state not in ('pending', 'done', 'failed', 'cancelled') then 1 else 0 end) active, count(*) n from task_machines where task_id = ?`).get(taskId) as { open: number | null; failed: number | null; active: number | null; n: number };
    if (counts.n === 0) return;
    if (counts.open) {
      const now = this.#iso();
      if (counts.active && t.state === 'pending') this.db.prepare(`update tasks set state = 'running', started_at = coalesce(started_at, ?), updated_at = ? where id = ?`).run(now, now, taskId);
      else this.db.prepare('update tasks set updated_at = ? where id = ?').run(now, taskId);
      return;
    }
    this.#finishTask(taskId, counts.failed ? 'failed' : 'done', counts.failed ? `${counts.failed} of ${counts.n} machine(s) failed` : null);
  }

  #finishTask(taskId: number, state: 'done' | 'failed' | 'cancelled', reason: string | null): void {
    const now = this.#iso();
    this.db.prepare(`update tasks set state = ?, reason = coalesce(?, reason), ended_at = ?, updated_at = ? where id = ?`).run(state, reason, now, now, taskId);
    this.event('task-ended', { state, reason }, undefined, taskId);
  }

  /** Stop a task: every open machine is cancelled (its next boot is local), the task ends. */
  cancel(taskId: number, reason = 'cancelled by the admin'): Task {
    return this.tx(() => {
      const t = this.task(taskId);
      if (!t) throw new RackcastError('RC_ERR_TASK_NOT_FOUND', `no task ${taskId}`);
      if (FINISHED.has(t.state)) throw new RackcastError('RC_ERR_TASK_STATE', `task ${taskId} is already ${t.state}`);
      const now = this.#iso();
      this.db.prepare(`update task_machines set state = 'cancelled', detail = ?, ended_at = ?, updated_at = ? where task_id = ? and ${OPEN}`).run(reason, now, now, taskId);
      this.#finishTask(taskId, 'cancelled', reason);
      return this.task(taskId) as Task;
    });
  }

  /** Fail a task with a stated reason: its open machines fail with it (no retries). */
  fail(taskId: number, reason: string): void {
    this.tx(() => {
      const now = this.#iso();
      const open = this.db.prepare(`select mac from task_machines where task_id = ? and ${OPEN}`).all(taskId) as { mac: string }[];
      this.db.prepare(`update task_machines set state = 'failed', detail = ?, ended_at = ?, updated_at = ? where task_id = ? and ${OPEN}`).run(reason, now, now, taskId);
      for (const m of open) this.event('machine-state', { state: 'failed', detail: reason }, m.mac, taskId);
      this.#finishTask(taskId, 'failed', reason);
    });
  }

  /** Change when a waiting deploy session starts (refused once it has started). */
  setStartRule(taskId: number, rule: StartRule): Task {
    return this.tx(() => {
      const t = this.task(taskId);
      if (!t) throw new RackcastError('RC_ERR_TASK_NOT_FOUND', `no task ${taskId}`);
      if (t.kind !== 'deploy') throw new RackcastError('RC_ERR_TASK_STATE', `task ${taskId} is a ${t.kind} task: only deploy tasks have a start rule`);
      if (FINISHED.has(t.state) || t.session?.state === 'started') throw new RackcastError('RC_ERR_TASK_STATE', `task ${taskId}'s session has already started (or the task ended): its start rule can no longer change`);
      const r = checkStartRule(rule);
      this.db.prepare('update tasks set start_rule = ?, updated_at = ? where id = ?').run(JSON.stringify(r), this.#iso(), taskId);
      this.event('start-rule-set', { rule: r }, undefined, taskId);
      return this.task(taskId) as Task;
    });
  }

  /** The deploy session may start now (the engine decided by the start rule). */
  startSession(taskId: number, reason: string): void {
    this.tx(() => {
      const r = this.db.prepare(`update tasks set session_state = 'started', session_reason = ?, updated_at = ? where id = ? and session_state = 'waiting'`).run(reason, this.#iso(), taskId);
      if (r.changes) this.event('session-start', { reason }, undefined, taskId);
    });
  }

  /**
   * May this deploy task's multicast session start now? True once the engine decided by the start
   * rule (event session-start; store.onChange tells listeners at once). For the session runner.
   */
  sessionMayStart(taskId: number): boolean {
    const r = this.db.prepare('select session_state from tasks where id = ?').get(taskId) as { session_state: string | null } | undefined;
    return r?.session_state === 'started';
  }

  markNotified(taskId: number, ok: boolean, detail: Record<string, unknown>): void {
    this.tx(() => {
      this.db.prepare('update tasks set notified_at = ? where id = ?').run(this.#iso(), taskId);
      this.event(ok ? 'webhook-sent' : 'webhook-failed', detail, undefined, taskId);
    });
  }

  task(id: number): Task | undefined {
    const t = this.db.prepare('select * from tasks where id = ?').get(id) as Row | undefined;
    if (!t) return undefined;
    const machines = (this.db.prepare('select * from task_machines where task_id = ? order by mac').all(id) as Row[]).map((m): TaskMachine => ({
      mac: String(m.mac), state: String(m.state), detail: str(m.detail), attempts: Number(m.attempts ?? 0), bytesDone: num(m.bytes_done), bytesTotal: num(m.bytes_total), mbps: num(m.mbps),
      verify: str(m.verify), joinedAt: str(m.joined_at), startedAt: str(m.started_at), endedAt: str(m.ended_at), updatedAt: String(m.updated_at),
    }));
    return {
      id, kind: t.kind as TaskKind, image: str(t.image), state: t.state as TaskState, createdAt: String(t.created_at), updatedAt: String(t.updated_at),
      target: t.target ? JSON.parse(String(t.target)) as Task['target'] : null, parentId: num(t.parent_id), scheduleAt: str(t.schedule_at), cron: str(t.schedule_cron), nextRunAt: str(t.next_run_at),
      startRule: JSON.parse(String(t.start_rule ?? '{"kind":"all"}')) as StartRule, retries: Number(t.retries ?? 0), wol: Boolean(t.wol), armedAt: str(t.armed_at),
      delta: Boolean(t.delta), grow: Boolean(t.grow),
      session: t.session_state ? { state: String(t.session_state), reason: str(t.session_reason) } : null,
      startedAt: str(t.started_at), endedAt: str(t.ended_at), reason: str(t.reason), notifiedAt: str(t.notified_at), machines,
    };
  }

  tasks(q: { state?: string; limit?: number } = {}): Task[] {
    const rows = q.state ? this.db.prepare('select id from tasks where state = ? order by id limit ?').all(q.state, q.limit ?? 10000) : this.db.prepare('select id from tasks order by id limit ?').all(q.limit ?? 10000);
    return (rows as { id: number }[]).map((r) => this.task(Number(r.id)) as Task);
  }
}
