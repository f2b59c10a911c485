// Reads chosen partitions from chosen offsets, outside any consumer group, read_committed.
//
// kafkajs consumers only subscribe through a group; they cannot assign(). Restoring a task's
// store from its changelog partition, and asking where a partition ends, need exactly that, so
// this module drives kafkajs' cluster layer directly (the same Fetch and ListOffsets requests its
// consumer sends, and its Batch class to drop aborted and control records). kafkajs 2.2.4 is the
// pinned version; these internals have not changed since 2.0.
import type { Kafka } from 'kafkajs';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const Batch = require('kafkajs/src/consumer/batch');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ISOLATION = require('kafkajs/src/protocol/isolationLevel');

export interface RawRecord {
  key: Buffer | null;
  value: Buffer | null;
  offset: string;
  timestamp: string;
  headers?: Record<string, Buffer | string | (Buffer | string)[] | undefined>;
}

interface Broker {
  fetch(req: unknown): Promise<{ responses: { topicName: string; partitions: any[] }[] }>;
}
interface Cluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  addTargetTopic(topic: string): Promise<void>;
  refreshMetadata(): Promise<void>;
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(q: { nodeId: string }): Promise<Broker>;
  fetchTopicsOffset(q: { topic: string; partitions: { partition: number }[]; fromBeginning?: boolean }[]): Promise<
    { topic: string; partitions: { partition: number; offset: string }[] }[]
  >;
}

function createCluster(kafka: Kafka): Cluster {
  const sym = Object.getOwnPropertySymbols(kafka).find((s) => s.description === 'private:Kafka:createCluster');
  if (!sym) throw new Error('kafkajs internals changed: cannot create a cluster for partition reads');
  return (kafka as any)[sym]({ allowAutoTopicCreation: false, isolationLevel: ISOLATION.READ_COMMITTED });
}

export class PartitionReader {
  private readonly cluster: Cluster;
  private connected = false;

  /**
   * `fetch`: the Fetch request's byte limits (the whole response; the partition's share). A
   * restore reads a task's changelog with the consumer's own limits (FETCH_MAX_BYTES and
   * FETCH_MAX_BYTES_PER_PARTITION), so that restoring every partition at once holds no more
   * fetched data than consuming them does.
   */
  constructor(kafka: Kafka, private readonly maxWaitMs = 200, private readonly stallMs = 60_000,
    private readonly fetch: { maxBytes: number; maxBytesPerPartition: number } = { maxBytes: 16 * 1_048_576, maxBytesPerPartition: 8 * 1_048_576 }) {
    this.cluster = createCluster(kafka);
  }

  async connect(): Promise<void> {
    if (!this.connected) {
      await this.cluster.connect();
      this.connected = true;
    }
  }

  async disconnect(): Promise<void> {
    if (this.connected) {
      this.connected = false;
      await this.cluster.disconnect();
    }
  }

  /** The last stable offset (read_committed end) of each partition: the offset a reader reaches. */
  async endOffsets(topic: string, partitions: number[]): Promise<Map<number, number>> {
    return this.offsets(topic, partitions, false);
  }

  async beginOffsets(topic: string, partitions: number[]): Promise<Map<number, number>> {
    return this.offsets(topic, partitions, true);
  }

  private async offsets(topic: string, partitions: number[], fromBeginning: boolean): Promise<Map<number, number>> {
    await this.connect();
    await this.cluster.addTargetTopic(topic);
    const res = await this.cluster.fetchTopicsOffset([
      { topic, fromBeginning, partitions: partitions.map((partition) => ({ partition })) },
    ]);
    const out = new Map<number, number>();
    for (const t of res) for (const p of t.partitions) out.set(p.partition, Number(p.offset));
    return out;
  }

  /**
   * Reads [from, to) of one partition, handing each fetched slice of committed records to
   * `onRecords` in offset order. Returns the number of records handed over.
   */
  async read(topic: string, partition: number, from: number, to: number,
    onRecords: (records: RawRecord[]) => Promise<void> | void): Promise<number> {
    await this.connect();
    await this.cluster.addTargetTopic(topic);
    let offset = from;
    let count = 0;
    let idleSince = Date.now();
    while (offset < to) {
      if (Date.now() - idleSince > this.stallMs) {
        // Nothing readable for a long time: the end may have moved back (truncation after an
        // unclean leader change). Re-read it, and fail rather than wait forever.
        const end = (await this.endOffsets(topic, [partition])).get(partition) ?? to;
        if (end <= offset) break;
        throw new Error(`reading ${topic}-${partition}: no progress at offset ${offset} for ${this.stallMs} ms (end ${end})`);
      }
      const leaders = this.cluster.findLeaderForPartitions(topic, [partition]);
      const nodeId = Object.keys(leaders)[0];
      if (nodeId === undefined) {
        await this.cluster.refreshMetadata();
        continue;
      }
      const broker = await this.cluster.findBroker({ nodeId });
      const { responses } = await broker.fetch({
        isolationLevel: ISOLATION.READ_COMMITTED,
        maxWaitTime: this.maxWaitMs,
        minBytes: 1,
        maxBytes: this.fetch.maxBytes,
        topics: [{ topic, partitions: [{ partition, fetchOffset: String(offset), maxBytes: this.fetch.maxBytesPerPartition }] }],
      });
      const data = responses[0]?.partitions.find((p) => p.partition === partition);
      if (!data) continue;
      const batch = new Batch(topic, String(offset), data);
      if (batch.isEmptyIncludingFiltered()) {
        // Compaction removed what lies below the fetch offset: step past it. Otherwise nothing is
        // readable here yet; `to` was a committed end, so it will be, and we fetch again.
        if (batch.isEmptyDueToLogCompactedMessages()) offset += 1;
        continue;
      }
      idleSince = Date.now();
      const records = (batch.messages as RawRecord[]).filter((m) => Number(m.offset) < to);
      if (records.length > 0) {
        await onRecords(records);
        count += records.length;
      }
      offset = Number(batch.lastOffset()) + 1;
    }
    return count;
  }
}
