// The web UI in a real browser: Debian's chromium, headless, driven by playwright-core, against the
// real appliance app (buildApp, which mounts the UI) on 127.0.0.1 with a temp data dir, a real captured image,
// the scheduler/engine running, and two machines that talk to the client API the way a booted
// client does (GET /boot/<mac>.ipxe, POST /api/v1/client/hello and /report with their task tokens).
//
// It signs in with the admin token (a wrong one first: the API's message is shown), checks the
// machines' inventory and the images' sizes and savings, refuses a bad time in the deploy form with
// the API's 400 message, creates a deploy "tonight at 02:00" for a group, lets the night pass (the
// appliance's and the browser's clocks jump to 02:00), sees the session wait for the second machine
// under rule "all", changes the rule in the UI so it starts, drives progress reports and checks
// that the per-machine progress bars move and the throughput plot gains points, finishes both
// machines, sees the task done, opens the morning report from the link, and creates and cancels a
// capture. The page must throw no script error and break no CSP rule throughout.
//
// Screenshots are saved to test-artifacts/ui/*.png (a gitignored directory) for a human to look at.
// Without /usr/bin/chromium (apt-get install chromium) the test is skipped with a warning.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { buildApp } from '../../../appliance/http/app.ts';
import { Store } from '../../../appliance/store/db.ts';
import { Engine } from '../../../appliance/engine.ts';
import type { Clock } from '../../../appliance/scheduler.ts';
import { ensureAdminToken } from '../../../appliance/api/auth.ts';
import { ImageStore, captureImage } from '../../../services/image/index.ts';
import { seededBytes } from '../../helpers/rng.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/ui/', import.meta.url));
const A = '52:54:00:5a:00:01';
const B = '52:54:00:5a:00:02';
const IMAGE = 'web-2026-11';
const CHUNKS = 40; // the "have/total" a client reports counts chunks of the image
const MiB = 1 << 20;

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`test/e2e/ui: skipped — ${CHROMIUM} is missing (apt-get install -y chromium)`);
const suite = haveChromium ? describe : describe.skip;

/** The appliance's clock: real time plus an offset the test moves forward ("the night passes"). */
let offset = 0;
const clock: Clock = {
  now: () => Date.now() + offset,
  every(ms, fn) { const t = setInterval(fn, ms); return () => clearInterval(t); },
};

let dir: string;
let store: Store;
let app: FastifyInstance;
let engine: Engine;
let base: string;
let token: string;
let browser: Browser | undefined;
let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];

