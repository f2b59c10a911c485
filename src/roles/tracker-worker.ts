// One stream thread of a tracker process that runs several (STREAM_THREADS, see
// tracker-threads.ts): a worker thread running the tracker role (its own Kafka client, consumer in
// the group, tasks and stores) and answering the main thread's requests: its interactive queries,
// readiness, metrics, stop. The main thread serves HTTP for all of them.
import '../kafkajs-patch'; // before kafkajs loads, as bin/chatstats.js does
import { parentPort, workerData } from 'node:worker_threads';
import type { Config } from '../config';
import { registry } from '../metrics';
import { setHeapGrowth } from '../runtime/heap-growth';
import { startTracker, type TrackerRole } from './tracker';

export interface WorkerData { cfg: Config; endpoint: string; index: number; sourcePartitions: number }

/** A request of the main thread; each is answered by a ThreadReply with its id. */
export type ThreadRequest =
  | { id: number; op: 'route'; path: string; url: string }
  | { id: number; op: 'ready' | 'metrics' | 'stop' };
export type ThreadReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };
/** Sent once, when the thread has started its tracker (or failed to). */
export type ThreadStarted = { op: 'started' } | { op: 'failed'; error: string };
/** A thread asks for a partition's store (answered by a LeaseGranted with its id), or gives it back. */
export type LeaseMessage = { op: 'lease'; partition: number; lease: number } | { op: 'release'; partition: number };
export type LeaseGranted = { op: 'granted'; lease: number };

async function main(): Promise<void> {
  const port = parentPort!;
  const { cfg, endpoint, index, sourcePartitions } = workerData as WorkerData;
  setHeapGrowth(cfg.heapGrowthPercent);
  // Store leases: the main thread grants each partition's store to one thread at a time.
  let nextLease = 0;
  const granting = new Map<number, () => void>();
  const storeLease = (partition: number) => new Promise<() => void>((resolve) => {
    const lease = nextLease++;
    granting.set(lease, () => resolve(() => port.postMessage({ op: 'release', partition } satisfies LeaseMessage)));
    port.postMessage({ op: 'lease', partition, lease } satisfies LeaseMessage);
  });
  // Requests come only once 'started' is sent; grants come during the start too (restores).
  let role: TrackerRole | null = null;
  port.on('message', (msg: ThreadRequest | LeaseGranted) => {
    if (msg.op === 'granted') {
      granting.get(msg.lease)?.();
      granting.delete(msg.lease);
      return;
    }
    answer(role!, msg).then(
      (value) => {
        port.postMessage({ id: msg.id, ok: true, value } satisfies ThreadReply);
        // Stopped: nothing is left to keep the thread alive once the port is closed.
        if (msg.op === 'stop') port.close();
      },
      (e) => port.postMessage({ id: msg.id, ok: false, error: (e as Error)?.message ?? String(e) } satisfies ThreadReply),
    );
  });
  try {
    role = await startTracker(cfg, endpoint, { index, sourcePartitions, storeLease });
  } catch (e) {
    port.postMessage({ op: 'failed', error: (e as Error)?.stack ?? String(e) } satisfies ThreadStarted);
    port.close(); // nothing to answer: the thread exits
    return;
  }
  port.postMessage({ op: 'started' } satisfies ThreadStarted);
}

async function answer(role: TrackerRole, req: ThreadRequest): Promise<unknown> {
  switch (req.op) {
    case 'route': {
      const route = role.routes[req.path];
      if (!route) throw new Error(`no route ${req.path}`);
      return route(new URL(req.url));
    }
    case 'ready': return role.ready();
    case 'metrics': return registry.getMetricsAsJSON();
    case 'stop':
      await role.stop();
      return true;
  }
}

void main();
