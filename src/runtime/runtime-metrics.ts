// Metrics of the runtime itself (restore, punctuation, stores, lag), shared by all tasks.
import { Counter, Gauge, Histogram } from 'prom-client';
import { registry, zeroed } from '../metrics';

let m: ReturnType<typeof create> | null = null;

function create() {
  return {
    restoreSeconds: new Histogram({ name: 'chatstats_restore_duration_seconds', help: 'Time to restore a task store from its changelog', labelNames: ['store'], buckets: [0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300], registers: [registry] }),
    restoreRecords: new Counter({ name: 'chatstats_restore_records_total', help: 'Changelog records applied during restore', labelNames: ['store'], registers: [registry] }),
    punctuateSeconds: new Histogram({ name: 'chatstats_punctuation_duration_seconds', help: 'Duration of one punctuation of one task, commit included', buckets: [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1], registers: [registry] }),
    storeWriteBytes: new Counter({ name: 'chatstats_store_write_bytes_total', help: 'Bytes of keys and values written to task stores (a delete counts its key or range)', labelNames: ['store'], registers: [registry] }),
    storeBytes: new Gauge({ name: 'chatstats_store_size_bytes', help: 'Estimated live data size of a task store', labelNames: ['store', 'partition'], registers: [registry] }),
    lag: new Gauge({ name: 'chatstats_consumer_lag', help: 'Input records not yet processed (tracker) or not yet committed (ETL, analysis), per consumer group and partition', labelNames: ['group', 'topic', 'partition'], registers: [registry] }),
    caughtUp: new Gauge({ name: 'chatstats_partition_caught_up', help: '1 when the task has read its partition to the end at the last punctuation', labelNames: ['partition'], registers: [registry] }),
    punctuations: new Counter({ name: 'chatstats_punctuations_total', help: 'Punctuations by trigger (tick, batch: a batch that read the partition to its end, timer: the seal timer) and result (sealed: it wrote something; nothing; behind: not caught up, so nothing could seal by wall clock)', labelNames: ['trigger', 'result'], registers: [registry] }),
    earlyTransactions: zeroed(new Counter({ name: 'chatstats_transactions_begun_early_total', help: 'Transactions begun before an event was processed, with the partitions its kind of event wrote the last two times added meanwhile, by result (committed; abandoned: the event failed or wrote nothing, the transaction was aborted)', labelNames: ['result'], registers: [registry] }), [{ result: 'committed' }, { result: 'abandoned' }]),
    preparedPunctuations: zeroed(new Counter({ name: 'chatstats_prepared_punctuations_total', help: 'Seal-timer punctuations done ahead of their moment (SEAL_TIMER=prepare), by result (committed at the moment; aborted: records the task had not processed at the moment could have changed it)', labelNames: ['result'], registers: [registry] }), [{ result: 'committed' }, { result: 'aborted' }]),
    nextDue: new Gauge({ name: 'chatstats_next_seal_due_timestamp_seconds', help: 'Per partition: wall-clock time (Unix seconds) from which a punctuation would seal something (the earliest deadline); absent when nothing is open', labelNames: ['partition'], registers: [registry] }),
    tasks: new Gauge({ name: 'chatstats_tasks', help: 'Tasks owned by this instance, by state as tracker-status shows it (restoring, running)', labelNames: ['state'], registers: [registry] }),
  };
}

export function taskMetrics(): ReturnType<typeof create> {
  return (m ??= create());
}
