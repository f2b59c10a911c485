import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChatMessage, ConversationSealed, LateMessage } from '../../src/records/types';
import {
  SEALED_HISTORY, STATE_VERSION, conversationId, decodeState, emptyChatState, encodeState, messageBytes, nextDeadline,
  openConversations, step, type ChatEvent, type ChatState, type Output, type RulesConfig,
} from '../../src/sessionization/rules';

const GAP = 100;
const BIG = 1_000_000_000;
/** CONVERSATION_SETTLE's default. Against the millisecond gaps of these tests, gap + grace is the settle time in force. */
const SETTLE = 60_000;

function cfgWith(over: Partial<RulesConfig> = {}): RulesConfig {
  return { gapMs: GAP, gapByTypeMs: {}, graceMs: 0, settleMs: SETTLE, maxMessages: BIG, maxBytes: BIG, maxFutureSkewMs: BIG, ...over };
}

let counter = 0;
function msg(sentAt: number, over: Partial<ChatMessage> = {}): ChatMessage {
  counter++;
  return {
    message_id: `m${counter}`, chat_id: 'chat-1', sender_id: 'alice', sent_at: sentAt, text: `hello ${counter}`,
    chat_type: null, is_from_me: false, reply_to_message_id: null, account_id: null, ...over,
  };
}

/** Feeds events to one chat and collects every output. */
class Chat {
  state: ChatState;
  outputs: Output[] = [];
  constructor(readonly cfg: RulesConfig, chatId = 'chat-1') { this.state = emptyChatState(chatId); }
  apply(event: ChatEvent): Output[] {
    const r = step(this.state, event, this.cfg);
    this.state = r.state;
    this.outputs.push(...r.outputs);
    return r.outputs;
  }
  send(m: ChatMessage, now = m.sent_at): Output[] { return this.apply({ type: 'message', message: m, now }); }
  tick(now: number, caughtUp = true): Output[] { return this.apply({ type: 'tick', now, caughtUp }); }
  force(now: number): Output[] { return this.apply({ type: 'force', now }); }
}

function sealedOf(outputs: Output[]): ConversationSealed[] {
  return outputs.flatMap((o) => (o.kind === 'sealed' ? [o.conversation] : []));
}
function lateOf(outputs: Output[]): LateMessage[] {
  return outputs.flatMap((o) => (o.kind === 'late' ? [o.late] : []));
}
function ids(c: ConversationSealed): string[] { return c.messages.map((m) => m.message_id); }
function spans(chat: Chat): Array<[number, number, number]> {
  return openConversations(chat.state, chat.cfg).map((c) => [c.startedAt, c.endedAt, c.messageCount]);
}

describe('joining and the gap', () => {
  test('a step of exactly the gap joins', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(1000));
    assert.deepEqual(chat.send(msg(1000 + GAP)), []);
    assert.deepEqual(spans(chat), [[1000, 1000 + GAP, 2]]);
  });

  test('a step of gap + 1 ms opens a new conversation and seals the old one (NEXT_MESSAGE)', () => {
    const chat = new Chat(cfgWith());
    const a = msg(1000);
    const b = msg(1000 + GAP + 1);
    chat.send(a);
    const out = chat.send(b, 5000);
    const [sealed] = sealedOf(out);
    assert.equal(out.length, 1);
    assert.equal(sealed!.seal_reason, 'NEXT_MESSAGE');
    assert.deepEqual(ids(sealed!), [a.message_id]);
    assert.equal(sealed!.sealed_at, 5000);
    assert.deepEqual(spans(chat), [[1000 + GAP + 1, 1000 + GAP + 1, 1]]);
  });

  test('backwards: a message exactly the gap before the start joins, gap + 1 before does not', () => {
    const chat = new Chat(cfgWith({ graceMs: 1000 }));
    chat.send(msg(5000));
    chat.send(msg(5000 - GAP));
    assert.deepEqual(spans(chat), [[5000 - GAP, 5000, 2]]);
    chat.send(msg(5000 - 2 * GAP - 1));
    assert.deepEqual(spans(chat), [[5000 - 2 * GAP - 1, 5000 - 2 * GAP - 1, 1], [5000 - GAP, 5000, 2]]);
  });

  test('a message within the gap of two open conversations merges them', () => {
    const chat = new Chat(cfgWith({ graceMs: 1000 }));
    const a = msg(1000);
    const b = msg(1200);
    const c = msg(1250);
    chat.send(a);
    chat.send(b);
    chat.send(c);
    assert.deepEqual(spans(chat), [[1000, 1000, 1], [1200, 1250, 2]]);
    const mid = msg(1100);
    assert.deepEqual(chat.send(mid), []);
    assert.deepEqual(spans(chat), [[1000, 1250, 4]]);
    const [sealed] = sealedOf(chat.force(9999));
    assert.deepEqual(ids(sealed!), [a, mid, b, c].map((m) => m.message_id));
    assert.equal(sealed!.conversation_id, conversationId('chat-1', 1000, a.message_id));
  });

  test('a merge that moves the start changes the id to the new start and first message', () => {
    const chat = new Chat(cfgWith({ graceMs: 1000 }));
    chat.send(msg(1200));
    chat.send(msg(1400));
    const early = msg(1150);
    chat.send(early);
    const bridge = msg(1300);
    chat.send(bridge);
    const [sealed] = sealedOf(chat.force(5000));
    assert.equal(sealed!.started_at, 1150);
    assert.equal(sealed!.conversation_id, conversationId('chat-1', 1150, early.message_id));
    assert.equal(sealed!.message_count, 4);
  });

  test('one chat never seals another chat', () => {
    const cfg = cfgWith();
    const one = new Chat(cfg, 'chat-1');
    const two = new Chat(cfg, 'chat-2');
    one.send(msg(1000));
    two.send(msg(1_000_000, { chat_id: 'chat-2' }));
    assert.deepEqual(one.outputs, []);
    assert.deepEqual(spans(one), [[1000, 1000, 1]]);
  });
});

