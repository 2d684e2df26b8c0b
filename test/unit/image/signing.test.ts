import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Signer, decodeSignatureFile, keyIdOf, verifySignature, type SignatureFile } from '../../../services/image/signing.ts';
import { manifestDigest } from '../../../services/image/manifest.ts';
import { seededBytes } from '../../helpers/rng.ts';
import { rcErrorSync, removeDir, tempDir } from './helpers.ts';

let dir: string;
let keysA: string;
let keysB: string;
const what = { image: 'test-image' };
const manifest = Buffer.from(JSON.stringify({ format: 'rackcast.image', name: 'test-image', filler: 'x'.repeat(300) }, null, 1) + '\n');

beforeAll(() => {
  dir = tempDir();
  keysA = join(dir, 'a', 'keys');
  keysB = join(dir, 'b', 'keys');
});
afterAll(() => removeDir(dir));

function flipped(b: Buffer, i: number): Buffer {
  const c = Buffer.from(b);
  c[i] = (c[i] as number) ^ 0x01;
  return c;
}

describe('Signer.open', () => {
  it('generates a key once: a second open gives the same keyId', () => {
    expect(existsSync(keysA)).toBe(false);
    const s1 = Signer.open(keysA);
    expect(s1.keyId).toMatch(/^[0-9a-f]{16}$/);
    const keyFile = join(keysA, 'appliance.key');
    const before = readFileSync(keyFile);
    const s2 = Signer.open(keysA);
    expect(s2.keyId).toBe(s1.keyId);
    expect(readFileSync(keyFile).equals(before)).toBe(true);
    // no temp file left behind
    expect(readdirSync(keysA).sort()).toEqual(['appliance.key', 'appliance.pub']);
  });

  it('writes the private key with mode 0600 and the public half beside it', () => {
    const s = Signer.open(keysA);
    expect(statSync(join(keysA, 'appliance.key')).mode & 0o777).toBe(0o600);
    const pub = readFileSync(join(keysA, 'appliance.pub'), 'utf8');
    expect(pub).toContain('BEGIN PUBLIC KEY');
    // keyId is the first 16 hex digits of SHA-256 over the raw public key in the .pub file
    expect(keyIdOf(Buffer.from(s.sign(manifest).publicKey, 'base64'))).toBe(s.keyId);
  });

  it('files in trusted/ that are not *.pub are ignored by open()', () => {
    const d = join(dir, 'c', 'keys');
    Signer.open(d);
    mkdirSync(join(d, 'trusted'));
    writeFileSync(join(d, 'trusted', 'README'), 'not a key');
    expect(() => Signer.open(d)).not.toThrow();
  });

  it('two stores get different keys', () => {
    expect(Signer.open(keysB).keyId).not.toBe(Signer.open(keysA).keyId);
  });
});

