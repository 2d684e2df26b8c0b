// The appliance's state: one SQLite file (node:sqlite) in the data directory, WAL, versioned
// migrations. Machines the network has seen, tasks and the machines in them. Every state change
// is a row update, so a restarted appliance knows exactly where each task was.
import { DatabaseSync } from 'node:sqlite';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { RackcastError } from '../../services/errors.ts';

const MIGRATIONS: string[] = [
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
];

export const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
export type TaskKind = 'deploy' | 'capture' | 'register';
export interface Machine { mac: string; uuid: string | null; arch: string | null; firstSeen: string; lastSeen: string; bootCount: number }
export interface Assignment { taskId: number; kind: TaskKind; image: string | null; mac: string; token: string; state: string }
export interface Task { id: number; kind: TaskKind; image: string | null; state: string; createdAt: string; machines: { mac: string; state: string; detail: string | null }[] }

/** "52-54-00-AB-CD-EF" / "5254.00ab.cdef" / "52:54:00:ab:cd:ef" → "52:54:00:ab:cd:ef", or undefined. */
export function normalizeMac(s: string): string | undefined {
  const hex = s.toLowerCase().replace(/[^0-9a-f]/g, '');
  if (hex.length !== 12 || !/^[0-9a-f:.-]+$/i.test(s)) return undefined;
  return hex.match(/../g)?.join(':');
}

export class Store {
  readonly db: DatabaseSync;

  private constructor(db: DatabaseSync) {
    this.db = db;
  }

  static open(dataDir: string): Store {
    mkdirSync(dataDir, { recursive: true });
    const db = new DatabaseSync(join(dataDir, 'rackcast.db'));
    db.exec('pragma journal_mode = wal; pragma synchronous = normal; pragma foreign_keys = on; pragma busy_timeout = 5000;');
    db.exec('create table if not exists schema_version (version integer not null)');
    const row = db.prepare('select version from schema_version').get() as { version: number } | undefined;
    let v = row?.version ?? 0;
    if (v > MIGRATIONS.length) throw new RackcastError('RC_ERR_IO', `the data directory's database is schema ${v}, newer than this rackcast (${MIGRATIONS.length}): upgrade rackcast`);
    for (; v < MIGRATIONS.length; v++) {
      db.exec('begin');
      db.exec(MIGRATIONS[v] as string);
      db.exec('delete from schema_version');
      db.prepare('insert into schema_version (version) values (?)').run(v + 1);
      db.exec('commit');
    }
    return new Store(db);
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }

  event(kind: string, detail: Record<string, unknown> = {}, mac?: string, taskId?: number): void {
    this.db.prepare('insert into events (at, kind, mac, task_id, detail) values (?, ?, ?, ?, ?)').run(new Date().toISOString(), kind, mac ?? null, taskId ?? null, JSON.stringify(detail));
  }

  /** Record that a machine asked to boot; returns whether it was new. */
  sawMachine(mac: string, info: { uuid?: string; arch?: string } = {}): boolean {
    const now = new Date().toISOString();
    const r = this.db.prepare(`insert into machines (mac, uuid, arch, first_seen, last_seen, boot_count) values (?, ?, ?, ?, ?, 1)
      on conflict(mac) do update set last_seen = excluded.last_seen, boot_count = boot_count + 1,
        uuid = coalesce(excluded.uuid, uuid), arch = coalesce(excluded.arch, arch)`).run(mac, info.uuid ?? null, info.arch ?? null, now, now);
    const isNew = (this.db.prepare('select boot_count from machines where mac = ?').get(mac) as { boot_count: number }).boot_count === 1;
    if (isNew) this.event('machine-seen', {}, mac);
    return isNew && r.changes > 0;
  }

  /** The inventory a booted client reported (hello), as JSON in machines.inventory. */
  setInventory(mac: string, inventory: unknown): void {
    const now = new Date().toISOString();
    this.db.prepare(`insert into machines (mac, first_seen, last_seen, inventory) values (?, ?, ?, ?)
      on conflict(mac) do update set last_seen = excluded.last_seen, inventory = excluded.inventory`).run(mac, now, now, JSON.stringify(inventory));
  }