describe('sealed conversation fields', () => {
  test('messages in sent_at order with ties in arrival order, participants, account, ids', () => {
    const chat = new Chat(cfgWith({ gapByTypeMs: { group: 300 } }));
    const m1 = msg(1050, { sender_id: 'bob', chat_type: 'group' });
    const m2 = msg(1000, { sender_id: 'alice', account_id: 'acct-7' });
    const m3 = msg(1050, { sender_id: 'carol', account_id: 'acct-9' });
    const m4 = msg(1000, { sender_id: 'bob' });
    const m5 = msg(1100, { sender_id: 'alice' });
    for (const m of [m1, m2, m3, m4, m5]) chat.send(m);
    const [c] = sealedOf(chat.force(777));
    assert.deepEqual(ids(c!), [m2, m4, m1, m3, m5].map((m) => m.message_id));
    assert.deepEqual(c!.participant_ids, ['alice', 'bob', 'carol']);
    assert.equal(c!.account_id, 'acct-7');
    assert.equal(c!.first_message_id, m2.message_id);
    assert.equal(c!.last_message_id, m5.message_id);
    assert.equal(c!.started_at, 1000);
    assert.equal(c!.ended_at, 1100);
    assert.equal(c!.message_count, 5);
    assert.equal(c!.chat_id, 'chat-1');
    assert.equal(c!.chat_type, 'group');
    assert.equal(c!.gap_ms, 300);
    assert.equal(c!.sealed_at, 777);
    assert.equal(c!.seal_reason, 'FORCED');
    assert.equal(c!.continues_conversation_id, null);
    assert.equal(c!.conversation_id, conversationId('chat-1', 1000, m2.message_id));
  });

  test('account_id is null when no message has one', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(1));
    assert.equal(sealedOf(chat.force(2))[0]!.account_id, null);
  });
});

describe('duplicates', () => {
  test('a message id already in an open conversation is a duplicate and changes nothing', () => {
    const chat = new Chat(cfgWith());
    const a = msg(1000);
    chat.send(a);
    chat.send(msg(1010));
    const before = encodeState(chat.state);
    const copy = { ...a, sent_at: 1050, text: 'edited' };
    const out = chat.send(copy);
    assert.deepEqual(out, [{ kind: 'duplicate', message: copy }]);
    assert.deepEqual(encodeState(chat.state), before);
    assert.equal(sealedOf(chat.force(2000))[0]!.message_count, 2);
  });

  test('duplicates are detected after a decode too (the index is rebuilt)', () => {
    const chat = new Chat(cfgWith());
    const a = msg(1000);
    chat.send(a);
    chat.state = decodeState(encodeState(chat.state));
    assert.equal(chat.send({ ...a })[0]!.kind, 'duplicate');
  });

  // Changed by sessionization v2: an id of a remembered sealed conversation used to be judged by the
  // late check (and came out late); it is now a duplicate.
  test('an id seen in a remembered sealed conversation is a duplicate, not late, and changes nothing', () => {
    const chat = new Chat(cfgWith());
    const a = msg(1000);
    chat.send(a);
    chat.force(1001);
    const before = encodeState(chat.state);
    const again = { ...a };
    assert.deepEqual(chat.send(again, 5000), [{ kind: 'duplicate', message: again }]);
    // Even with another sent_at (one that would otherwise be placed): the id decides.
    const moved = { ...a, sent_at: 3000 };
    assert.deepEqual(chat.send(moved, 5000), [{ kind: 'duplicate', message: moved }]);
    assert.deepEqual(encodeState(chat.state), before);
  });

  test('sealed summaries carry their message ids', () => {
    const chat = new Chat(cfgWith());
    const a = msg(1000);
    const b = msg(1050);
    const c = msg(1020);
    for (const m of [a, b, c]) chat.send(m);
    chat.send(msg(5000));
    assert.equal(chat.state.sealed.length, 1);
    assert.deepEqual([...chat.state.sealed[0]!.messageIds].sort(), [a, b, c].map((m) => m.message_id).sort());
  });
});

describe('late messages', () => {
  test('a message within the reach of a NEXT_MESSAGE seal is late and names the conversation', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(1000));
    chat.send(msg(1050));
    const [sealed] = sealedOf(chat.send(msg(1300)));
    assert.equal(sealed!.seal_reason, 'NEXT_MESSAGE');
    // reach = 1050 + gap = 1150
    const late = msg(1150);
    const out = chat.send(late, 4242);
    assert.deepEqual(out, [{
      kind: 'late',
      late: { message: late, would_be_conversation_id: sealed!.conversation_id, chat_sealed_reach: 1150, detected_at: 4242 },
    }]);
    // Just past the reach it is not late: it joins the open conversation (1300 - 1201 <= gap).
    assert.deepEqual(chat.send(msg(1201)), []);
    assert.deepEqual(spans(chat), [[1201, 1300, 2]]);
  });

  // Changed by sessionization v2: a message older than every sealed conversation by more than the
  // gap used to be late (at or before the chat's sealed reach, naming none); it is now placed.
  test('a message farther than the gap before every sealed conversation is placed, not late', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(1000));
    chat.send(msg(2000));
    assert.equal(chat.state.sealedReach, 1100);
    assert.deepEqual(chat.send(msg(899)), []);
    assert.deepEqual(chat.send(msg(500)), []);
    assert.deepEqual(spans(chat), [[500, 500, 1], [899, 899, 1], [2000, 2000, 1]]);
    // ... and a message at the start of the sealed one's reach (started_at - gap) is late.
    const out = chat.send(msg(900));
    assert.equal(lateOf(out).length, 1);
    assert.equal(lateOf(out)[0]!.chat_sealed_reach, 1100);
  });

  test('a late message between two sealed conversations names the nearer one', () => {
    const chat = new Chat(cfgWith({ gapMs: 100 }));
    chat.send(msg(1000));
    chat.send(msg(1050));
    const [c1] = sealedOf(chat.send(msg(1200)));
    chat.send(msg(1250));
    const [c2] = sealedOf(chat.send(msg(1500)));
    const wouldBe = (t: number) => lateOf(chat.send(msg(t)))[0]!.would_be_conversation_id;
    assert.equal(wouldBe(1090), c1!.conversation_id);
    assert.equal(wouldBe(1120), c1!.conversation_id);
    assert.equal(wouldBe(1130), c2!.conversation_id);
    assert.equal(wouldBe(1220), c2!.conversation_id);
    assert.equal(wouldBe(1125), c2!.conversation_id, 'a tie goes to the most recently sealed');
    assert.equal(wouldBe(1000), c1!.conversation_id);
  });

  test('late messages change nothing, not even the clock', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(1000));
    chat.tick(2000);
    const before = encodeState(chat.state);
    assert.equal(chat.send(msg(1100))[0]!.kind, 'late');
    assert.deepEqual(encodeState(chat.state), before);
  });

  test(`only the last ${SEALED_HISTORY} sealed conversations are remembered for attribution`, () => {
    const chat = new Chat(cfgWith());
    const first = msg(0);
    chat.send(first);
    for (let i = 1; i <= SEALED_HISTORY + 1; i++) chat.send(msg(i * 1000));
    assert.equal(chat.state.sealed.length, SEALED_HISTORY);
    const out = chat.send(msg(10));
    assert.equal(out[0]!.kind, 'late');
    assert.equal(lateOf(out)[0]!.would_be_conversation_id, null);
    const out2 = chat.send(msg(1010));
    assert.equal(lateOf(out2)[0]!.would_be_conversation_id, conversationId('chat-1', 1000, `m${Number(first.message_id.slice(1)) + 1}`));
  });
});

