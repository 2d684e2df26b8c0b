// Network capture, the appliance's side. A machine booted for a capture task reads its disk with
// services/image/capture.ts (captureToTarget) and sends what the store lacks:
//
//   HEAD /api/v1/client/chunks/<sha256>            200 the store has it (then it is not sent), 404 not
//   PUT  /api/v1/client/chunks/<sha256>?length=N   body: one zstd frame (application/octet-stream)
//        → decompressed and hashed in a worker; stored only if its content hashes to <sha256>
//        (201 stored, 200 already there, 422 corrupt: nothing kept)
//   POST /api/v1/client/capture/commit { token, manifest }
//        → the manifest is validated, every chunk it names must be in the store, then it is
//          signed and committed (one rename): only now does the image exist. The machine's part
//          of the task becomes done. 409 when chunks are missing or the name is taken.
//
// Chunk requests carry the task token as `authorization: Bearer <token>`; only an unfinished
// capture task's token is accepted (403 otherwise). A dropped connection loses at most the
// chunks in flight: the client retries them, and a restarted client finds the rest with HEAD.
// While a capture runs the appliance holds an operation marker in the store, so gc never
// collects chunks that no manifest references yet.
import { utimesSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RackcastError, isRackcastError } from '../../services/errors.ts';
import { decodeManifest, uniqueHashes } from '../../services/image/manifest.ts';
import type { ImageStore } from '../../services/image/store.ts';
import { WorkerPool } from '../../services/image/worker-pool.ts';
import { compressBound } from '../../services/image/zstd.ts';
import type { Assignment, Store } from '../store/db.ts';

const FINISHED = new Set(['done', 'failed', 'cancelled']);
const MAX_BLOCK = 64 << 20;
const HASH = { type: 'string', pattern: '^[0-9a-f]{64}$' } as const;

export interface CaptureApiOptions { store: Store; images: ImageStore; workers?: number; level?: number }

const commitSchema = {
  body: {
    type: 'object', required: ['token', 'manifest'], additionalProperties: false,
    properties: { token: { type: 'string', minLength: 1, maxLength: 200 }, manifest: { type: 'object' } },
  },
} as const;

export class CaptureIngest {
  readonly o: CaptureApiOptions;
  #pool?: WorkerPool;
  readonly #markers = new Map<number, { end(): void }>();

  constructor(o: CaptureApiOptions) {
    this.o = o;
  }

  get pool(): WorkerPool {
    this.#pool ??= new WorkerPool({ root: this.o.images.root, level: this.o.level ?? 3 }, { workers: this.o.workers ?? 2 });
    return this.#pool;
  }

