// `rackcast serve` configuration: the existing flags, a JSON file with flags winning, messages that
// name the field (flag or file path), unknown fields and contradictions refused.
import { describe, it, expect, afterAll } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../../../appliance/cli/main.ts'; // the CLI's modules import each other: enter through main, as bin/ does
import { serveConfig } from '../../../appliance/cli/serve.ts';
import { isRackcastError } from '../../../services/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'rc-test-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (o: unknown): string => { const p = join(dir, `c${n++}.json`); writeFileSync(p, typeof o === 'string' ? o : JSON.stringify(o)); return p; };
const err = (argv: string[]): { code: string; message: string } => {
  try { serveConfig(argv, {}); } catch (e) { if (isRackcastError(e)) return { code: e.code, message: e.message }; throw e; }
  throw new Error('no error');
};
const FULL = ['--address', '10.77.0.1', '--dhcp', 'full', '--subnet', '10.77.0.0/24', '--range', '10.77.0.100-10.77.0.150'];

describe('serve config', () => {
  it('the network-boot flags work as before, with control-plane defaults', () => {
    const c = serveConfig([...FULL, '--data', '/tmp/x', '--http-port', '8080'], {});
    expect(c).toMatchObject({ address: '10.77.0.1', dhcp: 'full', subnet: '10.77.0.0/24', range: { start: '10.77.0.100', end: '10.77.0.150' }, dataDir: '/tmp/x', httpPort: 8080, tftpPort: 69, unknown: 'ignore', mcastRateMbit: 300 });
    expect(c.control).toEqual({ retries: 0, machineTimeoutSeconds: 7200, misfireGraceSeconds: 3600, wol: { enabled: true, intervalSeconds: 30, timeoutSeconds: 900, port: 9 } });
    expect(Object.isFrozen(c)).toBe(true);
    expect(serveConfig(['--address', '10.0.0.1'], { RACKCAST_DATA_DIR: '/srv/rc' }).dataDir).toBe('/srv/rc');
    expect(c).toMatchObject({ ipv6Ra: 'auto' });
    expect(c).not.toHaveProperty('mcastMtu');
    expect(serveConfig([...FULL, '--mcast-mtu', '8192', '--ipv6-ra', 'off'], {})).toMatchObject({ mcastMtu: 8192, ipv6Ra: 'off' });
    expect(err([...FULL, '--mcast-mtu', '100']).message).toMatch(/--mcast-mtu must be a whole number from 576 to 65000/);
    expect(err([...FULL, '--ipv6-ra', 'maybe']).code).toBe('RC_ERR_USAGE');
    expect(c).toMatchObject({ mcastNice: -10 });
    expect(serveConfig([...FULL, '--mcast-nice=-5'], {})).toMatchObject({ mcastNice: -5 });
    expect(serveConfig([...FULL, '--mcast-nice', '0'], {})).toMatchObject({ mcastNice: 0 });
    expect(err([...FULL, '--mcast-nice=-30']).message).toMatch(/--mcast-nice must be a whole number from -20 to 19/);
  });

  it('reads a JSON file; flags win over it', () => {
    const p = file({ address: '10.9.0.1', dataDir: '/data', dhcp: { mode: 'proxy' }, http: { port: 9000 }, tasks: { retries: 2, timezone: 'UTC' }, wol: { intervalSeconds: 10, timeoutSeconds: 60 }, webhook: { url: 'http://127.0.0.1:9/hook' } });
    const c = serveConfig(['--config', p, '--http-port', '9100', '--retries', '1'], {});
    expect(c).toMatchObject({ address: '10.9.0.1', dataDir: '/data', dhcp: 'proxy', httpPort: 9100 });
    expect(c.control).toMatchObject({ retries: 1, timezone: 'UTC', wol: { intervalSeconds: 10, timeoutSeconds: 60 }, webhook: { url: 'http://127.0.0.1:9/hook', timeoutSeconds: 5 } });
  });

  it('names the field: a file path for file errors (RC_ERR_CONFIG), the flag for flag errors (RC_ERR_USAGE)', () => {
    const p = file({ address: '10.9.0.1', http: { port: 'eighty' } });
    expect(err(['--config', p])).toEqual({ code: 'RC_ERR_CONFIG', message: `${p}: http.port must be a port number (got "eighty")` });
    expect(err(['--address', '10.9.0.1', '--http-port', '70000'])).toEqual({ code: 'RC_ERR_USAGE', message: '--http-port must be a port number (got "70000")' });
    expect(err(['--config', file({ address: '10.9.0.1', dhcp: { rnage: 'x' } })]).message).toMatch(/unknown field "dhcp\.rnage"/);
    expect(err(['--config', file('{ not json')]).code).toBe('RC_ERR_CONFIG');
    expect(err(['--config', file({ address: '10.9.0.1', tasks: { timezone: 'Mars/Olympus' } })]).message).toMatch(/tasks\.timezone must be an IANA time zone/);
    expect(err(['--address', '10.9.0.1', '--webhook', 'ftp://x']).message).toMatch(/--webhook must be an http/);
  });

  it('refuses contradictions', () => {
    expect(err(['--address', '10.77.0.1', '--dhcp', 'full']).message).toMatch(/full needs a subnet and a range/);
    expect(err(['--address', '10.77.0.1', '--dhcp', 'proxy', '--dhcp-range', '10.77.0.100-10.77.0.150']).message).toMatch(/only make sense with full DHCP/);
    expect(err([...FULL.slice(0, 6), '--range', '10.78.0.100-10.78.0.150']).message).toMatch(/10\.78\.0\.100 is not inside the subnet/);
    expect(err([...FULL.slice(0, 6), '--range', '10.77.0.1-10.77.0.150']).message).toMatch(/contains the appliance's own address/);
    expect(err(['--address', '10.9.0.1', '--wol', 'off', '--wol-broadcast', '10.9.0.255']).message).toMatch(/--wol-broadcast is set but Wake-on-LAN is off/);
    expect(err(['--address', '10.9.0.1', '--webhook-timeout', '3']).message).toMatch(/without a webhook URL/);
    expect(err(['--address', '10.9.0.1', '--wol-interval', '60', '--wol-timeout', '30']).message).toMatch(/shorter than the interval/);
    expect(err(['--address', '10.77.0.1', '--range', '10.77.0.100-10.77.0.150', '--dhcp-range', '10.77.0.100-10.77.0.199']).message).toMatch(/differ/);
  });
});