describe('future skew', () => {
  test('a message more than MAX_FUTURE_SKEW ahead of the wall clock is invalid and changes nothing', () => {
    const chat = new Chat(cfgWith({ maxFutureSkewMs: 3_600_000 }));
    chat.send(msg(1000), 1000);
    const before = encodeState(chat.state);
    const bad = msg(1000 + 3_600_001);
    const out = chat.send(bad, 1000);
    assert.equal(out.length, 1);
    assert.equal(out[0]!.kind, 'invalid');
    assert.match((out[0] as { reason: string }).reason, /MAX_FUTURE_SKEW/);
    assert.deepEqual(encodeState(chat.state), before);
  });

  test('exactly MAX_FUTURE_SKEW ahead is accepted', () => {
    const chat = new Chat(cfgWith({ maxFutureSkewMs: 500, gapMs: 1000 }));
    chat.send(msg(1000), 1000);
    assert.deepEqual(chat.send(msg(1500), 1000), []);
  });

  test('the skew check comes before the duplicate check', () => {
    const chat = new Chat(cfgWith({ maxFutureSkewMs: 10 }));
    const a = msg(1000);
    chat.send(a, 1000);
    assert.equal(chat.send({ ...a, sent_at: 5000 }, 1000)[0]!.kind, 'invalid');
  });

  test('a non-numeric sent_at or a foreign chat_id is invalid', () => {
    const chat = new Chat(cfgWith());
    assert.equal(chat.send(msg(Number.NaN), 0)[0]!.kind, 'invalid');
    assert.equal(chat.send(msg(1, { chat_id: 'other' }), 0)[0]!.kind, 'invalid');
    assert.deepEqual(chat.state, emptyChatState('chat-1'));
  });
});

describe('per-type gaps', () => {
  test('the gap of the chat type applies; other types and null use the default', () => {
    const cfg = cfgWith({ gapMs: 100, gapByTypeMs: { group: 30, direct: 200 } });
    const group = new Chat(cfg);
    group.send(msg(1000, { chat_type: 'group' }));
    group.send(msg(1030, { chat_type: 'group' }));
    assert.equal(sealedOf(group.send(msg(1061, { chat_type: 'group' })))[0]!.gap_ms, 30);

    const direct = new Chat(cfg);
    direct.send(msg(1000, { chat_type: 'direct' }));
    assert.deepEqual(direct.send(msg(1200, { chat_type: 'direct' })), []);

    const other = new Chat(cfg);
    other.send(msg(1000, { chat_type: 'channel' }));
    assert.equal(sealedOf(other.send(msg(1101)))[0]!.gap_ms, 100);
  });

  test('the chat type is the first non-null chat_type placed in the chat', () => {
    const cfg = cfgWith({ gapMs: 100, gapByTypeMs: { group: 30 } });
    const chat = new Chat(cfg);
    chat.send(msg(1000));
    assert.equal(nextDeadline(chat.state, cfg), 1101);
    chat.send(msg(1010, { chat_type: 'group' }));
    assert.equal(nextDeadline(chat.state, cfg), 1041);
    chat.send(msg(1020, { chat_type: 'direct' }));
    const [c] = sealedOf(chat.force(2000));
    assert.equal(c!.chat_type, 'group');
    assert.equal(c!.gap_ms, 30);
  });

  test('inherited property names are not chat types', () => {
    const cfg = cfgWith({ gapMs: 100 });
    const chat = new Chat(cfg);
    chat.send(msg(1000, { chat_type: 'constructor' }));
    assert.equal(nextDeadline(chat.state, cfg), 1101);
  });
});

describe('grace', () => {
  test('grace delays rule 1: the clock must pass ended_at + gap + grace', () => {
    const chat = new Chat(cfgWith({ graceMs: 50 }));
    chat.send(msg(1000));
    assert.deepEqual(sealedOf(chat.send(msg(1150))), []);
    assert.deepEqual(spans(chat), [[1000, 1000, 1], [1150, 1150, 1]]);
    const out = sealedOf(chat.send(msg(1151)));
    assert.equal(out.length, 1);
    assert.equal(out[0]!.started_at, 1000);
    assert.equal(out[0]!.seal_reason, 'NEXT_MESSAGE');
  });

  // Changed by sessionization v2: the message that joins at 1150 also starts the settle time
  // (gap + grace = 150 here), so the tick that used to seal at 1251 now seals at 1300.
  test('grace delays rule 2 and lets a message within the gap still join', () => {
    const chat = new Chat(cfgWith({ graceMs: 50 }));
    chat.send(msg(1000));
    assert.deepEqual(chat.tick(1150), []);
    assert.deepEqual(chat.send(msg(1100), 1150), []);
    assert.deepEqual(chat.tick(1250), []);
    assert.deepEqual(chat.tick(1251), [], 'past the deadline, not yet settled');
    assert.deepEqual(chat.tick(1299), []);
    const [c] = sealedOf(chat.tick(1300));
    assert.equal(c!.seal_reason, 'GAP_TIMEOUT');
    assert.equal(c!.message_count, 2);
    assert.equal(c!.sealed_at, 1300);
  });
});

describe('wall-clock ticks (rule 2)', () => {
  test('a tick seals strictly after the deadline', () => {
    const cfg = cfgWith();
    const chat = new Chat(cfg);
    chat.send(msg(1000));
    // Changed by sessionization v2: nextDeadline is now the first tick time that seals (deadline + 1 ms).
    assert.equal(nextDeadline(chat.state, cfg), 1101);
    assert.deepEqual(chat.tick(1100), []);
    const out = chat.tick(1101);
    assert.equal(out.length, 1);
    assert.equal(sealedOf(out)[0]!.seal_reason, 'GAP_TIMEOUT');
    assert.equal(nextDeadline(chat.state, cfg), null);
    assert.equal(chat.state.sealedReach, 1100);
  });

  test('a tick while not caught up never seals', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(1000));
    assert.deepEqual(chat.tick(1e12, false), []);
    assert.deepEqual(spans(chat), [[1000, 1000, 1]]);
    assert.equal(sealedOf(chat.tick(1e12, true)).length, 1);
  });

  test('a tick seals only the expired conversations, in started_at order', () => {
    const chat = new Chat(cfgWith({ graceMs: 5000 }));
    chat.send(msg(3000));
    chat.send(msg(1000));
    chat.send(msg(2000));
    assert.deepEqual(chat.tick(6100), []);
    const out = sealedOf(chat.tick(7101));
    assert.deepEqual(out.map((c) => c.started_at), [1000, 2000]);
    assert.deepEqual(spans(chat), [[3000, 3000, 1]]);
  });

  test('rule 1 seals several conversations at once, in started_at order', () => {
    const chat = new Chat(cfgWith({ graceMs: 1000 }));
    chat.send(msg(2000));
    chat.send(msg(1000));
    const out = sealedOf(chat.send(msg(10_000)));
    assert.deepEqual(out.map((c) => c.started_at), [1000, 2000]);
    assert.ok(out.every((c) => c.seal_reason === 'NEXT_MESSAGE'));
  });

  // Changed by sessionization v2 (issue 12, case 2): rule 1 no longer seals on the chat's newest
  // sent_at, so an old message behind the newest one is no longer sealed at once on its own.
  test('an old message behind the chat\'s newest one stays open, and seals nothing', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(10_000));
    const old = msg(1000);
    assert.deepEqual(chat.send(old, 10_001), []);
    assert.deepEqual(spans(chat), [[1000, 1000, 1], [10_000, 10_000, 1]]);
  });
});

