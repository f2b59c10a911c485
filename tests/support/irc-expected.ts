// What the bundled IRC sample gives through the sessionization rules, as data/irc/README.md states
// it: the one place these figures live. When the rules change, the README's "Expected outcome"
// changes, and every test reading IRC_EXPECTED follows.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sleep, waitFor } from './harness';
import type { ConversationSealed, LateMessage } from '../../src/records/types';

export interface IrcExpected {
  /** Messages in the file (all valid). */
  input: number;
  /** Chats (log files) in the file. */
  chats: number;
  conversations: number;
  /** Messages in the sealed conversations. */
  messages: number;
  late: number;
  /** Seal reasons, as the README states them. */
  reasons: { NEXT_MESSAGE: number; GAP_TIMEOUT: number };
}

const num = (s: string) => Number(s.replace(/,/g, ''));

export function parseIrcReadme(text: string): IrcExpected {
  const flat = text.replace(/\s+/g, ' ');
  const outcome = /\*\*([\d,]+) sealed conversations \(([\d,]+) NEXT_MESSAGE, ([\d,]+) GAP_TIMEOUT\) holding ([\d,]+) messages, and ([\d,]+) late messages\*\*/.exec(flat);
  const size = /([\d,]+) messages, ([\d,]+) chats\./.exec(flat);
  if (!outcome || !size) {
    throw new Error('data/irc/README.md no longer states "**N sealed conversations (X NEXT_MESSAGE, Y GAP_TIMEOUT) holding M messages, and L late messages**" '
      + 'and "N messages, C chats." (tests/support/irc-expected.ts reads the expected figures from there)');
  }
  const conversations = num(outcome[1]!);
  const reasons = { NEXT_MESSAGE: num(outcome[2]!), GAP_TIMEOUT: num(outcome[3]!) };
  if (reasons.NEXT_MESSAGE + reasons.GAP_TIMEOUT !== conversations) throw new Error('data/irc/README.md: the seal reasons do not add up to the conversations');
  return {
    input: num(size[1]!), chats: num(size[2]!), conversations, messages: num(outcome[4]!), late: num(outcome[5]!), reasons,
  };
}

export const IRC_EXPECTED: IrcExpected = parseIrcReadme(readFileSync(path.resolve(__dirname, '../../../data/irc/README.md'), 'utf8'));

/** 13069 → "13,069", as the demo prints numbers. */
export const fmt = (n: number) => n.toLocaleString('en');

/**
 * Waits until the tracker has sealed the README's conversations and late messages of the sample,
 * checks that nothing more comes, and that each input message is in exactly one place (one
 * conversation, or the late topic) and every conversation is whole. Returns what was read.
 */
export async function awaitIrcOutcome(read: () => Promise<{ sealed: ConversationSealed[]; late: LateMessage[] }>): Promise<{ sealed: ConversationSealed[]; late: LateMessage[] }> {
  const e = IRC_EXPECTED;
  const { sealed, late } = await waitFor(`${e.conversations} sealed and ${e.late} late`, 90_000, async () => {
    const r = await read();
    return r.sealed.length >= e.conversations && r.late.length >= e.late ? r : undefined;
  }, 500);
  // Nothing more arrives once everything is sealed.
  await sleep(1500);
  const again = await read();
  assert.equal(again.sealed.length, e.conversations, 'sealed conversations');
  assert.equal(again.late.length, e.late, 'late messages');
  assert.equal(sealed.reduce((s, c) => s + c.message_count, 0), e.messages, 'messages in sealed conversations');
  assert.equal(new Set(sealed.map((c) => c.conversation_id)).size, e.conversations, 'conversation ids are unique');
  for (const c of sealed) {
    assert.equal(c.messages.length, c.message_count);
    assert.equal(c.messages[0]!.sent_at, c.started_at);
    assert.equal(c.messages.at(-1)!.sent_at, c.ended_at);
    assert.ok(['NEXT_MESSAGE', 'GAP_TIMEOUT'].includes(c.seal_reason), c.seal_reason);
  }
  const seen = new Set<string>();
  for (const c of sealed) for (const m of c.messages) { assert.ok(!seen.has(m.message_id), m.message_id); seen.add(m.message_id); }
  for (const l of late) { assert.ok(!seen.has(l.message.message_id), l.message.message_id); seen.add(l.message.message_id); }
  assert.equal(seen.size, e.input, 'every input message once');
  return { sealed, late };
}
