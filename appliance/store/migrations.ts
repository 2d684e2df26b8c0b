// Schema migrations after the first (which lives in db.ts and is never edited). Each is applied
// once, in a transaction, and bumps schema_version.

/** 1: groups, machine settings (group, boot policy, pinned disk), schedules, start rules,
 * retries, Wake-on-LAN, per-machine attempts/progress/timestamps, webhook bookkeeping. */
export const MIGRATION_1 = `
  create table groups (
    name text primary key, description text, boot_policy text not null default 'auto' check (boot_policy in ('auto', 'local')),
    disk_serial text, disk_wwn text, created_at text not null);
  alter table machines add column name text;
  alter table machines add column group_name text references groups(name) on delete set null;
  alter table machines add column boot_policy text check (boot_policy in ('auto', 'local'));
  alter table machines add column disk_serial text;
  alter table machines add column disk_wwn text;
  alter table tasks add column target text;
  alter table tasks add column parent_id integer references tasks(id);
  alter table tasks add column schedule_at text;
  alter table tasks add column schedule_cron text;
  alter table tasks add column next_run_at text;
  alter table tasks add column start_rule text not null default '{"kind":"all"}';
  alter table tasks add column retries integer not null default 0;
  alter table tasks add column wol integer not null default 0;
  alter table tasks add column armed_at text;
  alter table tasks add column session_state text;
  alter table tasks add column session_reason text;
  alter table tasks add column started_at text;
  alter table tasks add column ended_at text;
  alter table tasks add column reason text;
  alter table tasks add column notified_at text;
  alter table task_machines add column attempts integer not null default 0;
  alter table task_machines add column bytes_done integer;
  alter table task_machines add column bytes_total integer;
  alter table task_machines add column mbps real;
  alter table task_machines add column verify text;
  alter table task_machines add column joined_at text;
  alter table task_machines add column started_at text;
  alter table task_machines add column ended_at text;
  create index events_task on events (task_id, id);
  create index task_machines_mac on task_machines (mac, state);
`;

/** 2: deploy options: delta (compare each disk, fetch only what differs) and grow (filesystem onto a larger disk). */
export const MIGRATION_2 = `
  alter table tasks add column delta integer not null default 0;
  alter table tasks add column grow integer not null default 0;
`;
