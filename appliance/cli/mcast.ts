// `rackcast mcast send|receive`: the multicast transport on its own, like udp-sender and
// udp-receiver, but receiver-driven, paced and verified.
import { parseArgs } from 'node:util';
import { networkInterfaces } from 'node:os';
import { readFileSync } from 'node:fs';
import { RackcastError } from '../../services/errors.ts';
import { ImageStore } from '../../services/image/index.ts';
import { MulticastSender, SENDER_DEFAULTS } from '../../services/multicast/sender.ts';
import { MulticastReceiver, RECEIVER_DEFAULTS } from '../../services/multicast/receiver.ts';
import { serveImages } from '../../services/multicast/http-source.ts';
import { raisePriority } from '../../services/multicast/priority.ts';
import type { IoMode } from '../../services/multicast/batch-io.ts';
import { dataDirFrom } from './main.ts';
import { fmtBytes, progressBar } from './progress.ts';

export const MCAST_USAGE = `  mcast send NAME --interface IF [--group ADDR] [--port N] [--rate 900m] [--min-receivers N]
             [--max-wait S] [--deadline S] [--mtu N] [--http-port N] [--receiver-timeout S]
             [--delta-wait S] [--io auto|native|dgram] [--nice N] [--json]
                                send an image to every receiver on the group, until all are done;
                                the first pass skips chunks no receiver needs (delta receivers);
                                --nice: the sender's scheduling priority when root (default -10; 0
                                leaves it), so that pacing keeps time on a busy host
  mcast receive --interface IF --target FILE_OR_DEVICE [--group ADDR] [--port N]
             [--from URL] [--manifest FILE] [--trust-key KEYID] [--fallback S] [--delta] [--grow]
             [--io auto|native|dgram] [--backlog N] [--json]
                                receive, verify and write an image (unicast fallback over HTTP);
                                --delta: compare the target first, fetch and write only what differs;
                                --grow: grow the last partition onto a larger target
                                --io: group datagrams batched through the rcudp addon (native),
                                one at a time through node:dgram, or native where built (auto);
                                --backlog: chunks verified and written at once (default 32; each
                                holds a block in memory)`;

const options = {
  store: { type: 'string' }, 'data-dir': { type: 'string' }, interface: { type: 'string' }, group: { type: 'string' },
  port: { type: 'string' }, rate: { type: 'string' }, 'min-receivers': { type: 'string' }, 'max-wait': { type: 'string' },
  deadline: { type: 'string' }, mtu: { type: 'string' }, 'http-port': { type: 'string' }, json: { type: 'boolean' },
  target: { type: 'string' }, from: { type: 'string' }, manifest: { type: 'string' }, 'trust-key': { type: 'string' },
  fallback: { type: 'string' }, discard: { type: 'boolean' }, backlog: { type: 'string' }, 'receiver-timeout': { type: 'string' },
  delta: { type: 'boolean' }, 'delta-wait': { type: 'string' }, grow: { type: 'boolean' }, io: { type: 'string' }, nice: { type: 'string' },
} as const;

function ioMode(s: string): IoMode {
  if (s !== 'auto' && s !== 'native' && s !== 'dgram') throw new RackcastError('RC_ERR_USAGE', `--io: auto, native or dgram, not "${s}"`);
  return s;
}

/** An interface name (eth0) or an IPv4 address → the IPv4 address to use. */
export function interfaceAddress(spec: string | undefined): string {
  if (!spec) throw new RackcastError('RC_ERR_USAGE', '--interface IF is required (a name like eth0, or its IPv4 address)');
  if (/^\d+\.\d+\.\d+\.\d+$/.test(spec)) return spec;
  const a = networkInterfaces()[spec]?.find((x) => x.family === 'IPv4');
  if (!a) throw new RackcastError('RC_ERR_USAGE', `interface ${spec} has no IPv4 address`);
  return a.address;
}

export function parseRate(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)$/i.exec(s.trim());
  if (!m) throw new RackcastError('RC_ERR_USAGE', `not a rate: "${s}" (e.g. 900m = 900 Mbit/s)`);
  const mult = { '': 1e-6, k: 1e-3, m: 1, g: 1000 }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Number(m[1]) * mult;
}

function num(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new RackcastError('RC_ERR_USAGE', `--${name} must be a number from ${min} to ${max}`);
  return n;
}

const log = {
  info: (o: object, m?: string): void => { process.stderr.write(`${m ?? ''} ${JSON.stringify(o)}\n`); },
  warn: (o: object, m?: string): void => { process.stderr.write(`warning: ${m ?? ''} ${JSON.stringify(o)}\n`); },
};

