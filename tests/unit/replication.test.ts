// TOPIC_REPLICATION_FACTOR and TOPIC_MIN_INSYNC_REPLICAS: validated by loadConfig, applied to every
// topic the project creates (changelog included), and checked against the cluster before creating.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Admin } from 'kafkajs';
import { ConfigError, loadConfig } from '../../src/config';
import { checkReplication, replicated, topicNames, topicSpecs } from '../../src/topics';

const isConfigError = (variable: string, pattern: RegExp) => (e: unknown) => {
  assert.ok(e instanceof ConfigError, String(e));
  assert.equal(e.variable, variable);
  assert.match(e.message, pattern);
  return true;
};

test('loadConfig: unset means the broker default; integers of at least 1; min.insync not above the replication factor', () => {
  const none = loadConfig({});
  assert.equal(none.topicReplicationFactor, null);
  assert.equal(none.topicMinInsyncReplicas, null);
  const set = loadConfig({ TOPIC_REPLICATION_FACTOR: '3', TOPIC_MIN_INSYNC_REPLICAS: '2' });
  assert.equal(set.topicReplicationFactor, 3);
  assert.equal(set.topicMinInsyncReplicas, 2);
  assert.equal(loadConfig({ TOPIC_REPLICATION_FACTOR: ' ' }).topicReplicationFactor, null, 'blank is unset');
  // Only one of them: the other is the broker's default, checked against the cluster (below).
  assert.equal(loadConfig({ TOPIC_MIN_INSYNC_REPLICAS: '2' }).topicMinInsyncReplicas, 2);
  for (const bad of ['0', '-1', 'three', '2.5', '40000']) {
    assert.throws(() => loadConfig({ TOPIC_REPLICATION_FACTOR: bad }), isConfigError('TOPIC_REPLICATION_FACTOR', /TOPIC_REPLICATION_FACTOR: /), bad);
    assert.throws(() => loadConfig({ TOPIC_MIN_INSYNC_REPLICAS: bad }), isConfigError('TOPIC_MIN_INSYNC_REPLICAS', /TOPIC_MIN_INSYNC_REPLICAS: /), bad);
  }
  assert.throws(() => loadConfig({ TOPIC_REPLICATION_FACTOR: '2', TOPIC_MIN_INSYNC_REPLICAS: '3' }),
    isConfigError('TOPIC_MIN_INSYNC_REPLICAS', /3 is more than TOPIC_REPLICATION_FACTOR \(2\)/));
});

test('topicSpecs: every topic, the changelog included, gets the replication factor and min.insync.replicas', () => {
  const cfg = loadConfig({ TOPIC_REPLICATION_FACTOR: '3', TOPIC_MIN_INSYNC_REPLICAS: '2', TOPIC_PREFIX: 'x.' });
  const specs = topicSpecs(cfg);
  const names = Object.values(topicNames(cfg));
  assert.deepEqual(specs.map((s) => s.topic).sort(), [...names].sort(), 'one spec per topic name');
  assert.ok(names.includes(topicNames(cfg).trackerChangelog));
  for (const s of specs) {
    assert.equal(s.replicationFactor, 3, s.topic);
    const entries = s.configEntries ?? [];
    assert.deepEqual(entries.filter((e) => e.name === 'min.insync.replicas'), [{ name: 'min.insync.replicas', value: '2' }], s.topic);
  }
  // The topic's own settings stay (the changelog is still compacted).
  const changelog = specs.find((s) => s.topic === topicNames(cfg).trackerChangelog)!;
  assert.ok(changelog.configEntries!.some((e) => e.name === 'cleanup.policy' && e.value === 'compact'));

  // Unset: no replication factor (kafkajs sends -1, the broker's default) and no min.insync entry.
  for (const s of topicSpecs(loadConfig({}))) {
    assert.equal(s.replicationFactor, undefined, s.topic);
    assert.ok(!(s.configEntries ?? []).some((e) => e.name === 'min.insync.replicas'), s.topic);
  }
  // replicated() does not touch the spec it is given.
  const spec = { topic: 't', numPartitions: 1, configEntries: [{ name: 'a', value: 'b' }] };
  const r = replicated(spec, cfg);
  assert.equal(spec.configEntries.length, 1);
  assert.equal(r.configEntries!.length, 2);
});

/** An Admin that answers describeCluster and describeConfigs (broker defaults) only. */
function fakeAdmin(brokers: number, defaults: Record<string, string>): Admin {
  return {
    describeCluster: async () => ({
      brokers: Array.from({ length: brokers }, (_, i) => ({ nodeId: i + 1, host: '127.0.0.1', port: 9092 + i })), controller: 1, clusterId: 'c',
    }),
    describeConfigs: async ({ resources }: { resources: { configNames?: string[] }[] }) => ({
      throttleTime: 0,
      resources: [{
        errorCode: 0, errorMessage: null, resourceName: '1', resourceType: 4,
        configEntries: (resources[0]!.configNames ?? []).filter((n) => n in defaults).map((n) => ({
          configName: n, configValue: defaults[n]!, isDefault: false, configSource: 5, isSensitive: false, readOnly: true, configSynonyms: [],
        })),
      }],
    }),
  } as unknown as Admin;
}

test('checkReplication: a replication factor above the brokers is refused, naming the variable and the broker count', async () => {
  const one = fakeAdmin(1, { 'default.replication.factor': '1', 'min.insync.replicas': '1' });
  await assert.rejects(checkReplication(one, { topicReplicationFactor: 3 }),
    isConfigError('TOPIC_REPLICATION_FACTOR', /^TOPIC_REPLICATION_FACTOR: 3 replicas requested, but the cluster at KAFKA_BROKERS has 1 broker available \(node 1\).*at most 1/));
  assert.deepEqual(await checkReplication(one, {}), { brokers: 1, replicationFactor: 1, minInsyncReplicas: 1 });
  assert.deepEqual(await checkReplication(one, { topicReplicationFactor: 1, topicMinInsyncReplicas: 1 }), { brokers: 1, replicationFactor: 1, minInsyncReplicas: 1 });

  // Unset, with a broker default larger than the cluster (a broker of a bigger cluster's config).
  await assert.rejects(checkReplication(fakeAdmin(2, { 'default.replication.factor': '3' }), {}),
    isConfigError('TOPIC_REPLICATION_FACTOR', /unset, so the broker's default\.replication\.factor \(3\) applies, but the cluster at KAFKA_BROKERS has 2 brokers available \(nodes 1, 2\)/));

  const three = fakeAdmin(3, { 'default.replication.factor': '1', 'min.insync.replicas': '1' });
  assert.deepEqual(await checkReplication(three, { topicReplicationFactor: 3, topicMinInsyncReplicas: 2 }), { brokers: 3, replicationFactor: 3, minInsyncReplicas: 2 });
  // min.insync above the replication factor: the variable's, or the broker default's.
  await assert.rejects(checkReplication(three, { topicMinInsyncReplicas: 2 }),
    isConfigError('TOPIC_MIN_INSYNC_REPLICAS', /^TOPIC_MIN_INSYNC_REPLICAS: 2 is more than the replication factor \(1, the broker's default\.replication\.factor\)/));
  await assert.rejects(checkReplication(fakeAdmin(3, { 'default.replication.factor': '3', 'min.insync.replicas': '2' }), { topicReplicationFactor: 1 }),
    isConfigError('TOPIC_MIN_INSYNC_REPLICAS', /unset, so the broker's min\.insync\.replicas \(2\) applies, which is more than the replication factor \(1\)/));
});
