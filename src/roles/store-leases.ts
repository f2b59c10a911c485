// Which stream thread of a process holds each partition's store (STREAM_THREADS, tracker-threads.ts).

/**
 * Which thread holds each partition's store, and who waits for it. The threads share STATE_DIR, so
 * a partition that moves from one thread to another in a rebalance must be closed by the first
 * before the second opens its store (Kafka Streams' task directory locks).
 */
export class StoreLeases {
  private readonly held = new Map<number, { waiting: (() => void)[] }>();

  /** Calls `grant` once the partition's store is free, and holds it until release(). */
  acquire(partition: number, grant: () => void): void {
    const h = this.held.get(partition);
    if (h) h.waiting.push(grant);
    else {
      this.held.set(partition, { waiting: [] });
      grant();
    }
  }

  release(partition: number): void {
    const h = this.held.get(partition);
    if (!h) return;
    const next = h.waiting.shift();
    if (next) next();
    else this.held.delete(partition);
  }
}
