// History imported into a live tracker (SPEC section 2, rule 2's settle time, and duplicates):
// the bundled IRC sample produced in batches into a tracker that is already caught up, with pauses
// between batches shorter than CONVERSATION_SETTLE, gives exactly the backlog's conversations
// (data/irc/README.md); produced a second time, it adds no conversation, its placed messages are
// counted as duplicates, and the late ones are late again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isolatedEnv, configOf, testKafka, waitFor, sleep, IRC_SAMPLE } from '../support/harness';
import { readTopic, sealedAndLate as readSealedAndLate } from '../support/topic-reader';
import { startApp, type App } from '../../src/app';
import { ensureTopics, topicNames } from '../../src/topics';
import { RecordCodec } from '../../src/records/codec';
import { ChatMessageProducer } from '../../src/producer';
import { parseChatMessageJson } from '../../src/records/validate';
import { registry } from '../../src/metrics';
import type { ChatMessage, ConversationSealed } from '../../src/records/types';

process.env.LOG_LEVEL ??= 'warn';
// The pauses (2 s) are well inside the settle time (10 s), and each conversation's deadline is
// years in the past: without the settle rule every pause would seal what had arrived so far.
const SETTLE = '10s';
const PAUSE_MS = 2000;
const BATCH = 1000;
const env = isolatedEnv('live-import', { PUNCTUATE_INTERVAL: '200ms', CONVERSATION_SETTLE: SETTLE });
const cfg = configOf(env);
const topics = topicNames(cfg);
const kafka = testKafka();
const codec = new RecordCodec({ registryUrl: null, topics });
const apps: App[] = [];
after(async () => { for (const a of apps) await a.stop().catch(() => undefined); });

const sealedAndLate = () => readSealedAndLate(kafka, codec, topics);

async function counter(name: string): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  return (metric?.values ?? []).reduce((s, v) => s + v.value, 0);
}

async function produceInBatches(messages: ChatMessage[]): Promise<void> {
  const producer = new ChatMessageProducer({ kafka, codec });
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += BATCH) {
      await producer.send(messages.slice(i, i + BATCH));
      if (i + BATCH < messages.length) await sleep(PAUSE_MS);
    }
  } finally {
    await producer.disconnect();
  }
}

test('the IRC sample imported into a caught-up tracker in batches gives the backlog\'s conversations; imported again, only duplicates', { timeout: 240_000 }, async () => {
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, cfg);
  await admin.disconnect();
  const messages = readFileSync(IRC_SAMPLE, 'utf8').split('\n').filter((l) => l.trim()).map(parseChatMessageJson);
  assert.equal(messages.length, 14_018);

  // The tracker starts on empty topics: caught up from the start, wall-clock sealing armed.
  const app = await startApp(cfg, ['tracker']);
  apps.push(app);
  await waitFor('tracker ready', 60_000, async () => ((await app.ready()) ? true : undefined), 100);

  const started = Date.now();
  await produceInBatches(messages);
  const first = await waitFor('87 sealed and 330 late', 120_000, async () => {
    const r = await sealedAndLate();
    return r.sealed.length >= 87 && r.late.length >= 330 ? r : undefined;
  }, 500);
  await sleep(1500);
  const settled = await sealedAndLate();
  assert.equal(settled.sealed.length, 87, 'sealed conversations: the backlog\'s, not split at the batch boundaries');
  assert.equal(settled.late.length, 330, 'late messages');
  assert.equal(first.sealed.reduce((s, c) => s + c.message_count, 0), 13_688, 'messages in sealed conversations');
  console.log(`[live-import] ${messages.length} messages in ${Math.ceil(messages.length / BATCH)} batches ${PAUSE_MS} ms apart, `
    + `settle ${SETTLE}: 87 conversations sealed ${Date.now() - started} ms after the first batch`);

  // The same conversations as a replay of the same input as a backlog (ids, boundaries, messages).
  const shape = (c: ConversationSealed) => JSON.stringify({ ...c, sealed_at: 0, seal_reason: '' });
  const replayCfg = configOf({ ...env, APP_ID: `${env.APP_ID}-replay`, STATE_DIR: `${env.STATE_DIR}-replay`, TOPIC_PREFIX: `${env.TOPIC_PREFIX}replay.` });
  const replayTopics = topicNames(replayCfg);
  const a2 = kafka.admin();
  await a2.connect();
  await ensureTopics(a2, replayCfg);
  await a2.disconnect();
  const producer = new ChatMessageProducer({ kafka, codec, topic: replayTopics.messages });
  await producer.connect();
  for (let i = 0; i < messages.length; i += BATCH) await producer.send(messages.slice(i, i + BATCH));
  await producer.disconnect();
  const replay = await startApp(replayCfg, ['tracker']);
  apps.push(replay);
  const backlog = await waitFor('the backlog replay', 120_000, async () => {
    const r = await Promise.all((await readTopic(kafka, replayTopics.sealed)).map((x) => codec.decode('ConversationSealed', x.value)));
    return r.length >= 87 ? r : undefined;
  }, 500);
  await replay.stop();
  apps.pop();
  assert.deepEqual(new Set(first.sealed.map(shape)), new Set(backlog.map(shape)), 'live import and backlog give the same conversations');

  // Imported again: nothing new is sealed; every placed message is a duplicate.
  const dupsBefore = await counter('chatstats_tracker_duplicates_total');
  await produceInBatches(messages);
  await waitFor('the second import processed', 120_000, async () => {
    const dups = (await counter('chatstats_tracker_duplicates_total')) - dupsBefore;
    return dups >= 13_688 ? true : undefined;
  }, 500);
  await sleep(12_000); // past the settle time: anything the second import opened would now seal
  const again = await sealedAndLate();
  assert.equal(again.sealed.length, 87, 'the second import sealed no conversation');
  assert.equal((await counter('chatstats_tracker_duplicates_total')) - dupsBefore, 13_688, 'every placed message counted as a duplicate');
  assert.equal(again.late.length, 660, 'the 330 late messages are late again (late messages are not remembered)');
  assert.equal(await app.ready(), true);
});
