// Reads a whole topic as a read_committed consumer would see it, for assertions.
import type { Kafka } from 'kafkajs';
import { PartitionReader, type RawRecord } from '../../src/runtime/partition-reader';
import type { RecordCodec } from '../../src/records/codec';
import type { TopicNames } from '../../src/topics';
import type { ConversationSealed, LateMessage } from '../../src/records/types';

export async function readTopic(kafka: Kafka, topic: string): Promise<(RawRecord & { partition: number })[]> {
  const admin = kafka.admin();
  await admin.connect();
  const md = await admin.fetchTopicMetadata({ topics: [topic] });
  await admin.disconnect();
  const partitions = md.topics[0]!.partitions.map((p) => p.partitionId);
  const reader = new PartitionReader(kafka);
  try {
    const begins = await reader.beginOffsets(topic, partitions);
    const ends = await reader.endOffsets(topic, partitions);
    const out: (RawRecord & { partition: number })[] = [];
    for (const p of partitions) {
      await reader.read(topic, p, begins.get(p) ?? 0, ends.get(p) ?? 0, (records) => {
        for (const r of records) out.push({ ...r, partition: p });
      });
    }
    return out;
  } finally {
    await reader.disconnect();
  }
}

/** The tracker's sealed conversations and late messages so far, decoded. */
export async function sealedAndLate(kafka: Kafka, codec: RecordCodec, topics: Pick<TopicNames, 'sealed' | 'late'>): Promise<{ sealed: ConversationSealed[]; late: LateMessage[] }> {
  const sealed = await Promise.all((await readTopic(kafka, topics.sealed)).map((r) => codec.decode('ConversationSealed', r.value)));
  const late = await Promise.all((await readTopic(kafka, topics.late)).map((r) => codec.decode('LateMessage', r.value)));
  return { sealed, late };
}
