import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChatMessage, ConversationSealed, LateMessage } from '../../src/records/types';
import {
  SEALED_HISTORY, conversationId, decodeState, emptyChatState, encodeState, messageBytes, nextDeadline,
  openConversations, step, type ChatEvent, type ChatState, type Output, type RulesConfig,
} from '../../src/sessionization/rules';

const GAP = 100;
const BIG = 1_000_000_000;

function cfgWith(over: Partial<RulesConfig> = {}): RulesConfig {
  return { gapMs: GAP, gapByTypeMs: {}, graceMs: 0, settleMs: 0, maxMessages: BIG, maxBytes: BIG, maxFutureSkewMs: BIG, ...over };
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

  test('an id seen in an already sealed conversation is judged by the late check, not as a duplicate', () => {
    const chat = new Chat(cfgWith());
    const a = msg(1000);
    chat.send(a);
    const [sealed] = sealedOf(chat.force(1001));
    const out = chat.send({ ...a });
    assert.equal(out[0]!.kind, 'late');
    assert.equal(lateOf(out)[0]!.would_be_conversation_id, sealed!.conversation_id);
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

  test('a late message that predates every sealed conversation by more than the gap names none', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(1000));
    chat.send(msg(2000));
    const out = chat.send(msg(500));
    assert.equal(out.length, 1);
    assert.equal(lateOf(out)[0]!.would_be_conversation_id, null);
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
    assert.equal(nextDeadline(chat.state, cfg), 1100);
    chat.send(msg(1010, { chat_type: 'group' }));
    assert.equal(nextDeadline(chat.state, cfg), 1040);
    chat.send(msg(1020, { chat_type: 'direct' }));
    const [c] = sealedOf(chat.force(2000));
    assert.equal(c!.chat_type, 'group');
    assert.equal(c!.gap_ms, 30);
  });

  test('inherited property names are not chat types', () => {
    const cfg = cfgWith({ gapMs: 100 });
    const chat = new Chat(cfg);
    chat.send(msg(1000, { chat_type: 'constructor' }));
    assert.equal(nextDeadline(chat.state, cfg), 1100);
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

  test('grace delays rule 2 and lets a message within the gap still join', () => {
    const chat = new Chat(cfgWith({ graceMs: 50 }));
    chat.send(msg(1000));
    assert.deepEqual(chat.tick(1150), []);
    assert.deepEqual(chat.send(msg(1100), 1150), []);
    assert.deepEqual(chat.tick(1250), []);
    const [c] = sealedOf(chat.tick(1251));
    assert.equal(c!.seal_reason, 'GAP_TIMEOUT');
    assert.equal(c!.message_count, 2);
    assert.equal(c!.sealed_at, 1251);
  });
});

describe('wall-clock ticks (rule 2)', () => {
  test('a tick seals strictly after the deadline', () => {
    const cfg = cfgWith();
    const chat = new Chat(cfg);
    chat.send(msg(1000));
    assert.equal(nextDeadline(chat.state, cfg), 1100);
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

  test('a tick seals only the expired prefix, in started_at order', () => {
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

  test('an old message that opens a conversation already proven closed is sealed at once', () => {
    const chat = new Chat(cfgWith());
    chat.send(msg(10_000));
    const old = msg(1000);
    const out = sealedOf(chat.send(old));
    assert.deepEqual(out.map(ids), [[old.message_id]]);
    assert.equal(out[0]!.seal_reason, 'NEXT_MESSAGE');
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

  test('decodeState rejects foreign data', () => {
    assert.throws(() => decodeState(Buffer.from('nope')), /not valid JSON/);
    assert.throws(() => decodeState(Buffer.from('{"v":99}')), /version/);
  });

  test('openConversations and nextDeadline describe the open conversations', () => {
    const cfg = cfgWith({ graceMs: 7 });
    const chat = new Chat(cfg);
    assert.equal(nextDeadline(chat.state, cfg), null);
    const a = msg(1000);
    const b = msg(1050);
    chat.send(a);
    chat.send(b);
    chat.send(msg(5000));
    assert.deepEqual(openConversations(chat.state, cfg), [
      { startedAt: 5000, endedAt: 5000, messageCount: 1, bytes: openConversations(chat.state, cfg)[0]!.bytes, deadline: 5107, continuesConversationId: null },
    ]);
    assert.equal(nextDeadline(chat.state, cfg), 5107);
    assert.equal(sealedOf(chat.outputs)[0]!.message_count, 2);
  });
});
