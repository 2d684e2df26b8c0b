// rackcast command line. The only place (with the boot client's entry) that reads argv and env.
// Errors print as one line: "rackcast: <what went wrong> [RC_ERR_…]"; exit 1, or 2 for usage.
//
// Command modules load when their command runs: `rackcast mcast send` need not load fastify, the
// store's SQLite layer and the API to start sending (loading every command took ~0.8 CPU s).
import { RackcastError, isRackcastError } from '../../services/errors.ts';

type Command = (argv: string[], env: NodeJS.ProcessEnv) => Promise<number>;
const COMMANDS: Record<string, () => Promise<Command>> = {
  image: async () => (await import('./image.ts')).imageCommand,
  mcast: async () => (await import('./mcast.ts')).mcastCommand,
  serve: async () => (await import('./serve.ts')).serveCommand,
  task: async () => (await import('./task.ts')).taskCommand,
  machine: async () => (await import('./task.ts')).machineCommand,
  group: async () => (await import('./task.ts')).groupCommand,
  token: async () => (await import('./task.ts')).tokenCommand,
};

async function usage(): Promise<string> {
  const [image, mcast, serve, task] = await Promise.all([import('./image.ts'), import('./mcast.ts'), import('./serve.ts'), import('./task.ts')]);
  return `rackcast — network-boot disk imaging

usage: rackcast <command> [options]

commands:
${image.IMAGE_USAGE}
${mcast.MCAST_USAGE}
${serve.SERVE_USAGE}
${task.TASK_USAGE}

global options:
  --store DIR, --data-dir DIR   data directory (default: $RACKCAST_DATA_DIR or /var/lib/rackcast)
  -h, --help                    this text
`;
}

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
      process.stdout.write(await usage());
      return cmd ? 0 : 2;
    }
    const load = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
    if (!load) throw new RackcastError('RC_ERR_USAGE', `unknown command "${cmd}" (try rackcast --help)`);
    return await (await load())(rest, env);
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
