// Consumer lag of a consumer group that commits its own offsets (the ETL and analysis roles), as
// chatstats_consumer_lag{group, topic, partition}: records of the topic's read_committed end not yet
// covered by the group's committed offset. The tracker sets the same gauge from its tasks.
//
// Transactional topics (conversation.sealed is written by the tracker's transactions) carry commit
// markers, which take offsets but are never delivered, so "end - committed" stays at 1 after a
// caught-up group's last record. A small gap is therefore read (read_committed) and its records
// counted; a large one (more than EXACT_BELOW offsets) is reported as it is, markers and all.
import type { Admin, Kafka } from 'kafkajs';
import type { Logger } from 'pino';
import { PartitionReader } from './partition-reader';
import { taskMetrics } from './runtime-metrics';

const EXACT_BELOW = 1000;

export interface GroupLagMonitor {
  /** Computes the lag now and sets the gauge; returns it per partition. */
  update(): Promise<Map<number, number>>;
  stop(): Promise<void>;
}

export function startGroupLag(kafka: Kafka, groupId: string, topic: string, opts: { intervalMs?: number; log: Logger }): GroupLagMonitor {
  let admin: Admin | null = null;
  const reader = new PartitionReader(kafka, 100, 5000);
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<Map<number, number>> | null = null;
  let stopped = false;
  let warned = false;

  const compute = async (): Promise<Map<number, number>> => {
    if (admin === null) {
      const a = kafka.admin();
      await a.connect();
      admin = a;
    }
    // Not before the topic exists (the tracker creates it): a metadata request for a missing topic
    // could create it with the broker's defaults where auto-creation is on.
    if (!(await admin.listTopics()).includes(topic)) return new Map();
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    const partitions = (md.topics[0]?.partitions ?? []).map((p) => p.partitionId);
    const [ends, begins, committed] = await Promise.all([
      reader.endOffsets(topic, partitions),
      reader.beginOffsets(topic, partitions),
      admin.fetchOffsets({ groupId, topics: [topic] }),
    ]);
    const at = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
    const out = new Map<number, number>();
    const gauge = taskMetrics().lag;
    for (const p of partitions) {
      const end = ends.get(p) ?? 0;
      const c = at.get(p) ?? -1;
      const from = c >= 0 ? c : begins.get(p) ?? 0;
      let lag = Math.max(0, end - from);
      if (lag > 0 && lag < EXACT_BELOW && !stopped) lag = await reader.read(topic, p, from, end, () => undefined);
      out.set(p, lag);
      gauge.set({ group: groupId, topic, partition: String(p) }, lag);
    }
    return out;
  };

  const update = (): Promise<Map<number, number>> => {
    running ??= compute().finally(() => { running = null; });
    return running;
  };

  const tick = () => {
    update().then(() => { warned = false; }, (err) => {
      if (!warned && !stopped) opts.log.warn({ err, groupId, topic }, 'cannot compute consumer lag');
      warned = true;
    });
  };
  timer = setInterval(tick, opts.intervalMs ?? 5000);
  timer.unref();
  tick();

  return {
    update,
    stop: async () => {
      stopped = true;
      if (timer) clearInterval(timer);
      await running?.catch(() => undefined);
      await reader.disconnect().catch(() => undefined);
      await (admin as Admin | null)?.disconnect().catch(() => undefined);
    },
  };
}
