// Test runner: starts a TftpServer and prints "listening <address> <port>" on stdout, then on
// SIGTERM prints "stats <json>" and exits. Integration tests and the benchmark
// start it inside a lab namespace with lab.spawn(); it never chooses an address by itself.
// Usage: node test/integration/tftp/serve.ts <address> <port> <root> [json options]
import { TftpServer } from '../../../services/tftp/server.ts';

const [address, port, root, extra] = process.argv.slice(2);
if (!address || !port || !root) {
  console.error('usage: serve.ts <address> <port> <root> [json options]');
  process.exit(2);
}
const verbose = process.env.TFTP_LOG === '1';
const line = (level: string) => (obj: object, msg?: string): void => { if (verbose) console.error(level, msg ?? '', JSON.stringify(obj)); };
const server = new TftpServer({
  address, port: Number(port), root,
  logger: { info: line('info'), warn: line('warn'), debug: line('debug') },
  ...(extra ? JSON.parse(extra) as object : {}),
});
const a = await server.listen();
console.log(`listening ${a.address} ${a.port}`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`stats ${JSON.stringify(server.stats)}`);
  await server.close();
  process.exit(0);
}
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
