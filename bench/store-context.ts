// A processor's context for benchmarks without Kafka: its store writes are held until taken, as
// the task holds them until its transaction commits, and what it forwards or logs is counted.
import type { Processor, ProcessorContext } from '../src/runtime/processor';
import type { StateStore, StoreOp } from '../src/runtime/state-store';

export interface StoreContext {
  ctx: ProcessorContext;
  counts: { forwarded: number; changelog: number };
  /** The store writes held since the last take. */
  take(): StoreOp[];
  /** The processor's flush, then its store writes applied; their number. */
  commit(p: Processor): Promise<number>;
}

export function storeContext(store: StateStore): StoreContext {
  const counts = { forwarded: 0, changelog: 0 };
  let pending: StoreOp[] = [];
  const take = () => { const ops = pending; pending = []; return ops; };
  const ctx: ProcessorContext = {
    partition: 0,
    store,
    forward: () => { counts.forwarded++; },
    logChange: (_k, _v, ops) => { counts.changelog++; for (const op of ops) pending.push(op); },
    writeLocal: (ops) => { for (const op of ops) pending.push(op); },
    caughtUp: () => true,
    caughtUpSince: () => 0,
    position: () => ({ position: 0, end: 0 }),
  };
  return {
    ctx, counts, take,
    async commit(p) {
      await p.flush();
      const ops = take();
      await store.write(ops);
      p.committed?.();
      return ops.length;
    },
  };
}
