// `rackcast task|machine|group|token …`: the control plane from the command line, over the API of
// a running appliance (--url) or on the data directory directly (cli/backend.ts).
import { parseArgs } from 'node:util';
import { RackcastError } from '../../services/errors.ts';
import { normalizeMac, type Task, type BootPolicy, type MachineSettings } from '../store/db.ts';
import { parseStartRule, FINISHED } from '../tasks.ts';
import { reportHtml } from '../reports.ts';
import type { CreateTask } from '../api/tasks.ts';
import { backendFrom, rotateAdminToken, type Backend } from './backend.ts';
import { fmtBytes } from './progress.ts';
import { dataDirFrom } from './main.ts';

export const TASK_USAGE = `  task deploy IMAGE --machines MAC[,MAC…]|--group G [--at HH:MM|ISO | --cron EXPR]
        [--start all|deadline=ISO|grace=SECONDS] [--retries N] [--wol] [--delta] [--grow]
                                           put an image on machines at their next network boot
                                           (--delta: only what differs on each disk is sent and
                                           written; --grow: fill larger disks)
  task capture MAC --name NAME             capture a machine's disk as image NAME at its next boot
                                           (also: task capture NAME --machine MAC)
  task list [--json] | task show ID [--json] | task cancel ID
  task watch ID                            per-machine progress until the task ends
  task report ID [--json|--html]           the morning report
  machine list [--json] | machine show MAC [--json]
  machine set MAC [--name N] [--group G|--no-group] [--boot-policy auto|local] [--disk-serial S] [--disk-wwn W]
  group list [--json] | group set NAME [--machines MAC,…] [--boot-policy auto|local] [--disk-serial S] [--description D]
  token rotate                             a new admin token (the old one stops working at once)
      (these take --url URL [--token T] to use a running appliance's API, else the data directory)`;

