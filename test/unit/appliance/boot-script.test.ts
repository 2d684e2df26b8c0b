// The per-machine iPXE script's initrd list: the filesystem-tools archive is added only for a task
// that grows partitions and only when the build made it (appliance/boot/script.ts).
import { describe, it, expect } from '@jest/globals';
import { DEFAULT_ARTIFACTS, FSTOOLS_INITRD, environmentScript, withFsTools } from '../../../appliance/boot/script.ts';

const a = { kind: 'deploy' as const, taskId: 7, token: 'ab'.repeat(24) };

describe('boot script initrds', () => {
  it('adds the filesystem tools for a growing deploy, after the base and client archives', () => {
    const s = environmentScript('http://10.0.0.1:8080', '52:54:00:00:00:01', a, withFsTools(DEFAULT_ARTIFACTS, true, true));
    expect(s).toContain(`initrd=initrd.zst initrd=client.cpio.zst initrd=${FSTOOLS_INITRD} console=`);
    const lines = s.split('\n').filter((l) => l.startsWith('initrd '));
    expect(lines).toEqual([
      'initrd http://10.0.0.1:8080/boot/files/initrd.zst || goto failed',
      'initrd http://10.0.0.1:8080/boot/files/client.cpio.zst || goto failed',
      `initrd http://10.0.0.1:8080/boot/files/${FSTOOLS_INITRD} || goto failed`,
    ]);
  });

  it('leaves them out without grow, or when the build has none', () => {
    expect(withFsTools(DEFAULT_ARTIFACTS, false, true)).toBe(DEFAULT_ARTIFACTS);
    expect(withFsTools(DEFAULT_ARTIFACTS, true, false)).toBe(DEFAULT_ARTIFACTS);
    expect(environmentScript('http://h', '52:54:00:00:00:01', a)).not.toContain(FSTOOLS_INITRD);
  });
});
