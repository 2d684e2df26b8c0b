// RackcastError → HTTP status for the API: what the client got wrong (400), what is missing (404),
// what conflicts with the current state (409), auth (401). The body is always
// { error: one-line message, code: RC_ERR_… }.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isRackcastError, type ErrorCode } from '../../services/errors.ts';

const STATUS: Partial<Record<ErrorCode, number>> = {
  RC_ERR_AUTH: 401,
  RC_ERR_IMAGE_NOT_FOUND: 404, RC_ERR_TASK_NOT_FOUND: 404, RC_ERR_GROUP_NOT_FOUND: 404, RC_ERR_MACHINE_NOT_FOUND: 404,
  RC_ERR_TASK_STATE: 409, RC_ERR_IMAGE_EXISTS: 409, RC_ERR_STORE_BUSY: 409,
};

export function statusOf(code: ErrorCode): number {
  return STATUS[code] ?? (code === 'RC_ERR_IO' ? 500 : 400);
}

export function apiErrorHandler(err: FastifyError, _req: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (err.validation) return reply.code(400).send({ error: `bad request: ${err.message}`, code: 'RC_ERR_USAGE' });
  if (isRackcastError(err)) return reply.code(statusOf(err.code)).send({ error: err.message, code: err.code });
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return reply.code(err.statusCode).send({ error: err.message, code: 'RC_ERR_USAGE' });
  reply.log.error({ err }, 'api: internal error');
  return reply.code(500).send({ error: `internal error: ${err.message}`, code: 'RC_ERR_IO' });
}
