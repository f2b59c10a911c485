// The tracker role: provisions topics, registers schemas, runs the tracker topology, and answers
// interactive queries about the partitions it owns (tracker-status, like Kafka Streams' IQ).
import type { Config } from '../config';
import { logger } from '../log';
import { kafkaFromConfig } from '../kafka-client';
import { ensureTopics, topicNames } from '../topics';
import { RecordCodec } from '../records/codec';
import { StreamThread } from '../runtime/stream-thread';
import { setStateMemory } from '../runtime/state-store';
import { trackerTopology } from '../topology';
import type { ConversationTracker } from '../processors/conversation-tracker';
import { partitionForKey } from '../records/partitioner';
import type { Route } from '../http-server';

export interface TrackerRole {
  thread: StreamThread;
  routes: Record<string, Route>;
  ready(): Promise<boolean>;
  stop(): Promise<void>;
}

/**
 * Creates the topics that are missing; returns the input's partition count (the stores a process
 * may open, over which STATE_MEMORY is split).
 */
export async function provisionTracker(cfg: Config): Promise<number> {
  const log = logger('ConversationTracker');
  const kafka = kafkaFromConfig(cfg, `${cfg.appId}-tracker-admin`);
  const admin = kafka.admin();
  await admin.connect();
  try {
    const created = await ensureTopics(admin, cfg);
    if (created.length > 0) log.info({ topics: created }, 'topics created');
    const md = await admin.fetchTopicMetadata({ topics: [topicNames(cfg).messages] }).catch(() => null);
    return md?.topics[0]?.partitions.length || cfg.topicPartitions;
  } finally {
    await admin.disconnect();
  }
}

/** One of several stream threads of a process (STREAM_THREADS; see tracker-threads.ts). */
export interface TrackerThreadSpec {
  index: number;
  /** The input's partition count, read once by the process. */
  sourcePartitions: number;
  /** Holds a partition's store against the process's other threads (StreamThreadOptions.storeLease). */
  storeLease: (partition: number) => Promise<() => void>;
}

/**
 * `endpoint` (host:port of this instance's HTTP server) goes into the client id for discovery.
 * `spec`: when the process runs several stream threads, which one this is; its client id and
 * log lines carry its index.
 */
export async function startTracker(cfg: Config, endpoint: string, spec: TrackerThreadSpec | null = null): Promise<TrackerRole> {
  const log = spec === null ? logger('ConversationTracker') : logger('ConversationTracker').child({ thread: spec.index });
  const topics = topicNames(cfg);
  const sourcePartitions = spec?.sourcePartitions ?? await provisionTracker(cfg);
  const kafka = kafkaFromConfig(cfg, `${cfg.appId}-tracker${spec === null ? '' : `-${spec.index}`}@${endpoint}`);
  setStateMemory(cfg.stateMemoryBytes, sourcePartitions);
  const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics });
  await codec.init();
  const thread = new StreamThread(kafka, trackerTopology(cfg, codec, log, sourcePartitions), {
    appId: cfg.appId, stateDir: cfg.stateDir, punctuateIntervalMs: cfg.punctuateIntervalMs, sealTimer: cfg.sealTimer, sealLeadMinMs: cfg.sealLeadMinMs, sealLeadMaxMs: cfg.sealLeadMaxMs,
    fetchMaxBytesPerPartition: cfg.fetchMaxBytesPerPartition, fetchMaxBytes: cfg.fetchMaxBytes, storeLease: spec?.storeLease,
  }, log);
  await thread.start();
  log.info({ source: topics.messages, endpoint }, 'tracker started');

  const tracker = (t: { processorInstance: unknown }) => t.processorInstance as ConversationTracker;
  // Interactive queries; JSON in snake_case like every --json output. A partition's figures are
  // read in its task's turn, between two events: open_conversations and next_deadlines are as of
  // the task's last committed transaction.
  const routes: Record<string, Route> = {
    '/v1/tracker/status': async (url) => {
      const verbose = url.searchParams.get('verbose') === '1';
      const partitions = await thread.status();
      const out = [];
      for (const p of partitions) {
        const detail = p.state === 'running'
          ? await thread.inPartition(p.partition, async (task) => ({
            open_conversations: tracker(task).openConversationCount,
            next_deadlines: (await tracker(task).nextDeadlines(verbose ? 50 : 5))
              .map((d) => ({ chat_id: d.chat_id, deadline_at: new Date(d.deadline).toISOString() })),
          }))
          : null;
        out.push({
          partition: p.partition, state: p.state, position: p.position, end: p.end, lag: p.lag, caught_up: p.caughtUp,
          restore_ms: p.restoreMs, restore_rebuild_ms: p.restoreRebuildMs, restored_records: p.restoredRecords,
          next_due_at: p.nextDueAt === null ? null : new Date(p.nextDueAt).toISOString(),
          seal_timer: { mode: p.sealTimer.mode, armed_at: p.sealTimer.armedAt === null ? null : new Date(p.sealTimer.armedAt).toISOString() },
          ...(detail ?? { open_conversations: null, next_deadlines: [] }),
        });
      }
      return { endpoint, partitions: out };
    },
    '/v1/tracker/chat': async (url) => {
      const chat = url.searchParams.get('chat_id') ?? '';
      const partitionCount = Number(url.searchParams.get('partitions') ?? cfg.topicPartitions);
      const partition = partitionForKey(chat, partitionCount);
      const iso = (ms: number) => new Date(ms).toISOString();
      const res = await thread.inPartition(partition, async (task) => {
        const d = await tracker(task).describeChat(chat);
        const recent = (d.state as { sealed?: { conversationId: string; startedAt: number; endedAt: number; sealReason: string }[] } | null)?.sealed ?? [];
        return {
          chat_id: chat, partition, owned: true, known: d.state !== null,
          open: d.open.map((o) => ({
            started_at: iso(o.startedAt), ended_at: iso(o.endedAt), message_count: o.messageCount, bytes: o.bytes,
            deadline_at: iso(o.deadline), continues_conversation_id: o.continuesConversationId,
            // Rule 2 seals once past the deadline and settled (no message joined for the settle time).
            arrived_at: iso(o.arrivedAt), settles_at: iso(o.settlesAt), waiting_on_settle: o.settlesAt > o.deadline,
          })),
          recently_sealed: recent.map((r) => ({ conversation_id: r.conversationId, started_at: iso(r.startedAt), ended_at: iso(r.endedAt), seal_reason: r.sealReason })),
        };
      });
      return res ?? { chat_id: chat, partition, owned: false, known: false, open: [], recently_sealed: [] };
    },
  };
  return {
    thread,
    routes,
    ready: () => thread.isReady(),
    stop: async () => {
      await thread.stop();
      log.info('tracker stopped');
    },
  };
}
