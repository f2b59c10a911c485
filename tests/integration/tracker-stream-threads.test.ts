// The tracker on two stream threads (STREAM_THREADS=2) in one process, on the real broker and
// registry: the bundled IRC sample gives the outcome data/irc/README.md states, as on one thread;
// the group has one member per thread and each thread its share of the partitions; the process's
// HTTP endpoint answers for both threads (status, chat, /metrics summed, /readyz).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { AssignerProtocol } from 'kafkajs';
import { isolatedEnv, configOf, spawnRole, waitFor, IRC_SAMPLE, REGISTRY_URL, type ChildRole } from '../support/harness';
import { endpointOf } from '../support/role-logs';
import { awaitIrcOutcome } from '../support/irc-expected';
import { trackerBed } from '../support/tracker-bed';
import { startApp } from '../../src/app';
import { ensureTopics } from '../../src/topics';
import { ChatMessageProducer } from '../../src/producer';
import { parseChatMessageJson } from '../../src/records/validate';
import type { ChatMessage } from '../../src/records/types';

process.env.LOG_LEVEL ??= 'warn';
const { cfg, topics, kafka, codec, apps, sealedAndLate } = trackerBed('threads', { SCHEMA_REGISTRY_URL: REGISTRY_URL, PUNCTUATE_INTERVAL: '200ms', STREAM_THREADS: '2' });

async function produceSample(): Promise<ChatMessage[]> {
  const all: ChatMessage[] = [];
  for await (const line of readline.createInterface({ input: createReadStream(IRC_SAMPLE) })) if (line.trim()) all.push(parseChatMessageJson(line));
  const producer = new ChatMessageProducer({ kafka, codec });
  await producer.connect();
  for (let i = 0; i < all.length; i += 1000) await producer.send(all.slice(i, i + 1000));
  await producer.disconnect();
  return all;
}

const get = async (port: number, path: string) => {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
};

test('the IRC sample through two stream threads: 87 conversations of 13,688 messages and 330 late, each once; one endpoint answers for both threads', { timeout: 150_000 }, async () => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await ensureTopics(admin, cfg);
    const messages = await produceSample();
    assert.equal(messages.length, 14_018);

    const app = await startApp(cfg, ['tracker']);
    apps.push(app);
    await awaitIrcOutcome(sealedAndLate);

    // The group: one member per thread, named by its thread, each with its share of the 6 partitions.
    const { groups } = await admin.describeGroups([`${cfg.appId}-tracker`]);
    const members = groups[0]!.members;
    assert.deepEqual(members.map((m) => m.clientId.replace(/@.*/, '')).sort(), [`${cfg.appId}-tracker-0`, `${cfg.appId}-tracker-1`]);
    const shares = members.map((m) => AssignerProtocol.MemberAssignment.decode(m.memberAssignment)?.assignment[topics.messages] ?? []);
    assert.ok(shares.every((s) => s.length > 0), `each thread has partitions: ${JSON.stringify(shares)}`);
    assert.deepEqual(shares.flat().sort((a, b) => a - b), [0, 1, 2, 3, 4, 5]);

    // The process's endpoint answers for both threads: every partition once, running.
    const status = JSON.parse((await get(app.port, '/v1/tracker/status')).body) as { partitions: { partition: number; state: string; open_conversations: number | null }[] };
    assert.deepEqual(status.partitions.map((p) => p.partition), [0, 1, 2, 3, 4, 5]);
    assert.ok(status.partitions.every((p) => p.state === 'running' && p.open_conversations === 0), JSON.stringify(status.partitions));
    // A chat's query reaches the thread that owns its partition.
    const chat = messages[0]!.chat_id;
    const view = JSON.parse((await get(app.port, `/v1/tracker/chat?chat_id=${encodeURIComponent(chat)}&partitions=6`)).body) as { owned: boolean; known: boolean };
    assert.equal(view.owned, true);
    assert.equal(view.known, true);
    // /metrics sums the threads' series; the process metrics appear once, from the main thread.
    const metrics = (await get(app.port, '/metrics')).body;
    assert.match(metrics, /^chatstats_tasks\{state="running"\} 6$/m);
    assert.equal(metrics.match(/^process_resident_memory_bytes /gm)?.length, 1);
    // Per-partition series are published by the partition's owner alone: a thread that handed a
    // partition over in a rebalance removed its own (summed, the two would read 2).
    const caughtUp = [...metrics.matchAll(/^chatstats_partition_caught_up\{partition="(\d+)"\} (\S+)$/gm)].map((m) => [Number(m[1]), Number(m[2])]);
    assert.deepEqual(caughtUp.sort((a, b) => a[0]! - b[0]!), [0, 1, 2, 3, 4, 5].map((p) => [p, 1]), 'each partition caught up, once');
    const sealedTotal = [...metrics.matchAll(/^chatstats_conversations_sealed_total\{[^}]*\} (\d+)$/gm)].reduce((s, m) => s + Number(m[1]), 0);
    assert.equal(sealedTotal, 87, 'conversations sealed, summed over the threads');
    assert.equal((await get(app.port, '/readyz')).status, 200);
    await app.stop();
    apps.pop();
  } finally {
    await admin.disconnect();
  }
});

