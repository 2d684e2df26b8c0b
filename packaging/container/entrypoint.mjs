#!/usr/bin/env node
// The container's entry point: the rackcast CLI (bin/rackcast.js, same arguments, same exit
// status), with one step first for `serve`: install the boot environment built into the image
// into <data>/boot (boot-env.mjs says when it copies).
import { dataDir, installBootEnv } from './boot-env.mjs';

const log = (level, msg) => {
  // the same JSON line shape as the server's pino logs
  process.stdout.write(`${JSON.stringify({ level, time: Date.now(), svc: 'rackcast', msg })}\n`);
};

const argv = process.argv.slice(2);
if (argv[0] === 'serve') {
  try {
    installBootEnv(new URL('../../boot-env-dist/', import.meta.url).pathname, dataDir(argv, process.env), (m) => log(30, m));
  } catch (e) {
    log(40, `boot environment: could not install the image's build: ${e.message}`);
  }
}
await import('../../bin/rackcast.js');
