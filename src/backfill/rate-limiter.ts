// A rate limit for backfill work (GCRA, "virtual scheduling"): take(n) returns when n more units
// may start without the average rate since the start exceeding `ratePerSec`, allowing a burst of
// at most one chunk. One limiter can be shared by several backfills (backfill-all) so that their
// total stays within the limit. null: no limit.

export interface Clock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) => new Promise<void>((resolve, reject) => {
    if (signal?.aborted) { reject(signal.reason); return; }
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = (): void => { clearTimeout(t); reject(signal!.reason); };
    signal?.addEventListener('abort', onAbort, { once: true });
  }),
};

export class RateLimiter {
  /** When the next unit may start (epoch ms). */
  private next = -Infinity;

  constructor(readonly ratePerSec: number | null, private readonly clock: Clock = realClock) {
    if (ratePerSec !== null && !(ratePerSec > 0)) throw new RangeError(`rate must be positive or null, got ${ratePerSec}`);
  }

  /** Waits until `n` units may start, then books them. Rejects if the signal aborts meanwhile. */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    if (this.ratePerSec === null || n <= 0) return;
    const now = this.clock.now();
    const start = Math.max(now, this.next);
    this.next = start + (n * 1000) / this.ratePerSec;
    if (start > now) {
      try {
        await this.clock.sleep(start - now, signal);
      } catch (e) {
        // Not started: give the booking back.
        this.next -= (n * 1000) / this.ratePerSec;
        throw e;
      }
    }
  }
}