describe('size cap (MAX_SIZE)', () => {
  test('by message count', () => {
    const chat = new Chat(cfgWith({ maxMessages: 3 }));
    chat.send(msg(1000));
    chat.send(msg(1001));
    const out = sealedOf(chat.send(msg(1002)));
    assert.equal(out.length, 1);
    assert.equal(out[0]!.seal_reason, 'MAX_SIZE');
    assert.equal(out[0]!.message_count, 3);
    assert.equal(chat.state.sealedReach, 1002);
    // The chat goes on: the next message continues the capped conversation.
    chat.send(msg(1003));
    assert.equal(openConversations(chat.state, chat.cfg)[0]!.continuesConversationId, out[0]!.conversation_id);
    const [next] = sealedOf(chat.force(5000));
    assert.equal(next!.continues_conversation_id, out[0]!.conversation_id);
  });

  test('by bytes', () => {
    const a = msg(1000, { text: 'x'.repeat(100) });
    const b = msg(1001, { text: 'y'.repeat(100) });
    const c = msg(1002, { text: 'z'.repeat(100) });
    const limit = messageBytes(a) + messageBytes(b) + 1;
    const chat = new Chat(cfgWith({ maxBytes: limit }));
    chat.send(a);
    assert.deepEqual(chat.send(b), []);
    assert.equal(openConversations(chat.state, chat.cfg)[0]!.bytes, limit - 1);
    const [sealed] = sealedOf(chat.send(c));
    assert.equal(sealed!.seal_reason, 'MAX_SIZE');
    assert.equal(sealed!.message_count, 3);
  });

  test('a single message at or over the byte cap is sealed alone', () => {
    const big = msg(1000, { text: 'é'.repeat(500) });
    const chat = new Chat(cfgWith({ maxBytes: 1000 }));
    const [sealed] = sealedOf(chat.send(big));
    assert.equal(sealed!.seal_reason, 'MAX_SIZE');
    assert.deepEqual(ids(sealed!), [big.message_id]);
  });

  test('a message at exactly the end of a capped conversation is late', () => {
    const chat = new Chat(cfgWith({ maxMessages: 2 }));
    chat.send(msg(1000));
    const [sealed] = sealedOf(chat.send(msg(1010)));
    const out = chat.send(msg(1010));
    assert.equal(lateOf(out)[0]!.would_be_conversation_id, sealed!.conversation_id);
  });

  test('messageBytes is the JSON-encoded UTF-8 size', () => {
    for (const m of [
      msg(1_700_000_000_000),
      msg(5, { text: null, chat_type: 'group', is_from_me: true, reply_to_message_id: 'r1', account_id: 'acc' }),
      msg(123, { text: 'héllo wörld 😀 日本語', sender_id: 'ünïcode' }),
      msg(-7, { text: 'quote " backslash \\ newline \n tab \t nul \u0000 lone \ud83d', message_id: 'id"1' }),
    ]) {
      assert.equal(messageBytes(m), Buffer.byteLength(JSON.stringify(m), 'utf8'));
    }
  });
});

describe('force-seal and continuation', () => {
  test('FORCED seals every open conversation; a message within the gap continues it', () => {
    const chat = new Chat(cfgWith({ graceMs: 1000 }));
    chat.send(msg(1000));
    chat.send(msg(1500));
    const forced = sealedOf(chat.force(2000));
    assert.deepEqual(forced.map((c) => [c.started_at, c.seal_reason, c.sealed_at]), [[1000, 'FORCED', 2000], [1500, 'FORCED', 2000]]);
    assert.equal(chat.state.sealedReach, 1500);
    const next = msg(1500 + GAP);
    assert.deepEqual(chat.send(next), []);
    assert.equal(openConversations(chat.state, chat.cfg)[0]!.continuesConversationId, forced[1]!.conversation_id);
    const [cont] = sealedOf(chat.force(3000));
    assert.equal(cont!.continues_conversation_id, forced[1]!.conversation_id);
  });

  test('after FORCED, a message at exactly ended_at is late and names the forced conversation', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(1000));
    chat.send(msg(1040));
    const [forced] = sealedOf(chat.force(1041));
    const out = chat.send(msg(1040));
    assert.equal(out.length, 1);
    assert.equal(lateOf(out)[0]!.would_be_conversation_id, forced!.conversation_id);
    assert.equal(lateOf(out)[0]!.chat_sealed_reach, 1040);
  });

  test('after FORCED, a message more than the gap later continues nothing', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(1000));
    chat.force(1001);
    chat.send(msg(1000 + GAP + 1));
    assert.equal(openConversations(chat.state, chat.cfg)[0]!.continuesConversationId, null);
  });

  test('force on a chat with nothing open does nothing', () => {
    const chat = new Chat(cfgWith());
    assert.deepEqual(chat.force(1), []);
    assert.deepEqual(chat.state, emptyChatState('chat-1'));
  });
});

