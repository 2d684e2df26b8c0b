// Reach a server inside a lab namespace from this machine's 127.0.0.1, without giving the
// namespace any route to the host: a relay inside the namespace connects to the server and
// listens on a unix socket (the filesystem is shared across network namespaces); a listener on
// 127.0.0.1 here pipes each connection to that socket. Used by the demo to show the web UI.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import type { Lab } from './netns.ts';

const RELAY = `
const net = require('node:net');
const [sock, host, port] = process.argv.slice(1);
net.createServer((a) => {
  const b = net.connect(Number(port), host);
  const end = () => { a.destroy(); b.destroy(); };
  a.on('error', end); b.on('error', end);
  a.pipe(b).pipe(a);
}).listen(sock);
`;

function pipeBoth(a: Socket, b: Socket): void {
  const end = (): void => { a.destroy(); b.destroy(); };
  a.on('error', end);
  b.on('error', end);
  a.pipe(b).pipe(a);
}

export interface Forward { url: string; close(): Promise<void> }

/** Forward 127.0.0.1:localPort (0: any) to host:port inside lab host `i`'s namespace. */
export async function forwardFromLab(lab: Lab, i: number, host: string, port: number, socketPath: string, localPort = 0): Promise<Forward> {
  rmSync(socketPath, { force: true });
  const relay = lab.spawn(i, process.execPath, ['-e', RELAY, socketPath, host, String(port)]);
  for (let k = 0; k < 50; k++) {
    const ok = await new Promise<boolean>((res) => { const c = createConnection(socketPath, () => { c.destroy(); res(true); }); c.on('error', () => res(false)); });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const server: Server = createServer((s) => pipeBoth(s, createConnection(socketPath)));
  await new Promise<void>((res, rej) => { server.once('error', rej); server.listen(localPort, '127.0.0.1', () => res()); });
  const a = server.address();
  const url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : localPort}`;
  return {
    url,
    close: async () => {
      await new Promise<void>((r) => server.close(() => r()));
      if (relay.pid !== undefined && relay.exitCode === null) try { process.kill(relay.pid, 'SIGTERM'); } catch { /* gone */ }
      rmSync(socketPath, { force: true });
    },
  };
}
