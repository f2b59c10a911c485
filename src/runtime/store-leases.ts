// Which task holds each partition's store. The stores of a process live under one STATE_DIR, so a
// partition's next task must not open its store before the last one has closed it: after a failed
// batch within a stream thread, or after a rebalance that moves the partition between two stream
// threads of one process (STREAM_THREADS; there the main thread holds the leases for all threads,
// tracker-threads.ts). Kafka Streams' task directory locks, for one process.

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

  /** acquire() as a promise of the function that releases it. */
  lease(partition: number): Promise<() => void> {
    return new Promise((resolve) => this.acquire(partition, () => resolve(() => this.release(partition))));
  }
}
