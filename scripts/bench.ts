// Benchmark dispatcher: `node scripts/bench.ts <name> [args]` (or `npm run bench -- <name> [args]`)
// runs scripts/bench/<name>.ts. Each benchmark runs on import and reads its own arguments from
// process.argv[2…], so the name is taken out of argv before the import.
const BENCHES: Record<string, string> = {
  image: 'rackcast capture/restore of a 1 GiB GPT+ext4 disk vs zstd -T2, zstd -d and partclone|zstd',
  zstd: 'node:zlib zstd vs zstd-napi vs the zstd CLI on 1 MiB blocks of /usr',
  tftp: 'rackcast TftpServer vs tftpd-hpa (atftp, curl) on a namespace lab: [MiB] [runs]',
  'tftp-floor': 'lock-step TFTP: rackcast vs tftpd-hpa vs a minimal Node server (the node:dgram floor): [MiB] [runs]',
  multicast: 'rackcast vs udpcast on a namespace lab: --receivers N --loss PCT --rate MBIT [--slow MIBPS] [--json]',
  'dgram-io': 'the multicast datagram I/O alone, node:dgram vs the rcudp addon (CPU per datagram): [--count N] [--size B] [--rate MBIT] [--runs K]',
};

const name = process.argv[2];
if (!name || !Object.hasOwn(BENCHES, name)) {
  if (name) console.error(`unknown benchmark "${name}"`);
  console.error('usage: node scripts/bench.ts <name> [args]   (npm run bench -- <name> [args])\navailable:');
  for (const [n, d] of Object.entries(BENCHES)) console.error(`  ${n.padEnd(8)} ${d}`);
  process.exit(2);
}
process.argv.splice(2, 1);
await import(new URL(`./bench/${name}.ts`, import.meta.url).href);
