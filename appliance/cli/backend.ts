// What the task/machine/group commands talk to: a running appliance over its API (--url or
// $RACKCAST_URL, with the admin token from --token, $RACKCAST_TOKEN or <data>/admin.token), or,
// without a URL, the data directory's store directly (what the first CLI did; same checks, as
// both go through api/tasks.ts createTask). Both answer with the API's JSON shapes.
import { RackcastError } from '../../services/errors.ts';
import { ImageStore } from '../../services/image/store.ts';
import { Store, type Machine, type MachineSettings, type Group, type GroupSettings, type Task } from '../store/db.ts';
import { createTask, type CreateTask } from '../api/tasks.ts';
import { mac } from '../api/inventory.ts';
import { buildReport, type TaskReport } from '../reports.ts';
import { readAdminToken, rotateAdminToken } from '../api/auth.ts';

export interface MachineView extends Machine { inventory?: unknown; boot?: unknown; task: number | null }

export interface Backend {
  machines(): Promise<MachineView[]>;
  machine(m: string): Promise<MachineView>;
  setMachine(m: string, s: MachineSettings): Promise<Machine>;
  groups(): Promise<Group[]>;
  setGroup(name: string, s: GroupSettings & { machines?: string[] }): Promise<Group>;
  createTask(b: CreateTask): Promise<Task>;
  tasks(): Promise<Task[]>;
  task(id: number): Promise<Task>;
  cancel(id: number): Promise<Task>;
  report(id: number): Promise<TaskReport>;
  close(): void;
}

export class ApiBackend implements Backend {
  readonly url: string;
  readonly token: string;

  constructor(url: string, token: string) {
    this.url = url.replace(/\/+$/, '');
    this.token = token;
  }

  async #call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let r: Response;
    try {
      r = await fetch(`${this.url}/api/v1${path}`, {
        method, headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(30_000),
      });
    } catch (e) {
      throw new RackcastError('RC_ERR_API', `cannot reach the appliance at ${this.url} (${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}): is rackcast serve running there?`);
    }
    const text = await r.text();
    const json = text ? JSON.parse(text) as unknown : undefined;
    if (!r.ok) {
      const err = json as { error?: string; code?: string } | undefined;
      const msg = `${err?.error ?? text} (HTTP ${r.status})`;
      if (r.status === 401 || r.status === 403) throw new RackcastError('RC_ERR_AUTH', msg);
      if (r.status === 404 && err?.code === 'RC_ERR_TASK_NOT_FOUND') throw new RackcastError('RC_ERR_TASK_NOT_FOUND', msg);
      throw new RackcastError('RC_ERR_API', msg);
    }
    return json as T;
  }

  machines() { return this.#call<MachineView[]>('GET', '/machines'); }
  machine(m: string) { return this.#call<MachineView>('GET', `/machines/${mac(m)}`); }
  setMachine(m: string, s: MachineSettings) { return this.#call<Machine>('PATCH', `/machines/${mac(m)}`, s); }
  groups() { return this.#call<Group[]>('GET', '/groups'); }
  setGroup(name: string, s: GroupSettings & { machines?: string[] }) { return this.#call<Group>('PUT', `/groups/${encodeURIComponent(name)}`, s); }
  createTask(b: CreateTask) { return this.#call<Task>('POST', '/tasks', b); }
  tasks() { return this.#call<Task[]>('GET', '/tasks'); }
  task(id: number) { return this.#call<Task>('GET', `/tasks/${id}`); }
  cancel(id: number) { return this.#call<Task>('POST', `/tasks/${id}/cancel`, {}); }
  report(id: number) { return this.#call<TaskReport>('GET', `/tasks/${id}/report`); }
  close(): void { /* nothing held */ }
}

export class LocalBackend implements Backend {
  readonly store: Store;
  readonly images: ImageStore;

  constructor(dataDir: string) {
    this.store = Store.open(dataDir);
    this.images = ImageStore.open(dataDir);
  }

  #task(id: number): Task {
    const t = this.store.task(id);
    if (!t) throw new RackcastError('RC_ERR_TASK_NOT_FOUND', `no task ${id}`);
    return t;
  }

  async machines() { return this.store.machines().map((m) => ({ ...m, task: this.store.assignment(m.mac)?.taskId ?? null })); }
  async machine(m: string) {
    const x = this.store.machine(mac(m));
    if (!x) throw new RackcastError('RC_ERR_MACHINE_NOT_FOUND', `no machine ${mac(m)}`);
    return { ...x, inventory: this.store.inventory(x.mac) ?? null, boot: this.store.bootSettings(x.mac), task: this.store.assignment(x.mac)?.taskId ?? null };
  }
  async setMachine(m: string, s: MachineSettings) { return this.store.setMachine(mac(m), s); }
  async groups() { return this.store.groups(); }
  async setGroup(name: string, s: GroupSettings & { machines?: string[] }) {
    const { machines, ...settings } = s;
    return this.store.tx(() => {
      const g = this.store.setGroup(name, settings);
      if (machines) {
        const want = new Set(machines.map(mac));
        for (const x of g.machines) if (!want.has(x)) this.store.setMachine(x, { group: null });
        for (const x of want) this.store.setMachine(x, { group: name });
      }
      return this.store.group(name) as Group;
    });
  }
  async createTask(b: CreateTask) { return createTask({ store: this.store, images: this.images }, b); }
  async tasks() { return this.store.tasks(); }
  async task(id: number) { return this.#task(id); }
  async cancel(id: number) { return this.store.cancel(id); }
  async report(id: number) { return buildReport(this.store, this.#task(id)); }
  close(): void { this.store.close(); }
}

export function backendFrom(o: { url?: string | undefined; token?: string | undefined; dataDir: string }, env: NodeJS.ProcessEnv): Backend {
  const url = o.url ?? env.RACKCAST_URL;
  if (!url) return new LocalBackend(o.dataDir);
  if (!/^https?:\/\//.test(url)) throw new RackcastError('RC_ERR_USAGE', `--url must be the appliance's http:// URL (got ${url})`);
  return new ApiBackend(url, o.token ?? env.RACKCAST_TOKEN ?? readAdminToken(o.dataDir));
}

export { rotateAdminToken };
