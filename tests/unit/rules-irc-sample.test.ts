// The bundled IRC sample (data/irc) through the sessionization rules alone, with the default
// configuration: the figures data/irc/README.md states, and issue 12's three cases on real, untidy
// data (ubuntu-meeting.2's 12-hour clock jumps back twice).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadConfig } from '../../src/config';
import type { ChatMessage } from '../../src/records/types';
import { emptyChatState, rulesConfigFrom, step, type ChatEvent, type ChatState, type Output } from '../../src/sessionization/rules';

const FILE = resolve(__dirname, '../../../data/irc/irc-new-domains.messages.jsonl');
const cfg = rulesConfigFrom(loadConfig({}));

function messages(): ChatMessage[] {
  return readFileSync(FILE, 'utf8').split('\n').filter((l) => l.trim() !== '').map((line) => {
    const r = JSON.parse(line) as Record<string, unknown>;
    return {
      message_id: r.message_id as string,
      chat_id: r.chat_id as string,
      sender_id: r.sender_id as string,
      sent_at: typeof r.sent_at === 'number' ? r.sent_at : Date.parse(r.sent_at as string),
      text: (r.text as string | null | undefined) ?? null,
      chat_type: (r.chat_type as string | null | undefined) ?? null,
      is_from_me: r.is_from_me === true,
      reply_to_message_id: (r.reply_to_message_id as string | null | undefined) ?? null,
      account_id: (r.account_id as string | null | undefined) ?? null,
    };
  });
}

/** A partition's worth of chats driven by the rules. */
class Tracker {
  readonly states = new Map<string, ChatState>();
  readonly outputs: Output[] = [];
  now = Date.UTC(2026, 11, 1);

  private apply(chat: string, event: ChatEvent): Output[] {
    const r = step(this.states.get(chat) ?? emptyChatState(chat), event, cfg);
    this.states.set(chat, r.state);
    this.outputs.push(...r.outputs);
    return r.outputs;
  }

  /** Produces the messages in batches, with a caught-up punctuation tick after each pause. */
  produce(ms: ChatMessage[], batch = ms.length, pauseMs = 0): Output[] {
    const out: Output[] = [];
    for (let i = 0; i < ms.length; i += batch) {
      for (const m of ms.slice(i, i + batch)) out.push(...this.apply(m.chat_id, { type: 'message', message: m, now: ++this.now }));
      if (pauseMs > 0 && i + batch < ms.length) out.push(...this.tick(pauseMs));
    }
    return out;
  }

  tick(afterMs: number): Output[] {
    this.now += afterMs;
    const out: Output[] = [];
    for (const chat of [...this.states.keys()]) out.push(...this.apply(chat, { type: 'tick', now: this.now, caughtUp: true }));
    return out;
  }
}

function tally(outputs: Output[]) {
  const t = { conversations: 0, NEXT_MESSAGE: 0, GAP_TIMEOUT: 0, FORCED: 0, MAX_SIZE: 0, sealedMessages: 0, late: 0, duplicate: 0, invalid: 0 };
  for (const o of outputs) {
    if (o.kind === 'sealed') {
      t.conversations++;
      t[o.conversation.seal_reason]++;
      t.sealedMessages += o.conversation.message_count;
    } else {
      t[o.kind]++;
    }
  }
  return t;
}

function conversations(outputs: Output[]): Array<[string, string[]]> {
  return outputs
    .flatMap((o) => (o.kind === 'sealed' ? [[o.conversation.conversation_id, o.conversation.messages.map((m) => m.message_id)] as [string, string[]]] : []))
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

describe('the bundled IRC sample through the rules (defaults: 90m gap, no grace, 1m settle)', () => {
  const ms = messages();

  test('in file order as a backlog: 87 conversations (74 NEXT_MESSAGE, 13 GAP_TIMEOUT), 13,688 messages, 330 late', () => {
    assert.equal(ms.length, 14_018);
    const t = new Tracker();
    t.produce(ms);
    t.tick(3_600_000);
    assert.deepEqual(tally(t.outputs), {
      conversations: 87, NEXT_MESSAGE: 74, GAP_TIMEOUT: 13, FORCED: 0, MAX_SIZE: 0, sealedMessages: 13_688, late: 330, duplicate: 0, invalid: 0,
    });
    const lateChats = new Set(t.outputs.flatMap((o) => (o.kind === 'late' ? [o.late.message.chat_id] : [])));
    assert.deepEqual([...lateChats], ['irc:ubuntu-meeting.2']);
  });

  test('produced a second time: no conversation added, 13,688 duplicates, the 330 late ones late again', () => {
    const t = new Tracker();
    t.produce(ms);
    t.tick(3_600_000);
    const again = t.produce(ms);
    again.push(...t.tick(3_600_000));
    assert.deepEqual(tally(again), {
      conversations: 0, NEXT_MESSAGE: 0, GAP_TIMEOUT: 0, FORCED: 0, MAX_SIZE: 0, sealedMessages: 0, late: 330, duplicate: 13_688, invalid: 0,
    });
  });

  test('produced into a live, caught-up tracker in batches of 1,000 two seconds apart: exactly the backlog\'s conversations', () => {
    const backlog = new Tracker();
    backlog.produce(ms);
    backlog.tick(3_600_000);
    const live = new Tracker();
    live.produce(ms, 1000, 2000);
    live.tick(3_600_000);
    assert.deepEqual(tally(live.outputs), tally(backlog.outputs));
    assert.deepEqual(conversations(live.outputs), conversations(backlog.outputs));
  });
});