const out = (s: string): void => { process.stdout.write(s + '\n'); };
const common = { store: { type: 'string' }, 'data-dir': { type: 'string' }, url: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean' } } as const;

function macs(s: string): string[] {
  return s.split(',').filter(Boolean).map((m) => {
    const n = normalizeMac(m);
    if (!n) throw new RackcastError('RC_ERR_USAGE', `not a MAC address: ${m}`);
    return n;
  });
}

function policy(s: string | undefined): BootPolicy | undefined {
  if (s !== undefined && s !== 'auto' && s !== 'local') throw new RackcastError('RC_ERR_USAGE', '--boot-policy must be auto or local');
  return s;
}

function id(s: string | undefined, usage: string): number {
  const n = Number(s);
  if (!s || !Number.isInteger(n) || n < 1) throw new RackcastError('RC_ERR_USAGE', `usage: rackcast ${usage}`);
  return n;
}

async function withBackend<T>(v: { store?: string | undefined; 'data-dir'?: string | undefined; url?: string | undefined; token?: string | undefined }, env: NodeJS.ProcessEnv, f: (b: Backend) => Promise<T>): Promise<T> {
  const b = backendFrom({ url: v.url, token: v.token, dataDir: dataDirFrom(v, env) }, env);
  try { return await f(b); } finally { b.close(); }
}

function describeTask(t: Task): string {
  const target = t.target?.group ? `group ${t.target.group}` : `${t.target?.machines?.length ?? t.machines.length} machine(s)`;
  const when = t.cron ? `by cron "${t.cron}", next ${t.nextRunAt}` : t.state === 'scheduled' ? `at ${t.nextRunAt}` : 'at their next network boot';
  return `task ${t.id}: ${t.kind} ${t.image ?? ''}${t.kind === 'capture' ? ` from ${t.target?.machines?.[0] ?? ''}` : ` to ${target}`} ${when}`.replace(/ +/g, ' ');
}

export async function taskCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = argv;
  const { values: v, positionals: pos } = parseArgs({ args: rest, strict: true, allowPositionals: true, options: {
    ...common, machines: { type: 'string' }, machine: { type: 'string' }, group: { type: 'string' }, name: { type: 'string' },
    at: { type: 'string' }, cron: { type: 'string' }, start: { type: 'string' }, retries: { type: 'string' }, wol: { type: 'boolean' },
    delta: { type: 'boolean' }, grow: { type: 'boolean' },
    html: { type: 'boolean' }, interval: { type: 'string' }, timeout: { type: 'string' },
  } });
  return withBackend(v, env, async (b) => {
    if (sub === 'deploy') {
      if (pos.length !== 1 || (!v.machines && !v.group) || (v.machines && v.group)) throw new RackcastError('RC_ERR_USAGE', 'usage: rackcast task deploy IMAGE --machines MAC[,MAC…]|--group G [--at HH:MM | --cron EXPR]');
      if (v.at && v.cron) throw new RackcastError('RC_ERR_USAGE', '--at and --cron exclude each other');
      const retries = v.retries === undefined ? undefined : Number(v.retries);
      if (retries !== undefined && (!Number.isInteger(retries) || retries < 0 || retries > 10)) throw new RackcastError('RC_ERR_USAGE', '--retries must be a whole number from 0 to 10');
      const body: CreateTask = {
        kind: 'deploy', image: pos[0] as string, ...(v.machines ? { machines: macs(v.machines) } : { group: v.group as string }),
        ...(v.at ? { at: v.at } : {}), ...(v.cron ? { cron: v.cron } : {}), ...(v.start ? { startRule: parseStartRule(v.start) } : {}),
        ...(retries !== undefined ? { retries } : {}), ...(v.wol ? { wol: true } : {}), ...(v.delta ? { delta: true } : {}), ...(v.grow ? { grow: true } : {}),
      };
      out(describeTask(await b.createTask(body)));
      return 0;
    }
    if (sub === 'capture') {
      // the new form: capture MAC --name NAME; the first: capture NAME --machine MAC
      const [machine, name] = v.machine ? [v.machine, pos[0]] : [pos[0], v.name];
      if (pos.length !== 1 || !machine || !name || (v.machine && v.name)) throw new RackcastError('RC_ERR_USAGE', 'usage: rackcast task capture MAC --name NAME');
      const t = await b.createTask({ kind: 'capture', image: name, machines: macs(machine), ...(v.at ? { at: v.at } : {}), ...(v.wol ? { wol: true } : {}) });
      out(`task ${t.id}: capture ${t.target?.machines?.[0] ?? machine} as ${t.image} ${t.state === 'scheduled' ? `at ${t.nextRunAt}` : 'at its next network boot'}`);
      return 0;
    }
    if (sub === 'list') {
      const ts = await b.tasks();
      if (v.json) out(JSON.stringify(ts, null, 2));
      else for (const t of ts) out(`${t.id} ${t.kind} ${t.image ?? '-'} ${t.state} ${t.machines.map((m) => `${m.mac}:${m.state}`).join(' ')}`);
      return 0;
    }
    if (sub === 'show') {
      const t = await b.task(id(pos[0], 'task show ID'));
      if (v.json) out(JSON.stringify(t, null, 2));
      else {
        out(`${describeTask(t)} — ${t.state}${t.reason ? ` (${t.reason})` : ''}`);
        for (const m of t.machines) out(`  ${m.mac} ${m.state}${m.detail ? `: ${m.detail}` : ''}${m.bytesTotal ? ` ${fmtBytes(m.bytesDone ?? 0)}/${fmtBytes(m.bytesTotal)}` : ''}`);
      }
      return 0;
    }
    if (sub === 'cancel') {
      const t = await b.cancel(id(pos[0], 'task cancel ID'));
      out(`task ${t.id}: cancelled`);
      return 0;
    }
    if (sub === 'report') {
      const r = await b.report(id(pos[0], 'task report ID [--json|--html]'));
      if (v.json) out(JSON.stringify(r, null, 2));
      else if (v.html) process.stdout.write(reportHtml(r));
      else {
        out(`task ${r.task.id}: ${r.task.kind} ${r.task.image ?? ''} — ${r.task.state}${r.task.reason ? ` (${r.task.reason})` : ''}; ${r.summary.done} done, ${r.summary.failed} failed, ${r.summary.open} open of ${r.summary.machines}`);
        for (const m of r.machines) {
          out(`  ${m.mac} ${m.result} attempts ${m.attempts} ${m.durationSeconds === null ? '' : `${Math.round(m.durationSeconds)} s`} ${m.mbps === null ? '' : `${m.mbps} MB/s`} verify ${m.verify}${m.detail ? ` — ${m.detail}` : ''}`.replace(/ +/g, ' '));
          for (const e of m.errors) { out(`    ${e.at} ${e.what}`); for (const l of e.lines) out(`      | ${l}`); }
        }
      }
      return r.task.state === 'failed' ? 1 : 0;
    }
    if (sub === 'watch') return watch(b, id(pos[0], 'task watch ID'), Number(v.interval ?? 1), Number(v.timeout ?? 86400));
    throw new RackcastError('RC_ERR_USAGE', `unknown task command "${sub ?? ''}" (deploy, capture, list, show, cancel, watch, report)`);
  });
}

