// Token bucket pacing: tokens (bytes) accrue at `rate` bytes/s. The sender spends at most
// `burstMs` worth per wake-up, so datagrams leave in small even bursts rather than line-rate
// trains that overflow switch and receiver buffers (udpcast unpaced resent 20–27% here; see
// docs/wire-protocol.md). Tokens left over when a timer fires late are kept (up to `carryMs`), so
// timer jitter does not lower the average rate; an idle sender keeps no credit.
export class Pacer {
  #rate: number;
  #tokens = 0;
  #last = performance.now();
  #lostSeconds = 0;
  readonly #burstMs: number;
  readonly #carryMs: number;

  constructor(bytesPerSecond: number, burstMs = 2, carryMs = 20) {
    this.#rate = bytesPerSecond;
    this.#burstMs = burstMs;
    this.#carryMs = carryMs;
  }

  get rate(): number {
    return this.#rate;
  }

  setRate(bytesPerSecond: number): void {
    this.#refill();
    this.#rate = bytesPerSecond;
  }

  /**
   * Seconds of credit the carry cap has discarded: sending time lost while a sender with work was
   * not scheduled for longer than carryMs (a busy host). A sender with nothing to send calls
   * reset() as it idles, so idle time is not counted.
   */
  get lostSeconds(): number {
    return this.#lostSeconds;
  }

  /** Forget credit (after idling): the next burst starts from zero. */
  reset(): void {
    this.#tokens = 0;
    this.#last = performance.now();
  }

  #refill(): void {
    const now = performance.now();
    // at low rates the carry window holds less than one jumbo datagram: keep at least that much
    const cap = Math.max(this.#rate * this.#carryMs / 1000, this.#rate * this.#burstMs / 1000, 9000);
    const accrued = (now - this.#last) / 1000 * this.#rate;
    const t = this.#tokens + accrued;
    // only what accrued since the last call counts (a rate cut that shrinks the cap loses no time)
    if (t > cap) this.#lostSeconds += Math.min(t - cap, accrued) / this.#rate;
    this.#tokens = Math.min(cap, t);
    this.#last = now;
  }

  /** Bytes that may be sent in this wake-up. */
  take(): number {
    this.#refill();
    return Math.min(this.#tokens, Math.max(9000, this.#rate * this.#burstMs / 1000));
  }

  spend(bytes: number): void {
    this.#tokens -= bytes;
  }
}