test('a partition handed to another instance in a rebalance takes its per-partition series with it', { timeout: 120_000 }, async () => {
  // Two processes, so that each has its own /metrics: the first owns every partition, then shares
  // them with the second. The first must stop publishing the partitions it gave away (within one
  // process, stream threads' series are summed, and a stale one would add to the new owner's).
  const env2 = isolatedEnv('handover', { SCHEMA_REGISTRY_URL: REGISTRY_URL, PUNCTUATE_INTERVAL: '200ms', LOG_LEVEL: 'info' });
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, configOf(env2)).finally(() => admin.disconnect());
  const caughtUpSeries = async (child: ChildRole) => {
    const endpoint = endpointOf(child);
    if (!endpoint) return undefined;
    const text = await (await fetch(`http://${endpoint}/metrics`)).text().catch(() => '');
    return [...text.matchAll(/^chatstats_partition_caught_up\{partition="(\d+)"\} 1$/gm)].map((m) => Number(m[1])).sort((a, b) => a - b);
  };
  const first = spawnRole('tracker', env2);
  const second = spawnRole('tracker', { ...env2, STATE_DIR: mkdtempSync(path.join(os.tmpdir(), 'chatstats-handover-b-')) });
  second.kill('SIGSTOP'); // joins only once the first has every partition
  try {
    await waitFor('the first instance caught up on all 6 partitions', 60_000, async () => ((await caughtUpSeries(first))?.length === 6 ? true : undefined), 250);
    second.kill('SIGCONT');
    const [a, b] = await waitFor('each instance publishing only the partitions it owns', 60_000, async () => {
      const a = await caughtUpSeries(first);
      const b = await caughtUpSeries(second);
      return a && b && a.length > 0 && b.length > 0 && a.length + b.length === 6 ? [a, b] : undefined;
    }, 250);
    assert.deepEqual([...a, ...b].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5]);
  } finally {
    for (const c of [first, second]) c.kill('SIGCONT');
    for (const c of [first, second]) c.kill('SIGTERM');
    await Promise.all([first.exited, second.exited]);
  }
});

test('a stream thread that cannot start fails the start, naming its reason', { timeout: 60_000 }, async () => {
  // Provisioning (the main thread) needs only Kafka; each thread registers the schemas itself.
  const bad = configOf(isolatedEnv('threads-fail', { STREAM_THREADS: '2', SCHEMA_REGISTRY_URL: 'http://127.0.0.1:1/apis/ccompat/v7' }));
  await assert.rejects(startApp(bad, ['tracker']), /stream thread \d failed to start: .*schema registry http:\/\/127\.0\.0\.1:1\/apis\/ccompat\/v7 unreachable/);
});