describe('determinism and state', () => {
  test('conversation ids are deterministic, UUID-shaped and depend on all three inputs', () => {
    const id = conversationId('chat-1', 1000, 'm1');
    assert.equal(id, conversationId('chat-1', 1000, 'm1'));
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(id, conversationId('chat-2', 1000, 'm1'));
    assert.notEqual(id, conversationId('chat-1', 1001, 'm1'));
    assert.notEqual(id, conversationId('chat-1', 1000, 'm2'));
    assert.notEqual(conversationId('a', 1, 'b'), conversationId('a', 1, 'b\u0000'));
  });

  function script(): ChatEvent[] {
    const base: ChatMessage = {
      message_id: '', chat_id: 'chat-1', sender_id: 's', sent_at: 0, text: 't', chat_type: 'group',
      is_from_me: false, reply_to_message_id: null, account_id: 'acc',
    };
    const times = [1000, 1040, 1030, 1200, 1190, 1500, 1100, 1600, 1650, 1650, 1800, 2100, 2000];
    const events: ChatEvent[] = times.map((t, i) => ({ type: 'message', message: { ...base, message_id: `x${i % 11}`, sent_at: t }, now: t }));
    events.splice(5, 0, { type: 'tick', now: 1400, caughtUp: true });
    events.splice(9, 0, { type: 'force', now: 1660 });
    events.push({ type: 'tick', now: 99_999, caughtUp: true });
    return events;
  }

  function run(events: ChatEvent[], cfg: RulesConfig, roundTripAt: Set<number> = new Set()): Output[] {
    let state = emptyChatState('chat-1');
    const out: Output[] = [];
    events.forEach((e, i) => {
      if (roundTripAt.has(i)) state = decodeState(encodeState(state));
      const r = step(state, e, cfg);
      state = r.state;
      out.push(...r.outputs);
    });
    return JSON.parse(JSON.stringify(out)) as Output[];
  }

  test('replaying the same input gives the same conversations', () => {
    const cfg = cfgWith({ gapMs: 120, graceMs: 20, maxMessages: 4 });
    const a = run(script(), cfg);
    assert.ok(sealedOf(a).length >= 3);
    assert.deepEqual(run(script(), cfg), a);
  });

  test('encode / decode mid-stream and continuing changes nothing', () => {
    const cfg = cfgWith({ gapMs: 120, graceMs: 20, maxMessages: 4 });
    const events = script();
    const expected = run(events, cfg);
    for (let i = 0; i < events.length; i++) assert.deepEqual(run(events, cfg, new Set([i])), expected, `round trip before event ${i}`);
    assert.deepEqual(run(events, cfg, new Set(events.map((_, i) => i))), expected);
  });

  test('the state is plain JSON data and step hands back the same object', () => {
    const cfg = cfgWith({ graceMs: 10 });
    const state = emptyChatState('chat-1');
    const r = step(state, { type: 'message', message: msg(1), now: 1 }, cfg);
    assert.equal(r.state, state);
    assert.deepEqual(JSON.parse(JSON.stringify(r.state)), r.state);
    assert.deepEqual(decodeState(encodeState(r.state)), r.state);
  });

  test('the empty state is version 3: nothing open, sealed, remembered or forgotten', () => {
    assert.equal(STATE_VERSION, 3);
    assert.deepEqual(emptyChatState('c'), {
      v: 3, chatId: 'c', chatType: null, clock: null, sealedReach: null, forgottenReach: null, open: [], sealed: [],
    });
  });

  test('decodeState rejects foreign data', () => {
    assert.throws(() => decodeState(Buffer.from('nope')), /not valid JSON/);
    assert.throws(() => decodeState(Buffer.from('{"v":99,"chatId":"c","open":[],"sealed":[]}')), /version/);
    assert.throws(() => decodeState(Buffer.from('{"v":2}')), /missing chatId/);
  });

  test('a version 1 state is upgraded on decode: its open conversations count as settled', () => {
    const cfg = cfgWith();
    const chat = new Chat(cfg);
    chat.send(msg(1000), 1000);
    chat.send(msg(2000), 2000); // [1000] sealed, [2000] open
    const v1 = JSON.parse(encodeState(chat.state).toString('utf8')) as Record<string, unknown> & { open: Array<Record<string, unknown>>; sealed: Array<Record<string, unknown>> };
    v1.v = 1;
    delete v1.forgottenReach;
    for (const c of v1.open) delete c.arrivedAt;
    for (const x of v1.sealed) delete x.messageIds;
    const state = decodeState(Buffer.from(JSON.stringify(v1)));
    assert.equal(state.v, STATE_VERSION);
    assert.equal(state.forgottenReach, null);
    assert.equal(nextDeadline(state, cfg), 2101);
    assert.equal(sealedOf(step(state, { type: 'tick', now: 2101, caughtUp: true }, cfg).outputs).length, 1);
  });

  test('openConversations and nextDeadline describe the open conversations', () => {
    const cfg = cfgWith({ graceMs: 7 });
    const chat = new Chat(cfg);
    assert.equal(nextDeadline(chat.state, cfg), null);
    const a = msg(1000);
    const b = msg(1050);
    chat.send(a);
    chat.send(b);
    const c = msg(5000);
    chat.send(c, 5003);
    // Changed by sessionization v2: views carry arrivedAt and settlesAt, and nextDeadline is the
    // first tick time that seals: after the deadline (5107) and at or after the settle time
    // (arrived 5003 + min(60000, 107) = 5110).
    assert.deepEqual(openConversations(chat.state, cfg), [{
      startedAt: 5000, endedAt: 5000, messageCount: 1, bytes: messageBytes(c), deadline: 5107, arrivedAt: 5003, settlesAt: 5110,
      continuesConversationId: null,
    }]);
    assert.equal(nextDeadline(chat.state, cfg), 5110);
    assert.equal(sealedOf(chat.outputs)[0]!.message_count, 2);
  });
});

// ---------------------------------------------------------------------------------------------
// Sessionization v2 (SPEC section 2 as revised, issue 12), clause by clause.

const MIN = 60_000;
const GAP_90M = 90 * MIN;

