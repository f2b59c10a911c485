// Producing with kafkajs so that a partition leader's failover neither duplicates nor drops records.
//
// kafkajs 2.2.4 (its latest release) sends one produce request per broker and retries the whole
// send when one of them fails, with two faults (src/producer/sendMessages.js):
//   - it retries without waiting for the requests still in flight to other brokers, and builds the
//     retry's request for such a broker with the sequence numbers already advanced: the same
//     records are written twice, under new sequence numbers, so neither idempotence nor a
//     transaction removes the copy (seen on a three-node cluster: a conversation_sealed batch
//     committed twice in one transaction when the broker leading another of its partitions died);
//   - a broker that answered an earlier attempt is left out of the retry, so a partition whose
//     leader moved to such a broker is never written, and send() resolves as if it had been.
// A send whose messages all go to one partition involves one broker, and for that kafkajs' retry
// is right (the same sequence numbers, so the broker drops a batch it already has). So every send
// here is split by partition first: an explicit partition wins, a keyed message goes where the
// Java client puts it (murmur2, as our partitioner does), a keyless one round-robin.
import type { Admin, Message, RecordMetadata, TopicMessages } from 'kafkajs';
import { partitionForKey } from './records/partitioner';

export interface PartitionMessages { topic: string; partition: number; messages: Message[] }

/** Partition counts of topics, read with the admin API the first time a topic is used, then kept. */
export class PartitionCounts {
  private readonly counts = new Map<string, number>();
  private readonly pending = new Map<string, Promise<number>>();

  constructor(private readonly admin: () => Promise<Admin>) {}

  of(topic: string): Promise<number> {
    const known = this.counts.get(topic);
    if (known !== undefined) return Promise.resolve(known);
    let p = this.pending.get(topic);
    if (!p) {
      p = (async () => {
        const md = await (await this.admin()).fetchTopicMetadata({ topics: [topic] });
        const n = md.topics[0]?.partitions.length ?? 0;
        if (n < 1) throw new Error(`topic ${topic} has no partitions in the cluster's metadata`);
        this.counts.set(topic, n);
        return n;
      })().finally(() => this.pending.delete(topic));
      this.pending.set(topic, p);
    }
    return p;
  }

  /** The count if already known (no request). */
  known(topic: string): number | undefined {
    return this.counts.get(topic);
  }
}

const roundRobin = new Map<string, number>();

/** The messages of each topic-partition, in the order given; messages get their `partition` set. */
export async function byPartition(topicMessages: TopicMessages[], counts: PartitionCounts): Promise<PartitionMessages[]> {
  const groups = new Map<string, PartitionMessages>();
  for (const { topic, messages } of topicMessages) {
    let n: number | undefined;
    for (const m of messages) {
      let partition = m.partition;
      if (partition === null || partition === undefined) {
        n ??= await counts.of(topic);
        if (m.key !== null && m.key !== undefined) partition = partitionForKey(m.key, n);
        else {
          const next = ((roundRobin.get(topic) ?? Math.floor(Math.random() * 0x7fffffff)) + 1) & 0x7fffffff;
          roundRobin.set(topic, next);
          partition = next % n;
        }
      }
      const k = `${topic}\u0000${partition}`;
      let g = groups.get(k);
      if (!g) groups.set(k, (g = { topic, partition, messages: [] }));
      g.messages.push({ ...m, partition });
    }
  }
  return [...groups.values()];
}

/**
 * Sends each topic-partition's messages with a send of its own (`send` is a producer's or a
 * transaction's sendBatch), all partitions at once, and waits for every one of them before
 * failing with the first error, so that nothing is still in flight when the caller reacts.
 */
export async function sendEachPartition(send: (topicMessages: TopicMessages[]) => Promise<RecordMetadata[]>,
  groups: PartitionMessages[]): Promise<RecordMetadata[]> {
  const results = await Promise.allSettled(groups.map((g) => send([{ topic: g.topic, messages: g.messages }])));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.flatMap((r) => (r as PromiseFulfilledResult<RecordMetadata[]>).value);
}
