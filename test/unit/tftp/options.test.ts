// Option negotiation (RFC 2347/2348/2349/7440) and filename sanitising, as plain functions.
import { describe, it, expect } from '@jest/globals';
import { negotiate } from '../../../services/tftp/options.ts';
import { inside, sanitize } from '../../../services/tftp/root.ts';

const limits = { maxBlksize: 1468, maxWindowsize: 64 };
const neg = (o: Record<string, string>, size = 1000) => negotiate(new Map(Object.entries(o)), size, limits);

describe('negotiate', () => {
  it('no options → RFC 1350 defaults and no OACK', () => {
    expect(neg({})).toEqual({ blksize: 512, windowsize: 1, timeoutMs: undefined, oack: undefined });
  });

  it('accepts, caps or ignores each option as the RFCs allow', () => {
    const cases: Array<[Record<string, string>, Partial<ReturnType<typeof neg>>, Array<[string, string]> | undefined]> = [
      [{ blksize: '1024' }, { blksize: 1024 }, [['blksize', '1024']]],
      [{ blksize: '8' }, { blksize: 8 }, [['blksize', '8']]],
      [{ blksize: '65464' }, { blksize: 1468 }, [['blksize', '1468']]], // capped (RFC 2348: server may answer smaller)
      [{ blksize: '99999999' }, { blksize: 1468 }, [['blksize', '1468']]],
      [{ blksize: '7' }, { blksize: 512 }, undefined], // below 8: ignored
      [{ blksize: '-1' }, { blksize: 512 }, undefined],
      [{ blksize: '0x200' }, { blksize: 512 }, undefined],
      [{ blksize: '1e3' }, { blksize: 512 }, undefined],
      [{ blksize: ' 512' }, { blksize: 512 }, undefined],
      [{ tsize: '0' }, {}, [['tsize', '1000']]],
      [{ tsize: 'x' }, {}, undefined],
      [{ timeout: '1' }, { timeoutMs: 1000 }, [['timeout', '1']]],
      [{ timeout: '255' }, { timeoutMs: 255_000 }, [['timeout', '255']]],
      [{ timeout: '0' }, { timeoutMs: undefined }, undefined],
      [{ timeout: '256' }, { timeoutMs: undefined }, undefined],
      [{ windowsize: '16' }, { windowsize: 16 }, [['windowsize', '16']]],
      [{ windowsize: '65535' }, { windowsize: 64 }, [['windowsize', '64']]],
      [{ windowsize: '0' }, { windowsize: 1 }, undefined],
      [{ windowsize: '65536' }, { windowsize: 1 }, undefined],
      [{ multicast: '', rollover: '1', blksize: '1468' }, { blksize: 1468 }, [['blksize', '1468']]],
    ];
    for (const [req, fields, oack] of cases) {
      const r = neg(req);
      expect([req, r]).toEqual([req, expect.objectContaining(fields)]);
      expect([req, r.oack ? [...r.oack] : undefined]).toEqual([req, oack]);
    }
  });

  it('answers in the client\'s order, tsize with the real size', () => {
    const r = neg({ tsize: '0', windowsize: '16', blksize: '1468', timeout: '4' }, 67_108_864);
    expect([...r.oack!]).toEqual([['tsize', '67108864'], ['windowsize', '16'], ['blksize', '1468'], ['timeout', '4']]);
  });
});

describe('sanitize and inside', () => {
  it('maps names to components below the root', () => {
    expect(sanitize('pxelinux.0')).toEqual(['pxelinux.0']);
    expect(sanitize('/boot/x64/ipxe.efi')).toEqual(['boot', 'x64', 'ipxe.efi']);
    expect(sanitize('///a//./b/')).toEqual(['a', 'b']);
    expect(sanitize('..foo/bar..')).toEqual(['..foo', 'bar..']); // dots inside a name are fine
  });

  it('refuses .., backslashes, control characters and the root itself', () => {
    for (const n of ['..', '../x', 'a/../b', '/../../etc/passwd', 'a/..', 'a\\b', '..\\x', 'a\0b', 'a\nb', 'a\u007f', '/', '//./', '']) {
      expect([n, Array.isArray(sanitize(n))]).toEqual([n, false]);
    }
  });

  it('inside() compares whole components', () => {
    expect(inside('/srv/tftp', '/srv/tftp')).toBe(true);
    expect(inside('/srv/tftp', '/srv/tftp/a')).toBe(true);
    expect(inside('/srv/tftp', '/srv/tftp2/a')).toBe(false);
    expect(inside('/srv/tftp', '/srv')).toBe(false);
    expect(inside('/', '/etc')).toBe(true);
  });
});