describe('v2 (a): history arriving behind the chat\'s newest messages', () => {
  test('forms its own conversations, sealed by its own later messages: not single messages, not late', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(100_000));
    chat.send(msg(100_050));
    // Older history arrives afterwards (a phone back online, an import into a live chat).
    const h = [1000, 1050, 1100, 1300, 1350, 1600].map((t) => msg(t));
    const outs = h.map((m, i) => chat.send(m, 100_100 + i));
    assert.deepEqual(outs.flat().filter((o) => o.kind !== 'sealed'), [], 'nothing late, duplicate or invalid');
    assert.deepEqual(outs.map((o) => sealedOf(o).map(ids)), [
      [], [], [], [[h[0]!, h[1]!, h[2]!].map((m) => m.message_id)], [], [[h[3]!, h[4]!].map((m) => m.message_id)],
    ]);
    assert.ok(sealedOf(chat.outputs).every((c) => c.seal_reason === 'NEXT_MESSAGE'));
    // The history's later messages never sealed the chat's newer conversation.
    assert.deepEqual(spans(chat), [[1600, 1600, 1], [100_000, 100_050, 2]]);
    // The chat's next new message proves the gap after both, sealed in started_at order.
    const next = sealedOf(chat.send(msg(100_200), 100_200));
    assert.deepEqual(next.map((c) => [c.started_at, c.ended_at, c.seal_reason]), [[1600, 1600, 'NEXT_MESSAGE'], [100_000, 100_050, 'NEXT_MESSAGE']]);
  });

  test('gives the same conversations as the same messages arriving in sent_at order', () => {
    const times = [1000, 1050, 1100, 1300, 1350, 1600, 100_000, 100_050];
    const conversationsIn = (order: number[]) => {
      const chat = new Chat(cfgWith());
      const ms = times.map((t, i) => msg(t, { message_id: `h${i}` }));
      let now = 200_000;
      for (const i of order) chat.send(ms[i]!, now++);
      chat.force(now);
      assert.deepEqual(chat.outputs.filter((o) => o.kind !== 'sealed'), [], `nothing but seals for arrival order ${order.join(',')}`);
      return sealedOf(chat.outputs)
        .map((c) => [c.conversation_id, c.started_at, c.ended_at, ids(c)] as const)
        .sort((a, b) => a[1] - b[1]);
    };
    const inOrder = conversationsIn([0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(inOrder.map((c) => [c[1], c[2]]), [[1000, 1100], [1300, 1350], [1600, 1600], [100_000, 100_050]]);
    assert.deepEqual(conversationsIn([6, 7, 0, 1, 2, 3, 4, 5]), inOrder, 'newer messages first, then the history');
    assert.deepEqual(conversationsIn([6, 7, 3, 4, 5, 0, 1, 2]), inOrder, 'newer messages, then the history in two blocks, the later first');
    assert.deepEqual(conversationsIn([7, 6, 5, 4, 3, 2, 1, 0]), inOrder, 'everything in reverse');
  });

  test('a day of older history behind live conversations, with a realistic gap', () => {
    const cfg = cfgWith({ gapMs: GAP_90M, settleMs: MIN, maxFutureSkewMs: 3_600_000 });
    const chat = new Chat(cfg);
    const today = Date.UTC(2026, 11, 1, 12);
    chat.send(msg(today), today + 100);
    chat.send(msg(today + 2 * MIN), today + 2 * MIN + 100);
    // Yesterday's messages arrive now: two conversations three hours apart.
    const y = today - 24 * 3_600_000;
    const now = today + 3 * MIN;
    const first = [y, y + 10 * MIN, y + 80 * MIN].map((t) => msg(t));
    const second = [y + 3 * 60 * MIN, y + 3 * 60 * MIN + 1].map((t) => msg(t));
    for (const m of first) assert.deepEqual(chat.send(m, now), []);
    const out = chat.send(second[0]!, now);
    assert.deepEqual(sealedOf(out).map((c) => [c.started_at, c.ended_at, c.message_count]), [[y, y + 80 * MIN, 3]]);
    assert.deepEqual(chat.send(second[1]!, now), []);
    assert.deepEqual(spans(chat), [[y + 180 * MIN, y + 180 * MIN + 1, 2], [today, today + 2 * MIN, 2]]);
  });
});

describe('v2 (b): producing the same messages twice', () => {
  test('the second time every message is a duplicate, none late, ids of sealed conversations included', () => {
    const chat = new Chat(cfgWith());
    const batch = [1000, 1050, 1300, 1320, 1600, 1700].map((t) => msg(t));
    for (const m of batch) chat.send(m);
    assert.deepEqual(sealedOf(chat.outputs).map((c) => [c.started_at, c.ended_at]), [[1000, 1050], [1300, 1320]]);
    assert.deepEqual(spans(chat), [[1600, 1700, 2]]);
    const resend = (from: number) => {
      const before = encodeState(chat.state);
      const outs = batch.map((m, i) => chat.send({ ...m }, from + i));
      assert.deepEqual(outs.map((o) => o.map((x) => x.kind)), batch.map(() => ['duplicate']));
      assert.deepEqual(encodeState(chat.state), before, 'a re-sent message changes nothing, not even an arrival time');
    };
    resend(10_000);
    // Sealed by the wall clock, then produced a third time.
    assert.equal(sealedOf(chat.tick(10_100)).length, 1);
    resend(20_000);
    assert.deepEqual(lateOf(chat.outputs), []);
  });

  test('a retried batch does not delay the settle time of its conversation', () => {
    const chat = new Chat(cfgWith());
    const a = msg(1000);
    chat.send(a, 1000);
    chat.send({ ...a }, 1090);
    assert.equal(nextDeadline(chat.state, chat.cfg), 1101);
    assert.equal(sealedOf(chat.tick(1101)).length, 1);
  });
});

describe('v2 (c): batches with pauses, the settle time (rule 2)', () => {
  const cfg = cfgWith({ gapMs: GAP_90M, settleMs: MIN });
  const T = Date.UTC(2020, 0, 1); // the history's time
  const T0 = Date.UTC(2026, 11, 1); // processing time

  test('ticks past the deadline but before the settle time do not seal; at the settle time they do (pinned now)', () => {
    const chat = new Chat(cfg);
    // Batch 1: a conversation of 2020, produced into a live, caught-up tracker.
    chat.send(msg(T), T0);
    chat.send(msg(T + MIN), T0 + 1);
    chat.send(msg(T + 2 * MIN), T0 + 2);
    assert.deepEqual(openConversations(chat.state, cfg).map((c) => [c.deadline, c.arrivedAt, c.settlesAt]), [
      [T + 2 * MIN + GAP_90M, T0 + 2, T0 + 2 + MIN],
    ]);
    assert.equal(nextDeadline(chat.state, cfg), T0 + 2 + MIN);
    // Between batches the partition is caught up; the conversation's deadline is years old.
    assert.deepEqual(chat.tick(T0 + 2_000), []);
    const b2 = T0 + 2 + MIN - 1;
    assert.deepEqual(chat.tick(b2), []);
    // Batch 2, just under a minute after batch 1: the conversation goes on, nothing is late.
    assert.deepEqual(chat.send(msg(T + 3 * MIN), b2), []);
    assert.deepEqual(chat.send(msg(T + 4 * MIN), b2 + 1), []);
    // The history's own next conversation proves the gap after the first (rule 1).
    const out = chat.send(msg(T + 4 * MIN + GAP_90M + 1), b2 + 2);
    assert.deepEqual(sealedOf(out).map((c) => [c.started_at, c.ended_at, c.message_count, c.seal_reason]), [
      [T, T + 4 * MIN, 5, 'NEXT_MESSAGE'],
    ]);
    // The last one settles a minute after its last message arrived.
    assert.equal(nextDeadline(chat.state, cfg), b2 + 2 + MIN);
    assert.deepEqual(chat.tick(b2 + 2 + MIN - 1), []);
    assert.deepEqual(chat.tick(b2 + 2 + MIN, false), [], 'not caught up: still only rule 1');
    const [c] = sealedOf(chat.tick(b2 + 2 + MIN));
    assert.equal(c!.seal_reason, 'GAP_TIMEOUT');
    assert.equal(c!.message_count, 1);
    assert.equal(c!.sealed_at, b2 + 2 + MIN);
    assert.deepEqual(lateOf(chat.outputs), []);
  });

  test('a pause as long as the settle time seals at the tick; the next batch within the gap is then late', () => {
    const chat = new Chat(cfg);
    chat.send(msg(T), T0);
    const [sealed] = sealedOf(chat.tick(T0 + MIN));
    assert.equal(sealed!.seal_reason, 'GAP_TIMEOUT');
    const out = chat.send(msg(T + MIN), T0 + MIN + 1);
    assert.equal(lateOf(out)[0]!.would_be_conversation_id, sealed!.conversation_id);
  });

  test('the settle time in force is min(CONVERSATION_SETTLE, gap + grace)', () => {
    const settles = (over: Partial<RulesConfig>, m: ChatMessage, now: number, expected: number) => {
      const chat = new Chat(cfgWith(over));
      chat.send(m, now);
      assert.equal(openConversations(chat.state, chat.cfg)[0]!.settlesAt, expected);
      assert.equal(nextDeadline(chat.state, chat.cfg), expected);
      assert.deepEqual(chat.tick(expected - 1), [], `${JSON.stringify(over)}: not before ${expected}`);
      assert.equal(sealedOf(chat.tick(expected)).length, 1, `${JSON.stringify(over)}: at ${expected}`);
    };
    settles({ graceMs: 20, settleMs: 60_000 }, msg(1000), 5000, 5120); // gap + grace is shorter
    settles({ graceMs: 20, settleMs: 50 }, msg(1000), 5000, 5050); // the setting is shorter
    settles({ gapByTypeMs: { group: 30 } }, msg(1000, { chat_type: 'group' }), 5000, 5030); // the chat type's gap
    settles({ settleMs: 0 }, msg(1000), 5000, 5000); // zero: no settle time
  });

  test('rule 2 seals whatever is past its deadline and settled, not necessarily a prefix', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(2000), 2000);
    chat.send(msg(1000), 2050); // history: its deadline (1100) long passed, it settles at 2150
    assert.equal(nextDeadline(chat.state, chat.cfg), 2101);
    assert.deepEqual(sealedOf(chat.tick(2101)).map((c) => c.started_at), [2000]);
    assert.deepEqual(spans(chat), [[1000, 1000, 1]]);
    assert.equal(nextDeadline(chat.state, chat.cfg), 2150);
    assert.deepEqual(chat.tick(2149), []);
    assert.deepEqual(sealedOf(chat.tick(2150)).map((c) => [c.started_at, c.seal_reason]), [[1000, 'GAP_TIMEOUT']]);
  });

  test('several seals on one tick come in started_at order, whatever their arrival order', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(2000), 2000);
    chat.send(msg(1000), 2001);
    assert.deepEqual(sealedOf(chat.tick(3000)).map((c) => c.started_at), [1000, 2000]);
  });
});

