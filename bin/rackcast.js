#!/usr/bin/env node
// Launcher for the rackcast CLI. The CLI is TypeScript run through Node 24's type stripping; the
// project pins Node 24 through the npm package `node`. When this file is started by an older Node
// (e.g. a distribution's Node 20 on PATH), re-run it on the pinned binary.
import { spawnSync } from 'node:child_process';
import module, { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  const require = createRequire(import.meta.url);
  let pinned;
  try {
    pinned = require.resolve('node/bin/node');
  } catch {
    process.stderr.write(`rackcast: needs Node.js 24 (found ${process.version}); run npm ci first\n`);
    process.exit(1);
  }
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync(pinned, [self, ...process.argv.slice(2)], { stdio: 'inherit' });
  if (r.signal) process.kill(process.pid, r.signal);
  process.exit(r.status ?? 1);
} else {
  // V8's code cache for the CLI's modules (type-stripped TypeScript included), kept on disk in
  // the OS temp directory and keyed by each file's content: a command starts in ~0.17 s instead
  // of ~0.41 s of CPU from the second run on (docs/decisions.md). NODE_DISABLE_COMPILE_CACHE=1
  // turns it off; a temp directory that cannot be written only loses the speed-up.
  module.enableCompileCache?.();
  const { main } = await import('../appliance/cli/main.ts');
  const code = await main(process.argv.slice(2));
  // mcast send/receive are one-shot and have written their report (stdout and stderr are
  // synchronous on Linux for files, pipes and terminals): exit now instead of tearing down the
  // heap and the worker threads first, which took ~100 ms per process with eight receivers
  // finishing at once on two cores (docs/decisions.md). Other commands end as the loop drains.
  if (process.argv[2] === 'mcast') process.exit(code);
  process.exitCode = code;
}