/** One line per machine, redrawn in place on a terminal; a line per change otherwise. */
export function watchLines(t: Task): string[] {
  const W = 24;
  return [`task ${t.id} ${t.kind} ${t.image ?? ''} — ${t.state}${t.session ? ` (session ${t.session.state})` : ''}${t.reason ? `: ${t.reason}` : ''}`, ...t.machines.map((m) => {
    const frac = m.bytesTotal ? Math.min(1, (m.bytesDone ?? 0) / m.bytesTotal) : m.state === 'done' ? 1 : 0;
    const fill = Math.round(frac * W);
    const rate = m.mbps && !FINISHED.has(m.state) ? ` ${m.mbps.toFixed(1)} MB/s` : '';
    return `  ${m.mac} ${m.state.padEnd(9)} [${'#'.repeat(fill)}${' '.repeat(W - fill)}] ${(frac * 100).toFixed(0).padStart(3)}%${m.bytesTotal ? ` ${fmtBytes(m.bytesDone ?? 0)}/${fmtBytes(m.bytesTotal)}` : ''}${rate}${m.detail && m.state === 'failed' ? ` ${m.detail}` : ''}`;
  })];
}

async function watch(b: Backend, taskId: number, intervalS: number, timeoutS: number): Promise<number> {
  if (!(intervalS > 0) || !(timeoutS > 0)) throw new RackcastError('RC_ERR_USAGE', '--interval and --timeout are seconds (> 0)');
  const tty = Boolean(process.stdout.isTTY);
  const end = Date.now() + timeoutS * 1000;
  let drawn = 0;
  let last = '';
  for (;;) {
    const t = await b.task(taskId);
    const lines = watchLines(t);
    const text = lines.join('\n');
    if (tty) {
      if (drawn) process.stdout.write(`\x1b[${drawn}A`);
      process.stdout.write(lines.map((l) => `${l}\x1b[K`).join('\n') + '\n');
      drawn = lines.length;
    } else if (text !== last) out(text);
    last = text;
    if (FINISHED.has(t.state)) return t.state === 'done' ? 0 : 1;
    if (Date.now() > end) throw new RackcastError('RC_ERR_USAGE', `task ${taskId} did not end within --timeout ${timeoutS} s (it is ${t.state})`);
    await new Promise((r) => setTimeout(r, intervalS * 1000));
  }
}