describe('v2 (d): merges behind the newest message', () => {
  test('a message between two history conversations merges them; the merge restarts the settle time', () => {
    const chat = new Chat(cfgWith());
    const n = msg(10_000);
    chat.send(n, 10_000);
    const b = msg(1150);
    const a = msg(1000);
    assert.deepEqual(chat.send(b, 10_010), []);
    assert.deepEqual(chat.send(a, 10_020), [], 'an earlier message never proves a gap after a later one');
    assert.deepEqual(spans(chat), [[1000, 1000, 1], [1150, 1150, 1], [10_000, 10_000, 1]]);
    const mid = msg(1080);
    assert.deepEqual(chat.send(mid, 10_030), []);
    assert.deepEqual(spans(chat), [[1000, 1150, 3], [10_000, 10_000, 1]]);
    assert.equal(openConversations(chat.state, chat.cfg)[0]!.arrivedAt, 10_030);
    assert.equal(openConversations(chat.state, chat.cfg)[0]!.settlesAt, 10_130);
    // A tick after the parts would have settled (10_110, 10_120) but before the merge has: only the newest one seals.
    assert.deepEqual(sealedOf(chat.tick(10_125)).map((c) => [c.started_at, c.seal_reason]), [[10_000, 'GAP_TIMEOUT']]);
    // The history's own later message seals the merged conversation.
    const [c] = sealedOf(chat.send(msg(1300), 10_126));
    assert.equal(c!.seal_reason, 'NEXT_MESSAGE');
    assert.deepEqual(ids(c!), [a, mid, b].map((m) => m.message_id));
    assert.equal(c!.conversation_id, conversationId('chat-1', 1000, a.message_id));
    assert.deepEqual(spans(chat), [[1300, 1300, 1]]);
    assert.deepEqual(lateOf(chat.outputs), []);
  });
});

describe('v2 (e): late means inside the reach of a sealed conversation', () => {
  /** S1 = [1000, 1050] (reach [900, 1150]) and S2 = [2000, 2050] (reach [1900, 2150]) sealed; [3000] open. */
  function twoSealed(): { chat: Chat; s1: ConversationSealed; s2: ConversationSealed } {
    const chat = new Chat(cfgWith());
    for (const t of [1000, 1050, 2000, 2050, 3000]) chat.send(msg(t));
    const [s1, s2] = sealedOf(chat.outputs);
    assert.deepEqual([s1!.started_at, s1!.ended_at, s2!.started_at, s2!.ended_at], [1000, 1050, 2000, 2050]);
    assert.equal(chat.state.sealedReach, 2150);
    return { chat, s1: s1!, s2: s2! };
  }

  test('a message in a quiet stretch between two sealed conversations is placed, and sealed by its own later message', () => {
    const { chat } = twoSealed();
    assert.deepEqual(chat.send(msg(1500), 3001), []);
    assert.deepEqual(chat.send(msg(1560), 3002), []);
    assert.deepEqual(spans(chat), [[1500, 1560, 2], [3000, 3000, 1]]);
    const out = sealedOf(chat.send(msg(1700), 3003));
    assert.deepEqual(out.map((c) => [c.started_at, c.ended_at, c.message_count, c.seal_reason]), [[1500, 1560, 2, 'NEXT_MESSAGE']]);
    assert.deepEqual(lateOf(chat.outputs), []);
  });

  test('one within the gap of a sealed conversation is late and names it; the reach is inclusive at both ends', () => {
    const { chat, s1, s2 } = twoSealed();
    const late = (t: number): LateMessage => {
      const out = chat.send(msg(t), 3001);
      assert.equal(out.length, 1, `${t}`);
      assert.equal(out[0]!.kind, 'late', `${t} is late`);
      return lateOf(out)[0]!;
    };
    for (const [t, named] of [[900, s1], [1020, s1], [1150, s1], [1900, s2], [2100, s2], [2150, s2]] as const) {
      const l = late(t);
      assert.equal(l.would_be_conversation_id, named.conversation_id, `${t} names its conversation`);
      assert.equal(l.chat_sealed_reach, 2150);
      assert.equal(l.detected_at, 3001);
    }
    // One millisecond outside each reach: placed.
    assert.deepEqual(chat.send(msg(1899), 3002), []);
    assert.deepEqual(chat.send(msg(1151), 3003), []);
    assert.deepEqual(chat.send(msg(899), 3004), []);
    assert.deepEqual(spans(chat), [[899, 899, 1], [1151, 1151, 1], [1899, 1899, 1], [3000, 3000, 1]]);
  });

  test('a would-be conversation is only one whose reach holds the message: a FORCED reach ends at ended_at', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(1000));
    chat.send(msg(1040));
    const [x] = sealedOf(chat.force(1041)); // reach [900, 1040]
    chat.send(msg(1200));
    const [y] = sealedOf(chat.send(msg(1400))); // [1200], reach [1100, 1300]
    assert.equal(y!.started_at, 1200);
    // 1100 is 60 ms after X and 100 ms before Y, but only Y's reach holds it.
    assert.equal(lateOf(chat.send(msg(1100), 1401))[0]!.would_be_conversation_id, y!.conversation_id);
    // Within X's gap after its end is not late: it continues X.
    assert.deepEqual(chat.send(msg(1050), 1402), []);
    const view = openConversations(chat.state, chat.cfg)[0]!;
    assert.deepEqual([view.startedAt, view.continuesConversationId], [1050, x!.conversation_id]);
  });
});

