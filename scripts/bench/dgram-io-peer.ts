// One end of the dgram-io benchmark, run inside a lab namespace (scripts/bench/dgram-io.ts).
//   recv '{"io","iface","group","port"}': prints {"ready":true}, counts group datagrams until a
//     4-byte end marker, then prints {"received", "cpu"}: CPU seconds of the whole process (every
//     thread, the addon's receive thread included) from ready to the end marker
//   send '{"io","iface","group","port","count","size","mbit"}': sends count datagrams of size
//     bytes paced at mbit (one flush per 1 ms timer tick, as the sender's pacer does), then end
//     markers; prints {"sent", "cpu"} for the sending alone
import { openGroupReceiver, openGroupSender, type IoMode } from '../../services/multicast/batch-io.ts';

interface Cfg { io: IoMode; iface: string; group: string; port: number; count?: number; size?: number; mbit?: number }
const [role, json] = process.argv.slice(2);
const c = JSON.parse(json as string) as Cfg;
const cpu = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1e6;

if (role === 'recv') {
  let received = 0;
  let u0 = process.cpuUsage();
  const rx = await openGroupReceiver({ group: c.group, port: c.port, iface: c.iface, rcvbuf: 4 << 20, io: c.io }, (_b, _o, len) => {
    if (len !== 4) { received++; return; }
    const used = cpu(process.cpuUsage(u0));
    console.log(JSON.stringify({ received, cpu: used, kind: rx.kind }));
    void rx.close();
  });
  u0 = process.cpuUsage();
  console.log(JSON.stringify({ ready: true }));
} else {
  const tx = await openGroupSender({ group: c.group, port: c.port, iface: c.iface, sndbuf: 4 << 20, io: c.io });
  const count = c.count as number;
  const body = Buffer.alloc((c.size as number) - 24, 0x5a);
  const head = Buffer.alloc(24, 0xa5);
  const perMs = (c.mbit as number) * 1e6 / 8 / (c.size as number) / 1000;
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  let sent = 0;
  await new Promise<void>((done) => {
    const tick = (): void => {
      const due = Math.min(count, Math.floor((performance.now() - t0) * perMs) + 1);
      for (; sent < due; sent++) tx.push(head, body);
      tx.flush();
      if (sent < count) setTimeout(tick, 1); else done();
    };
    tick();
  });
  const used = cpu(process.cpuUsage(u0));
  for (let k = 0; k < 20; k++) { tx.push(Buffer.alloc(4)); tx.flush(); await new Promise((r) => setTimeout(r, 5)); }
  await tx.close();
  console.log(JSON.stringify({ sent, cpu: used, kind: tx.kind, dropped: tx.dropped }));
}
