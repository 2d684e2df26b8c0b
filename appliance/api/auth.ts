// The admin token: 32 random bytes (hex) in <data>/admin.token (mode 0600), made at the first
// start and printed once to the log. Every request to the API and the UI carries it as
// "Authorization: Bearer …". `rackcast token rotate` replaces the file; the running appliance
// rereads it when its mtime/size change, so the old token stops working at once.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, renameSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { RackcastError } from '../../services/errors.ts';

export const TOKEN_FILE = 'admin.token';

export function tokenPath(dataDir: string): string {
  return join(dataDir, TOKEN_FILE);
}

function write(dataDir: string): string {
  mkdirSync(dataDir, { recursive: true });
  const token = randomBytes(32).toString('hex');
  const tmp = `${tokenPath(dataDir)}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, token + '\n', { mode: 0o600 });
  renameSync(tmp, tokenPath(dataDir));
  return token;
}

/** The admin token, made now if there is none (created says so: print it once). */
export function ensureAdminToken(dataDir: string): { token: string; created: boolean } {
  if (existsSync(tokenPath(dataDir))) return { token: readAdminToken(dataDir), created: false };
  return { token: write(dataDir), created: true };
}

export function rotateAdminToken(dataDir: string): string {
  return write(dataDir);
}

export function readAdminToken(dataDir: string): string {
  try {
    const t = readFileSync(tokenPath(dataDir), 'utf8').trim();
    if (!/^[0-9a-f]{64}$/.test(t)) throw new Error('malformed');
    return t;
  } catch (e) {
    throw new RackcastError('RC_ERR_AUTH', `cannot read the admin token from ${tokenPath(dataDir)} (${(e as Error).message}): run rackcast token rotate on the appliance, or pass --token`);
  }
}

export class AdminAuth {
  readonly dataDir: string;
  #cache?: { key: string; token: Buffer };

  constructor(dataDir: string) {
    this.dataDir = dataDir;
  }

  #token(): Buffer | undefined {
    const st = statSync(tokenPath(this.dataDir), { throwIfNoEntry: false });
    if (!st) return undefined;
    const key = `${st.mtimeMs}/${st.size}/${st.ino}`;
    if (this.#cache?.key !== key) this.#cache = { key, token: Buffer.from(readAdminToken(this.dataDir)) };
    return this.#cache.token;
  }

  /** Does this bearer value equal the current admin token? (constant time) */
  check(given: string | undefined): boolean {
    const want = this.#token();
    if (!want || !given) return false;
    const g = Buffer.from(given);
    return g.length === want.length && timingSafeEqual(g, want);
  }
}

/** "Bearer X" → X */
export function bearer(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m?.[1];
}