  inventory(mac: string): unknown {
    const r = this.db.prepare('select inventory from machines where mac = ?').get(mac) as { inventory: string | null } | undefined;
    return r?.inventory ? JSON.parse(r.inventory) as unknown : undefined;
  }

  machines(): Machine[] {
    return (this.db.prepare('select * from machines order by mac').all() as Record<string, unknown>[]).map((r) => ({
      mac: r.mac as string, uuid: r.uuid as string | null, arch: r.arch as string | null, firstSeen: r.first_seen as string, lastSeen: r.last_seen as string, bootCount: r.boot_count as number,
    }));
  }

  createTask(kind: TaskKind, image: string | null, macs: string[]): Task {
    if (!macs.length) throw new RackcastError('RC_ERR_USAGE', 'a task needs at least one machine');
    const now = new Date().toISOString();
    this.db.exec('begin');
    try {
      const id = Number(this.db.prepare('insert into tasks (kind, image, created_at, updated_at) values (?, ?, ?, ?)').run(kind, image, now, now).lastInsertRowid);
      for (const mac of macs) {
        const busy = this.assignment(mac);
        if (busy) throw new RackcastError('RC_ERR_USAGE', `machine ${mac} already has ${busy.kind} task ${busy.taskId} pending`);
        this.db.prepare('insert into task_machines (task_id, mac, token, updated_at) values (?, ?, ?, ?)').run(id, mac, randomBytes(24).toString('hex'), now);
      }
      this.event('task-created', { kind, image, machines: macs }, undefined, id);
      this.db.exec('commit');
      return this.task(id) as Task;
    } catch (e) {
      this.db.exec('rollback');
      throw e;
    }
  }

  /** The unfinished task this machine is part of, if any. */
  assignment(mac: string): Assignment | undefined {
    const r = this.db.prepare(`select t.id, t.kind, t.image, m.mac, m.token, m.state from task_machines m join tasks t on t.id = m.task_id
      where m.mac = ? and m.state not in ('done', 'failed', 'cancelled') order by t.id limit 1`).get(mac) as Record<string, unknown> | undefined;
    return r && { taskId: r.id as number, kind: r.kind as TaskKind, image: r.image as string | null, mac: r.mac as string, token: r.token as string, state: r.state as string };
  }

  /** Find an assignment by its client token (the only credential a booted client has). */
  byToken(token: string): Assignment | undefined {
    const r = this.db.prepare(`select t.id, t.kind, t.image, m.mac, m.token, m.state from task_machines m join tasks t on t.id = m.task_id where m.token = ?`).get(token) as Record<string, unknown> | undefined;
    return r && { taskId: r.id as number, kind: r.kind as TaskKind, image: r.image as string | null, mac: r.mac as string, token: r.token as string, state: r.state as string };
  }

  setMachineState(taskId: number, mac: string, state: string, detail?: string): void {
    const now = new Date().toISOString();
    this.db.prepare('update task_machines set state = ?, detail = ?, updated_at = ? where task_id = ? and mac = ?').run(state, detail ?? null, now, taskId, mac);
    const open = (this.db.prepare(`select count(*) n from task_machines where task_id = ? and state not in ('done', 'failed', 'cancelled')`).get(taskId) as { n: number }).n;
    const failed = (this.db.prepare(`select count(*) n from task_machines where task_id = ? and state = 'failed'`).get(taskId) as { n: number }).n;
    this.db.prepare('update tasks set state = ?, updated_at = ? where id = ?').run(open ? 'running' : failed ? 'failed' : 'done', now, taskId);
    this.event('machine-state', { state, detail }, mac, taskId);
  }

  task(id: number): Task | undefined {
    const t = this.db.prepare('select * from tasks where id = ?').get(id) as Record<string, unknown> | undefined;
    if (!t) return undefined;
    const machines = (this.db.prepare('select mac, state, detail from task_machines where task_id = ? order by mac').all(id) as { mac: string; state: string; detail: string | null }[]).map((m) => ({ ...m }));
    return { id, kind: t.kind as TaskKind, image: t.image as string | null, state: t.state as string, createdAt: t.created_at as string, machines };
  }

  tasks(): Task[] {
    return (this.db.prepare('select id from tasks order by id').all() as { id: number }[]).map((r) => this.task(r.id) as Task);
  }
}
