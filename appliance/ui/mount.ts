// The web UI: a few static files (index.html, style.css and plain browser ES modules, no build
// step) served under /ui/, and / redirected there. The files hold no secrets and need no
// token; the page asks the admin for the token and sends it as a bearer on every API call.
//
// The files are read once, when the UI is mounted (a missing file stops the appliance at start,
// not at the first click), and answered with an ETag, so a browser revalidates with a 304.
// A strict Content-Security-Policy allows only this origin's scripts and styles: no inline script,
// nothing fetched from elsewhere.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface UiOptions {
  /** the directory with the UI's files (default: this module's directory) */
  dir?: string;
  /** answer GET / with a redirect to /ui/ (default true) */
  redirectRoot?: boolean;
}

const JS = 'text/javascript; charset=utf-8';
/** Every file the UI serves; anything else under /ui/ is a 404 (mount.ts and lib.d.ts stay private). */
export const UI_FILES: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
  'app.js': JS, 'api.js': JS, 'dom.js': JS, 'lib.js': JS, 'live.js': JS,
  'views-inventory.js': JS, 'views-tasks.js': JS, 'view-task.js': JS,
};

export const UI_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
  + "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

interface UiFile { body: Buffer; type: string; etag: string }

function load(dir: string): Map<string, UiFile> {
  const files = new Map<string, UiFile>();
  for (const [name, type] of Object.entries(UI_FILES)) {
    const body = readFileSync(join(dir, name));
    files.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` });
  }
  return files;
}

export function mountUi(app: FastifyInstance, opts: UiOptions = {}): void {
  const files = load(opts.dir ?? fileURLToPath(new URL('.', import.meta.url)));

  const send = (req: FastifyRequest, reply: FastifyReply, f: UiFile): FastifyReply => {
    reply.header('etag', f.etag).header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer');
    if (f.type.startsWith('text/html')) reply.header('content-security-policy', UI_CSP).header('x-frame-options', 'DENY');
    if (req.headers['if-none-match'] === f.etag) return reply.code(304).send();
    return reply.type(f.type).send(f.body);
  };

  app.get('/ui', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/ui/', 302));
  app.get('/ui/', { schema: { hide: true } }, async (req, reply) => send(req, reply, files.get('index.html') as UiFile));
  app.get<{ Params: { file: string } }>('/ui/:file', { schema: { hide: true } }, async (req, reply) => {
    const f = files.get(req.params.file);
    if (!f) return reply.code(404).type('text/plain; charset=utf-8').send(`not found: /ui/${req.params.file}\n`);
    return send(req, reply, f);
  });
  if (opts.redirectRoot ?? true) app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/ui/', 302));
}
