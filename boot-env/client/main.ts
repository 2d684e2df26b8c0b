// The boot-environment client: /init starts it as `node /client/main.mjs` once modules are loaded
// and the network is up (or found absent). It reads its settings (config.ts), prints who it is
// and what the machine holds (inventory.ts), and runs the mode the kernel command line asked for.
//
// Contract with /init (boot-env/init):
//   exit 0  the mode finished; <run dir>/action says what /init does next: poweroff | reboot | shell
//   exit ≠0 failure; the reason is the last thing printed, and /init drops to a rescue shell
// The client never powers off or reboots by itself, so a failure can never end in a silent reboot.
//
// Modes: selftest (capture + restore through the real image code onto a scratch disk, used by
// the QEMU e2e test), inventory (print everything, then a shell), deploy (deploy.ts: hello,
// multicast receive onto the chosen disk, report, then the task's `after`, normally reboot),
// capture (capture.ts: hello, read the chosen disk, send new chunks, commit), register
// (register.ts: hello with the inventory, report, power off). hello alone is still to come.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, loadConfig, type ClientConfig, type Mode } from './config.ts';
import { collectInventory, formatInventory, type Inventory } from './inventory.ts';
import { runSelftest } from './selftest.ts';
import { runDeploy } from './deploy.ts';
import { runCapture } from './capture.ts';
import { runRegister } from './register.ts';

/** Set by the bundler (boot-env/build/client.ts) from package.json. */
const VERSION = process.env.RACKCAST_CLIENT_VERSION ?? 'dev';

type Action = 'poweroff' | 'reboot' | 'shell';
interface Ctx { cfg: ClientConfig; inventory: Inventory; log: (line: string) => void }

function uptime(): string {
  try {
    return `${Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]).toFixed(1)} s`;
  } catch {
    return '?';
  }
}

function notYet(mode: Mode): (ctx: Ctx) => Promise<Action> {
  return async () => {
    throw new Error(`mode ${mode} is not implemented in this client yet (available: selftest, inventory, deploy)`);
  };
}

const HANDLERS: Record<Mode, (ctx: Ctx) => Promise<Action>> = {
  async selftest(ctx) {
    try {
      const r = await runSelftest({ disk: ctx.cfg.selftestDisk, tmpDir: ctx.cfg.tmpDir, log: ctx.log });
      ctx.log(`RACKCAST-SELFTEST-OK bytes=${r.bytes} sha256=${r.sha256} chunks=${r.chunks} holes=${r.holes} capture=${r.captureSeconds.toFixed(2)}s restore=${r.restoreSeconds.toFixed(2)}s`);
      return 'poweroff';
    } catch (e) {
      ctx.log(`RACKCAST-SELFTEST-FAIL: ${(e as Error).message}`);
      throw e;
    }
  },
  async inventory(ctx) {
    ctx.log(JSON.stringify(ctx.inventory, null, 2));
    return 'shell';
  },
  hello: notYet('hello'),
  async deploy(ctx) {
    return await runDeploy({ cfg: ctx.cfg, inventory: ctx.inventory, log: ctx.log });
  },
  async capture(ctx) {
    return await runCapture({ cfg: ctx.cfg, inventory: ctx.inventory, log: ctx.log });
  },
  async register(ctx) {
    return await runRegister({ cfg: ctx.cfg, inventory: ctx.inventory, log: ctx.log });
  },
};

async function main(): Promise<number> {
  const log = (line: string): void => { process.stdout.write(`${line}\n`); };
  let cfg: ClientConfig;
  try {
    let cmdline = '';
    try { cmdline = readFileSync('/proc/cmdline', 'utf8'); } catch { /* not Linux: settings from env only */ }
    cfg = loadConfig(process.env, cmdline);
  } catch (e) {
    if (e instanceof ConfigError) { log(`rackcast client: ${e.message}`); return 2; }
    throw e;
  }
  log(`rackcast client ${VERSION} on ${process.version}: mode=${cfg.mode} url=${cfg.url ?? '(none)'} token=${cfg.token ? '(set)' : '(none)'} uptime=${uptime()}`);
  const inventory = collectInventory();
  for (const line of formatInventory(inventory)) log(`  ${line}`);
  const action = await HANDLERS[cfg.mode]({ cfg, inventory, log });
  try {
    mkdirSync(cfg.runDir, { recursive: true });
    writeFileSync(join(cfg.runDir, 'action'), `${action}\n`);
  } catch (e) {
    log(`rackcast client: cannot record the next action in ${cfg.runDir}: ${(e as Error).message}`);
    return 1;
  }
  log(`rackcast client: ${cfg.mode} done, next: ${action}`);
  return 0;
}

main().then(
  (code) => { process.exitCode = code; },
  (e: unknown) => {
    const err = e as Error & { code?: string };
    process.stdout.write(`rackcast client failed: ${err.code ? `${err.code}: ` : ''}${err.message}\n`);
    if (process.env.RACKCAST_DEBUG === '1' && err.stack) process.stdout.write(`${err.stack}\n`);
    process.exitCode = 1;
  },
);
