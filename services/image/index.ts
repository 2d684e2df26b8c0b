// services/image: the image format, the content-addressed store, capture, restore, verify,
// export/import. The appliance and the boot-environment client use it through this module.
export { ImageStore, STORE_DEFAULTS, type ImageSummary, type OpenImage, type GcResult } from './store.ts';
export { captureImage, captureToTarget, type CaptureOptions, type CaptureResult, type ChunkTarget, type RemoteCaptureOptions, type RemoteCaptureResult } from './capture.ts';
export { restoreImage, verifyChunks, problemError, type RestoreOptions, type RestoreResult, type VerifyResult } from './restore.ts';
export { DiskWriter } from './disk-writer.ts';
export { decodeManifest, encodeManifest, blockHashes, blockLength, blockCount, type Manifest } from './manifest.ts';