async function http(method: string, path: string, body?: unknown, auth: string | null = token): Promise<{ status: number; json: unknown; text: string }> {
  const r = await fetch(base + path, {
    method,
    headers: { ...(auth ? { authorization: `Bearer ${auth}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await r.text();
  let json: unknown = null;
  try { json = text ? JSON.parse(text) as unknown : null; } catch { /* not JSON */ }
  return { status: r.status, json, text };
}

async function ok(method: string, path: string, body?: unknown, auth?: string | null): Promise<unknown> {
  const r = await http(method, path, body, auth);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
  return r.json;
}

/** What a booted machine does: its iPXE script, then hello with its inventory. Returns its token. */
async function bootAndHello(mac: string, n: number): Promise<string> {
  const script = await http('GET', `/boot/${mac}.ipxe`, undefined, null);
  expect(script.status).toBe(200);
  const tok = store.assignment(mac)?.token;
  if (!tok) throw new Error(`no task token for ${mac}`);
  expect(script.text).toContain(tok); // the kernel command line carries it
  const inventory = {
    firmware: n === 1 ? 'uefi' : 'bios',
    dmi: { sys_vendor: 'QEMU', product_name: `Standard PC (Q35 + ICH9, 2009) #${n}`, bios_version: `1.16.${n}` },
    cpu: { model: 'Intel Xeon E5-2690', count: 8 }, memoryBytes: 16 * 1024 * MiB,
    nics: [{ name: 'eth0', mac, ipv4: [`10.0.0.${10 + n}`] }],
    disks: [{ name: n === 1 ? 'nvme0n1' : 'vda', size: 480 * 1024 * MiB, model: n === 1 ? 'Samsung SSD 980' : 'QEMU HARDDISK', rotational: false, removable: false, transport: n === 1 ? 'nvme' : 'virtio' }],
  };
  await ok('POST', '/api/v1/client/hello', { token: tok, inventory }, null);
  return tok;
}

/** What the boot client sends: state, a detail line and (while running) bytes written of the total, MB/s. */
const report = (tok: string, state: 'running' | 'done' | 'failed', detail?: string, progress?: { done: number; total: number; mbps: number }) =>
  ok('POST', '/api/v1/client/report', { token: tok, state, ...(detail !== undefined ? { detail } : {}), ...(progress ? { progress } : {}) }, null);

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** The progress bar of one machine in the task view, as a number 0…100. */
async function barOf(mac: string): Promise<number> {
  return Number(await page.locator(`#task-machines tr[data-mac="${mac}"] [role=progressbar]`).getAttribute('aria-valuenow'));
}

const pointsOf = (key: string): Promise<number> => page.locator(`#plot polyline[data-key="${key}"]`).evaluateAll(
  (els) => els.reduce((n, e) => n + (e.getAttribute('points') ?? '').trim().split(/\s+/).filter(Boolean).length, 0));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll (bounded) until cond() holds. */
async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Wait (bounded) until the element's text holds every one of `parts`; then check each. */
async function hasText(loc: Locator, parts: string[], timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let text = '';
  while (Date.now() < end) {
    text = await loc.innerText({ timeout: 2000 }).catch(() => '');
    if (parts.every((p) => text.includes(p))) break;
    await sleep(100);
  }
  for (const p of parts) expect(text).toContain(p);
}

suite('web UI (chromium headless)', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rc-ui-'));
    mkdirSync(ARTIFACTS, { recursive: true });
    // a small real disk: random blocks, two empty ones (holes) and two identical text blocks (one chunk)
    const disk = Buffer.alloc(8 * MiB);
    seededBytes(7, 4 * MiB).copy(disk, 0);
    const text = Buffer.from('rackcast '.repeat(MiB / 9 + 1)).subarray(0, MiB);
    text.copy(disk, 6 * MiB);
    text.copy(disk, 7 * MiB);
    writeFileSync(join(dir, 'disk.img'), disk);
    const images = ImageStore.open(dir);
    await captureImage({ store: images, source: join(dir, 'disk.img'), name: IMAGE, blockSize: MiB });
    seededBytes(8, MiB).copy(disk, 3 * MiB); // next month's version: one block differs
    writeFileSync(join(dir, 'disk.img'), disk);
    await captureImage({ store: images, source: join(dir, 'disk.img'), name: 'web-2026-12', blockSize: MiB });

    token = ensureAdminToken(dir).token;
    store = Store.open(dir, { now: () => clock.now() });
    app = buildApp({ store, images, dataDir: dir, baseUrl: 'http://127.0.0.1:9', unknown: 'ignore' }); // mounts the UI too
    await app.listen({ host: '127.0.0.1', port: 0 });
    const addr = app.server.address();
    if (!addr || typeof addr === 'string') throw new Error('no address');
    base = `http://127.0.0.1:${addr.port}`;
    engine = new Engine({ store, clock, tickMs: 200, machineTimeoutMs: 3600_000, misfireGraceMs: 3600_000 });
    engine.start();

    // two machines register the way bare machines do: a register task, boot, hello with inventory
    await ok('PUT', '/api/v1/groups/rack3', { description: 'third rack' });
    await ok('POST', '/api/v1/tasks', { kind: 'register', machines: [A, B] });
    for (const [i, mac] of [A, B].entries()) {
      const tok = await bootAndHello(mac, i + 1);
      await report(tok, 'done', 'registered');
      await ok('PATCH', `/api/v1/machines/${mac}`, { name: `web-0${i + 1}`, group: 'rack3' });
    }

    const args = process.getuid?.() === 0 ? ['--no-sandbox'] : [];
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: 60_000 });
    context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (e) => { pageErrors.push(`uncaught: ${e.message}`); });
    page.on('console', (m) => { if (m.type() === 'error' && /Content.Security.Policy|Refused to|SyntaxError|TypeError|ReferenceError/i.test(m.text())) pageErrors.push(m.text()); });
    await page.clock.install({ time: Date.now() });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await engine?.stop();
    await app?.close();
    store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('serves the UI under /ui/ (and / redirects there) with a strict CSP', async () => {
    const root = await fetch(`${base}/`, { redirect: 'manual', signal: AbortSignal.timeout(5000) });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/ui/');
    const index = await fetch(`${base}/ui/`, { signal: AbortSignal.timeout(5000) });
    expect(index.headers.get('content-security-policy')).toMatch(/script-src 'self'/);
    const again = await fetch(`${base}/ui/`, { headers: { 'if-none-match': index.headers.get('etag') ?? '' }, signal: AbortSignal.timeout(5000) });
    expect(again.status).toBe(304);
    expect((await fetch(`${base}/ui/../admin.token`, { signal: AbortSignal.timeout(5000) })).status).toBe(404);
    expect((await fetch(`${base}/ui/mount.ts`, { signal: AbortSignal.timeout(5000) })).status).toBe(404);
  });

  it('signs in: a wrong token shows the API\'s message, the admin token opens the UI', async () => {
    await page.goto(`${base}/`);
    await page.locator('#login').waitFor();
    await page.fill('#token-input', 'f'.repeat(64));
    await page.click('#login-form button[type=submit]');
    await page.locator('#login-error', { hasText: 'the admin token is wrong' }).waitFor();
    await page.fill('#token-input', token);
    await page.click('#login-form button[type=submit]');
    await page.locator('#tasks').waitFor();
    await page.locator('#live.on').waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('rackcast.adminToken'))).toBe(token);
    expect(await page.locator('#error').isVisible()).toBe(false);
    expect(await page.locator('#login').isVisible()).toBe(false);
  });

  it('machines: MAC, group, inventory summary and state', async () => {
    await page.click('#nav a[data-view=machines]');
    const rowA = page.locator(`#machines tr[data-mac="${A}"]`);
    await rowA.locator('text=QEMU Standard PC (Q35 + ICH9, 2009) #1').waitFor();
    await hasText(rowA, ['web-01', 'rack3', 'UEFI (1.16.1)', 'nvme0n1 480 GiB Samsung SSD 980 (nvme)', '8× Intel Xeon E5-2690', '16.0 GiB', 'idle']);
    await hasText(page.locator(`#machines tr[data-mac="${B}"]`), ['web-02', 'BIOS (1.16.2)', 'vda 480 GiB QEMU HARDDISK (virtio)']);
    await shot('machines');
  });

  it('images: sizes, stored bytes, dedup savings, digest', async () => {
    await page.click('#nav a[data-view=images]');
    const row = page.locator(`#images tr[data-image="${IMAGE}"]`);
    await row.waitFor();
    const summary = (await ok('GET', `/api/v1/images/${IMAGE}`)) as { digest: string; storedBytes: number; dataBlocks: number };
    expect(summary.dataBlocks).toBe(6); // 8 blocks, 2 holes
    await hasText(row, ['8.00 MiB', '6.00 MiB', '6 of 8 blocks', summary.digest.replace(/^sha256:/, '').slice(0, 12), '5 chunks']);
    // stored: 4 random MiB (incompressible) + one text chunk; saved is the rest of the 6 MiB of data
    const saved = 6 * MiB - summary.storedBytes;
    expect(saved).toBeGreaterThan(MiB);
    await hasText(row.locator('td.savings'), [`${(Math.round((saved / (6 * MiB)) * 1000) / 10)}%`]);
    await page.locator('#images tr[data-image="web-2026-12"]').waitFor();
    // Verify decompresses and hashes every chunk on the appliance
    await row.locator('button.verify').click();
    await row.locator('.verify-result', { hasText: /verified: 5 chunks OK \(\d+\.\d s\)/ }).waitFor();
    await shot('images');
  });

  let taskId = 0;

  it('tasks: a bad time shows the API\'s 400 message; a deploy for tonight at 02:00 is listed', async () => {
    await page.click('#nav a[data-view=tasks]');
    const form = page.locator('#deploy-form');
    await form.locator('select[name=image] option[value="web-2026-11"]').waitFor({ state: 'attached' });
    await form.locator('select[name=image]').selectOption(IMAGE);
    await form.locator('select[name=group] option[value=rack3]').waitFor({ state: 'attached' });
    await form.locator('select[name=group]').selectOption('rack3');
    await form.locator('input[name=at]').fill('25:00');
    await form.locator('select[name=rule]').selectOption('all');
    await form.locator('button[type=submit]').click();
    await form.locator('.form-error', { hasText: '"25:00" is not a time of day' }).waitFor();

    await form.locator('input[name=at]').fill('02:00');
    await form.locator('button[type=submit]').click();
    await page.locator('.notice', { hasText: /Task \d+ created: deploy web-2026-11 to group rack3/ }).waitFor();
    const tasks = (await ok('GET', '/api/v1/tasks')) as { id: number; kind: string; state: string; scheduleAt: string; startRule: unknown }[];
    const t = tasks.find((x) => x.kind === 'deploy');
    if (!t) throw new Error('no deploy task was created');
    taskId = t.id;
    expect(t).toMatchObject({ state: 'scheduled', startRule: { kind: 'all' } });
    const at = new Date(t.scheduleAt);
    expect([at.getHours(), at.getMinutes()]).toEqual([2, 0]);
    expect(at.getTime() - Date.now()).toBeGreaterThan(0);
    expect(at.getTime() - Date.now()).toBeLessThanOrEqual(24 * 3600_000);
    const row = page.locator(`#tasks tr[data-task="${taskId}"]`);
    await hasText(row, ['deploy', IMAGE, 'group rack3', '02:00', 'when all joined', 'scheduled']);
    await shot('tasks');
  });

  it('deleting an image an open task uses shows the API\'s refusal', async () => {
    await page.click('#nav a[data-view=images]');
    page.once('dialog', (d) => { void d.accept(); });
    await page.locator(`#images tr[data-image="${IMAGE}"] button.danger`).click();
    await page.locator('#error', { hasText: `is used by open task(s) ${taskId}` }).waitFor();
    await page.click('#error-close');
    expect(await page.locator('#error').isVisible()).toBe(false);
  });

  it('watch: the night passes, both machines join, progress bars move and the plot gains points', async () => {
    await page.click('#nav a[data-view=tasks]');
    await page.locator(`#tasks tr[data-task="${taskId}"] a`, { hasText: 'Watch' }).click();
    await page.locator('.task-head h2', { hasText: `Task ${taskId}: deploy ${IMAGE}` }).waitFor();
    await page.locator('.task-head .badge', { hasText: 'scheduled' }).waitFor();

    // 02:00: the appliance's clock (and the browser's) jump to the task's time; the engine arms it
    const t = (await ok('GET', `/api/v1/tasks/${taskId}`)) as { scheduleAt: string };
    offset = Date.parse(t.scheduleAt) + 1000 - Date.now();
    await page.clock.setSystemTime(Date.now() + offset);
    await page.locator(`#task-machines tr[data-mac="${A}"] .badge`, { hasText: 'pending' }).waitFor();
    await page.locator(`#task-machines tr[data-mac="${B}"]`).waitFor();

    const tokA = await bootAndHello(A, 1);
    await page.locator('#session', { hasText: 'waiting' }).waitFor(); // rule "all": one of two joined
    await sleep(1000);
    expect(await page.locator('#session').innerText()).toBe('waiting');
    // B is late: the admin changes the rule in the UI to "first join + 0 s", and the session starts
    const rule = page.locator('#rule-form');
    await rule.locator('select[name=rule]').selectOption('grace');
    await rule.locator('input[name=grace]').fill('0');
    await rule.locator('button[type=submit]').click();
    await page.locator('#session', { hasText: 'started — grace of 0 s after the first join ran out with 1/2 joined' }).waitFor();
    expect(await rule.count()).toBe(0); // a started session's rule can no longer change
    expect(((await ok('GET', `/api/v1/tasks/${taskId}`)) as { startRule: unknown }).startRule).toEqual({ kind: 'grace', seconds: 0 });
    const tokB = await bootAndHello(B, 2);
    await report(tokA, 'running', 'target /dev/nvme0n1');
    await report(tokB, 'running', 'target /dev/vda');
    await page.locator(`#task-machines tr[data-mac="${A}"] .badge`, { hasText: 'running' }).waitFor();

    const seen: { a: number; b: number }[] = [];
    const steps = [[4, 3], [10, 6], [17, 9], [24, 13], [31, 16]] as const;
    for (const [a, b] of steps) {
      await report(tokA, 'running', `${a}/${CHUNKS}`, { done: a << 20, total: CHUNKS << 20, mbps: 10 + a });
      await report(tokB, 'running', `${b}/${CHUNKS}`, { done: b << 20, total: CHUNKS << 20, mbps: 5 + b });
      const wantA = Math.floor((a / CHUNKS) * 100);
      await until(`${A}'s bar at ${wantA}%`, async () => (await barOf(A)) === wantA);
      seen.push({ a: await barOf(A), b: await barOf(B) });
      await sleep(400); // reports come every few seconds in real life; the rate needs time between them
    }
    expect(seen.map((s) => s.a)).toEqual(steps.map(([a]) => Math.floor((a / CHUNKS) * 100)));
    expect(seen.map((s) => s.b)).toEqual(steps.map(([, b]) => Math.floor((b / CHUNKS) * 100)));
    // every report after the first gives a throughput point per machine, and a total line
    expect(await pointsOf(A)).toBeGreaterThanOrEqual(steps.length - 1);
    expect(await pointsOf(B)).toBeGreaterThanOrEqual(steps.length - 1);
    expect(await pointsOf('total')).toBeGreaterThanOrEqual(steps.length - 1);
    const mbps = await page.locator(`#task-machines tr[data-mac="${A}"] td:nth-child(4)`).innerText();
    expect(mbps).toMatch(/^\d+(\.\d)? MB\/s$/);
    expect(Number.parseFloat(mbps)).toBeGreaterThan(0);
    // the task list shows the same progress
    await shot('task-running');

    await report(tokA, 'done', `${IMAGE} → /dev/nvme0n1: ${CHUNKS} chunks verified`);
    await report(tokB, 'done', `${IMAGE} → /dev/vda: ${CHUNKS} chunks verified`);
    await page.locator('.task-head .badge', { hasText: 'done' }).waitFor();
    expect(await barOf(A)).toBe(100);
    expect(await barOf(B)).toBe(100);
    await page.locator('#report-link', { hasText: 'Morning report' }).waitFor();
    await shot('task-done');

    const [rep] = await Promise.all([context.waitForEvent('page'), page.click('#report-link')]);
    await rep.waitForLoadState();
    expect(await rep.locator('h1').innerText()).toBe(`Task ${taskId}: deploy ${IMAGE} — done`);
    expect(await rep.locator('tr.done').count()).toBe(2);
    await rep.screenshot({ path: join(ARTIFACTS, 'report.png'), fullPage: true });
    await rep.close();
  }, 90_000);

  it('creates a capture and cancels it', async () => {
    await page.click('#nav a[data-view=tasks]');
    const form = page.locator('#capture-form');
    await form.locator(`select[name=machines] option[value="${A}"]`).waitFor({ state: 'attached' });
    await form.locator('select[name=machines]').selectOption(A);
    await form.locator('input[name=image]').fill(IMAGE);
    await form.locator('button[type=submit]').click();
    await form.locator('.form-error', { hasText: `an image named "${IMAGE}" already exists` }).waitFor();
    await form.locator('input[name=image]').fill('web-01-golden');
    await form.locator('button[type=submit]').click();
    await page.locator('.notice', { hasText: `capture ${A} as web-01-golden` }).waitFor();
    const cap = ((await ok('GET', '/api/v1/tasks')) as { id: number; kind: string }[]).find((x) => x.kind === 'capture');
    if (!cap) throw new Error('no capture task');
    const row = page.locator(`#tasks tr[data-task="${cap.id}"]`);
    await row.locator('.badge', { hasText: 'pending' }).waitFor();
    page.once('dialog', (d) => { void d.accept(); });
    await row.locator('button', { hasText: 'Cancel' }).click();
    await row.locator('.badge', { hasText: 'cancelled' }).waitFor();
    expect(((await ok('GET', `/api/v1/tasks/${cap.id}`)) as { state: string }).state).toBe('cancelled');
    await shot('tasks-after');
  });

  it('the page threw no script errors and broke no CSP rule', () => {
    expect(pageErrors).toEqual([]);
  });
});
