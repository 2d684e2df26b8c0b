// TftpServer over 127.0.0.1 with the hand-written client: plain transfers, options, windows,
// block-number rollover, many transfers at once. Timers run on a fake clock (no loss on loopback,
// so no retransmission is ever due).
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { createHash } from 'node:crypto';
import { writeFileSync, mkdirSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { TftpServer, TFTP_DEFAULTS } from '../../../services/tftp/server.ts';
import { seededBytes } from '../../helpers/rng.ts';
import { FakeClock, fetchFile, tempRoot, until } from './helpers.ts';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const root = tempRoot();
const files = new Map<string, Buffer>();
let server: TftpServer;
let port: number;

function put(name: string, data: Buffer): void {
  mkdirSync(join(root.dir, name, '..'), { recursive: true });
  writeFileSync(join(root.dir, name), data);
  files.set(name, data);
}

beforeAll(async () => {
  for (const n of [0, 1, 511, 512, 513, 1024, 1467, 1468, 1469, 2560, 2936, 5120, 100_000]) put(`size/${n}`, seededBytes(n, n));
  put('boot/undionly.kpxe', seededBytes(7, 71_234));
  put('big.bin', seededBytes(8, 3 << 20));
  // readAheadBytes small and odd so that blocks straddle many segment boundaries (512-byte
  // blocks: 5 per segment, so 2560 and 5120 end exactly on one and owe an empty block after it)
  server = new TftpServer({ root: root.dir, address: '127.0.0.1', port: 0, clock: new FakeClock(), readAheadBytes: 3000, maxTransfersPerClient: 64 });
  port = (await server.listen()).port;
});

afterAll(async () => {
  await server.close();
  root.cleanup();
});

describe('TftpServer transfers', () => {
  it('plain RFC 1350 transfer (no options, 512-byte blocks) of every size around block edges', async () => {
    for (const [name, data] of files) {
      if (!name.startsWith('size/')) continue;
      const r = await fetchFile(port, name);
      expect(r.oack).toBeUndefined();
      expect(sha(r.data)).toBe(sha(data));
      expect(r.wireBlocks.length).toBe(Math.floor(data.length / 512) + 1); // a final short (maybe empty) block
    }
  });

  it('a leading slash is stripped (PXE ROMs send "/file")', async () => {
    const r = await fetchFile(port, '/boot/undionly.kpxe');
    expect(r.data.equals(files.get('boot/undionly.kpxe')!)).toBe(true);
    expect((await fetchFile(port, '//boot/./undionly.kpxe')).data.length).toBe(71_234);
  });

  it('blksize, tsize and timeout are acknowledged; blksize is capped at maxBlksize, unknown options left out', async () => {
    const r = await fetchFile(port, 'boot/undionly.kpxe', { blksize: '1468', tsize: '0', timeout: '3', multicast: '', rollover: '0' });
    expect([...r.oack!]).toEqual([['blksize', '1468'], ['tsize', '71234'], ['timeout', '3']]);
    expect(r.data.equals(files.get('boot/undionly.kpxe')!)).toBe(true);
    expect(r.wireBlocks.length).toBe(Math.floor(71_234 / 1468) + 1);
    const capped = await fetchFile(port, 'size/100000', { BLKSIZE: '65464' });
    expect(capped.oack!.get('blksize')).toBe(String(TFTP_DEFAULTS.maxBlksize));
    expect(capped.data.equals(files.get('size/100000')!)).toBe(true);
  });

  it('an options-only-unknown request gets no OACK, DATA 1 straight away (RFC 2347 §3)', async () => {
    const r = await fetchFile(port, 'size/1024', { foo: 'bar', blksize: '4' });
    expect(r.oack).toBeUndefined();
    expect(r.data.equals(files.get('size/1024')!)).toBe(true);
  });

  it('windowsize 16 (RFC 7440): bit-exact, one ACK per window', async () => {
    const data = files.get('big.bin')!;
    const r = await fetchFile(port, 'big.bin', { blksize: '1468', windowsize: '16' });
    expect(r.oack!.get('windowsize')).toBe('16');
    expect(sha(r.data)).toBe(sha(data));
    const blocks = Math.floor(data.length / 1468) + 1;
    expect(r.acks).toBe(Math.ceil(blocks / 16)); // (the ACK 0 of the OACK not counted)
  });

  it('windowsize above maxWindowsize is capped', async () => {
    const r = await fetchFile(port, 'size/100000', { windowsize: '1000' });
    expect(r.oack!.get('windowsize')).toBe('64');
    expect(r.data.equals(files.get('size/100000')!)).toBe(true);
  });

  it('block numbers roll over 65535 → 0 on a file of more than 65535 × 512 bytes', async () => {
    // each 512-byte block holds its own index, so a block sent in the wrong place shows
    const blocks = 65_535 + 300;
    const buf = Buffer.alloc(blocks * 512 + 100);
    for (let i = 0; i < blocks; i++) buf.fill(Buffer.from(Uint32Array.of(i).buffer), i * 512, (i + 1) * 512);
    const fd = openSync(join(root.dir, 'rollover.bin'), 'w');
    writeSync(fd, buf);
    closeSync(fd);
    const r = await fetchFile(port, 'rollover.bin', { blksize: '512', windowsize: '64' });
    expect(r.data.length).toBe(buf.length);
    expect(sha(r.data)).toBe(sha(buf));
    expect(r.wireBlocks.slice(65_533, 65_538)).toEqual([65_534, 65_535, 0, 1, 2]);
  }, 60_000);

  it('read-ahead segments of more blocks than one readv takes (IOV_MAX 1024) are read whole', async () => {
    // 1 MiB at 512-byte blocks: 2048 payload slots per segment, read in several calls
    const wide = new TftpServer({ root: root.dir, address: '127.0.0.1', port: 0, clock: new FakeClock(), readAheadBytes: 1 << 20 });
    try {
      const r = await fetchFile((await wide.listen()).port, 'big.bin');
      expect(r.wireBlocks.length).toBe(Math.floor((3 << 20) / 512) + 1);
      expect(sha(r.data)).toBe(sha(files.get('big.bin')!));
    } finally {
      await wide.close();
    }
  });

  it('many transfers at once, each bit-exact', async () => {
    const names = [...files.keys()];
    const runs = Array.from({ length: 24 }, (_, i) => {
      const name = names[i % names.length]!;
      const options: Record<string, string> = i % 3 === 0 ? {} : i % 3 === 1 ? { blksize: '1468' } : { blksize: '1024', windowsize: '8' };
      return fetchFile(port, name, options).then((r) => expect(sha(r.data)).toBe(sha(files.get(name)!)));
    });
    await Promise.all(runs);
    await until(() => server.activeTransfers === 0, 'every final ACK to be processed');
  });

  it('stats count what happened', () => {
    const s = server.stats;
    expect(s.transfers).toBe(s.completed);
    expect(s.errors + s.malformed + s.retransmits + s.unknownTid + s.aborted).toBe(0);
    expect(s.bytesSent).toBeGreaterThan(3 << 20);
    expect(s.requests).toBe(s.transfers);
  });
});
