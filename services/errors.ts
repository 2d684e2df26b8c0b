// Errors with stable codes. Every error rackcast raises on purpose is a RackcastError whose `code`
// is one of ERROR_CODES; structured fields (offset, chunk, image, path …) travel with it so a log
// line or an API answer can name exactly what was wrong. docs/errors.md documents every code, and
// test/unit/errors.test.ts checks that the table, the docs and the source agree.

export const ERROR_CODES = {
  // decoding (house rule: check length before every read, say where it failed)
  RC_ERR_DECODE_TRUNCATED: 'input ends before a field it declares',
  RC_ERR_DECODE_INVALID: 'a field holds a value the format does not allow',
  // partition tables
  RC_ERR_PT_BAD_CRC: 'a GPT header or entry array fails its CRC32',
  RC_ERR_PT_INVALID: 'a partition table is structurally inconsistent',
  RC_ERR_PT_LOOP: 'an extended-partition chain loops or is too long',
  // image manifest and signature
  RC_ERR_MANIFEST_INVALID: 'a manifest is not valid JSON or violates the manifest schema',
  RC_ERR_MANIFEST_DIGEST: 'a manifest does not match the digest recorded in its signature file',
  RC_ERR_SIGNATURE_INVALID: 'a manifest signature does not verify with the signing key',
  RC_ERR_SIGNATURE_UNTRUSTED: 'a manifest was signed by a key this appliance does not trust',
  // store
  RC_ERR_IMAGE_NOT_FOUND: 'no complete image has that name',
  RC_ERR_IMAGE_EXISTS: 'an image with that name already exists',
  RC_ERR_IMAGE_NAME: 'an image name has characters or a length that is not allowed',
  RC_ERR_CHUNK_MISSING: 'a chunk an image needs is not in the store',
  RC_ERR_CHUNK_CORRUPT: 'a stored chunk does not decompress to content with its hash',
  RC_ERR_STORE_BUSY: 'the store is in use by another operation that excludes this one',
  // devices and files
  RC_ERR_SOURCE: 'a capture source cannot be used (missing, not a file or block device, mounted)',
  RC_ERR_TARGET_MOUNTED: 'a restore target, or one of its partitions, is mounted or in use',
  RC_ERR_TARGET_TOO_SMALL: 'a restore target is smaller than the image\'s disk',
  RC_ERR_TARGET_SECTOR_SIZE: 'a restore target\'s logical sector size differs from the image\'s',
  RC_ERR_TARGET_INVALID: 'a restore target is neither a regular file nor a block device',
  // export files
  RC_ERR_EXPORT_INVALID: 'an export file is malformed, truncated or fails its checksum',
  // network-boot services
  RC_ERR_DHCP_CONFIG: 'the DHCP server configuration is incomplete or contradictory',
  RC_ERR_DHCP_FOREIGN_SERVER: 'another DHCP server answers on the boot network',
  RC_ERR_TFTP_CONFIG: 'the TFTP server configuration is invalid',
  // control plane (appliance)
  RC_ERR_MACHINE_INVALID: 'a machine setting (MAC address, boot policy, disk pin) is not valid',
  RC_ERR_MACHINE_NOT_FOUND: 'no machine with that MAC address is known to the appliance',
  RC_ERR_GROUP_INVALID: 'a group name or setting is not valid, or the group is still in use',
  RC_ERR_GROUP_NOT_FOUND: 'no group has that name',
  RC_ERR_TASK_INVALID: 'a task description is incomplete or contradictory',
  RC_ERR_TASK_NOT_FOUND: 'no task has that id',
  RC_ERR_TASK_STATE: 'a task is not in a state that allows the requested change',
  RC_ERR_SCHEDULE_INVALID: 'a schedule (time or cron expression) cannot be parsed or is in the past',
  RC_ERR_CONFIG: 'the appliance configuration (file or flags) is invalid or contradictory',
  RC_ERR_AUTH: 'an API request has no valid admin token, or a token used where it is not valid',
  RC_ERR_API: 'the appliance API could not be reached or answered with an error',
  // CLI usage
  RC_ERR_USAGE: 'a command line is incomplete or contradictory',
  RC_ERR_IO: 'an operating-system call failed during an operation',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class RackcastError extends Error {
  readonly code: ErrorCode;
  readonly fields: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, fields: Record<string, unknown> = {}, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RackcastError';
    this.code = code;
    this.fields = Object.freeze({ ...fields });
  }
}

export function isRackcastError(e: unknown, code?: ErrorCode): e is RackcastError {
  return e instanceof RackcastError && (code === undefined || e.code === code);
}
