// Runs one DhcpServer for the integration tests inside a lab namespace; it refuses to run in any
// other (it binds 0.0.0.0:67). argv[2] is the DhcpServerOptions as JSON, plus optional `capture`:
// a file that gets one line of hex per received datagram (for the golden fixtures).
// stdout: "listening" once bound, one JSON line per log call, `stats {…}` on SIGTERM/SIGINT.
import { execFileSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { DhcpServer, udpSocket, type DhcpServerOptions, type DhcpLogger, type SocketRole } from '../../../services/dhcp/server.ts';

const cfg = JSON.parse(process.argv[2] ?? '{}') as DhcpServerOptions & { capture?: string };
// Safety: refuse to serve DHCP from the machine's own network namespace.
// `ip netns identify` names the namespace we are in only when it is one `ip netns add` made.
if (execFileSync('ip', ['netns', 'identify', String(process.pid)], { encoding: 'utf8' }).trim() === '') {
  process.stderr.write('serve.ts: refusing to run outside a lab network namespace\n');
  process.exit(2);
}

const line = (level: string) => (obj: object, msg?: string): void => {
  process.stdout.write(`${JSON.stringify({ level, msg, ...obj }, (_k, v: unknown) => (v instanceof Error ? v.message : v))}\n`);
};
const logger: DhcpLogger = { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') };

const { capture, ...opts } = cfg;
const server = new DhcpServer({
  ...opts,
  logger,
  socketFactory: (role: SocketRole) => {
    const s = udpSocket();
    if (!capture) return s;
    return { ...s, onMessage: (fn) => s.onMessage((buf, from) => { appendFileSync(capture, `${role} ${buf.toString('hex')}\n`); fn(buf, from); }) };
  },
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await server.close();
  process.stdout.write(`stats ${JSON.stringify(server.stats)}\n`);
  process.exit(0);
}
process.on('SIGTERM', () => { void stop(); });
process.on('SIGINT', () => { void stop(); });
setTimeout(() => { void stop(); }, 10 * 60_000).unref(); // never outlive a hung test by much

try {
  await server.listen();
  process.stdout.write('listening\n');
} catch (e) {
  process.stdout.write(`failed ${JSON.stringify({ message: (e as Error).message, code: (e as { code?: string }).code, fields: (e as { fields?: unknown }).fields })}\n`);
  process.exit(1);
}
