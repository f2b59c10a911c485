// Thread mode of the rules (SPEC section 2a), with a small deterministic linker: a message that
// starts with "name:" is linked to that sender's last message in the window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChatState, type Output, type RulesConfig, emptyChatState, step } from '../../src/sessionization/rules';
import type { ChatMessage, ConversationSealed } from '../../src/records/types';
import { addressLinker } from '../support/thread-linker';

const GAP = 100;
const rules: RulesConfig = {
  gapMs: GAP, gapByTypeMs: {}, graceMs: 0, settleMs: 0, maxMessages: 1000, maxBytes: 1e9, maxFutureSkewMs: 1e9,
  modeByType: { group: 'threads' }, threadLinker: addressLinker,
};

let n = 0;
function msg(t: number, from: string, text: string, over: Partial<ChatMessage> = {}): ChatMessage {
  return { message_id: `t${n++}`, chat_id: 'g', sender_id: from, sent_at: t, text, chat_type: 'group', is_from_me: false, reply_to_message_id: null, account_id: null, ...over };
}

class Chat {
  state: ChatState = emptyChatState('g');
  send(m: ChatMessage, now = m.sent_at): Output[] { const r = step(this.state, { type: 'message', message: m, now }, rules); this.state = r.state; return r.outputs; }
  force(now: number): ConversationSealed[] { return sealed(step(this.state, { type: 'force', now }, rules).outputs); }
}
const sealed = (o: Output[]) => o.flatMap((x) => (x.kind === 'sealed' ? [x.conversation] : []));
const texts = (c: ConversationSealed) => c.messages.map((m) => m.text);

test('interleaved threads are separate conversations; each message carries its link', () => {
  const chat = new Chat();
  const a = msg(1000, 'ann', 'anyone tried the new build?');
  const b = msg(1005, 'bob', 'lunch today?');
  const c = msg(1010, 'cat', 'ann: yes, it crashes');
  const d = msg(1015, 'dan', 'bob: sure');
  for (const m of [a, b, c, d]) assert.deepEqual(chat.send(m), []);
  assert.equal(chat.state.open.length, 2);
  const out = chat.force(2000);
  assert.deepEqual(out.map(texts), [['anyone tried the new build?', 'ann: yes, it crashes'], ['lunch today?', 'bob: sure']]);
  assert.deepEqual(out.map((x) => x.messages.map((m) => m.linked_message_id ?? null)), [[null, a.message_id], [null, b.message_id]]);
});

test('rule 1 per thread: a later message beyond a thread\'s gap seals it, the others stay open', () => {
  const chat = new Chat();
  chat.send(msg(1000, 'ann', 'first thread'));
  chat.send(msg(1090, 'bob', 'second thread'));
  const out = sealed(chat.send(msg(1101, 'bob', 'bob: still here')));
  assert.deepEqual(out.map(texts), [['first thread']]);
  assert.equal(out[0]!.seal_reason, 'NEXT_MESSAGE');
  assert.equal(chat.state.open.length, 1);
  assert.deepEqual(chat.state.open[0]!.messages.map((m) => m.text), ['second thread', 'bob: still here']);
});

test('a reply to a message of a sealed thread opens a new conversation continuing it', () => {
  const chat = new Chat();
  const first = chat.force(0); // nothing open yet
  assert.deepEqual(first, []);
  chat.send(msg(1000, 'ann', 'question'));
  const [s] = chat.force(1010);
  const out = chat.send(msg(1050, 'bob', 'ann: answer'));
  assert.deepEqual(out, []);
  const [c] = chat.force(1100);
  assert.equal(c!.continues_conversation_id, s!.conversation_id);
  assert.equal(c!.messages[0]!.linked_message_id, s!.first_message_id);
});

test('a reply proven past its thread\'s gap seals that thread and continues it', () => {
  const chat = new Chat();
  chat.send(msg(1000, 'ann', 'question'));
  const out = sealed(chat.send(msg(1200, 'bob', 'ann: late answer')));
  assert.equal(out.length, 1);
  const [c] = chat.force(1300);
  assert.equal(c!.continues_conversation_id, out[0]!.conversation_id);
});

test('an explicit reply_to_message_id wins over the model', () => {
  const chat = new Chat();
  const a = msg(1000, 'ann', 'topic one');
  const b = msg(1001, 'bob', 'topic two');
  chat.send(a);
  chat.send(b);
  chat.send(msg(1002, 'cat', 'bob: this names bob, but replies to ann', { reply_to_message_id: a.message_id }));
  const out = chat.force(2000);
  assert.deepEqual(out.map((x) => x.messages.length), [2, 1]);
  assert.equal(out[0]!.messages[1]!.linked_message_id, a.message_id);
});

test('duplicates and late messages are as in gap mode', () => {
  const chat = new Chat();
  const a = msg(1000, 'ann', 'hello');
  chat.send(a);
  assert.equal(chat.send({ ...a })[0]!.kind, 'duplicate');
  chat.send(msg(1200, 'bob', 'new topic')); // seals ann's thread by rule 1
  const late = chat.send(msg(1050, 'cat', 'behind'));
  assert.equal(late[0]!.kind, 'late');
});

test('chat types without thread mode are sessionized by the gap (one conversation)', () => {
  const state = emptyChatState('d');
  for (const [i, t] of [1000, 1005, 1010].entries()) {
    step(state, { type: 'message', message: { ...msg(t, i % 2 ? 'x' : 'y', 'unrelated'), chat_id: 'd', chat_type: 'direct' }, now: t }, rules);
  }
  assert.equal(state.open.length, 1);
  assert.equal(state.window, undefined);
});

test('replaying the same messages gives the same threads and ids', () => {
  const make = () => [msg(1, 'a', 'x'), msg(2, 'b', 'y'), msg(3, 'c', 'a: z'), msg(4, 'd', 'b: w'), msg(150, 'e', 'new')];
  n = 100;
  const one = new Chat();
  const o1 = make().flatMap((m) => sealed(one.send(m))).concat(one.force(500));
  n = 100;
  const two = new Chat();
  const o2 = make().flatMap((m) => sealed(two.send(m))).concat(two.force(500));
  assert.deepEqual(o1, o2);
  assert.equal(o1.length, 3);
});
