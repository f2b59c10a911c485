// Helpers of the tests that run a tracker on live traffic: messages, the topics with a producer,
// and the sealed conversations read back.
import type { Kafka } from 'kafkajs';
import { readTopic } from './topic-reader';
import { ensureTopics, topicNames } from '../../src/topics';
import { RecordCodec } from '../../src/records/codec';
import { ChatMessageProducer } from '../../src/producer';
import type { ChatMessage, ConversationSealed } from '../../src/records/types';
import type { Config } from '../../src/config';

/** Message `i` of a direct chat, sent at `sentAt`. */
export function msg(chat: string, i: number, sentAt: number): ChatMessage {
  return {
    message_id: `${chat}:${i}`, chat_id: chat, sender_id: `u${i % 3}`, sent_at: sentAt, text: `message ${i}`,
    chat_type: 'direct', is_from_me: false, reply_to_message_id: null, account_id: null,
  };
}

/** Creates the configuration's topics; a JSON codec and a connected producer for its input. */
export async function setup(kafka: Kafka, cfg: Config): Promise<{ producer: ChatMessageProducer; codec: RecordCodec }> {
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, cfg);
  await admin.disconnect();
  const codec = new RecordCodec({ registryUrl: null, topics: topicNames(cfg) });
  const producer = new ChatMessageProducer({ kafka, codec });
  await producer.connect();
  return { producer, codec };
}

/** The committed sealed conversations. */
export async function sealed(kafka: Kafka, cfg: Config, codec: RecordCodec): Promise<ConversationSealed[]> {
  return Promise.all((await readTopic(kafka, topicNames(cfg).sealed)).map((r) => codec.decode('ConversationSealed', r.value)));
}
