// Topic names (SPEC section 3, with TOPIC_PREFIX) and their provisioning. Input and output topics
// are co-partitioned with chat.messages, so a chat keeps one partition number everywhere.
import type { Admin, ITopicConfig } from 'kafkajs';
import type { Config } from './config';

export interface TopicNames {
  messages: string;
  sealed: string;
  ready: string;
  completed: string;
  late: string;
  messagesDlq: string;
  sealedDlq: string;
  readyDlq: string;
  commandResults: string;
  /** The tracker's changelog: compacted; the store's records (chat-state-layout.ts). */
  trackerChangelog: string;
}

export function topicNames(cfg: Pick<Config, 'topicPrefix' | 'appId'>): TopicNames {
  const p = cfg.topicPrefix;
  return {
    messages: `${p}chat.messages`,
    sealed: `${p}conversation.sealed`,
    ready: `${p}conversation.ready`,
    completed: `${p}analysis.completed`,
    late: `${p}chat.messages.late`,
    messagesDlq: `${p}chat.messages.dlq`,
    sealedDlq: `${p}conversation.sealed.dlq`,
    readyDlq: `${p}conversation.ready.dlq`,
    commandResults: `${p}${cfg.appId}.command-results`,
    trackerChangelog: `${p}${cfg.appId}-tracker-store-changelog`,
  };
}

export function topicSpecs(cfg: Pick<Config, 'topicPrefix' | 'appId' | 'topicPartitions'>): ITopicConfig[] {
  const t = topicNames(cfg);
  const n = cfg.topicPartitions;
  const retained = [
    { name: 'retention.ms', value: '-1' },
    { name: 'max.message.bytes', value: '2097152' },
  ];
  const week = [{ name: 'retention.ms', value: String(7 * 86_400_000) }];
  return [
    { topic: t.messages, numPartitions: n, configEntries: week },
    { topic: t.sealed, numPartitions: n, configEntries: retained },
    { topic: t.ready, numPartitions: n, configEntries: retained },
    { topic: t.completed, numPartitions: n, configEntries: retained },
    { topic: t.late, numPartitions: n, configEntries: retained },
    { topic: t.messagesDlq, numPartitions: n, configEntries: retained },
    { topic: t.sealedDlq, numPartitions: 1, configEntries: retained },
    { topic: t.readyDlq, numPartitions: 1, configEntries: retained },
    { topic: t.commandResults, numPartitions: 1, configEntries: [{ name: 'retention.ms', value: String(86_400_000) }] },
    {
      topic: t.trackerChangelog,
      numPartitions: n,
      configEntries: [
        // A full restore reads what compaction has not yet removed: the live records, the dirty
        // part of the cleaned segments (at most min.cleanable.dirty.ratio of them before the
        // cleaner runs) and the active segment, which is never cleaned. Every open message is a
        // record and is deleted at its seal, so segments roll at 64 MiB or an hour, whichever
        // comes first, and the cleaner starts at a quarter dirty: a restore reads at most about
        // 1.33x the live state plus 64 MiB per partition.
        { name: 'cleanup.policy', value: 'compact' },
        { name: 'min.compaction.lag.ms', value: '0' },
        { name: 'segment.ms', value: String(3_600_000) },
        { name: 'segment.bytes', value: String(64 * 1024 * 1024) },
        { name: 'min.cleanable.dirty.ratio', value: '0.25' },
        { name: 'max.message.bytes', value: '8388608' },
      ],
    },
  ];
}

/**
 * Creates the missing topics. Existing topics are left alone, but a partition count that differs
 * from chat.messages is an error: co-partitioning is what keeps a chat on one task.
 */
export async function ensureTopics(admin: Admin, cfg: Pick<Config, 'topicPrefix' | 'appId' | 'topicPartitions'>): Promise<string[]> {
  const specs = topicSpecs(cfg);
  const existing = new Set(await admin.listTopics());
  const missing = specs.filter((s) => !existing.has(s.topic));
  if (missing.length > 0) {
    await admin.createTopics({ topics: missing, waitForLeaders: true });
    // A KRaft broker publishes a new topic's metadata before it hosts the partitions: wait until
    // each answers ListOffsets, so the first produce (or transaction) does not fail.
    for (const { topic } of missing) {
      for (let attempt = 0; ; attempt++) {
        try {
          await admin.fetchTopicOffsets(topic);
          break;
        } catch (e) {
          if (attempt >= 100) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
  }
  const names = topicNames(cfg);
  // A KRaft broker may briefly answer UNKNOWN_TOPIC_OR_PARTITION right after creation.
  let md: Awaited<ReturnType<Admin['fetchTopicMetadata']>> | null = null;
  for (let attempt = 0; md === null; attempt++) {
    try {
      md = await admin.fetchTopicMetadata({ topics: [names.messages, names.trackerChangelog] });
      if (md.topics.some((t) => t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0))) md = null;
    } catch (e) {
      if (attempt >= 50) throw e;
    }
    if (md === null) await new Promise((r) => setTimeout(r, 100));
  }
  const counts = md.topics.map((t) => t.partitions.length);
  if (counts[0] !== counts[1]) {
    throw new Error(`${names.trackerChangelog} has ${counts[1]} partitions but ${names.messages} has ${counts[0]}; they must match`);
  }
  return missing.map((s) => s.topic);
}
