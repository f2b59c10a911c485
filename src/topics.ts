// Topic names (SPEC section 3, with TOPIC_PREFIX) and their provisioning. Input and output topics
// are co-partitioned with chat.messages, so a chat keeps one partition number everywhere. Every
// topic, the changelog included, gets TOPIC_REPLICATION_FACTOR replicas and
// TOPIC_MIN_INSYNC_REPLICAS (each the broker's default when unset).
import type { Admin, ITopicConfig } from 'kafkajs';
import { ConfigError, type Config } from './config';

/** What provisioning reads from the configuration. */
export type TopicSettings = Pick<Config, 'topicPrefix' | 'appId' | 'topicPartitions'>
  & Partial<Pick<Config, 'topicReplicationFactor' | 'topicMinInsyncReplicas'>>;

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

export function topicSpecs(cfg: TopicSettings): ITopicConfig[] {
  const t = topicNames(cfg);
  const n = cfg.topicPartitions;
  const retained = [
    { name: 'retention.ms', value: '-1' },
    { name: 'max.message.bytes', value: '2097152' },
  ];
  const week = [{ name: 'retention.ms', value: String(7 * 86_400_000) }];
  const specs: ITopicConfig[] = [
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
  return specs.map((spec) => replicated(spec, cfg));
}

/** A topic spec with the configured replication factor and min.insync.replicas, where set. */
export function replicated(spec: ITopicConfig, cfg: Partial<Pick<Config, 'topicReplicationFactor' | 'topicMinInsyncReplicas'>>): ITopicConfig {
  const out: ITopicConfig = { ...spec, configEntries: [...(spec.configEntries ?? [])] };
  if (cfg.topicReplicationFactor != null) out.replicationFactor = cfg.topicReplicationFactor;
  if (cfg.topicMinInsyncReplicas != null) out.configEntries!.push({ name: 'min.insync.replicas', value: String(cfg.topicMinInsyncReplicas) });
  return out;
}

/** A broker's setting (describeConfigs of one broker), or null when it cannot be read. */
async function brokerSetting(admin: Admin, nodeId: number, name: string): Promise<string | null> {
  try {
    const res = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: 4 /* ConfigResourceTypes.BROKER */, name: String(nodeId), configNames: [name] }],
    });
    return res.resources[0]?.configEntries.find((e) => e.configName === name)?.configValue ?? null;
  } catch {
    return null;
  }
}

/**
 * Before topics are created: the replication factor (TOPIC_REPLICATION_FACTOR, or the broker's
 * default.replication.factor) must not exceed the brokers the cluster has, and min.insync.replicas
 * (TOPIC_MIN_INSYNC_REPLICAS, or the broker's default) must not exceed the replication factor.
 * Kafka would refuse the first with INVALID_REPLICATION_FACTOR, and accept the second and then
 * refuse every write: both are configuration errors, named here.
 */
export async function checkReplication(admin: Admin, cfg: Partial<Pick<Config, 'topicReplicationFactor' | 'topicMinInsyncReplicas'>>): Promise<{ brokers: number; replicationFactor: number; minInsyncReplicas: number | null }> {
  const cluster = await admin.describeCluster();
  const brokers = cluster.brokers.length;
  const anyBroker = cluster.brokers[0]?.nodeId ?? 0;
  let replicationFactor = cfg.topicReplicationFactor ?? null;
  const variable = replicationFactor !== null ? 'TOPIC_REPLICATION_FACTOR' : null;
  if (replicationFactor === null) replicationFactor = Number(await brokerSetting(admin, anyBroker, 'default.replication.factor') ?? 1);
  const ids = cluster.brokers.map((b) => b.nodeId).sort((a, b) => a - b).join(', ');
  if (replicationFactor > brokers) {
    const where = `the cluster at KAFKA_BROKERS has ${brokers} broker${brokers === 1 ? '' : 's'} available (node${brokers === 1 ? '' : 's'} ${ids})`;
    if (variable) {
      throw new ConfigError(variable, `${replicationFactor} replicas requested, but ${where}: a topic cannot have more replicas than brokers; `
        + `set TOPIC_REPLICATION_FACTOR to at most ${brokers}, or start the missing brokers`);
    }
    throw new ConfigError('TOPIC_REPLICATION_FACTOR', `unset, so the broker's default.replication.factor (${replicationFactor}) applies, but ${where}; `
      + `set TOPIC_REPLICATION_FACTOR to at most ${brokers}, or start the missing brokers`);
  }
  let minInsyncReplicas = cfg.topicMinInsyncReplicas ?? null;
  if (minInsyncReplicas === null) {
    const v = await brokerSetting(admin, anyBroker, 'min.insync.replicas');
    minInsyncReplicas = v === null ? null : Number(v);
  }
  if (minInsyncReplicas !== null && minInsyncReplicas > replicationFactor) {
    const what = cfg.topicMinInsyncReplicas != null ? `${minInsyncReplicas}` : `unset, so the broker's min.insync.replicas (${minInsyncReplicas}) applies, which`;
    throw new ConfigError('TOPIC_MIN_INSYNC_REPLICAS', `${what} is more than the replication factor (${replicationFactor}${variable ? '' : `, the broker's default.replication.factor`}): `
      + 'no transactional or acks=all write could ever succeed');
  }
  return { brokers, replicationFactor, minInsyncReplicas };
}

/**
 * Waits until every partition of a topic just created answers ListOffsets (up to ~10 s). A KRaft
 * broker publishes a new topic's metadata, leaders included, before it hosts the partitions; until
 * then it answers NOT_LEADER_OR_FOLLOWER, and a first produce (or transaction) would fail.
 */
export async function waitUntilServed(admin: Admin, topic: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await admin.fetchTopicOffsets(topic);
      return;
    } catch (e) {
      if (attempt >= 100) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * Creates the missing topics. Existing topics are left alone, but a partition count that differs
 * from chat.messages is an error: co-partitioning is what keeps a chat on one task.
 */
export async function ensureTopics(admin: Admin, cfg: TopicSettings): Promise<string[]> {
  const specs = topicSpecs(cfg);
  const existing = new Set(await admin.listTopics());
  const missing = specs.filter((s) => !existing.has(s.topic));
  if (missing.length > 0) {
    // Only when creating: a running cluster with a broker down must not stop a restart.
    await checkReplication(admin, cfg);
    await admin.createTopics({ topics: missing, waitForLeaders: true });
    for (const { topic } of missing) await waitUntilServed(admin, topic);
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
