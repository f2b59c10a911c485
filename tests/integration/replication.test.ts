// TOPIC_REPLICATION_FACTOR and TOPIC_MIN_INSYNC_REPLICAS against the single local broker: more
// replicas than brokers is refused before anything is created (by provisioning, and by
// `chatstats run tracker` with exit code 2 and the variable named); what fits is applied to every
// topic, the changelog included. The three-node cluster's side is in cluster.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigResourceTypes } from 'kafkajs';
import { isolatedEnv, configOf, testKafka, spawnRole } from '../support/harness';
import { ConfigError } from '../../src/config';
import { ensureTopics, topicSpecs } from '../../src/topics';

const kafka = testKafka();
const admin = kafka.admin();
const prefixes: string[] = [];
after(async () => {
  const mine = (await admin.listTopics()).filter((t) => prefixes.some((p) => t.startsWith(p)));
  if (mine.length) await admin.deleteTopics({ topics: mine }).catch(() => undefined);
  await admin.disconnect();
});

test('more replicas than brokers: provisioning refuses, naming the variable and the broker count, and creates nothing', async () => {
  await admin.connect();
  const brokers = (await admin.describeCluster()).brokers.length;
  const env = isolatedEnv('repl-refuse', { TOPIC_REPLICATION_FACTOR: String(brokers + 2) });
  prefixes.push(env.TOPIC_PREFIX!);
  await assert.rejects(ensureTopics(admin, configOf(env)), (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.variable, 'TOPIC_REPLICATION_FACTOR');
    assert.match(e.message, new RegExp(`^TOPIC_REPLICATION_FACTOR: ${brokers + 2} replicas requested, but the cluster at KAFKA_BROKERS has ${brokers} brokers? available`));
    return true;
  });
  assert.deepEqual((await admin.listTopics()).filter((t) => t.startsWith(env.TOPIC_PREFIX!)), [], 'no topic created');

  // The tracker fails fast: exit 2 (invalid configuration) with the same message.
  const tracker = spawnRole('tracker', env);
  const code = await tracker.exited;
  assert.equal(code, 2, tracker.output());
  assert.match(tracker.output(), /chatstats: invalid configuration: TOPIC_REPLICATION_FACTOR: \d+ replicas requested, but the cluster at KAFKA_BROKERS has \d+ brokers? available/);
  assert.deepEqual((await admin.listTopics()).filter((t) => t.startsWith(env.TOPIC_PREFIX!)), [], 'no topic created by the tracker either');
});

test('a replication factor and min.insync.replicas that fit are applied to every topic, the changelog included', async () => {
  const env = isolatedEnv('repl-apply', { TOPIC_REPLICATION_FACTOR: '1', TOPIC_MIN_INSYNC_REPLICAS: '1', TOPIC_PARTITIONS: '2' });
  prefixes.push(env.TOPIC_PREFIX!);
  const cfg = configOf(env);
  const created = await ensureTopics(admin, cfg);
  const names = topicSpecs(cfg).map((s) => s.topic);
  assert.deepEqual([...created].sort(), [...names].sort());
  const md = await admin.fetchTopicMetadata({ topics: names });
  for (const t of md.topics) for (const p of t.partitions) assert.equal(p.replicas.length, 1, `${t.name}/${p.partitionId}`);
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: names.map((name) => ({ type: ConfigResourceTypes.TOPIC, name, configNames: ['min.insync.replicas'] })),
  });
  for (const r of described.resources) {
    assert.equal(r.configEntries.find((e) => e.configName === 'min.insync.replicas')?.configValue, '1', r.resourceName);
    assert.equal(r.configEntries.find((e) => e.configName === 'min.insync.replicas')?.isDefault, false, `${r.resourceName}: set on the topic`);
  }
});
