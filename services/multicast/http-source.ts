// HTTP side of the data plane: serves an image's manifest and chunks (the same bytes the store
// holds), and fetches them. Receivers use it for the manifest and for unicast fallback. The
// appliance will mount the same handler; `rackcast mcast send` runs it on its own.
//
//   GET /images/<name>/manifest.json   signed manifest bytes
//   GET /images/<name>/manifest.sig    signature file
//   GET /chunks/<sha256>               one zstd frame (application/zstd)
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { join } from 'node:path';
import { RackcastError } from '../errors.ts';
import { HASH_HEX } from '../image/chunk-path.ts';
import { IMAGE_NAME } from '../image/manifest.ts';
import type { ImageStore } from '../image/store.ts';

/**
 * The store file a data-plane URL path names, or undefined. The one whitelist of what may be
 * served from a store: shared by this handler and the appliance's fastify app.
 */
export function imageFile(store: ImageStore, pathname: string): { path: string; type: string; immutable: boolean } | undefined {
  const m = /^\/images\/([^/]+)\/(manifest\.json|manifest\.sig)$/.exec(pathname);
  if (m && IMAGE_NAME.test(m[1] as string)) return { path: join(store.root, 'images', m[1] as string, m[2] as string), type: 'application/json', immutable: false };
  const c = /^\/chunks\/([0-9a-f]{64})$/.exec(pathname);
  if (c && HASH_HEX.test(c[1] as string)) return { path: store.chunkPath(c[1] as string), type: 'application/zstd', immutable: true };
  return undefined;
}

export function imageHttpHandler(store: ImageStore): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405).end(); return; }
    const f = imageFile(store, new URL(req.url ?? '/', 'http://x').pathname);
    const st = f ? statSync(f.path, { throwIfNoEntry: false }) : undefined;
    if (!f || !st?.isFile()) { res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n'); return; }
    const path = f.path;
    res.writeHead(200, { 'content-type': f.type, 'content-length': st.size, 'cache-control': f.immutable ? 'public, max-age=31536000, immutable' : 'no-cache' });
    if (req.method === 'HEAD') { res.end(); return; }
    createReadStream(path).pipe(res);
  };
}

export async function serveImages(store: ImageStore, address: string, port: number): Promise<{ server: Server; url: string }> {
  const server = createServer(imageHttpHandler(store));
  await new Promise<void>((res, rej) => { server.once('error', rej); server.listen(port, address, () => { server.off('error', rej); res(); }); });
  const a = server.address();
  const p = typeof a === 'object' && a ? a.port : port;
  return { server, url: `http://${address}:${p}` };
}

/** GET a URL into memory, bounded; throws RC_ERR_IO with the URL on any failure. */
export async function fetchBytes(url: string, maxBytes: number, timeoutMs = 15000): Promise<Buffer> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    throw new RackcastError('RC_ERR_IO', `GET ${url} failed: ${(e as Error).message}`, { url });
  }
  if (!res.ok) throw new RackcastError('RC_ERR_IO', `GET ${url}: HTTP ${res.status}`, { url, status: res.status });
  const len = Number(res.headers.get('content-length') ?? '0');
  if (len > maxBytes) throw new RackcastError('RC_ERR_IO', `GET ${url}: ${len} bytes, more than ${maxBytes}`, { url });
  const b = Buffer.from(await res.arrayBuffer());
  if (b.length > maxBytes) throw new RackcastError('RC_ERR_IO', `GET ${url}: more than ${maxBytes} bytes`, { url });
  return b;
}

/** "http://host:port/images/NAME" → "http://host:port/chunks/HASH" */
export function chunkUrl(imageUrl: string, hash: string): string {
  return new URL(`/chunks/${hash}`, imageUrl).href;
}
