// IPv6 router advertisements (appliance/ra.ts): the radvd config announces "not a router" and
// nothing else; the mode rules; the interface lookup by address.
import { describe, it, expect } from '@jest/globals';
import { radvdConfig, interfaceOf, startRouterAdverts } from '../../../appliance/ra.ts';

const log = { info: () => undefined, warn: () => undefined, debug: () => undefined, error: () => undefined };

describe('router advertisements', () => {
  it('config: lifetime 0, no prefixes, no managed/other flags, on the named interface only', () => {
    const c = radvdConfig('eth1');
    expect(c).toMatch(/interface eth1 \{/);
    expect(c).toMatch(/AdvDefaultLifetime 0;/);
    expect(c).toMatch(/AdvManagedFlag off;/);
    expect(c).toMatch(/AdvOtherConfigFlag off;/);
    expect(c).not.toMatch(/^\s*(prefix|route|RDNSS)\s/m);
    expect(() => radvdConfig('eth1; }')).toThrow(/not an interface name/);
  });
  it('finds the interface holding an IPv4 address', () => {
    const ifs = { lo: [{ family: 'IPv4', address: '127.0.0.1' }], br0: [{ family: 'IPv6', address: 'fe80::1' }, { family: 'IPv4', address: '10.0.0.2' }] } as unknown as Parameters<typeof interfaceOf>[1];
    expect(interfaceOf('10.0.0.2', ifs)).toBe('br0');
    expect(interfaceOf('10.9.9.9', ifs)).toBeUndefined();
  });
  it('stays off when off, and in auto mode unless DHCP is full (the site router advertises)', async () => {
    expect(await startRouterAdverts({ mode: 'off', dhcp: 'full', address: '127.0.0.1', dataDir: '/nonexistent', log })).toBeUndefined();
    expect(await startRouterAdverts({ mode: 'auto', dhcp: 'proxy', address: '127.0.0.1', dataDir: '/nonexistent', log })).toBeUndefined();
  });
});
