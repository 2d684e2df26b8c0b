// Packaging: the Dockerfile passes dockerfile-utils lint and keeps the shape the docs promise
// (BASE argument, non-root runtime, data volume, healthcheck, entry point), the runtime stage
// holds every source file the CLI imports, the container's boot-environment install step, and
// the systemd unit. The image itself is built and run by scripts/container-smoke.ts.
import { describe, it, expect, afterAll } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const REPO = resolve(import.meta.dirname, '../../..');
const DOCKERFILE = join(REPO, 'Dockerfile');
const text = readFileSync(DOCKERFILE, 'utf8');
const require = createRequire(import.meta.url);
const tmp = mkdtempSync(join(tmpdir(), 'rc-test-packaging-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Instructions with continuation lines joined and comments dropped. */
function instructions(src: string): { op: string; args: string }[] {
  const lines = src.split('\n').filter((l) => !/^\s*#/.test(l));
  return lines.join('\n').replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter(Boolean)
    .map((l) => { const m = /^(\S+)\s*(.*)$/.exec(l) as RegExpExecArray; return { op: (m[1] as string).toUpperCase(), args: m[2] as string }; });
}
const ins = instructions(text);
const runtime = ins.slice(ins.map((i) => i.op).lastIndexOf('FROM'));

describe('Dockerfile lint (dockerfile-utils)', () => {
  it('the CLI finds nothing', () => {
    const r = spawnSync(join(REPO, 'node_modules/.bin/dockerfile-utils'), ['lint', DOCKERFILE], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('validate() reports no problem of any severity', () => {
    const { validate } = require('dockerfile-utils') as { validate(s: string): { message: string; range: { start: { line: number } } }[] };
    expect(validate(text).map((d) => `line ${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
  });

  it('the linter does catch a broken Dockerfile', () => {
    const bad = join(tmp, 'Dockerfile.bad');
    writeFileSync(bad, 'FROM scratch\nCOPY onlyone\nFOO bar\n');
    const r = spawnSync(join(REPO, 'node_modules/.bin/dockerfile-utils'), ['lint', bad], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).not.toBe(0);
    expect(r.stdout).toMatch(/Unknown instruction: FOO/);
  });
});

describe('Dockerfile shape', () => {
  it('builds FROM ${BASE}, node:24-bookworm-slim by default, in two stages', () => {
    expect(ins[0]).toEqual({ op: 'ARG', args: 'BASE=docker.io/library/node:24-bookworm-slim' });
    const froms = ins.filter((i) => i.op === 'FROM').map((i) => i.args);
    expect(froms).toEqual(['${BASE} AS build', '${BASE}']);
  });

  it('the runtime stage runs as the non-root user node, keeps state only in the volume, checks its health', () => {
    const one = (op: string): string[] => runtime.filter((i) => i.op === op).map((i) => i.args);
    expect(one('USER')).toEqual(['node']);
    expect(one('VOLUME')).toEqual(['["/var/lib/rackcast"]']);
    expect(one('ENTRYPOINT')).toEqual(['["node", "/opt/rackcast/packaging/container/entrypoint.mjs"]']);
    expect(one('CMD')).toEqual(['["serve"]']);
    expect(one('HEALTHCHECK').join()).toMatch(/CMD \["node", "\/opt\/rackcast\/packaging\/container\/healthcheck\.mjs"\]/);
    expect(one('ENV').join(' ')).toMatch(/RACKCAST_DATA_DIR=\/var\/lib\/rackcast/);
    // the one privilege: binding DHCP (67) and TFTP (69) as a non-root user
    expect(one('RUN').join(' ')).toMatch(/setcap cap_net_bind_service=\+ep /);
    expect(text).not.toMatch(/cap_net_raw|cap_net_admin/i);
  });

  it('the runtime stage holds every source file the CLI and the container helpers import', () => {
    const copied = runtime.filter((i) => i.op === 'COPY').map((i) => /--from=build \/src\/(\S+?)\/?\s/.exec(`${i.args} `)?.[1]).filter((d): d is string => !!d);
    const seen = new Set<string>();
    const queue = [join(REPO, 'bin/rackcast.js'), join(REPO, 'packaging/container/entrypoint.mjs'), join(REPO, 'packaging/container/healthcheck.mjs')];
    while (queue.length) {
      const f = queue.pop() as string;
      if (seen.has(f)) continue;
      seen.add(f);
      const src = readFileSync(f, 'utf8');
      for (const m of src.matchAll(/(?:from\s+|import\(\s*|new URL\(\s*)'(\.{1,2}\/[^']+)'/g)) {
        const target = resolve(dirname(f), m[1] as string);
        if (/\.(ts|js|mjs)$/.test(target)) queue.push(target);
      }
    }
    const outside = [...seen].map((f) => relative(REPO, f)).filter((f) => !copied.some((d) => f === d || f.startsWith(`${d}/`)));
    expect(outside).toEqual([]);
    expect(seen.size).toBeGreaterThan(30);
  });

  it('the build stage has the rcudp sources before npm ci (its install script builds the addon)', () => {
    const build = ins.slice(0, ins.map((i) => i.op).lastIndexOf('FROM'));
    const npmCi = build.findIndex((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args));
    const before = build.slice(0, npmCi).filter((i) => i.op === 'COPY').map((i) => i.args).join(' ');
    const gyp = /"install":\s*"node-gyp rebuild --directory=(\S+)"/.exec(readFileSync(join(REPO, 'package.json'), 'utf8'))?.[1];
    expect(gyp).toBe('services/multicast/native');
    for (const f of ['binding.gyp', 'rcudp.c']) expect(before).toContain(`${gyp}/${f}`);
    // the runtime stage gets the addon npm ci built with services/
    expect(runtime.some((i) => i.op === 'COPY' && /--from=build \/src\/services /.test(`${i.args} `))).toBe(true);
  });

  it('.dockerignore lets in what the build copies', () => {
    const ignore = readFileSync(join(REPO, '.dockerignore'), 'utf8');
    expect(ignore.split('\n')[0]?.startsWith('#') || ignore.includes('\n*\n')).toBe(true);
    for (const p of ['package.json', 'package-lock.json', 'bin/', 'appliance/', 'services/', 'boot-env/', 'scripts/build-boot-env.ts', 'packaging/container/']) {
      expect(ignore).toContain(`!${p}`);
    }
    // a host-built addon must not replace the one npm ci builds in the image
    expect(ignore.split('\n')).toContain('services/multicast/native/build');
  });
});

describe('the container installs its boot environment into the data volume', () => {
  it('copies once, again after an upgrade, and never over an admin-built one', async () => {
    const { installBootEnv, dataDir, FILES, MARKER } = await import(pathToFileURL(join(REPO, 'packaging/container/boot-env.mjs')).href) as {
      installBootEnv(dist: string, data: string): string; dataDir(argv: string[], env: Record<string, string>): string; FILES: string[]; MARKER: string;
    };
    const dist = join(tmp, 'dist');
    const data = join(tmp, 'data');
    mkdirSync(dist);
    expect(installBootEnv(dist, data)).toBe('none');
    for (const f of FILES) writeFileSync(join(dist, f), `${f} v1`);
    expect(installBootEnv(dist, data)).toBe('installed');
    expect(readFileSync(join(data, 'boot/vmlinuz'), 'utf8')).toBe('vmlinuz v1');
    expect(installBootEnv(dist, data)).toBe('current');
    for (const f of FILES) writeFileSync(join(dist, f), `${f} v2`); // a new image
    expect(installBootEnv(dist, data)).toBe('installed');
    expect(readFileSync(join(data, 'boot/initrd.zst'), 'utf8')).toBe('initrd.zst v2');
    rmSync(join(data, 'boot', MARKER)); // as if the admin had run build:boot-env into the volume
    writeFileSync(join(dist, 'boot-env.json'), 'v3');
    expect(installBootEnv(dist, data)).toBe('kept');
    expect(readFileSync(join(data, 'boot/boot-env.json'), 'utf8')).toBe('boot-env.json v2');
    expect(existsSync(join(data, 'boot/vmlinuz.tmp'))).toBe(false);

    expect(dataDir(['serve', '--data-dir', '/x'], {})).toBe('/x');
    expect(dataDir(['serve', '--store=/y'], { RACKCAST_DATA_DIR: '/z' })).toBe('/y');
    expect(dataDir(['serve'], { RACKCAST_DATA_DIR: '/z' })).toBe('/z');
    expect(dataDir(['serve'], {})).toBe('/var/lib/rackcast');
  });
});

describe('systemd unit', () => {
  const unit = readFileSync(join(REPO, 'packaging/systemd/rackcast.service'), 'utf8');
  const settings = new Map<string, string[]>();
  for (const l of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(l.trim());
    if (m) settings.set(m[1] as string, [...(settings.get(m[1] as string) ?? []), m[2] as string]);
  }
  const get = (k: string): string => (settings.get(k) ?? []).join(' ');

  it('runs serve as an unprivileged user with only CAP_NET_BIND_SERVICE', () => {
    expect(get('ExecStart')).toMatch(/rackcast(\.js)? serve /);
    expect(get('User')).toBe('rackcast');
    expect(get('AmbientCapabilities')).toBe('CAP_NET_BIND_SERVICE');
    expect(get('CapabilityBoundingSet')).toBe('CAP_NET_BIND_SERVICE');
    expect(get('StateDirectory')).toBe('rackcast');
    // a network sandbox would hide the boot NIC or the broadcasts DHCP needs
    expect(get('PrivateNetwork')).not.toBe('yes');
    expect(get('RestrictAddressFamilies')).toMatch(/AF_INET\b/);
  });

  it('systemd-analyze verify accepts it (where systemd-analyze exists)', () => {
    const which = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' });
    if (which.status !== 0) return;
    // the unit names /usr/bin/rackcast and the user rackcast, which this machine need not have:
    // check a copy with ExecStart pointing at an existing binary
    const copy = join(tmp, 'rackcast.service');
    writeFileSync(copy, unit.replace(/^ExecStart=\S+/m, 'ExecStart=/bin/true'));
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', copy], { encoding: 'utf8', timeout: 60_000 });
    const problems = (r.stderr + r.stdout).split('\n').filter((l) => l.includes('rackcast.service') && !/User=|Failed to resolve user|rackcast: /.test(l));
    expect(problems).toEqual([]);
  });
});
