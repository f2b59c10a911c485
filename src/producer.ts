// A typed producer of chat messages for TypeScript callers: an idempotent kafkajs producer, keyed
// by chat_id, partitioned like the Java client (murmur2), values encoded by RecordCodec (Avro with
// a schema registry, JSON otherwise). Sends are applied in call order: a chat's messages reach its
// partition in the order they were given. Each send is split by partition (src/kafka-send.ts), so a
// leader's failover neither duplicates nor drops messages.
import type { Admin, CompressionTypes, Kafka, Message, Producer, ProducerConfig } from 'kafkajs';
import type { Config } from './config';
import { kafkaFromConfig } from './kafka-client';
import { RecordCodec } from './records/codec';
import { javaCompatiblePartitioner, partitionForKey } from './records/partitioner';
import type { ChatMessage } from './records/types';
import { topicNames } from './topics';
import { byPartition, PartitionCounts, sendEachPartition } from './kafka-send';

export interface ChatMessageProducerOptions {
  kafka: Kafka;
  codec: RecordCodec;
  /** Default: the codec's chat.messages topic. */
  topic?: string;
  compression?: CompressionTypes;
  /** Extra kafkajs producer settings (idempotence and the partitioner are always set). */
  producerConfig?: Omit<ProducerConfig, 'idempotent' | 'createPartitioner'>;
}

export interface SendReport {
  /** Messages acknowledged by the brokers. */
  sent: number;
  /** Messages per partition number. */
  partitions: Record<number, number>;
}

export class ChatMessageProducer {
  readonly topic: string;
  readonly codec: RecordCodec;
  private readonly producer: Producer;
  private readonly compression: CompressionTypes | undefined;
  private readonly partitionCounts: PartitionCounts;
  private admin: Admin | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  private connected = false;

  constructor(opts: ChatMessageProducerOptions) {
    this.codec = opts.codec;
    this.topic = opts.topic ?? opts.codec.topicFor('ChatMessage');
    this.compression = opts.compression;
    this.partitionCounts = new PartitionCounts(async () => {
      if (!this.admin) {
        const admin = opts.kafka.admin();
        await admin.connect();
        this.admin = admin;
      }
      return this.admin;
    });
    this.producer = opts.kafka.producer({
      allowAutoTopicCreation: false,
      maxInFlightRequests: 1,
      ...opts.producerConfig,
      idempotent: true,
      createPartitioner: javaCompatiblePartitioner(),
    });
  }

  /** A producer with its own Kafka client and codec, from the configuration. */
  static fromConfig(cfg: Config, opts: { clientId?: string; topic?: string; compression?: CompressionTypes } = {}): ChatMessageProducer {
    const kafka = kafkaFromConfig(cfg, opts.clientId ?? `${cfg.appId}-producer`);
    const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics: topicNames(cfg) });
    return new ChatMessageProducer({ kafka, codec, topic: opts.topic, compression: opts.compression });
  }

  /** Registers the schemas (with a registry) and connects. */
  async connect(): Promise<void> {
    await this.codec.init();
    await this.producer.connect();
    this.connected = true;
  }

  /** The partition a chat's messages go to, once the topic's partition count has been seen. */
  partitionFor(chatId: string): number | null {
    const n = this.partitionCounts.known(this.topic);
    return n === undefined ? null : partitionForKey(chatId, n);
  }

  /**
   * Validates, encodes and publishes messages (one request per call, split by partition);
   * resolves when all are acknowledged by all in-sync replicas. An invalid message rejects the
   * whole call with InvalidRecordError before anything is sent.
   */
  send(messages: ChatMessage | readonly ChatMessage[]): Promise<SendReport> {
    const list: readonly ChatMessage[] = Array.isArray(messages) ? messages : [messages as ChatMessage];
    let records: Message[];
    try {
      records = list.map((m) => this.prepare(m));
    } catch (e) {
      return Promise.reject(e);
    }
    return this.sendPrepared(records);
  }

  /**
   * Validates and encodes one message into a Kafka record (key chat_id), without sending it:
   * throws InvalidRecordError for a message that send() would refuse. After connect().
   */
  prepare(message: ChatMessage): Message {
    if (!this.connected) throw new Error('ChatMessageProducer: connect() first');
    const value = this.codec.encodeSync('ChatMessage', message);
    return { key: message.chat_id, value };
  }

  /** Publishes records made by prepare(), in call order. */
  sendPrepared(records: readonly Message[]): Promise<SendReport> {
    if (!this.connected) return Promise.reject(new Error('ChatMessageProducer: connect() first'));
    if (records.length === 0) return Promise.resolve({ sent: 0, partitions: {} });
    const batch = records.slice();
    const run = this.tail.then(async (): Promise<SendReport> => {
      const groups = await byPartition([{ topic: this.topic, messages: batch }], this.partitionCounts);
      await sendEachPartition((topicMessages) => this.producer.sendBatch({ topicMessages, acks: -1, compression: this.compression }), groups);
      const partitions: Record<number, number> = {};
      for (const g of groups) partitions[g.partition] = g.messages.length;
      return { sent: batch.length, partitions };
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Waits until every send so far has been acknowledged (or has failed). */
  async flush(): Promise<void> {
    await this.tail;
  }

  /** Flushes and disconnects. */
  async disconnect(): Promise<void> {
    await this.flush();
    await this.producer.disconnect();
    await this.admin?.disconnect().catch(() => undefined);
    this.admin = null;
    this.connected = false;
  }
}
