// Figures of the stream that PostgreSQL does not hold, for `stats`: late messages and dead-lettered
// records (counted on their topics, read_committed: the records themselves, not their offsets,
// which include transaction markers), and duplicates dropped by the tracker (its counter, summed
// over the running instances: since they started, as a metric is).
import type { Kafka } from 'kafkajs';
import type { Config } from '../config';
import { topicNames } from '../topics';
import { partitionForKey } from '../records/partitioner';
import { PartitionReader } from '../runtime/partition-reader';
import { checkBrokers } from '../preflight';
import { cliKafka } from '../backfill/connect';
import { trackerMembers } from './tracker-commands';

export interface StreamFigures {
  /** Records on chat.messages.late. */
  late_messages: number | null;
  /** Records on chat.messages.dlq, conversation.sealed.dlq and conversation.ready.dlq. */
  dlq_messages: number | null;
  dlq_sealed: number | null;
  /** Keyed by conversation_id, so not counted for one chat (null with --chat-id). */
  dlq_ready: number | null;
  /** Duplicates the running trackers dropped since they started (null: no tracker running, or one chat). */
  duplicates_since_start: number | null;
  /** Why the figures above are null, when Kafka could not be asked. */
  kafka_error: string | null;
}

async function countRecords(kafka: Kafka, topic: string, chatId: string | null): Promise<number | null> {
  const admin = kafka.admin();
  await admin.connect();
  let partitions: number[];
  try {
    if (!(await admin.listTopics()).includes(topic)) return null;
    partitions = ((await admin.fetchTopicMetadata({ topics: [topic] })).topics[0]?.partitions ?? []).map((p) => p.partitionId);
  } finally {
    await admin.disconnect();
  }
  if (chatId !== null) partitions = [partitionForKey(chatId, partitions.length)];
  const reader = new PartitionReader(kafka, 100, 30_000);
  try {
    const [begins, ends] = await Promise.all([reader.beginOffsets(topic, partitions), reader.endOffsets(topic, partitions)]);
    let n = 0;
    for (const p of partitions) {
      await reader.read(topic, p, begins.get(p) ?? 0, ends.get(p) ?? 0, (records) => {
        n += chatId === null ? records.length : records.filter((r) => r.key?.toString() === chatId).length;
      });
    }
    return n;
  } finally {
    await reader.disconnect();
  }
}

/** The sum of a counter over the running trackers' /metrics, or null when none answers. */
async function trackerCounter(kafka: Kafka, cfg: Config, name: string): Promise<number | null> {
  const members = await trackerMembers(kafka, cfg);
  let total: number | null = null;
  for (const m of members) {
    if (!m.endpoint) continue;
    try {
      const res = await fetch(`http://${m.endpoint}/metrics`, { signal: AbortSignal.timeout(5000) });
      const text = await res.text();
      for (const line of text.split('\n')) {
        const match = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)$`).exec(line);
        if (match) total = (total ?? 0) + Number(match[1]);
      }
    } catch { /* an instance that does not answer adds nothing */ }
  }
  return total;
}

export async function streamFigures(cfg: Config, chatId: string | null): Promise<StreamFigures> {
  const none: StreamFigures = { late_messages: null, dlq_messages: null, dlq_sealed: null, dlq_ready: null, duplicates_since_start: null, kafka_error: null };
  try {
    await checkBrokers(cfg);
  } catch (e) {
    return { ...none, kafka_error: (e as Error).message };
  }
  const kafka = cliKafka(cfg, `${cfg.appId}-cli`);
  const t = topicNames(cfg);
  try {
    const [late, dlqMessages, dlqSealed, dlqReady, duplicates] = await Promise.all([
      countRecords(kafka, t.late, chatId),
      countRecords(kafka, t.messagesDlq, chatId),
      countRecords(kafka, t.sealedDlq, chatId),
      chatId === null ? countRecords(kafka, t.readyDlq, null) : Promise.resolve(null),
      chatId === null ? trackerCounter(kafka, cfg, 'chatstats_tracker_duplicates_total') : Promise.resolve(null),
    ]);
    return { late_messages: late, dlq_messages: dlqMessages, dlq_sealed: dlqSealed, dlq_ready: dlqReady, duplicates_since_start: duplicates, kafka_error: null };
  } catch (e) {
    return { ...none, kafka_error: (e as Error).message };
  }
}
