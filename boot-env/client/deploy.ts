// rackcast.mode=deploy: hello → choose the target disk → receive the image by multicast (HTTP
// fallback), every block verified against the signed manifest and written through DiskWriter →
// report done (or failed, with the error and the last log lines) → the action the task says
// (`after`, normally reboot: /init runs `reboot -f`, and the appliance's next /boot script for this
// machine boots the local disk because its part of the task is done).
//
// Target disk rule: the pinned disk (rackcast.disk-serial / rackcast.disk-wwn, from the machine's or
// its group's settings) if there is one, else the largest disk in /sys/block that has a device
// behind it (so not loop, ram, zram, dm, md), is not an sr/fd device and is not removable. If that disk is mounted or held, or
// too small for the image (DiskWriter's refusals), the deploy fails with that reason: it never
// falls back to another disk.
import { networkInterfaces } from 'node:os';
import { MulticastReceiver } from '../../services/multicast/receiver.ts';
import type { ClientConfig } from './config.ts';
import type { Inventory } from './inventory.ts';
import { pickDisk, reportEvery, runTask, type Action } from './task.ts';

/** The IPv4 address of the NIC we booted from (rackcast.mac), else the first non-loopback one. */
export function bootAddress(mac: string | undefined, ifs = networkInterfaces()): string | undefined {
  const all = Object.values(ifs).flat().filter((a) => a && a.family === 'IPv4' && !a.internal);
  const byMac = mac ? all.find((a) => a?.mac.toLowerCase() === mac.toLowerCase()) : undefined;
  return (byMac ?? all[0])?.address;
}

export interface DeployOptions { cfg: ClientConfig; inventory: Inventory; log: (l: string) => void; progressMs?: number; fallbackMs?: number }

export async function runDeploy(o: DeployOptions): Promise<Action> {
  return await runTask(o, 'deploy', async (run) => {
    const { task, rep, log } = run;
    log(`rackcast: task ${task.taskId}: ${task.kind} ${task.image ?? '-'} from ${task.imageUrl ?? '-'} (multicast ${task.multicast.group}:${task.multicast.port}), then ${task.after}`);
    if (!task.imageUrl) throw new Error('the appliance gave a deploy task without an image URL');
    const { path: target, disk } = pickDisk(o.cfg, o.inventory);
    const address = bootAddress(o.cfg.settings.get('mac'));
    if (!address) throw new Error('no IPv4 address on any NIC: the network did not come up');
    log(`rackcast: target ${target} (${disk.size} bytes${disk.model ? `, ${disk.model}` : ''}, ${disk.rotational ? 'rotational: holes zeroed' : 'non-rotational: holes discarded'}), receiving on ${address}`);
    await rep.report('running', `target ${target}`);
    let last = { have: 0, total: 0, written: 0, totalBytes: 0, mode: 'multicast' };
    let prev = { at: performance.now(), written: 0 };
    const stop = reportEvery(o.progressMs ?? 3000, run, () => {
      const now = performance.now();
      const mbps = (last.written - prev.written) / 1e6 / Math.max(0.001, (now - prev.at) / 1000);
      prev = { at: now, written: last.written };
      return { detail: `${last.have}/${last.total} (${last.mode}, ${mbps.toFixed(1)} MB/s)`, progress: { done: last.written, total: last.totalBytes, mbps } };
    });
    let report;
    try {
      const rx = new MulticastReceiver({
        imageUrl: task.imageUrl, target, interfaceAddress: address, group: task.multicast.group, port: task.multicast.port,
        fallbackMs: o.fallbackMs ?? 10_000,
        // SSDs and NVMe: unused ranges are discarded (TRIM) instead of zeroed; falls back to zeroing
        discard: !disk.rotational,
        delta: task.delta === true, grow: task.grow === true,
        onProgress: (p) => { last = p; },
        logger: { info: (x, m) => log(`rackcast: ${m ?? ''} ${JSON.stringify(x)}`), warn: (x, m) => log(`rackcast: warning: ${m ?? ''} ${JSON.stringify(x)}`) },
      });
      report = await rx.run();
    } finally {
      stop();
    }
    const delta = report.skippedBytes !== undefined ? `, delta: ${report.skippedBytes} bytes already right` : '';
    const summary = `${report.image} ${report.digest} -> ${target}: ${report.chunks} chunks, ${report.bytesWritten} bytes in ${report.seconds.toFixed(1)} s (${report.mode}: ${report.viaMulticast} multicast, ${report.viaUnicast} unicast${delta})`;
    log(`RACKCAST-DEPLOY-OK ${summary}`);
    await rep.report('done', summary, undefined, { done: report.bytesWritten, total: report.bytesWritten, mbps: report.bytesWritten / 1e6 / Math.max(0.001, report.seconds), verify: 'ok' });
    return task.after;
  });
}
