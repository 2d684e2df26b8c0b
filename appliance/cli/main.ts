// rackcast command line. The only place (with the boot client's entry) that reads argv and env.
// Errors print as one line: "rackcast: <what went wrong> [RC_ERR_…]"; exit 1, or 2 for usage.
import { RackcastError, isRackcastError } from '../../services/errors.ts';
import { imageCommand, IMAGE_USAGE } from './image.ts';
import { mcastCommand, MCAST_USAGE } from './mcast.ts';
import { serveCommand, SERVE_USAGE } from './serve.ts';
import { taskCommand, machineCommand, groupCommand, tokenCommand, TASK_USAGE } from './task.ts';

export const USAGE = `rackcast — network-boot disk imaging

usage: rackcast <command> [options]

commands:
${IMAGE_USAGE}
${MCAST_USAGE}
${SERVE_USAGE}
${TASK_USAGE}

global options:
  --store DIR, --data-dir DIR   data directory (default: $RACKCAST_DATA_DIR or /var/lib/rackcast)
  -h, --help                    this text
`;

export const DEFAULT_DATA_DIR = '/var/lib/rackcast';

export function dataDirFrom(values: { store?: string | undefined; 'data-dir'?: string | undefined }, env: NodeJS.ProcessEnv): string {
  if (values.store && values['data-dir'] && values.store !== values['data-dir']) {
    throw new RackcastError('RC_ERR_USAGE', '--store and --data-dir name different directories; give one');
  }
  return values.store ?? values['data-dir'] ?? env.RACKCAST_DATA_DIR ?? DEFAULT_DATA_DIR;
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
      process.stdout.write(USAGE);
      return cmd ? 0 : 2;
    }
    if (cmd === 'image') return await imageCommand(rest, env);
    if (cmd === 'mcast') return await mcastCommand(rest, env);
    if (cmd === 'serve') return await serveCommand(rest, env);
    if (cmd === 'task') return await taskCommand(rest, env);
    if (cmd === 'machine') return await machineCommand(rest, env);
    if (cmd === 'group') return await groupCommand(rest, env);
    if (cmd === 'token') return await tokenCommand(rest, env);
    throw new RackcastError('RC_ERR_USAGE', `unknown command "${cmd}" (try rackcast --help)`);
  } catch (e) {
    if (isRackcastError(e)) {
      process.stderr.write(`rackcast: ${e.message} [${e.code}]\n`);
      return e.code === 'RC_ERR_USAGE' ? 2 : 1;
    }
    const err = e as NodeJS.ErrnoException;
    if (err && typeof err.code === 'string' && err.syscall) {
      process.stderr.write(`rackcast: ${err.message} [RC_ERR_IO]\n`);
      return 1;
    }
    if (err && err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || err?.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || err?.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      process.stderr.write(`rackcast: ${err.message} [RC_ERR_USAGE]\n`);
      return 2;
    }
    throw e;
  }
}
