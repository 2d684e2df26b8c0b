// Static files with HTTP Range (RFC 9110 §14): boot artifacts (kernel, initrds, iPXE binaries)
// and chunks. One range per request (what iPXE, curl and browsers ask for); a bad or
// unsatisfiable range gets 416 with the size. Paths come from a fixed directory and a name that
// was already checked against a whitelist pattern: nothing here resolves user paths.
import { createReadStream, statSync } from 'node:fs';
import type { FastifyReply, FastifyRequest } from 'fastify';

export function sendFile(req: FastifyRequest, reply: FastifyReply, path: string, type: string): FastifyReply {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st?.isFile()) return reply.code(404).type('text/plain').send('not found\n');
  reply.header('accept-ranges', 'bytes').header('last-modified', st.mtime.toUTCString()).type(type);
  const range = req.headers.range;
  if (range) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    let start = m?.[1] ? Number(m[1]) : NaN;
    let end = m?.[2] ? Number(m[2]) : NaN;
    if (m && !m[1] && m[2]) { start = Math.max(0, st.size - Number(m[2])); end = st.size - 1; } // suffix range
    else if (m && m[1] && !m[2]) end = st.size - 1;
    if (!m || !(start >= 0) || !(end >= start) || start >= st.size) {
      return reply.code(416).header('content-range', `bytes */${st.size}`).send();
    }
    end = Math.min(end, st.size - 1);
    reply.code(206).header('content-range', `bytes ${start}-${end}/${st.size}`).header('content-length', end - start + 1);
    // a stream for HEAD too: fastify's HEAD handler drains it and keeps content-length (an empty
    // send() would report 0, and UEFI HTTP Boot sends HEAD before GET)
    return reply.send(createReadStream(path, { start, end }));
  }
  reply.header('content-length', st.size);
  return reply.send(createReadStream(path));
}
