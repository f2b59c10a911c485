// The library API of chatstats-stream for TypeScript callers: record types, the record codec and
// validation, the Java-compatible partitioner and the chat message producer.
export type { ChatMessage, ConversationSealed, LateMessage, ChatCommand, CommandResult, SealReason, CommandType } from './records/types';
export type { ConversationReady, AnalysisCompleted } from './records/downstream-types';
export {
  RecordCodec, SchemaRegistryClient, SchemaRegistryError, RECORD_KINDS, DEFAULT_MAX_CHAT_MESSAGE_BYTES, DEFAULT_MAX_RECORD_BYTES,
  loadSchemas, defaultSchemaDir,
} from './records/codec';
export type { RecordKind, RecordTypes, RecordFormat, RecordCodecOptions, CompatibilityLevel } from './records/codec';
export { InvalidRecordError, validateChatMessage, parseChatMessageJson, parseTime, parseIsoTime } from './records/validate';
export { murmur2, toPositive, partitionForKey, javaCompatiblePartitioner, JavaCompatiblePartitioner } from './records/partitioner';
export { toDlqMessage, dlqErrorInfo, DLQ_HEADERS } from './records/dlq';
export type { DlqSource, DlqInfo } from './records/dlq';
export { ChatMessageProducer } from './producer';
export type { ChatMessageProducerOptions, SendReport } from './producer';
export { kafkaFromConfig } from './kafka-client';
export { loadConfig, ConfigError } from './config';
export type { Config } from './config';
export { topicNames } from './topics';
export type { TopicNames } from './topics';
