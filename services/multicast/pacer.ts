// Token bucket pacing: tokens (bytes) accrue at `rate` bytes/s up to a ~2 ms burst (timers fire
// ~1.1 ms apart, so a 1 ms cap would lose rate), so datagrams
// leave in small even bursts rather than in line-rate trains that overflow switch and receiver
// buffers (udpcast unpaced resent 20–27% here; see docs/wire-protocol.md).
export class Pacer {
  #rate: number;
  #tokens = 0;
  #last = performance.now();
  #burst: number;
  readonly #burstMs: number;

  constructor(bytesPerSecond: number, burstMs = 2) {
    this.#rate = bytesPerSecond;
    this.#burstMs = burstMs;
    this.#burst = Math.max(9000, bytesPerSecond * burstMs / 1000);
  }

  setRate(bytesPerSecond: number): void {
    this.#refill();
    this.#rate = bytesPerSecond;
    this.#burst = Math.max(9000, bytesPerSecond * this.#burstMs / 1000);
  }

  reset(): void {
    this.#tokens = 0;
    this.#last = performance.now();
  }

  #refill(): void {
    const now = performance.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#last) / 1000 * this.#rate);
    this.#last = now;
  }

  /** Bytes that may be sent now. */
  take(): number {
    this.#refill();
    return this.#tokens;
  }

  spend(bytes: number): void {
    this.#tokens -= bytes;
  }
}