describe('sign and verify', () => {
  let a: Signer;
  let b: Signer;
  let sig: SignatureFile;
  beforeAll(() => {
    a = Signer.open(keysA);
    b = Signer.open(keysB);
    sig = a.sign(manifest);
  });

  it('a signature file names the digest, the key and the signature', () => {
    expect(sig.algorithm).toBe('ed25519');
    expect(sig.digest).toBe(manifestDigest(manifest));
    expect(sig.keyId).toBe(a.keyId);
    expect(Buffer.from(sig.publicKey, 'base64').length).toBe(32);
    expect(Buffer.from(sig.signature, 'base64').length).toBe(64);
  });

  it('sign → verify ok, also through the JSON file form', () => {
    expect(() => a.verify(manifest, sig, what)).not.toThrow();
    expect(() => verifySignature(manifest, sig, what)).not.toThrow();
    const file = Buffer.from(JSON.stringify(sig, null, 1) + '\n');
    expect(() => a.verify(manifest, decodeSignatureFile(file, what), what)).not.toThrow();
    // verifying from a view at an offset in a larger buffer
    const big = Buffer.concat([Buffer.from('junk'), manifest, Buffer.from('junk')]);
    expect(() => a.verify(big.subarray(4, 4 + manifest.length), sig, what)).not.toThrow();
  });

  it('one flipped byte of the manifest → RC_ERR_MANIFEST_DIGEST', () => {
    for (const i of [0, 1, 100, manifest.length - 1]) {
      const e = rcErrorSync(() => a.verify(flipped(manifest, i), sig, what), 'RC_ERR_MANIFEST_DIGEST');
      expect(e.fields).toMatchObject(what);
    }
    rcErrorSync(() => a.verify(manifest.subarray(0, manifest.length - 1), sig, what), 'RC_ERR_MANIFEST_DIGEST');
    rcErrorSync(() => a.verify(Buffer.alloc(0), sig, what), 'RC_ERR_MANIFEST_DIGEST');
  });

  it('a wrong signature → RC_ERR_SIGNATURE_INVALID', () => {
    const raw = Buffer.from(sig.signature, 'base64');
    for (const i of [0, 31, 63]) {
      const e = rcErrorSync(() => a.verify(manifest, { ...sig, signature: flipped(raw, i).toString('base64') }, what), 'RC_ERR_SIGNATURE_INVALID');
      expect(e.fields).toMatchObject(what);
    }
    for (const s of ['', 'AAAA', Buffer.alloc(64).toString('base64'), Buffer.alloc(65, 1).toString('base64'), '!!!not base64!!!']) {
      rcErrorSync(() => a.verify(manifest, { ...sig, signature: s }, what), 'RC_ERR_SIGNATURE_INVALID');
    }
    // a signature of other bytes
    rcErrorSync(() => a.verify(manifest, { ...sig, signature: a.sign(Buffer.from('other')).signature }, what), 'RC_ERR_SIGNATURE_INVALID');
    // B's signature presented as A's
    rcErrorSync(() => a.verify(manifest, { ...sig, signature: b.sign(manifest).signature }, what), 'RC_ERR_SIGNATURE_INVALID');
  });

  it('a public key that does not match the key id, or is not 32 bytes → RC_ERR_SIGNATURE_INVALID', () => {
    const bsig = b.sign(manifest);
    rcErrorSync(() => a.verify(manifest, { ...sig, publicKey: bsig.publicKey }, what), 'RC_ERR_SIGNATURE_INVALID');
    rcErrorSync(() => a.verify(manifest, { ...sig, keyId: bsig.keyId }, what), 'RC_ERR_SIGNATURE_INVALID');
    // B's key and id, A's signature: consistent key id, signature does not verify
    rcErrorSync(() => a.verify(manifest, { ...sig, publicKey: bsig.publicKey, keyId: bsig.keyId }, what), 'RC_ERR_SIGNATURE_INVALID');
    for (const raw of [Buffer.alloc(31, 1), Buffer.alloc(33, 1), Buffer.alloc(0)]) {
      rcErrorSync(() => a.verify(manifest, { ...sig, publicKey: raw.toString('base64'), keyId: keyIdOf(raw) }, what), 'RC_ERR_SIGNATURE_INVALID');
    }
    // 32 bytes that are not a valid curve point, with a matching key id
    for (const raw of [Buffer.alloc(32, 0xff), Buffer.alloc(32, 0)]) {
      rcErrorSync(() => a.verify(manifest, { ...sig, publicKey: raw.toString('base64'), keyId: keyIdOf(raw) }, what), 'RC_ERR_SIGNATURE_INVALID');
    }
  });

  it("another store's signature → RC_ERR_SIGNATURE_UNTRUSTED, unless its .pub is in keys/trusted/", () => {
    const bsig = b.sign(manifest);
    expect(() => verifySignature(manifest, bsig, what)).not.toThrow(); // self-consistent
    const e = rcErrorSync(() => a.verify(manifest, bsig, what), 'RC_ERR_SIGNATURE_UNTRUSTED');
    expect(e.fields).toMatchObject({ ...what, keyId: b.keyId });
    expect(() => a.verify(manifest, bsig, what, false)).not.toThrow();

    // a file in trusted/ that does not end in .pub is ignored
    mkdirSync(join(keysA, 'trusted'), { recursive: true });
    copyFileSync(join(keysB, 'appliance.pub'), join(keysA, 'trusted', 'b.pem'));
    rcErrorSync(() => Signer.open(keysA).verify(manifest, bsig, what), 'RC_ERR_SIGNATURE_UNTRUSTED');

    copyFileSync(join(keysB, 'appliance.pub'), join(keysA, 'trusted', 'b.pub'));
    // the already-open signer read trusted/ when it was opened
    rcErrorSync(() => a.verify(manifest, bsig, what), 'RC_ERR_SIGNATURE_UNTRUSTED');
    const a2 = Signer.open(keysA);
    expect(a2.keyId).toBe(a.keyId);
    expect(() => a2.verify(manifest, bsig, what)).not.toThrow();
    expect(() => a2.verify(manifest, sig, what)).not.toThrow();
    // trust does not extend to tampered content or a forged signature
    rcErrorSync(() => a2.verify(flipped(manifest, 5), bsig, what), 'RC_ERR_MANIFEST_DIGEST');
    rcErrorSync(() => a2.verify(manifest, { ...bsig, signature: sig.signature }, what), 'RC_ERR_SIGNATURE_INVALID');
    // and B does not trust A in return
    rcErrorSync(() => Signer.open(keysB).verify(manifest, sig, what), 'RC_ERR_SIGNATURE_UNTRUSTED');
  });
});

