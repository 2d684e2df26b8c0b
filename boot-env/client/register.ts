// rackcast.mode=register: a machine the appliance did not know (serve --unknown register) boots
// the environment once to be inventoried: hello sends the inventory (stored with the machine:
// MAC, DMI vendor/product/serial, firmware, disks, NICs), the machine's part of the register task
// is reported done, and the task's `after` (poweroff) follows. Its next network boot has no task
// and exits to the local disk until someone gives it one.
import type { ClientConfig } from './config.ts';
import type { Inventory } from './inventory.ts';
import { runTask, type Action } from './task.ts';

export interface RegisterOptions { cfg: ClientConfig; inventory: Inventory; log: (l: string) => void }

export function inventorySummary(inv: Inventory): string {
  const d = inv.dmi;
  const disks = inv.disks.map((x) => `${x.name} ${(x.size / 1e9).toFixed(1)} GB${x.serial ? ` ${x.serial}` : ''}`).join(', ') || 'no disks';
  return `${d.sys_vendor ?? '?'} ${d.product_name ?? '?'} serial ${d.product_serial ?? '-'}, ${inv.firmware}, ${inv.cpu.count} CPU, ${(inv.memoryBytes / 2 ** 30).toFixed(1)} GiB, ${disks}`;
}

export async function runRegister(o: RegisterOptions): Promise<Action> {
  return await runTask(o, 'register', async ({ task, rep, log }) => {
    const summary = `registered: ${inventorySummary(o.inventory)}`;
    await rep.report('done', summary);
    log(`RACKCAST-REGISTER-OK ${summary}`);
    return task.after;
  });
}
