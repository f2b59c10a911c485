// Partitioning that agrees with the Java client's default partitioner (SPEC section 3): a keyed
// record goes to toPositive(murmur2(keyBytes)) % numPartitions, as in Kafka's
// BuiltInPartitioner.partitionForKey and Utils.murmur2. A chat keyed by chat_id therefore lands on
// the same partition whichever client (Java, librdkafka with murmur2_random, kafkajs, ours) wrote it.
import type { ICustomPartitioner, PartitionerArgs } from 'kafkajs';

const SEED = 0x9747b28c;
const M = 0x5bd1e995;

/** Kafka's Utils.murmur2: 32-bit MurmurHash2 with Kafka's seed, as a signed 32-bit int like Java's. */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = SEED ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i << 2;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M);
    h ^= k;
  }
  const tail = length & ~3;
  const rest = length & 3;
  if (rest === 3) h ^= data[tail + 2]! << 16;
  if (rest >= 2) h ^= data[tail + 1]! << 8;
  if (rest >= 1) {
    h ^= data[tail]!;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's Utils.toPositive: clears the sign bit (not Math.abs). */
export function toPositive(n: number): number {
  return n & 0x7fffffff;
}

function keyBytes(key: string | Buffer | Uint8Array): Uint8Array {
  return typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
}

/** The partition the Java client's default partitioner picks for this key (UTF-8 for strings). */
export function partitionForKey(key: string | Buffer | Uint8Array, numPartitions: number): number {
  if (!Number.isInteger(numPartitions) || numPartitions < 1) throw new RangeError(`numPartitions must be a positive integer, got ${numPartitions}`);
  return toPositive(murmur2(keyBytes(key))) % numPartitions;
}

export interface PartitionerHooks {
  /** Called with the partition count the partitioner saw for a topic, each time it partitions. */
  onPartitionCount?: (topic: string, numPartitions: number) => void;
}

/**
 * A kafkajs partitioner using partitionForKey. An explicit `partition` on the message wins; a
 * keyed message is hashed over all partitions (like Java: availability does not move a key); a
 * message without a key goes round-robin over partitions that have a leader.
 */
export function javaCompatiblePartitioner(hooks: PartitionerHooks = {}): ICustomPartitioner {
  return () => {
    const counters = new Map<string, number>();
    return ({ topic, partitionMetadata, message }: PartitionerArgs): number => {
      const numPartitions = partitionMetadata.length;
      hooks.onPartitionCount?.(topic, numPartitions);
      if (message.partition !== null && message.partition !== undefined) return message.partition;
      if (message.key !== null && message.key !== undefined) return partitionForKey(message.key, numPartitions);
      const next = ((counters.get(topic) ?? Math.floor(Math.random() * 0x7fffffff)) + 1) & 0x7fffffff;
      counters.set(topic, next);
      const available = partitionMetadata.filter((p) => p.leader >= 0);
      if (available.length > 0) return available[next % available.length]!.partitionId;
      return next % numPartitions;
    };
  };
}

/** The partitioner for kafkajs' `createPartitioner` option. */
export const JavaCompatiblePartitioner: ICustomPartitioner = javaCompatiblePartitioner();
