// Ed25519 signatures over manifest bytes (node:crypto, no dependency).
//
// The appliance key is generated once into <data>/keys/appliance.key (PKCS#8 PEM, mode 0600) with
// its public half beside it. A signature file (manifest.sig, JSON) records the manifest digest,
// the signature and the signer's key id (first 16 hex digits of SHA-256 over the raw public key).
// Other appliances' public keys placed in <data>/keys/trusted/*.pub are trusted too.
import { createHash, randomBytes, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RackcastError } from '../errors.ts';
import { manifestDigest } from './manifest.ts';

export interface SignatureFile {
  algorithm: 'ed25519';
  digest: string;
  keyId: string;
  publicKey: string; // raw 32-byte Ed25519 public key, base64
  signature: string; // base64
  importedFrom?: { keyId: string; signedAt?: string };
}

export function rawPublicKey(key: KeyObject): Buffer {
  // SPKI DER of an Ed25519 key is a fixed 12-byte prefix followed by the 32 raw bytes.
  return key.export({ format: 'der', type: 'spki' }).subarray(-32);
}

export function keyIdOf(raw: Buffer): string {
  return createHash('sha256').update(raw).digest('hex').slice(0, 16);
}

function publicFromRaw(raw: Buffer): KeyObject {
  const prefix = Buffer.from('302a300506032b6570032100', 'hex');
  return createPublicKey({ key: Buffer.concat([prefix, raw]), format: 'der', type: 'spki' });
}

export class Signer {
  readonly keyId: string;
  readonly #priv: KeyObject;
  readonly #pubRaw: Buffer;
  readonly #trusted: Map<string, KeyObject>;

  private constructor(priv: KeyObject, trusted: Map<string, KeyObject>) {
    this.#priv = priv;
    this.#pubRaw = rawPublicKey(createPublicKey(priv));
    this.keyId = keyIdOf(this.#pubRaw);
    this.#trusted = trusted;
    this.#trusted.set(this.keyId, publicFromRaw(this.#pubRaw));
  }

  /** Load the appliance key from keyDir, generating it on first use. */
  static open(keyDir: string): Signer {
    const keyFile = join(keyDir, 'appliance.key');
    if (!existsSync(keyFile)) {
      mkdirSync(keyDir, { recursive: true, mode: 0o700 });
      const { privateKey } = generateKeyPairSync('ed25519');
      const tmp = `${keyFile}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
      writeFileSync(tmp, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
      // link() claims the name atomically: when two first starts race, exactly one key wins and
      // both processes then read that one.
      try { linkSync(tmp, keyFile); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e; }
      unlinkSync(tmp);
    }
    const priv = createPrivateKey(readFileSync(keyFile));
    const pubFile = join(keyDir, 'appliance.pub');
    const pubPem = createPublicKey(priv).export({ format: 'pem', type: 'spki' });
    if (!existsSync(pubFile) || readFileSync(pubFile, 'utf8') !== pubPem) {
      const tmp = `${pubFile}.${process.pid}.tmp`;
      writeFileSync(tmp, pubPem);
      renameSync(tmp, pubFile);
    }
    const trusted = new Map<string, KeyObject>();
    const tdir = join(keyDir, 'trusted');
    if (existsSync(tdir)) {
      for (const f of readdirSync(tdir).filter((n) => n.endsWith('.pub'))) {
        let k: KeyObject;
        try {
          k = createPublicKey(readFileSync(join(tdir, f)));
          if (k.asymmetricKeyType !== 'ed25519') throw new Error(`a ${String(k.asymmetricKeyType)} key, not Ed25519`);
        } catch (e) {
          throw new RackcastError('RC_ERR_SIGNATURE_INVALID', `trusted key ${join(tdir, f)} is not an Ed25519 public key (${(e as Error).message})`, { path: join(tdir, f) });
        }
        trusted.set(keyIdOf(rawPublicKey(k)), k);
      }
    }
    return new Signer(priv, trusted);
  }

  /** Is this key id the appliance's own or a trusted appliance's? */
  trusts(keyId: string): boolean {
    return this.#trusted.has(keyId);
  }

  sign(manifestBytes: Uint8Array): SignatureFile {
    return {
      algorithm: 'ed25519',
      digest: manifestDigest(manifestBytes),
      keyId: this.keyId,
      publicKey: this.#pubRaw.toString('base64'),
      signature: sign(null, manifestBytes, this.#priv).toString('base64'),
    };
  }

  /** Check digest and signature; with `trust`, the signer must be this appliance or a trusted key. */
  verify(manifestBytes: Uint8Array, sig: SignatureFile, what: Record<string, unknown>, trust = true): void {
    verifySignature(manifestBytes, sig, what);
    if (trust && !this.#trusted.has(sig.keyId)) {
      throw new RackcastError('RC_ERR_SIGNATURE_UNTRUSTED', `signed by key ${sig.keyId}, which this appliance does not trust`, { ...what, keyId: sig.keyId });
    }
  }
}

/** Self-consistency: digest of the bytes, and signature by the public key the file names. */
export function verifySignature(manifestBytes: Uint8Array, sig: SignatureFile, what: Record<string, unknown>): void {
  if (manifestDigest(manifestBytes) !== sig.digest) {
    throw new RackcastError('RC_ERR_MANIFEST_DIGEST', 'manifest does not match its recorded digest (tampered or truncated)', what);
  }
  const raw = Buffer.from(sig.publicKey, 'base64');
  if (raw.length !== 32 || keyIdOf(raw) !== sig.keyId) {
    throw new RackcastError('RC_ERR_SIGNATURE_INVALID', 'signature file names an invalid public key', what);
  }
  if (!verify(null, manifestBytes, publicFromRaw(raw), Buffer.from(sig.signature, 'base64'))) {
    throw new RackcastError('RC_ERR_SIGNATURE_INVALID', 'manifest signature does not verify', what);
  }
}

export function decodeSignatureFile(bytes: Uint8Array, what: Record<string, unknown>): SignatureFile {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new RackcastError('RC_ERR_SIGNATURE_INVALID', 'signature file is not JSON', what);
  }
  const ok = v && v.algorithm === 'ed25519' && typeof v.digest === 'string' && typeof v.keyId === 'string' &&
    typeof v.publicKey === 'string' && typeof v.signature === 'string';
  if (!ok) throw new RackcastError('RC_ERR_SIGNATURE_INVALID', 'signature file lacks algorithm, digest, keyId, publicKey or signature', what);
  return v as unknown as SignatureFile;
}
