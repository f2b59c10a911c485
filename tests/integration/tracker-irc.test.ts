// The bundled IRC sample through the real tracker on the real broker and registry: exactly the
// outcome data/irc/README.md states, and the same conversations again from a fresh replay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import readline from 'node:readline';
import { configOf, waitFor, IRC_SAMPLE, REGISTRY_URL } from '../support/harness';
import { awaitIrcOutcome } from '../support/irc-expected';
import { trackerBed } from '../support/tracker-bed';
import { startApp } from '../../src/app';
import { ensureTopics } from '../../src/topics';
import { ChatMessageProducer } from '../../src/producer';
import { parseChatMessageJson } from '../../src/records/validate';
import type { ConversationSealed } from '../../src/records/types';

process.env.LOG_LEVEL ??= 'warn';
const { env, cfg, kafka, codec, apps, sealedAndLate } = trackerBed('irc', { SCHEMA_REGISTRY_URL: REGISTRY_URL, PUNCTUATE_INTERVAL: '200ms' });

test('the IRC sample gives 87 conversations of 13,688 messages and 330 late messages', async () => {
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, cfg);
  await admin.disconnect();

  const producer = new ChatMessageProducer({ kafka, codec });
  await producer.connect();
  const lines = readline.createInterface({ input: createReadStream(IRC_SAMPLE) });
  let batch = [];
  let total = 0;
  for await (const line of lines) {
    if (!line.trim()) continue;
    batch.push(parseChatMessageJson(line));
    if (batch.length === 1000) { await producer.send(batch); total += batch.length; batch = []; }
  }
  if (batch.length) { await producer.send(batch); total += batch.length; }
  await producer.disconnect();
  assert.equal(total, 14_018);

  const app = await startApp(cfg, ['tracker']);
  apps.push(app);
  const { sealed, late } = await awaitIrcOutcome(sealedAndLate);
  assert.deepEqual([...new Set(late.map((l) => l.message.chat_id))], ['irc:ubuntu-meeting.2']);
  assert.ok(late.every((l) => l.would_be_conversation_id !== null), 'every late message names the conversation it would have joined');
  // Each of the 12 chats' last conversation is sealed by the wall clock once caught up, and so is
  // the last conversation of ubuntu-meeting.2's stretch behind its clock jump (nothing later in
  // that stretch arrives to prove its gap).
  assert.equal(sealed.filter((c) => c.seal_reason === 'GAP_TIMEOUT').length, 13);
  assert.equal(await app.ready(), true);
  await app.stop();
  apps.pop();

  // A fresh processor (new application id, new state) replaying the same input topic produces
  // exactly the same conversations: ids, boundaries, counts and message lists.
  const replayCfg = configOf({ ...env, APP_ID: `${env.APP_ID}-replay`, STATE_DIR: `${env.STATE_DIR}-replay` });
  const replay = await startApp(replayCfg, ['tracker']);
  apps.push(replay);
  const both = await waitFor('the replay', 90_000, async () => {
    const r = await sealedAndLate();
    return r.sealed.length >= 174 && r.late.length >= 660 ? r : undefined;
  }, 500);
  const shape = (c: ConversationSealed) => JSON.stringify({ ...c, sealed_at: 0 });
  const first = new Set(both.sealed.slice(0, 0).map(shape));
  for (const c of sealed) first.add(shape(c));
  const ids = new Map<string, number>();
  for (const c of both.sealed) ids.set(c.conversation_id, (ids.get(c.conversation_id) ?? 0) + 1);
  assert.equal(ids.size, 87);
  assert.ok([...ids.values()].every((n) => n === 2));
  const replayed = both.sealed.filter((c) => !sealed.some((s) => s.conversation_id === c.conversation_id && s.sealed_at === c.sealed_at));
  assert.equal(replayed.length, 87);
  assert.deepEqual(new Set(replayed.map(shape)), first);
});
