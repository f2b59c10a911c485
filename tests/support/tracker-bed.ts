// What an in-process tracker test sets up: an isolated environment, its config and topics, a
// Kafka client, a codec for the records, the apps it starts (stopped after the file's tests), and
// a reader of the sealed and late topics.
import { after } from 'node:test';
import { isolatedEnv, configOf, testKafka } from './harness';
import { sealedAndLate } from './topic-reader';
import type { App } from '../../src/app';
import { topicNames } from '../../src/topics';
import { RecordCodec } from '../../src/records/codec';

export function trackerBed(name: string, extra: Record<string, string> = {}) {
  const env = isolatedEnv(name, extra);
  const cfg = configOf(env);
  const topics = topicNames(cfg);
  const kafka = testKafka();
  const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics });
  const apps: App[] = [];
  after(async () => { for (const a of apps) await a.stop().catch(() => undefined); });
  return { env, cfg, topics, kafka, codec, apps, sealedAndLate: () => sealedAndLate(kafka, codec, topics) };
}