describe('decodeSignatureFile', () => {
  let good: Buffer;
  beforeAll(() => {
    good = Buffer.from(JSON.stringify(Signer.open(keysA).sign(manifest), null, 1) + '\n');
  });

  it('decodes what sign() produced', () => {
    expect(decodeSignatureFile(good, what)).toEqual(JSON.parse(good.toString()));
  });

  it('junk → RC_ERR_SIGNATURE_INVALID', () => {
    const obj = JSON.parse(good.toString()) as Record<string, unknown>;
    const texts = [
      '', ' ', 'junk', '{', 'null', 'true', '0', '"ed25519"', '[]', '{}', '[{"algorithm":"ed25519"}]',
      JSON.stringify({ ...obj, algorithm: 'rsa' }),
      JSON.stringify({ ...obj, algorithm: undefined }),
      JSON.stringify({ ...obj, digest: 5 }),
      JSON.stringify({ ...obj, keyId: null }),
      JSON.stringify({ ...obj, publicKey: ['x'] }),
      JSON.stringify({ ...obj, signature: { a: { b: 1 } } }),
      '['.repeat(100_000) + ']'.repeat(100_000),
    ];
    for (const t of texts) {
      const e = rcErrorSync(() => decodeSignatureFile(Buffer.from(t), what), 'RC_ERR_SIGNATURE_INVALID');
      expect(e.fields).toMatchObject(what);
    }
    for (let seed = 0; seed < 50; seed++) {
      rcErrorSync(() => decodeSignatureFile(seededBytes(seed, seed * 7), what), 'RC_ERR_SIGNATURE_INVALID');
    }
  });

  it('every truncation of a signature file → RC_ERR_SIGNATURE_INVALID', () => {
    const end = good.lastIndexOf('}');
    for (let n = 0; n <= end; n++) {
      rcErrorSync(() => decodeSignatureFile(good.subarray(0, n), what), 'RC_ERR_SIGNATURE_INVALID');
    }
  });

  it('a well-formed file with junk values decodes, and then fails verification', () => {
    const junk = Buffer.from(JSON.stringify({ algorithm: 'ed25519', digest: manifestDigest(manifest), keyId: 'x', publicKey: 'y', signature: 'z' }));
    const sig = decodeSignatureFile(junk, what);
    rcErrorSync(() => Signer.open(keysA).verify(manifest, sig, what), 'RC_ERR_SIGNATURE_INVALID');
  });
});
