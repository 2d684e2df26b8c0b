// Tests use the same real-disk builders as the lab and the demo (scripts/lab/disks.ts).
export * from '../../scripts/lab/disks.ts';