  /** Hold gc off while this task's capture runs (idempotent). */
  hold(taskId: number): void {
    if (!this.#markers.has(taskId)) this.#markers.set(taskId, this.o.images.beginWrite(`netcapture-${taskId}`));
  }

  release(taskId: number): void {
    this.#markers.get(taskId)?.end();
    this.#markers.delete(taskId);
  }

  async close(): Promise<void> {
    for (const id of [...this.#markers.keys()]) this.release(id);
    await this.#pool?.close();
    this.#pool = undefined;
  }

  /** The unfinished capture assignment a bearer token belongs to. */
  authorize(req: FastifyRequest): Assignment | undefined {
    const m = /^Bearer\s+(\S{1,200})$/.exec(req.headers.authorization ?? '');
    const a = m ? this.o.store.byToken(m[1] as string) : undefined;
    return a && a.kind === 'capture' && !FINISHED.has(a.state) && a.image ? a : undefined;
  }
}

export function mountCaptureApi(app: FastifyInstance, o: CaptureApiOptions): CaptureIngest {
  const ingest = new CaptureIngest(o);
  app.addHook('onClose', async () => { await ingest.close(); });
  const denied = (reply: FastifyReply): FastifyReply => reply.code(403).send({ error: 'this token does not belong to a running capture task' });

  void app.register(async (scope) => {
    scope.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: compressBound(MAX_BLOCK) }, (_req, body, done) => { done(null, body); });

    scope.route<{ Params: { hash: string } }>({
      method: 'HEAD', url: '/api/v1/client/chunks/:hash',
      schema: { params: { type: 'object', required: ['hash'], properties: { hash: HASH } } },
      handler: async (req, reply) => {
        const a = ingest.authorize(req);
        if (!a) return denied(reply);
        ingest.hold(a.taskId);
        const path = o.images.chunkPath(req.params.hash);
        if (!o.images.hasChunk(req.params.hash)) return reply.code(404).send();
        // the capture will reference it: refresh its mtime so a gc after this capture's
        // marker is gone still sees it as young until the manifest is committed
        try { const now = new Date(); utimesSync(path, now, now); } catch { /* removed meanwhile: the next HEAD says 404 */ }
        return reply.code(200).send();
      },
    });

    scope.put<{ Params: { hash: string }; Querystring: { length: number }; Body: Buffer }>('/api/v1/client/chunks/:hash', {
      schema: {
        params: { type: 'object', required: ['hash'], properties: { hash: HASH } },
        querystring: { type: 'object', required: ['length'], properties: { length: { type: 'integer', minimum: 1, maximum: MAX_BLOCK } } },
      },
    }, async (req, reply) => {
      const a = ingest.authorize(req);
      if (!a) return denied(reply);
      if (!Buffer.isBuffer(req.body) || !req.body.length) return reply.code(400).send({ error: 'the body must be one zstd frame (content-type: application/octet-stream)' });
      ingest.hold(a.taskId);
      const frame = new ArrayBuffer(req.body.length);
      new Uint8Array(frame).set(req.body);
      try {
        const r = await ingest.pool.run({ op: 'put', hash: req.params.hash, length: req.query.length, frame, frameLength: frame.byteLength, image: a.image as string }, [frame]);
        return reply.code(r.existed ? 200 : 201).send({ hash: req.params.hash, stored: !r.existed });
      } catch (e) {
        if (isRackcastError(e) && e.code === 'RC_ERR_CHUNK_CORRUPT') {
          o.store.event('capture-chunk-rejected', { hash: req.params.hash, error: e.message }, a.mac, a.taskId);
          return reply.code(422).send({ error: e.message, code: e.code });
        }
        throw e;
      }
    });
  });

  app.post<{ Body: { token: string; manifest: Record<string, unknown> } }>('/api/v1/client/capture/commit', { schema: commitSchema, bodyLimit: 64 << 20 }, async (req, reply) => {
    const a = o.store.byToken(req.body.token);
    if (!a || a.kind !== 'capture' || FINISHED.has(a.state) || !a.image) return denied(reply);
    let manifest;
    try {
      manifest = decodeManifest(Buffer.from(JSON.stringify(req.body.manifest)));
    } catch (e) {
      return reply.code(400).send({ error: `invalid manifest: ${(e as Error).message}` });
    }
    if (manifest.name !== a.image) return reply.code(400).send({ error: `the manifest names image "${manifest.name}", but this task captures "${a.image}"` });
    const missing = [...uniqueHashes(manifest)].filter((h) => !o.images.hasChunk(h));
    if (missing.length) return reply.code(409).send({ error: `${missing.length} chunk(s) the manifest names are not on the appliance; send them first`, missing: missing.slice(0, 100) });
    try {
      o.images.syncChunks();
      const image = o.images.commit(manifest);
      const detail = `image ${manifest.name} ${image.digest.slice(0, 16)}: ${manifest.disk.size} bytes, ${manifest.stats.dataBlocks} data blocks, ${manifest.stats.uniqueChunks} unique chunks`;
      o.store.event('image-captured', { image: manifest.name, digest: image.digest, diskSize: manifest.disk.size }, a.mac, a.taskId);
      o.store.setMachineState(a.taskId, a.mac, 'done', detail);
      return { image: manifest.name, digest: image.digest, detail };
    } catch (e) {
      if (isRackcastError(e) && e.code === 'RC_ERR_IMAGE_EXISTS') return reply.code(409).send({ error: e.message, code: e.code });
      throw e instanceof Error ? e : new RackcastError('RC_ERR_IO', String(e));
    } finally {
      ingest.release(a.taskId);
    }
  });
  return ingest;
}
