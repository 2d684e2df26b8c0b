// mountUi through fastify's inject: the files, their types and CSP, ETag revalidation, the
// whitelist (nothing else in the directory is served), the / redirect, and a missing file
// refused at mount time rather than at the first request.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance } from 'fastify';
import { mountUi, UI_FILES } from '../../../appliance/ui/mount.ts';

const UI_DIR = fileURLToPath(new URL('../../../appliance/ui/', import.meta.url));
let app: FastifyInstance;

beforeAll(async () => {
  app = Fastify();
  mountUi(app);
  await app.ready();
});
afterAll(async () => { await app.close(); });

describe('mountUi', () => {
  it('serves every UI file with its type; index.html with a strict CSP', async () => {
    for (const [name, type] of Object.entries(UI_FILES)) {
      const r = await app.inject({ url: `/ui/${name}` });
      expect([name, r.statusCode, r.headers['content-type']]).toEqual([name, 200, type]);
      expect(r.headers['x-content-type-options']).toBe('nosniff');
    }
    const index = await app.inject({ url: '/ui/' });
    expect(index.statusCode).toBe(200);
    expect(index.body).toContain('<script type="module" src="app.js"></script>');
    expect(index.headers['content-security-policy']).toMatch(/default-src 'none'; script-src 'self'/);
    expect(index.headers['cache-control']).toBe('no-cache');
  });

  it('every module the UI imports is served (no file missing from the whitelist)', async () => {
    for (const name of Object.keys(UI_FILES).filter((n) => n.endsWith('.js'))) {
      const body = (await app.inject({ url: `/ui/${name}` })).body;
      for (const m of body.matchAll(/from '\.\/([\w.-]+)'/g)) expect([name, m[1], m[1] as string in UI_FILES]).toEqual([name, m[1], true]);
    }
  });

  it('revalidates with the ETag (304), refuses other files (404), redirects / and /ui', async () => {
    const first = await app.inject({ url: '/ui/app.js' });
    const again = await app.inject({ url: '/ui/app.js', headers: { 'if-none-match': String(first.headers.etag) } });
    expect(again.statusCode).toBe(304);
    for (const bad of ['/ui/mount.ts', '/ui/lib.d.ts', '/ui/..%2Fmount.ts', '/ui/%2e%2e%2fapi%2fauth.ts', '/ui/nope.js']) {
      expect([bad, (await app.inject({ url: bad })).statusCode]).toEqual([bad, 404]);
    }
    for (const url of ['/', '/ui']) {
      const r = await app.inject({ url });
      expect([url, r.statusCode, r.headers.location]).toEqual([url, 302, '/ui/']);
    }
  });

  it('a directory without one of the files fails at mount time, naming it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rc-ui-mount-'));
    try {
      cpSync(UI_DIR, dir, { recursive: true });
      rmSync(join(dir, 'live.js'));
      expect(() => mountUi(Fastify(), { dir, redirectRoot: false })).toThrow(/live\.js/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
