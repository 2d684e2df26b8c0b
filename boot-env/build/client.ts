// The client bundle: boot-env/client/main.ts and every worker-thread module it starts, bundled by
// esbuild into /client/*.mjs, plus zstd-napi's native addon next to them.
//
// Two source patterns cannot survive bundling as written, so a plugin rewrites them on load (and
// the build fails if they change shape, rather than shipping a bundle that breaks at run time):
//  - `new Worker(new URL('./chunk-worker.ts', import.meta.url))` (services/image/worker-pool.ts):
//    the worker becomes its own entry point and the URL names its bundle, ./chunk-worker.mjs.
//  - `require('zstd-napi/binding')` through createRequire (services/image/zstd.ts): esbuild cannot
//    bundle a .node file, so it becomes require('./zstd-napi.node'), resolved next to the bundle.
import { build, type Plugin } from 'esbuild';
import { readFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { BuildError } from './run.ts';

export const ADDON_NAME = 'zstd-napi.node';
const WORKER_URL = /new URL\(\s*(['"])\.\/([A-Za-z0-9_.-]+)\.ts\1\s*,\s*import\.meta\.url\s*\)/g;
const ANY_TS_URL = /new URL\([^)]*\.ts['"][^)]*import\.meta\.url/;
const ADDON_REQUIRE = /require\(\s*(['"])zstd-napi\/binding\1\s*\)/g;

interface Found { workers: Set<string>; addonRewrites: number }

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
        text = text.replace(ADDON_REQUIRE, (_m, q: string) => {
          found.addonRewrites++;
          return `require(${q}./${ADDON_NAME}${q})`;
        });
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
    const found: Found = { workers: new Set(), addonRewrites: 0 };
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
    for (const f of files) {
      const text = readFileSync(f.path, 'utf8');
      if (text.includes('zstd-napi/binding')) throw new BuildError(`${f.name} still requires zstd-napi/binding: the addon rewrite did not apply (see boot-env/build/client.ts)`);
    }
    if (found.addonRewrites === 0) throw new BuildError("no require('zstd-napi/binding') found to point at the shipped addon: services/image/zstd.ts changed? (see boot-env/build/client.ts)");
    return { files: files.sort((a, b) => a.name.localeCompare(b.name)), workers: [...workers].map((w) => relative(repo, w)).sort() };
  }
  throw new BuildError('worker discovery did not settle after 4 bundling rounds');
}
