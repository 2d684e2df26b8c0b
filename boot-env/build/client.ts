// The client bundle: boot-env/client/main.ts and every worker-thread module it starts, bundled by
// esbuild into /client/*.mjs, plus the native addons the client loads, next to them.
//
// Two source patterns cannot survive bundling as written, so a plugin rewrites them on load (and
// the build fails if they change shape, rather than shipping a bundle that breaks at run time):
//  - `new Worker(new URL('./chunk-worker.ts', import.meta.url))` (services/image/worker-pool.ts):
//    the worker becomes its own entry point and the URL names its bundle, ./chunk-worker.mjs.
//  - the require of a native addon through createRequire (ADDONS: `require('zstd-napi/binding')`
//    in services/image/zstd.ts, `require('./native/build/Release/rcudp.node')` in
//    services/multicast/batch-io.ts): esbuild cannot bundle a .node file, so it becomes
//    require('./NAME.node'), resolved next to the bundle, where the build copies the addon.
import { build, type Plugin } from 'esbuild';
import { readFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { BuildError } from './run.ts';
import { rcudpAddon, zstdAddon } from './runtime.ts';

const WORKER_URL = /new URL\(\s*(['"])\.\/([A-Za-z0-9_.-]+)\.ts\1\s*,\s*import\.meta\.url\s*\)/g;
const ANY_TS_URL = /new URL\([^)]*\.ts['"][^)]*import\.meta\.url/;

/** A native addon the client requires: shipped as /client/NAME, its require pointed there. */
export interface Addon {
  /** its file name next to the bundle */
  name: string;
  /** the require specifier as the source writes it */
  spec: string;
  /** the module that requires it (named when the rewrite finds nothing) */
  module: string;
  /** the compiled addon in this checkout (a BuildError when it is not built) */
  source(repo: string): string;
}

export const ADDONS: readonly Addon[] = [
  { name: 'zstd-napi.node', spec: 'zstd-napi/binding', module: 'services/image/zstd.ts', source: () => zstdAddon() },
  // Without it a multicast receiver falls back to node:dgram silently (3-4x the receive CPU).
  { name: 'rcudp.node', spec: './native/build/Release/rcudp.node', module: 'services/multicast/batch-io.ts', source: rcudpAddon },
];

/** `require('SPEC')` or `require("SPEC")`, the quote captured so the rewrite keeps it. */
function requireOf(spec: string): RegExp {
  return new RegExp(`require\\(\\s*(['"])${spec.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\1\\s*\\)`, 'g');
}

/** Point every addon require in `text` next to the bundle, counting the rewrites per addon. */
export function rewriteAddonRequires(text: string, counts: Map<string, number>): string {
  for (const a of ADDONS) {
    text = text.replace(requireOf(a.spec), (_m, q: string) => {
      counts.set(a.name, (counts.get(a.name) ?? 0) + 1);
      return `require(${q}./${a.name}${q})`;
    });
  }
  return text;
}

/**
 * Every addon's require was rewritten and none survives in the output: otherwise the bundle would
 * load without the addon (zstd: a crash on first use; rcudp: a silent fallback to node:dgram).
 */
export function checkAddonRewrites(counts: Map<string, number>, outputs: { name: string; text: string }[]): void {
  for (const a of ADDONS) {
    for (const o of outputs) {
      if (o.text.includes(a.spec)) throw new BuildError(`${o.name} still requires ${a.spec}: the addon rewrite did not apply (see boot-env/build/client.ts)`);
    }
    if (!counts.get(a.name)) throw new BuildError(`no require('${a.spec}') found to point at the shipped addon ${a.name}: ${a.module} changed? (see boot-env/build/client.ts)`);
  }
}

interface Found { workers: Set<string>; addonRewrites: Map<string, number> }

function rewritePlugin(repo: string, found: Found): Plugin {
  return {
    name: 'rackcast-boot-env',
    setup(b) {
      b.onLoad({ filter: /\.ts$/ }, (args) => {
        if (args.path.includes(`${'/'}node_modules/`)) return undefined;
        let text = readFileSync(args.path, 'utf8');
        const where = relative(repo, args.path);
        text = text.replace(WORKER_URL, (_m, q: string, name: string) => {
          found.workers.add(resolve(dirname(args.path), `${name}.ts`));
          return `new URL(${q}./${name}.mjs${q}, import.meta.url)`;
        });
        if (ANY_TS_URL.test(text)) {
          throw new BuildError(`${where}: a new URL('….ts', import.meta.url) the bundler cannot map (only './name.ts' in the same directory is supported; see boot-env/build/client.ts)`);
        }
        text = rewriteAddonRequires(text, found.addonRewrites);
        return { contents: text, loader: 'ts' };
      });
    },
  };
}

export interface Bundle { files: { name: string; path: string; bytes: number }[]; workers: string[] }

/**
 * Bundle the client into `outDir` (main.mjs + one .mjs per worker module). Workers are found by
 * the plugin while bundling, so the build repeats until the set of entry points is stable.
 */
export async function bundleClient(repo: string, outDir: string, version: string): Promise<Bundle> {
  const main = join(repo, 'boot-env/client/main.ts');
  let workers = new Set<string>();
  for (let round = 0; round < 4; round++) {
    const found: Found = { workers: new Set(), addonRewrites: new Map() };
    const entryPoints = [{ in: main, out: 'main' }, ...[...workers].map((w) => ({ in: w, out: basename(w, '.ts') }))];
    const names = entryPoints.map((e) => e.out);
    if (new Set(names).size !== names.length) throw new BuildError(`two bundle entry points share a name: ${names.join(', ')}`);
    const r = await build({
      entryPoints,
      outdir: outDir,
      outExtension: { '.js': '.mjs' },
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      minifySyntax: true,
      legalComments: 'none',
      logLevel: 'silent',
      metafile: true,
      define: { 'process.env.RACKCAST_CLIENT_VERSION': JSON.stringify(version) },
      plugins: [rewritePlugin(repo, found)],
    }).catch((e: Error) => { throw new BuildError(`esbuild: ${e.message}`); });
    const grown = [...found.workers].some((w) => !workers.has(w));
    workers = new Set([...workers, ...found.workers]);
    if (grown) continue;
    const files = Object.entries(r.metafile.outputs).map(([p, o]) => ({ name: basename(p), path: resolve(p), bytes: o.bytes }));
    checkAddonRewrites(found.addonRewrites, files.map((f) => ({ name: f.name, text: readFileSync(f.path, 'utf8') })));
    return { files: files.sort((a, b) => a.name.localeCompare(b.name)), workers: [...workers].map((w) => relative(repo, w)).sort() };
  }
  throw new BuildError('worker discovery did not settle after 4 bundling rounds');
}