export async function mcastCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = argv;
  const { values: v, positionals: pos } = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  const common = {
    ...(v.group ? { group: v.group } : {}),
    ...(v.port ? { port: num(v.port, 'port', 1, 65535) as number } : {}),
    ...(v.io ? { io: ioMode(v.io) } : {}),
  };
  if (sub === 'send') {
    if (pos.length !== 1) throw new RackcastError('RC_ERR_USAGE', 'usage: rackcast mcast send NAME --interface IF');
    const store = ImageStore.open(dataDirFrom(v, env));
    const address = interfaceAddress(v.interface);
    const name = pos[0] as string;
    store.open(name); // fail early on a missing or untrusted image
    const nice = num(v.nice, 'nice', -20, 19) ?? -10;
    if (!Number.isInteger(nice)) throw new RackcastError('RC_ERR_USAGE', '--nice must be an integer from -20 to 19');
    const http = await serveImages(store, address, num(v['http-port'], 'http-port', 0, 65535) ?? (common.port ?? SENDER_DEFAULTS.port) + 1);
    const prio = raisePriority(nice);
    if (!v.json) (prio.errors.length ? log.warn : log.info)(prio.summary(), 'sender priority');
    const sender = new MulticastSender({
      store, image: name, interfaceAddress: address, httpUrl: `${http.url}/images/${name}`, ...common,
      ...(v.rate ? { rateMbit: parseRate(v.rate) } : {}),
      ...(v['min-receivers'] ? { minReceivers: num(v['min-receivers'], 'min-receivers', 0, 100000) as number } : {}),
      ...(v['max-wait'] ? { maxWaitMs: (num(v['max-wait'], 'max-wait', 0, 1e7) as number) * 1000 } : {}),
      ...(v.deadline ? { deadlineMs: (num(v.deadline, 'deadline', 0, 1e7) as number) * 1000 } : {}),
      ...(v.mtu ? { mtu: num(v.mtu, 'mtu', 576, 65535) as number } : {}),
      ...(v['receiver-timeout'] ? { receiverTimeoutMs: (num(v['receiver-timeout'], 'receiver-timeout', 0.5, 3600) as number) * 1000 } : {}),
      ...(v['delta-wait'] ? { declareWaitMs: (num(v['delta-wait'], 'delta-wait', 0, 86400) as number) * 1000 } : {}),
      ...(v.json ? {} : { logger: log }),
    });
    const bar = progressBar(process.stderr, { units: 'count' });
    sender.on('progress', () => {
      const rs = [...sender.receivers.values()];
      bar.update(rs.reduce((a, r) => a + r.have, 0), rs.reduce((a, r) => a + r.total, 0), 'send');
    });
    const onSig = (): void => { void sender.close(); };
    process.once('SIGINT', onSig);
    process.once('SIGTERM', onSig);
    try {
      const r = await sender.run();
      bar.done();
      if (v.json) process.stdout.write(JSON.stringify({ ...r, priority: prio.summary() }) + '\n');
      else {
        process.stdout.write(`session ${r.session.toString(16)} ${r.reason}: ${r.image} to ${r.receivers.length} receiver(s) in ${r.seconds.toFixed(1)} s; ` +
          `${fmtBytes(r.bytesSent)} sent for ${fmtBytes(r.frameBytes)} of chunks (${r.extraBytesPct.toFixed(1)}% extra); final rate ${r.finalRateMbit.toFixed(0)} Mbit/s\n`);
        if (r.skippedChunks) process.stdout.write(`  delta: ${r.skippedChunks} of ${r.chunks} chunks (${fmtBytes(r.skippedBytes)}) not sent: no receiver needed them\n`);
        for (const x of r.receivers) {
          const delta = x.delta === 'declared' ? `; delta: ${fmtBytes(x.skippedBytes ?? 0)} already right, ${x.neededChunks} chunks needed` : x.delta ? '; delta: never declared' : '';
          process.stdout.write(`  ${x.address} ${x.state} ${x.have}/${x.total} chunks, ${fmtBytes(x.written)} written${delta}\n`);
        }
      }
      // a receiver that rebooted and came back as a new one ("replaced") is not a failure
      return r.reason === 'complete' && r.receivers.every((x) => x.state === 'done' || x.state === 'replaced') ? 0 : 1;
    } finally {
      prio.restore();
      process.off('SIGINT', onSig);
      process.off('SIGTERM', onSig);
      await new Promise<void>((res) => http.server.close(() => res()));
    }
  }
  if (sub === 'receive') {
    if (pos.length !== 0 || !v.target) throw new RackcastError('RC_ERR_USAGE', 'usage: rackcast mcast receive --interface IF --target FILE_OR_DEVICE');
    let manifest: { bytes: Buffer; sig: Buffer } | undefined;
    if (v.manifest) manifest = { bytes: readFileSync(v.manifest), sig: readFileSync(v.manifest.replace(/\.json$/, '') + '.sig') };
    const bar = progressBar(process.stderr, { units: 'bytes' });
    const rx = new MulticastReceiver({
      interfaceAddress: interfaceAddress(v.interface), target: v.target, ...common,
      ...(manifest ? { manifest } : {}), ...(v.from ? { imageUrl: v.from } : {}), ...(v['trust-key'] ? { trustKeyId: v['trust-key'] } : {}),
      ...(v.fallback ? { fallbackMs: (num(v.fallback, 'fallback', 0.1, 3600) as number) * 1000 } : { fallbackMs: RECEIVER_DEFAULTS.fallbackMs }),
      discard: v.discard ?? false, delta: v.delta ?? false, grow: v.grow ?? false,
      ...(v.backlog ? { maxBacklog: Math.floor(num(v.backlog, 'backlog', 1, 1024) as number) } : {}),
      onProgress: (p) => bar.update(p.have, p.total, p.mode === 'unicast' ? 'http' : 'mcast'),
      ...(v.json ? {} : { logger: log }),
    });
    const r = await rx.run();
    bar.done();
    if (v.json) process.stdout.write(JSON.stringify(r) + '\n');
    else {
      process.stdout.write(`received ${r.image} (${r.digest.slice(0, 19)}…) onto ${v.target}: ${r.chunks} chunks (${r.viaMulticast} multicast, ${r.viaUnicast} HTTP), ${fmtBytes(r.bytesWritten)} in ${r.seconds.toFixed(1)} s; ${r.rejected} rejected, ${r.malformed} malformed\n`);
      if (r.skippedBytes !== undefined) process.stdout.write(`delta: ${fmtBytes(r.skippedBytes)} already matched the image and were not written (compared in ${(r.compareSeconds ?? 0).toFixed(1)} s)\n`);
    }
    return 0;
  }
  throw new RackcastError('RC_ERR_USAGE', `unknown mcast command "${sub ?? ''}" (send, receive)`);
}
