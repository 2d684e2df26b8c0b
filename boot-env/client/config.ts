// The client's settings. They come from the kernel command line that the appliance's iPXE script
// writes (`rackcast.url=… rackcast.token=… rackcast.mode=…`). Arguments with a dot never reach
// /init's environment (the kernel only turns dot-less key=value into environment variables), so
// /init copies every `rackcast.x.y=v` to RACKCAST_X_Y; the client also reads /proc/cmdline
// itself, so running it by hand from the rescue shell behaves the same. The environment wins, so
// `RACKCAST_MODE=selftest node /client/main.mjs` overrides the command line.

export const MODES = ['hello', 'inventory', 'selftest', 'deploy', 'capture', 'register'] as const;
export type Mode = (typeof MODES)[number];

export interface ClientConfig {
  mode: Mode;
  /** base URL of the appliance (http://10.0.0.1:8080) */
  url?: string;
  /** per-task token; never printed */
  token?: string;
  /** disk the self-test overwrites (rackcast.selftest.disk, default /dev/vda) */
  selftestDisk: string;
  /** where /init looks for the client's verdict (action file) */
  runDir: string;
  tmpDir: string;
  /** every rackcast.* setting, by dotted key without the prefix ("selftest.disk") */
  settings: Map<string, string>;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Split a kernel command line the way the kernel does (lib/cmdline.c next_arg): whitespace
 * separates, double quotes group ("a=b c" or a="b c"), quotes are removed.
 */
export function splitCmdline(cmdline: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  let any = false;
  for (const ch of cmdline) {
    if (ch === '"') { quoted = !quoted; any = true; continue; }
    if (!quoted && /\s/.test(ch)) {
      if (any) out.push(cur);
      cur = '';
      any = false;
      continue;
    }
    cur += ch;
    any = true;
  }
  if (any) out.push(cur);
  return out;
}

/** rackcast.* arguments of a command line: "rackcast.selftest.disk=/dev/sda" → selftest.disk. */
export function cmdlineSettings(cmdline: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const arg of splitCmdline(cmdline)) {
    if (!arg.startsWith('rackcast.')) continue;
    const eq = arg.indexOf('=');
    const key = (eq < 0 ? arg : arg.slice(0, eq)).slice('rackcast.'.length).toLowerCase();
    if (key) out.set(key, eq < 0 ? '1' : arg.slice(eq + 1));
  }
  return out;
}

/** RACKCAST_SELFTEST_DISK → selftest.disk (the inverse of /init's mapping). */
function envSettings(env: NodeJS.ProcessEnv): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || !k.startsWith('RACKCAST_') || k === 'RACKCAST_CLIENT_VERSION') continue;
    out.set(k.slice('RACKCAST_'.length).toLowerCase().replaceAll('_', '.'), v);
  }
  return out;
}

export function loadConfig(env: NodeJS.ProcessEnv, cmdline: string): ClientConfig {
  const settings = new Map([...cmdlineSettings(cmdline), ...envSettings(env)]);
  const mode = (settings.get('mode') ?? 'hello') as Mode;
  if (!MODES.includes(mode)) throw new ConfigError(`rackcast.mode=${mode} is not one of ${MODES.join(', ')}`);
  const url = settings.get('url');
  if (url !== undefined) {
    let u: URL;
    try { u = new URL(url); } catch { throw new ConfigError(`rackcast.url=${url} is not a URL`); }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`rackcast.url=${url} must be http:// or https://`);
  }
  const token = settings.get('token');
  return {
    mode,
    ...(url !== undefined ? { url: url.replace(/\/+$/, '') } : {}),
    ...(token !== undefined ? { token } : {}),
    selftestDisk: settings.get('selftest.disk') ?? '/dev/vda',
    runDir: settings.get('run.dir') ?? '/run/rackcast',
    tmpDir: settings.get('tmp') ?? '/tmp',
    settings,
  };
}