describe(`v2 (f): forgetting beyond the ${SEALED_HISTORY} remembered conversations`, () => {
  test('at or before the forgotten reach end is late naming none; ids of forgotten conversations are no longer duplicates', () => {
    const chat = new Chat(cfgWith());
    const all: ChatMessage[] = [];
    for (let i = 0; i <= SEALED_HISTORY + 1; i++) { const m = msg(i * 1000); all.push(m); chat.send(m); }
    // 65 sealed ([0] ... [64000]), [65000] open; [0] is forgotten.
    assert.equal(sealedOf(chat.outputs).length, SEALED_HISTORY + 1);
    assert.equal(chat.state.sealed.length, SEALED_HISTORY);
    assert.equal(chat.state.forgottenReach, 100);
    assert.equal(chat.state.sealedReach, 64_100);
    const nowAt = 70_000;
    const lateNamingNone = (m: ChatMessage) => {
      const out = chat.send(m, nowAt);
      assert.deepEqual(out.map((o) => o.kind), ['late'], `${m.message_id} at ${m.sent_at} is late`);
      assert.equal(lateOf(out)[0]!.would_be_conversation_id, null);
      assert.equal(lateOf(out)[0]!.chat_sealed_reach, 64_100);
    };
    lateNamingNone({ ...all[0]! }); // a forgotten conversation's message re-sent: late, not a duplicate
    lateNamingNone({ ...all[0]!, sent_at: 100 });
    lateNamingNone(msg(100));
    lateNamingNone(msg(-5000));
    // A forgotten id somewhere nothing is sealed is placed, like any new message.
    assert.deepEqual(chat.send({ ...all[0]!, sent_at: 500 }, nowAt), []);
    // Past the forgotten reach end and before the first remembered reach ([900, 1100]): placed.
    assert.deepEqual(chat.send(msg(101), nowAt), []);
    assert.deepEqual(spans(chat).slice(0, 2), [[101, 101, 1], [500, 500, 1]]);
    // Remembered conversations keep their duplicates and their late messages.
    assert.equal(chat.send({ ...all[1]! }, nowAt)[0]!.kind, 'duplicate');
    assert.equal(chat.send({ ...all[SEALED_HISTORY]! }, nowAt)[0]!.kind, 'duplicate');
    assert.equal(lateOf(chat.send(msg(1010), nowAt))[0]!.would_be_conversation_id, conversationId('chat-1', 1000, all[1]!.message_id));
  });

  test('the forgotten reach is the largest reach end of the forgotten conversations, not the last forgotten one\'s', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(1_000_000), 1_000_000);
    assert.equal(sealedOf(chat.tick(1_000_101)).length, 1); // reach [999_900, 1_000_100]
    // Then older history: 64 more conversations, so the newest one is the first forgotten.
    for (let i = 1; i <= SEALED_HISTORY + 1; i++) chat.send(msg(i * 1000), 1_000_200 + i);
    assert.equal(sealedOf(chat.outputs).length, SEALED_HISTORY + 1);
    assert.equal(lateOf(chat.outputs).length, 0);
    assert.equal(chat.state.sealed.length, SEALED_HISTORY);
    assert.equal(chat.state.sealed[0]!.startedAt, 1000);
    assert.equal(chat.state.forgottenReach, 1_000_100);
    assert.equal(chat.state.sealedReach, 1_000_100);
    // Nothing can be known below it: even a quiet stretch far from every remembered conversation is late.
    const out = chat.send(msg(500_000), 1_000_300);
    assert.deepEqual(out.map((o) => o.kind), ['late']);
    assert.equal(lateOf(out)[0]!.would_be_conversation_id, null);
    // Past it, a message is placed.
    const after = chat.send(msg(1_000_101), 1_000_301);
    assert.deepEqual(lateOf(after), []);
    assert.deepEqual(spans(chat), [[1_000_101, 1_000_101, 1]]);
    // That message sealed [65000], which pushed [1000] (reach end 1100) out too: the forgotten
    // reach stays the largest.
    assert.deepEqual(sealedOf(after).map((c) => c.started_at), [65_000]);
    assert.equal(chat.state.sealed[0]!.startedAt, 2000);
    assert.equal(chat.state.forgottenReach, 1_000_100);
    assert.equal(lateOf(chat.send(msg(600_000), 1_000_302))[0]!.would_be_conversation_id, null);
  });
});

describe('v2 (g): live traffic', () => {
  test('arrival a little after sent_at: the settle time adds nothing (90m gap, 1m settle)', () => {
    const cfg = cfgWith({ gapMs: GAP_90M, settleMs: MIN });
    const chat = new Chat(cfg);
    const t = Date.UTC(2026, 11, 1, 9);
    for (const at of [t, t + 5 * MIN, t + 7 * MIN]) chat.send(msg(at), at + 150);
    const deadline = t + 7 * MIN + GAP_90M;
    assert.equal(openConversations(chat.state, cfg)[0]!.deadline, deadline);
    assert.equal(nextDeadline(chat.state, cfg), deadline + 1);
    assert.deepEqual(chat.tick(deadline), []);
    const [c] = sealedOf(chat.tick(deadline + 1));
    assert.equal(c!.seal_reason, 'GAP_TIMEOUT');
    assert.equal(c!.message_count, 3);
    assert.equal(c!.sealed_at, deadline + 1);
  });

  test('with gap + grace as the settle time, arrival at sent_at (or 1 ms after) seals exactly when it did without it', () => {
    for (const grace of [0, 50]) {
      for (const lag of [0, 1]) {
        const cfg = cfgWith({ graceMs: grace });
        const chat = new Chat(cfg);
        chat.send(msg(1000), 1000 + lag);
        chat.send(msg(1040), 1040 + lag);
        const deadline = 1040 + GAP + grace;
        assert.equal(nextDeadline(chat.state, cfg), deadline + 1, `grace ${grace}, lag ${lag}`);
        assert.deepEqual(chat.tick(deadline), []);
        assert.equal(sealedOf(chat.tick(deadline + 1)).length, 1, `grace ${grace}, lag ${lag}`);
      }
    }
  });
});
