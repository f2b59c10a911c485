// The backfill's position, kept as the committed offsets of a consumer group of its own, written
// the way a Java consumer that assign()s its partitions and commitSync()s does: an OffsetCommit
// with generation -1 and no member id, to a group that never has members. So the group shows up
// in the usual tools (`kafka-consumer-groups.sh --describe --group ...` gives position and lag,
// `--reset-offsets` restarts a backfill) without the backfill joining it: no rebalance wait at
// start, and no session to keep alive while a rate-limited backfill works slowly. Should a real
// member ever join the group, the broker refuses these commits (the generation is wrong) rather
// than letting two writers mix.
//
// kafkajs commits only for group members, so this sends OffsetCommit and OffsetFetch through its
// cluster layer, like runtime/partition-reader.ts does for Fetch (kafkajs 2.2.4 is pinned).
import type { Kafka } from 'kafkajs';

interface CoordinatorBroker {
  offsetCommit(req: {
    groupId: string; groupGenerationId: number; memberId: string; retentionTime?: number;
    topics: { topic: string; partitions: { partition: number; offset: string }[] }[];
  }): Promise<unknown>;
  offsetFetch(req: { groupId: string; topics: { topic: string; partitions: { partition: number }[] }[] }): Promise<{
    responses: { topic: string; partitions: { partition: number; offset: string }[] }[];
  }>;
}

interface Cluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  findGroupCoordinator(q: { groupId: string }): Promise<CoordinatorBroker>;
}

function createCluster(kafka: Kafka): Cluster {
  const sym = Object.getOwnPropertySymbols(kafka).find((s) => s.description === 'private:Kafka:createCluster');
  if (!sym) throw new Error('kafkajs internals changed: cannot create a cluster for offset commits');
  return (kafka as any)[sym]({ allowAutoTopicCreation: false });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class GroupOffsets {
  private readonly cluster: Cluster;
  private connected = false;

  constructor(kafka: Kafka, readonly groupId: string, readonly topic: string) {
    this.cluster = createCluster(kafka);
  }

  async connect(): Promise<void> {
    if (!this.connected) { await this.cluster.connect(); this.connected = true; }
  }

  async disconnect(): Promise<void> {
    if (this.connected) { this.connected = false; await this.cluster.disconnect(); }
  }

  /** Retries what the coordinator answers with a retriable error (moved, loading). */
  private async withCoordinator<T>(fn: (b: CoordinatorBroker) => Promise<T>): Promise<T> {
    await this.connect();
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(await this.cluster.findGroupCoordinator({ groupId: this.groupId }));
      } catch (e) {
        const retriable = (e as { retriable?: boolean }).retriable === true;
        if (!retriable || attempt >= 8) throw e;
        await sleep(Math.min(2000, 100 * 2 ** attempt));
      }
    }
  }

  /** The committed offset of each partition; null where the group has none. */
  async fetch(partitions: number[]): Promise<Map<number, number | null>> {
    const res = await this.withCoordinator((b) => b.offsetFetch({
      groupId: this.groupId, topics: [{ topic: this.topic, partitions: partitions.map((partition) => ({ partition })) }],
    }));
    const out = new Map<number, number | null>(partitions.map((p) => [p, null]));
    for (const t of res.responses) {
      if (t.topic !== this.topic) continue;
      for (const p of t.partitions) {
        const o = Number(p.offset);
        out.set(p.partition, Number.isFinite(o) && o >= 0 ? o : null);
      }
    }
    return out;
  }

  async commit(offsets: Map<number, number>): Promise<void> {
    if (offsets.size === 0) return;
    const partitions = [...offsets].map(([partition, offset]) => ({ partition, offset: String(offset) }));
    await this.withCoordinator((b) => b.offsetCommit({
      groupId: this.groupId, groupGenerationId: -1, memberId: '', retentionTime: -1,
      topics: [{ topic: this.topic, partitions }],
    }));
  }
}
