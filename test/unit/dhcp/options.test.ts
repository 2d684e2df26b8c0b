import { describe, it, expect } from '@jest/globals';
import { isRackcastError } from '../../../services/errors.ts';
import {
  CODECS, OPT, PXE_DISCOVERY_CONTROL, decodeClientUuid, decodeSubOptions, decodeUserClass, encodeSubOptions, encodeUserClass,
  getOption, intToIp, ipToInt, pxeVendorOptions, setOption, tryOption, type OptionValues,
} from '../../../services/dhcp/options.ts';

const UUID_RAW = Buffer.from('78563412bc9af0de0123456789abcdef', 'hex');

describe('DHCP option codecs', () => {
  it('round-trip a value of every typed option', () => {
    const values: { [K in keyof OptionValues]: OptionValues[K] } = {
      1: '255.255.255.0', 3: ['10.77.0.1'], 6: ['10.77.0.1', '10.77.0.2'], 12: 'node-01', 15: 'rack.lan', 28: '10.77.0.255',
      43: new Map([[6, Buffer.from([8])]]), 50: '10.77.0.100', 51: 3600, 53: 5, 54: '10.77.0.1', 55: [1, 3, 6, 66, 67],
      57: 1472, 58: 1800, 59: 3150, 60: 'PXEClient', 61: Buffer.from('01525400123456', 'hex'), 66: '10.77.0.1',
      67: 'undionly.kpxe', 77: { classes: ['iPXE'], format: 'plain' }, 93: [7, 0], 94: { type: 1, major: 3, minor: 16 },
      97: decodeClientUuid(Buffer.concat([Buffer.from([0]), UUID_RAW])), 175: new Map([[176, Buffer.from([1])]]),
    };
    for (const key of Object.keys(values)) {
      const code = Number(key) as keyof OptionValues;
      const opts = new Map<number, Buffer>();
      setOption(opts, code, values[code] as never);
      expect([code, getOption(opts, code)]).toEqual([code, values[code]]);
    }
  });

  it('throw RC_ERR_DECODE_INVALID on bad lengths, and tryOption treats those as absent', () => {
    const bad: Array<[keyof OptionValues, number[]]> = [[1, [1, 2, 3]], [3, []], [6, [1, 2, 3, 4, 5]], [51, [1]], [53, [1, 2]], [57, [1]],
      [61, [1]], [93, [0]], [94, [1, 2]], [43, [6, 5, 1]], [175, [176]]];
    for (const [code, bytes] of bad) {
      const opts = new Map([[code as number, Buffer.from(bytes)]]);
      let err: unknown;
      try { getOption(opts, code); } catch (e) { err = e; }
      expect([code, isRackcastError(err, 'RC_ERR_DECODE_INVALID')]).toEqual([code, true]);
      expect(tryOption(opts, code)).toBeUndefined();
    }
    expect(getOption(new Map(), OPT.leaseTime)).toBeUndefined();
  });

  it('option 77: RFC 3004 lists, and the bare "iPXE" string iPXE really sends', () => {
    expect(decodeUserClass(Buffer.from('iPXE'))).toEqual({ classes: ['iPXE'], format: 'plain' });
    const rfc = Buffer.from([4, ...Buffer.from('iPXE'), 3, ...Buffer.from('lab')]);
    expect(decodeUserClass(rfc)).toEqual({ classes: ['iPXE', 'lab'], format: 'rfc3004' });
    expect(encodeUserClass(decodeUserClass(rfc))).toEqual(rfc);
    expect(encodeUserClass(decodeUserClass(Buffer.from('iPXE')))).toEqual(Buffer.from('iPXE'));
    expect(decodeUserClass(Buffer.from([0, 1])).format).toBe('plain'); // zero-length instance: not RFC 3004
  });

  it('option 97: a well-formed GUID prints like dmidecode; absence and odd lengths are tolerated', () => {
    const ok = decodeClientUuid(Buffer.concat([Buffer.from([0]), UUID_RAW]));
    expect(ok.uuid).toBe('12345678-9abc-def0-0123-456789abcdef');
    expect(decodeClientUuid(Buffer.alloc(0))).toEqual({ type: null, id: Buffer.alloc(0), uuid: null });
    expect(decodeClientUuid(Buffer.from([0, 1, 2, 3]))).toEqual({ type: 0, id: Buffer.from([1, 2, 3]), uuid: null });
    expect(decodeClientUuid(Buffer.concat([Buffer.from([1]), UUID_RAW])).uuid).toBeNull();
    expect(CODECS[97].enc(ok)).toEqual(Buffer.concat([Buffer.from([0]), UUID_RAW]));
  });

  it('option 43: PXE discovery control 8 = boot file in the offer, no menu', () => {
    const v = pxeVendorOptions();
    expect(v).toEqual(Buffer.from([6, 1, 8, 255]));
    expect(decodeSubOptions(43, v).get(PXE_DISCOVERY_CONTROL)).toEqual(Buffer.from([8]));
    // PAD skipped, END stops, repeated sub-options concatenate
    expect(decodeSubOptions(43, Buffer.from([0, 9, 1, 1, 9, 1, 2, 255, 7, 7]))).toEqual(new Map([[9, Buffer.from([1, 2])]]));
    expect(encodeSubOptions(new Map([[176, Buffer.from([1])]]))).toEqual(Buffer.from([176, 1, 1, 255]));
  });

  it('address helpers', () => {
    expect(intToIp(ipToInt('10.77.0.255'))).toBe('10.77.0.255');
    expect(ipToInt('255.255.255.255')).toBe(0xffffffff);
    for (const bad of ['1.2.3', '1.2.3.4.5', '256.1.1.1', 'a.b.c.d', '']) expect(() => ipToInt(bad)).toThrow();
    // text options drop a trailing NUL some clients add
    expect(getOption(new Map([[60, Buffer.from('PXEClient\0')]]), OPT.vendorClass)).toBe('PXEClient');
  });
});
