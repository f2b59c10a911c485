// RecordCodec.encodeBuilt (the tracker's sealed conversations in JSON, without the reader's copy)
// writes byte for byte what encode writes: for every conversation the rules seal from the bundled
// IRC sample, in gap mode and in thread mode (messages carrying their links), with messages as the
// codec decodes them and as the layout restores them from their records.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { RecordCodec } from '../../src/records/codec';
import { topicNames } from '../../src/topics';
import type { RulesConfig } from '../../src/sessionization/rules';
import type { ConversationSealed } from '../../src/records/types';
import { decodeMessage, encodeMessage } from '../../src/processors/chat-state-layout';
import { expectedOutcome } from '../support/backlog';
import { addressLinker } from '../support/thread-linker';
import { IRC_SAMPLE } from '../support/harness';

const codec = new RecordCodec({ registryUrl: null, topics: topicNames({ topicPrefix: '', appId: 'chatstats' }) });
const messages = readFileSync(IRC_SAMPLE, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => codec.decodeJson('ChatMessage', Buffer.from(l)));

const rules = (threads: boolean): RulesConfig => ({
  gapMs: 90 * 60_000, gapByTypeMs: {}, graceMs: 0, settleMs: 0, maxMessages: 200, maxBytes: 1e9, maxFutureSkewMs: 1e12,
  modeByType: threads ? { group: 'threads' } : {}, threadLinker: threads ? addressLinker : null,
});

async function sameBytes(conversations: ConversationSealed[]): Promise<number> {
  let messagesSeen = 0;
  for (const c of conversations) {
    const want = (await codec.encode('ConversationSealed', c)).toString('utf8');
    assert.equal((await codec.encodeBuilt('ConversationSealed', c)).toString('utf8'), want, c.conversation_id);
    // The same conversation with its messages restored from the layout's records.
    const restored = { ...c, messages: c.messages.map((m, i) => decodeMessage(c.chat_id, encodeMessage(m, 0, i, 0)).m) };
    assert.equal((await codec.encodeBuilt('ConversationSealed', restored)).toString('utf8'), want, `${c.conversation_id}, restored`);
    messagesSeen += c.messages.length;
  }
  return messagesSeen;
}

test('gap mode: every sealed IRC conversation, byte for byte', async () => {
  const { conversations, duplicates, late } = expectedOutcome(messages, rules(false));
  assert.ok(conversations.length > 50);
  assert.equal(await sameBytes(conversations) + duplicates + late.length, messages.length, 'every message seen once');
});

test('thread mode: links included, byte for byte', async () => {
  const { conversations } = expectedOutcome(messages, rules(true));
  const linked = conversations.flatMap((c) => c.messages).filter((m) => m.linked_message_id !== undefined).length;
  assert.ok(linked > 100, `${linked} messages carry a link`);
  await sameBytes(conversations);
});
