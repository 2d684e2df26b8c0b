#!/usr/bin/env node
// The image's HEALTHCHECK: GET /api/v1/health of the `rackcast serve` running as PID 1 of this
// container. Its HTTP server listens only on the boot address, so the URL comes from that
// process's own command line (--address, --interface, --http-port); without --address every
// IPv4 address of the host is tried. $RACKCAST_HEALTH_URL overrides all of it. No curl needed.
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';

function args() {
  try {
    return readFileSync('/proc/1/cmdline', 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

function option(argv, name) {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}`) return argv[i + 1];
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3);
  }
  return undefined;
}

function urls() {
  if (process.env.RACKCAST_HEALTH_URL) return [process.env.RACKCAST_HEALTH_URL];
  const argv = args();
  const port = option(argv, 'http-port') ?? '8080';
  const nics = networkInterfaces();
  const iface = option(argv, 'interface');
  let hosts = [];
  const address = option(argv, 'address');
  if (address) hosts = [address];
  else if (iface && /^\d+\.\d+\.\d+\.\d+$/.test(iface)) hosts = [iface];
  else if (iface) hosts = (nics[iface] ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address);
  if (!hosts.length) hosts = Object.values(nics).flat().filter((a) => a?.family === 'IPv4').map((a) => a.address);
  return hosts.map((h) => `http://${h}:${port}/api/v1/health`);
}

async function check(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  const body = await res.json();
  if (!res.ok || body.ok !== true) throw new Error(`${url}: HTTP ${res.status}`);
  return body;
}

const tried = urls();
const errors = [];
for (const url of tried) {
  try {
    const body = await check(url);
    process.stdout.write(`healthy: ${url} ${JSON.stringify(body)}\n`);
    process.exit(0);
  } catch (e) {
    errors.push(`${url}: ${e.cause?.message ?? e.message}`);
  }
}
process.stderr.write(`unhealthy: ${errors.join('; ') || 'no address to try'}\n`);
process.exit(1);
