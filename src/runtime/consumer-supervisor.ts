// Runs a kafkajs consumer, and runs it again after a crash kafkajs leaves it stopped by.
//
// kafkajs restarts a crashed consumer by itself only when the error is retriable (a lost
// connection, a rebalance, retries run out). Any other error (a protocol error it does not retry,
// an error thrown by the processing code) stops the consumer for good while the process lives on:
// it stays up, reports nothing wrong to a liveness probe that only checks the process, and reads
// nothing. Kafka Streams replaces such a thread (REPLACE_THREAD). Here the same consumer is
// connected and run again after a backoff (5 s doubling to 1 min, with jitter so that instances
// that crashed together do not come back together; reset once it rejoins its group):
// it resumes at the group's committed offsets, which is what each processor is built to do after
// a crash (the tracker restores its tasks, the ETL and the analysis find their work recorded).
import type { Consumer, ConsumerRunConfig } from 'kafkajs';
import type { Logger } from 'pino';
import { Counter } from 'prom-client';
import { registry } from '../metrics';
import { backoffDelay } from '../db/errors';

let restarts: Counter<'role'> | null = null;
function restartsMetric(): Counter<'role'> {
  return (restarts ??= new Counter({
    name: 'chatstats_consumer_restarts_total',
    help: 'Consumers run again by the process after kafkajs gave up on them (a crash it does not restart from)',
    labelNames: ['role'],
    registers: [registry],
  }));
}

export interface SupervisorOptions {
  /** For the log and the metric: tracker, etl, analysis. */
  role: string;
  log: Logger;
  /** True once the processor is stopping: a crash then is not restarted. */
  stopping: () => boolean;
  initialMs?: number;
  maxMs?: number;
}

/** `consumer.run(config)`, then the same again whenever the consumer crashes without a restart of its own. */
export async function runSupervised(consumer: Consumer, config: ConsumerRunConfig, opts: SupervisorOptions): Promise<void> {
  const initial = opts.initialMs ?? 5_000;
  const max = opts.maxMs ?? 60_000;
  restartsMetric().inc({ role: opts.role }, 0);
  let attempt = 0;
  let timer: NodeJS.Timeout | null = null;
  const again = () => {
    if (timer !== null || opts.stopping()) return;
    const wait = backoffDelay(attempt++, initial, max);
    opts.log.error({ role: opts.role, retryInMs: wait }, 'the consumer stopped on an error it does not restart from; running it again');
    timer = setTimeout(() => {
      timer = null;
      if (opts.stopping()) return;
      restartsMetric().inc({ role: opts.role });
      consumer.connect()
        .then(() => consumer.run(config))
        .catch((err: unknown) => { opts.log.error({ err, role: opts.role }, 'running the consumer again failed'); again(); });
    }, wait);
    timer.unref();
  };
  consumer.on(consumer.events.CRASH, (e) => { if (!e.payload.restart) again(); });
  consumer.on(consumer.events.GROUP_JOIN, () => { attempt = 0; });
  await consumer.run(config);
}
