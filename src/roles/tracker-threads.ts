// The tracker on several stream threads (STREAM_THREADS > 1), as Kafka Streams' num.stream.threads:
// each thread is a worker (tracker-worker.ts) with its own consumer in the tracker's group, so the
// group's assignor spreads the partitions over the threads and a process uses as many cores. Tasks
// stay actors of one thread each; threads share nothing but the process (STATE_MEMORY and
// STATE_CACHE are split per input partition, so the process's budget holds whichever thread owns
// which partition; FETCH_MAX_BYTES is per consumer, i.e. per thread).
//
// The main thread provisions the topics once, then serves HTTP for all threads: the interactive
// queries go to every thread (each answers for the partitions it owns), /metrics sums the
// threads' series with the main thread's (which alone has the process metrics), /readyz is ready
// when every thread is. A thread that exits on its own takes the process down, as an uncaught
// error would on the main thread, so that the orchestrator restarts it.
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Config } from '../config';
import { logger } from '../log';
import type { Route } from '../http-server';
import { provisionTracker } from './tracker';
import { StoreLeases } from '../runtime/store-leases';
import type { LeaseGranted, LeaseMessage, ThreadReply, ThreadRequest, ThreadStarted, WorkerData } from './tracker-worker';

/** A registry's series as prom-client's getMetricsAsJSON() gives them. */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

type Request = ThreadRequest extends infer R ? R extends { id: number } ? Omit<R, 'id'> : never : never;

/** One worker thread and its pending requests. */
class StreamThreadWorker {
  private next = 0;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  readonly started: Promise<void>;
  private running = false;
  private gone = false;
  stopping = false;

  /** `onExit`: the thread exited on its own after it had started. */
  constructor(readonly index: number, readonly worker: Worker, leases: StoreLeases, onExit: (code: number) => void) {
    this.started = new Promise((resolve, reject) => {
      worker.on('message', (msg: ThreadReply | ThreadStarted | LeaseMessage) => {
        if ('op' in msg && msg.op === 'lease') {
          const lease = msg.lease;
          leases.acquire(msg.partition, () => worker.postMessage({ op: 'granted', lease } satisfies LeaseGranted));
          return;
        }
        if ('op' in msg && msg.op === 'release') {
          leases.release(msg.partition);
          return;
        }
        if ('op' in msg) {
          if (msg.op === 'started') {
            this.running = true;
            resolve();
          } else reject(new Error(`stream thread ${index} failed to start: ${msg.error}`));
          return;
        }
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        if (msg.ok) p.resolve(msg.value);
        else p.reject(new Error(msg.error));
      });
      worker.on('error', (e) => reject(e));
      worker.on('exit', (code) => {
        this.gone = true;
        reject(new Error(`stream thread ${index} exited (code ${code}) before it started`));
        for (const p of this.pending.values()) p.reject(new Error(`stream thread ${index} exited`));
        this.pending.clear();
        if (this.running && !this.stopping) onExit(code);
      });
    });
    this.started.catch(() => undefined);
  }

  get hasExited(): boolean { return this.gone; }

  request<T>(req: Request): Promise<T> {
    if (this.gone) return Promise.reject(new Error(`stream thread ${this.index} exited`));
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ ...req, id } as ThreadRequest);
    });
  }
}

export interface TrackerThreads {
  routes: Record<string, Route>;
  /** The threads' metrics, as prom-client JSON, to be summed with the main thread's. */
  metrics(): Promise<MetricsJson[]>;
  ready(): Promise<boolean>;
  stop(): Promise<void>;
}

export async function startTrackerThreads(cfg: Config, endpoint: string): Promise<TrackerThreads> {
  const log = logger('ConversationTracker');
  const sourcePartitions = await provisionTracker(cfg);
  const file = path.join(__dirname, 'tracker-worker.js');
  const threads: StreamThreadWorker[] = [];
  const leases = new StoreLeases();
  for (let i = 0; i < cfg.streamThreads; i++) {
    const data: WorkerData = { cfg, endpoint, index: i, sourcePartitions };
    threads.push(new StreamThreadWorker(i, new Worker(file, { workerData: data }), leases, (code) => {
      log.fatal({ thread: i, code }, 'a stream thread exited; stopping the process');
      process.exit(1);
    }));
  }
  const stop = async () => {
    await Promise.all(threads.map(async (t) => {
      t.stopping = true;
      const exit = t.hasExited ? Promise.resolve() : new Promise((r) => t.worker.once('exit', r));
      await t.request({ op: 'stop' }).catch((err) => log.warn({ err, thread: t.index }, 'stream thread stop failed'));
      // Stopped, the thread exits by itself once its output is flushed; terminated if it lingers.
      await Promise.race([exit, new Promise((r) => setTimeout(r, 5000).unref())]);
      await t.worker.terminate();
    }));
  };
  try {
    await Promise.all(threads.map((t) => t.started));
  } catch (e) {
    await stop();
    throw e;
  }
  log.info({ threads: threads.length, endpoint }, 'stream threads started');

  const ask = <T>(req: Request) => Promise.all(threads.map((t) => t.request<T>(req)));
  const routes: Record<string, Route> = {
    // Each thread lists the partitions it owns.
    '/v1/tracker/status': async (url) => {
      const replies = await ask<{ partitions: { partition: number }[] }>({ op: 'route', path: '/v1/tracker/status', url: url.href });
      return { endpoint, partitions: replies.flatMap((r) => r.partitions).sort((a, b) => a.partition - b.partition) };
    },
    // The thread that owns the chat's partition answers for it.
    '/v1/tracker/chat': async (url) => {
      const replies = await ask<{ owned: boolean }>({ op: 'route', path: '/v1/tracker/chat', url: url.href });
      return replies.find((r) => r.owned) ?? replies[0];
    },
  };
  return {
    routes,
    metrics: () => ask<MetricsJson>({ op: 'metrics' }),
    ready: async () => (await ask<boolean>({ op: 'ready' }).catch(() => [false])).every(Boolean),
    stop,
  };
}

/** The main thread's metrics and the threads', summed series by series, in the exposition format. */
export async function aggregateMetrics(own: MetricsJson, threads: MetricsJson[]): Promise<string> {
  return AggregatorRegistry.aggregate([own, ...threads]).metrics();
}
