// The system on one screen. Arrows are Kafka topics; boxes are processors; [stores] are RocksDB
// with a compacted changelog. Every arrow out of the tracker is written in the same transaction
// as its input offsets and changelog writes.
//
//   producers ──> chat.messages ──> ConversationTracker [chat-state] ──> conversation.sealed ──> ETL ──> PostgreSQL
//   (any language,  (key chat_id;        │  punctuation: GAP_TIMEOUT        │                     │
//    + operator      commands in-band)   ├──> chat.messages.late            │                     └──> conversation.ready ──> Analysis ──> analysis.completed
//    commands)                           ├──> chat.messages.dlq             └──> backfill (replay)                 (passes by priority,
//                                        └──> <app>.command-results                                                 results in PostgreSQL)
import type { Config } from './config';
import type { Logger } from 'pino';
import { topicNames } from './topics';
import type { Topology } from './runtime/topology-spec';
import { ConversationTracker, type TrackerCodec } from './processors/conversation-tracker';
import { rulesConfigFrom } from './sessionization/rules';
import { threadLinkerFor } from './boundaries/linker';
import { JavaCompatiblePartitioner } from './records/partitioner';
import type { RecordCodec } from './records/codec';

/** `tasks`: the most tasks the process may run (the input's partitions), to split STATE_CACHE. */
export function trackerTopology(cfg: Config, codec: RecordCodec, log: Logger, tasks = cfg.topicPartitions): Topology {
  const t = topicNames(cfg);
  // Chat types in thread mode (CONVERSATION_MODE_BY_TYPE) are split by the committed thread model.
  const rules = rulesConfigFrom(cfg, threadLinkerFor(cfg.modeByType));
  const io: TrackerCodec = {
    decodeChatMessage: (v) => codec.decodeChatMessage(v),
    encodeSealed: (v) => codec.encodeBuilt('ConversationSealed', v),
    encodeLate: (v) => codec.encode('LateMessage', v),
    encodeCommandResult: (v) => codec.encode('CommandResult', v),
  };
  return {
    name: 'tracker',
    source: t.messages,
    store: { name: 'chat-state', changelog: t.trackerChangelog },
    processor: () => new ConversationTracker({
      rules, topics: t, codec: io, log, maxSealsPerPunctuation: cfg.punctuateMaxSeals, cacheBytes: Math.floor(cfg.stateCacheBytes / Math.max(1, tasks)),
    }),
    sinks: { sealed: t.sealed, late: t.late, dlq: t.messagesDlq, commandResults: t.commandResults },
    createPartitioner: JavaCompatiblePartitioner,
  };
}

/** The downstream stages, for documentation and provisioning: consumer groups over topics. */
export function downstreamStages(cfg: Config) {
  const t = topicNames(cfg);
  return {
    etl: { group: `${cfg.appId}-etl`, source: t.sealed, sinks: { ready: t.ready, dlq: t.sealedDlq } },
    analysis: { group: `${cfg.appId}-analysis`, source: t.ready, sinks: { completed: t.completed, dlq: t.readyDlq } },
  };
}
