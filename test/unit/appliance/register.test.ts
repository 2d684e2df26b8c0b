// Register mode end to end over real HTTP on 127.0.0.1: an unknown machine's first boot script
// (serve --unknown register) carries a register task's token; the boot client's register flow
// sends the inventory, reports done and says power off; the machine's next boot is its local disk.
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../appliance/http/app.ts';
import { Store } from '../../../appliance/store/db.ts';
import { ImageStore } from '../../../services/image/store.ts';
import { runRegister, inventorySummary } from '../../../boot-env/client/register.ts';
import { loadConfig } from '../../../boot-env/client/config.ts';
import type { Inventory } from '../../../boot-env/client/inventory.ts';

let dir: string;
let store: Store;
let app: FastifyInstance;
let url: string;
const MAC = '52:54:00:00:0d:01';
const inventory: Inventory = {
  firmware: 'uefi', dmi: { sys_vendor: 'Dell Inc.', product_name: 'PowerEdge R650', product_serial: 'ABC1234' },
  cpu: { model: 'Xeon', count: 32 }, memoryBytes: 64 * 2 ** 30,
  nics: [], disks: [{ name: 'nvme0n1', size: 960e9, serial: 'S5XYNA0R', rotational: false, removable: false, transport: 'nvme' }],
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rc-test-register-'));
  store = Store.open(dir);
  app = buildApp({ store, images: ImageStore.open(dir), dataDir: dir, baseUrl: 'http://127.0.0.1', unknown: 'register' });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const a = app.server.address();
  url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
});
afterAll(async () => {
  await app.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('register mode', () => {
  it('inventories an unknown machine, reports done, powers off; its next boot is the local disk', async () => {
    const script = await (await fetch(`${url}/boot/${MAC}.ipxe`)).text();
    expect(script).toContain('rackcast.mode=register');
    const token = /rackcast\.token=(\S+)/.exec(script)?.[1] as string;
    const cfg = loadConfig({}, `rackcast.url=${url} rackcast.token=${token} rackcast.mode=register`);
    const lines: string[] = [];
    expect(await runRegister({ cfg, inventory, log: (l) => lines.push(l) })).toBe('poweroff');
    expect(lines.at(-1)).toMatch(/^RACKCAST-REGISTER-OK registered: Dell Inc\. PowerEdge R650 serial ABC1234, uefi, 32 CPU, 64\.0 GiB, nvme0n1 960\.0 GB S5XYNA0R$/);
    expect(store.inventory(MAC)).toEqual(inventory);
    const t = store.tasks().find((x) => x.kind === 'register');
    expect(t?.state).toBe('done');
    const next = await (await fetch(`${url}/boot/${MAC}.ipxe`)).text();
    expect(next).toContain('booting the local disk');
    // the token is spent: a second register run is refused
    await expect(runRegister({ cfg, inventory, log: () => undefined })).rejects.toThrow(/HTTP 403/);
  });
  it('summarises a machine with no disks and no DMI', () => {
    expect(inventorySummary({ ...inventory, dmi: {}, disks: [] })).toBe('? ? serial -, uefi, 32 CPU, 64.0 GiB, no disks');
  });
});
