// Reads chosen partitions from chosen offsets, outside any consumer group, read_committed.
//
// kafkajs consumers only subscribe through a group; they cannot assign(). Restoring a task's
// store from its changelog partition, and asking where a partition ends, need exactly that, so
// this module drives kafkajs' cluster layer directly (the same Fetch and ListOffsets requests its
// consumer sends). A Fetch v11 response's record batches are decoded by record-batches.ts, which
// drops aborted and control records; other versions go through kafkajs' decoder and Batch class.
// kafkajs 2.2.4 is the pinned version; these internals have not changed since 2.0.
import type { Kafka } from 'kafkajs';
import { type AbortedTransaction, decodeRecordBatches } from './record-batches';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const Batch = require('kafkajs/src/consumer/batch');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ISOLATION = require('kafkajs/src/protocol/isolationLevel');
/* eslint-disable @typescript-eslint/no-require-imports */
const API_KEYS = require('kafkajs/src/protocol/requests/apiKeys');
const { requests: REQUESTS } = require('kafkajs/src/protocol/requests');
const Decoder = require('kafkajs/src/protocol/decoder');
const RecordBatchDecoder = require('kafkajs/src/protocol/recordBatch/v0/decoder');
/* eslint-enable @typescript-eslint/no-require-imports */

export interface RawRecord {
  key: Buffer | null;
  value: Buffer | null;
  offset: string;
  timestamp: string;
  headers?: Record<string, Buffer | string | (Buffer | string)[] | undefined>;
}

interface Broker {
  fetch(req: unknown): Promise<{ responses: { topicName: string; partitions: any[] }[] }>;
  lookupRequest(apiKey: number, request: unknown): (args: unknown) => ProtocolRequest;
}
interface ProtocolRequest {
  request: { apiVersion: number };
  response: { decode(raw: Buffer): Promise<unknown>; parse(data: unknown): Promise<unknown> };
}
/** One partition of a Fetch response (v11), its records left encoded. */
interface RawPartition { partition: number; errorCode: number; abortedTransactions: AbortedTransaction[]; records: Buffer }

/**
 * A Fetch v11 response with each partition's records field left as bytes (decodeRecordBatches
 * reads them). The shape is kafkajs' own, so that its `parse` raises the partitions' errors.
 */
async function decodeFetchV11(raw: Buffer): Promise<unknown> {
  const d = new Decoder(raw);
  const clientSideThrottleTime = d.readInt32();
  const errorCode = d.readInt16();
  const sessionId = d.readInt32();
  const responses = d.readArray((t: any) => ({
    topicName: t.readString(),
    partitions: t.readArray((p: any): RawPartition => {
      const partition = p.readInt32();
      const partitionError = p.readInt16();
      p.readInt64(); p.readInt64(); p.readInt64(); // high watermark, last stable offset, log start offset
      const abortedTransactions = (p.readArray((a: any) => ({ producerId: BigInt(a.readInt64().toString()), firstOffset: Number(a.readInt64().toString()) })) ?? []) as AbortedTransaction[];
      p.readInt32(); // preferred read replica
      const size = p.readInt32();
      const records = size > 0 && p.canReadBytes(size) ? p.readBytes(size) as Buffer : Buffer.alloc(0);
      return { partition, errorCode: partitionError, abortedTransactions, records };
    }),
  }));
  return { throttleTime: 0, clientSideThrottleTime, errorCode, sessionId, responses };
}

/** A compressed batch, through kafkajs' decoder (it decompresses). */
async function decodeCompressed(batch: Buffer): Promise<RawRecord[]> {
  const { records } = await RecordBatchDecoder(new Decoder(batch)) as { records: RawRecord[] };
  return records.map((r) => ({ key: r.key, value: r.value, offset: r.offset, timestamp: r.timestamp, headers: r.headers }));
}

const sendRequestOf = (broker: Broker): symbol | undefined =>
  Object.getOwnPropertySymbols(Object.getPrototypeOf(broker)).find((s) => s.description === 'private:Broker:sendRequest');
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

  /**
   * One Fetch of a partition from `offset`, read committed: its records and the offset after the
   * last complete batch. With Fetch v11 (Kafka 2.3 and later) the record batches are decoded here
   * (record-batches.ts); otherwise by kafkajs, whose Batch drops aborted and control records.
   */
  private async fetchRecords(broker: Broker, topic: string, partition: number, offset: number): Promise<{ records: RawRecord[]; nextOffset: number }> {
    const args = {
      isolationLevel: ISOLATION.READ_COMMITTED,
      maxWaitTime: this.maxWaitMs,
      minBytes: 1,
      maxBytes: this.fetch.maxBytes,
      topics: [{ topic, partitions: [{ partition, fetchOffset: String(offset), maxBytes: this.fetch.maxBytesPerPartition }] }],
      rackId: '',
    };
    const request = broker.lookupRequest(API_KEYS.Fetch, REQUESTS.Fetch)(args);
    const send = sendRequestOf(broker);
    if (request.request.apiVersion === 11 && send !== undefined) {
      const res = await (broker as any)[send]({ ...request, response: { decode: decodeFetchV11, parse: request.response.parse } }) as
        { responses: { partitions: RawPartition[] }[] };
      const data = res.responses[0]?.partitions.find((p) => p.partition === partition);
      if (!data) return { records: [], nextOffset: offset };
      return decodeRecordBatches(data.records, offset, data.abortedTransactions, decodeCompressed);
    }
    const { responses } = await broker.fetch(args);
    const data = responses[0]?.partitions.find((p) => p.partition === partition);
    if (!data) return { records: [], nextOffset: offset };
    const batch = new Batch(topic, String(offset), data);
    if (batch.isEmptyIncludingFiltered()) {
      // Compaction removed what lies below the fetch offset: step past it.
      return { records: [], nextOffset: batch.isEmptyDueToLogCompactedMessages() ? offset + 1 : offset };
    }
    return { records: batch.messages as RawRecord[], nextOffset: Number(batch.lastOffset()) + 1 };
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
      const fetched = await this.fetchRecords(broker, topic, partition, offset);
      if (fetched.nextOffset <= offset) continue; // nothing readable here yet: `to` was a committed end, so it will be
      idleSince = Date.now();
      let n = fetched.records.length;
      while (n > 0 && Number(fetched.records[n - 1]!.offset) >= to) n--;
      if (n < fetched.records.length) fetched.records.length = n;
      if (n > 0) {
        await onRecords(fetched.records);
        count += n;
      }
      offset = fetched.nextOffset;
    }
    return count;
  }
}