export async function machineCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = argv;
  const { values: v, positionals: pos } = parseArgs({ args: rest, strict: true, allowPositionals: true, options: {
    ...common, name: { type: 'string' }, group: { type: 'string' }, 'no-group': { type: 'boolean' }, 'boot-policy': { type: 'string' }, 'disk-serial': { type: 'string' }, 'disk-wwn': { type: 'string' },
  } });
  return withBackend(v, env, async (b) => {
    if (sub === 'list') {
      const ms = await b.machines();
      if (v.json) out(JSON.stringify(ms, null, 2));
      else for (const m of ms) out(`${m.mac}${m.name ? ` ${m.name}` : ''}${m.group ? ` [${m.group}]` : ''} first seen ${m.firstSeen}, last ${m.lastSeen}, ${m.bootCount} boot(s)${m.task ? `, task ${m.task}` : ''}`);
      return 0;
    }
    if (sub === 'show') {
      if (pos.length !== 1) throw new RackcastError('RC_ERR_USAGE', 'usage: rackcast machine show MAC');
      const m = await b.machine(pos[0] as string);
      out(JSON.stringify(m, null, 2));
      return 0;
    }
    if (sub === 'set') {
      if (pos.length !== 1) throw new RackcastError('RC_ERR_USAGE', 'usage: rackcast machine set MAC [--name N] [--group G|--no-group] [--boot-policy auto|local] [--disk-serial S] [--disk-wwn W]');
      if (v.group && v['no-group']) throw new RackcastError('RC_ERR_USAGE', '--group and --no-group exclude each other');
      const bp = policy(v['boot-policy']);
      const s: MachineSettings = { ...(v.name ? { name: v.name } : {}), ...(v.group ? { group: v.group } : {}), ...(v['no-group'] ? { group: null } : {}), ...(bp ? { bootPolicy: bp } : {}), ...(v['disk-serial'] ? { diskSerial: v['disk-serial'] } : {}), ...(v['disk-wwn'] ? { diskWwn: v['disk-wwn'] } : {}) };
      if (!Object.keys(s).length) throw new RackcastError('RC_ERR_USAGE', 'machine set: give at least one of --name, --group, --no-group, --boot-policy, --disk-serial, --disk-wwn');
      const m = await b.setMachine(pos[0] as string, s);
      out(`${m.mac}: name ${m.name ?? '-'}, group ${m.group ?? '-'}, boot policy ${m.bootPolicy ?? '(group/auto)'}, disk ${m.diskSerial ?? m.diskWwn ?? '(client chooses)'}`);
      return 0;
    }
    throw new RackcastError('RC_ERR_USAGE', 'usage: rackcast machine list|show|set');
  });
}

export async function groupCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = argv;
  const { values: v, positionals: pos } = parseArgs({ args: rest, strict: true, allowPositionals: true, options: {
    ...common, machines: { type: 'string' }, 'boot-policy': { type: 'string' }, 'disk-serial': { type: 'string' }, 'disk-wwn': { type: 'string' }, description: { type: 'string' },
  } });
  return withBackend(v, env, async (b) => {
    if (sub === 'list') {
      const gs = await b.groups();
      if (v.json) out(JSON.stringify(gs, null, 2));
      else for (const g of gs) out(`${g.name} (${g.machines.length} machine(s), boot policy ${g.bootPolicy})${g.description ? ` — ${g.description}` : ''}`);
      return 0;
    }
    if (sub === 'set') {
      if (pos.length !== 1) throw new RackcastError('RC_ERR_USAGE', 'usage: rackcast group set NAME [--machines MAC,…] [--boot-policy auto|local] [--disk-serial S] [--disk-wwn W] [--description D]');
      const bp = policy(v['boot-policy']);
      const g = await b.setGroup(pos[0] as string, { ...(v.machines !== undefined ? { machines: macs(v.machines) } : {}), ...(bp ? { bootPolicy: bp } : {}), ...(v['disk-serial'] ? { diskSerial: v['disk-serial'] } : {}), ...(v['disk-wwn'] ? { diskWwn: v['disk-wwn'] } : {}), ...(v.description ? { description: v.description } : {}) });
      out(`group ${g.name}: ${g.machines.length} machine(s) ${g.machines.join(' ')}`.trim());
      return 0;
    }
    throw new RackcastError('RC_ERR_USAGE', 'usage: rackcast group list|set');
  });
}

export async function tokenCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = argv;
  const { values: v } = parseArgs({ args: rest, strict: true, options: { store: { type: 'string' }, 'data-dir': { type: 'string' } } });
  if (sub !== 'rotate') throw new RackcastError('RC_ERR_USAGE', 'usage: rackcast token rotate');
  const t = rotateAdminToken(dataDirFrom(v, env));
  out(t);
  process.stderr.write('rackcast: new admin token written to <data>/admin.token; the old one no longer works\n');
  return 0;
}
