import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ChatMessage } from '../../src/records/types';
import {
  decodeState, emptyChatState, encodeState, nextDeadline, openConversations, step, type ChatEvent, type ChatState, type Output,
  type RulesConfig,
} from '../../src/sessionization/rules';
import { ReferenceChat } from './reference-model';

// Streams are generated as instructions and turned into concrete events by a deterministic walk.
// Each chat has a cursor (its last sent_at); a message steps away from it by a delta drawn mostly
// from values right around the thresholds (gap 100, group gap 60, direct gap 130, grace 30, settle
// 40), in both directions, so joins, splits, merges, out-of-order and late arrivals are all
// frequent. A jump moves a chat's cursor far back (history arriving behind the chat's newest
// messages: a phone back online, an import into a live chat) or far ahead. Processing time is one
// wall clock shared by the chats that never runs backwards: a live message arrives a little after
// its sent_at, history arrives "now", and ticks advance the clock by amounts near the thresholds so
// that both the gap deadline and the settle time are often hit exactly. Messages are re-sent singly
// (same or another sent_at) and in runs (a producer retrying a batch, a file imported twice).

const CHATS: readonly string[] = ['a', 'b', 'c'];
const LARGEST_GAP = 130;
const SKEW = 200;
const THRESHOLD_DELTAS = [
  -161, -131, -101, -100, -99, -61, -60, -59, -31, -30, -1, 0, 0, 1, 1, 5, 10, 20, 29, 30, 31, 59, 60, 60, 61, 89, 90, 91, 99, 100, 100,
  101, 101, 129, 130, 131, 131, 160, 161, 161, 230, 231,
];
const TICK_ADVANCES = [0, 1, 10, 29, 30, 31, 39, 40, 41, 59, 60, 61, 99, 100, 101, 129, 130, 131, 159, 160, 161, 199, 200, 230, 231, 300];

type MsgFields = { sender: number; type: number; account: number; text: number };
type Instruction =
  | ({ t: 'msg'; chat: number; fromWall: boolean; delta: number; lag: number; adv: number } & MsgFields)
  | { t: 'dup'; chat: number; index: number; keepsTime: boolean; delta: number; adv: number }
  | { t: 'resend'; chat: number; from: number; count: number; adv: number }
  | { t: 'jump'; chat: number; by: number }
  | ({ t: 'future'; chat: number; over: number } & MsgFields)
  | { t: 'tick'; advance: number; caughtUp: boolean }
  | { t: 'force'; chat: number };

const chatIndex = fc.integer({ min: 0, max: CHATS.length - 1 });
const delta = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...THRESHOLD_DELTAS) }, { weight: 1, arbitrary: fc.integer({ min: -300, max: 500 }) });
/** Processing time spent before a message arrives, on top of the wall clock. */
const adv = fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(1, 20, 40, 100) });
const fields = {
  sender: fc.integer({ min: 0, max: 3 }),
  type: fc.integer({ min: 0, max: 5 }),
  account: fc.integer({ min: 0, max: 3 }),
  text: fc.integer({ min: 0, max: 60 }),
};

const instruction: fc.Arbitrary<Instruction> = fc.oneof(
  {
    weight: 24,
    arbitrary: fc.record({
      t: fc.constant('msg' as const),
      chat: chatIndex,
      fromWall: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      delta,
      // Arrival lag after sent_at: mostly live, sometimes behind by about a settle time or a gap.
      lag: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 80 }) }, { weight: 1, arbitrary: fc.constantFrom(1, 39, 40, 99, 100, 101, 250) }),
      adv,
      ...fields,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant('dup' as const), chat: chatIndex, index: fc.nat(), keepsTime: fc.boolean(), delta, adv }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('resend' as const), chat: chatIndex, from: fc.nat(), count: fc.integer({ min: 1, max: 12 }), adv,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('jump' as const),
      chat: chatIndex,
      by: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: -5000, max: -300 }) }, { weight: 1, arbitrary: fc.integer({ min: 300, max: 5000 }) }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('future' as const), chat: chatIndex, over: fc.constantFrom(0, 1, 7), ...fields }) },
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('tick' as const),
      advance: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...TICK_ADVANCES) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 3000 }) }),
      caughtUp: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('force' as const), chat: chatIndex }) },
);

const config: fc.Arbitrary<RulesConfig> = fc.record({
  gapMs: fc.constant(100),
  gapByTypeMs: fc.constant({ group: 60, direct: 130 }),
  graceMs: fc.constantFrom(0, 0, 30, 200),
  // 60,000 is the default and, against these gaps, leaves gap + grace in force; 0 turns it off.
  settleMs: fc.constantFrom(0, 40, 100, 60_000, 60_000),
  maxMessages: fc.constantFrom(2, 4, 7, 1_000_000),
  maxBytes: fc.constantFrom(500, 900, 1_000_000_000),
  maxFutureSkewMs: fc.constant(SKEW),
});

/** An event addressed to one chat, or a tick for every chat. */
type Routed = { chat: string | null; event: ChatEvent };

const TYPES: Array<string | null> = [null, null, null, 'group', 'direct', 'channel'];
const ACCOUNTS: Array<string | null> = [null, null, 'acct-1', 'acct-2'];
// Multi-byte characters, an astral one (cut in half by the slicing below: a lone surrogate) and
// characters JSON escapes, so byte counting is exercised.
const TEXT = 'hé😀 a"b\\c\nd日本\u0001';

function materialize(instructions: Instruction[], chats: readonly string[] = CHATS): Routed[] {
  const cursor = chats.map(() => 10_000);
  const sent: ChatMessage[][] = chats.map(() => []);
  let wall = 10_000;
  let n = 0;
  const out: Routed[] = [];
  const fresh = (k: number, sentAt: number, f: MsgFields): ChatMessage => {
    const chat = chats[k]!;
    const message: ChatMessage = {
      message_id: `${chat}-${n++}`,
      chat_id: chat,
      sender_id: `user-${f.sender}`,
      sent_at: sentAt,
      text: f.text === 0 ? null : TEXT.repeat(f.text).slice(0, f.text * 3),
      chat_type: TYPES[f.type]!,
      is_from_me: f.sender === 0,
      reply_to_message_id: f.sender === 1 ? 'r' : null,
      account_id: ACCOUNTS[f.account]!,
    };
    sent[k]!.push(message);
    return message;
  };
  const deliver = (k: number, message: ChatMessage, now: number) => {
    wall = now;
    out.push({ chat: chats[k]!, event: { type: 'message', message, now } });
  };
  for (const ins of instructions) {
    if (ins.t === 'tick') {
      wall += ins.advance;
      out.push({ chat: null, event: { type: 'tick', now: wall, caughtUp: ins.caughtUp } });
      continue;
    }
    const k = ins.chat % chats.length;
    if (ins.t === 'force') {
      out.push({ chat: chats[k]!, event: { type: 'force', now: wall } });
    } else if (ins.t === 'jump') {
      cursor[k] = cursor[k]! + ins.by;
    } else if (ins.t === 'msg') {
      cursor[k] = (ins.fromWall ? wall : cursor[k]!) + ins.delta;
      const message = fresh(k, cursor[k]!, ins);
      deliver(k, message, Math.max(wall + ins.adv, message.sent_at + ins.lag));
    } else if (ins.t === 'future') {
      // Exactly MAX_FUTURE_SKEW ahead of the wall clock is accepted; more is invalid.
      const message = fresh(k, wall + SKEW + ins.over, ins);
      deliver(k, message, wall);
    } else if (ins.t === 'dup') {
      const previous = sent[k]!;
      if (previous.length === 0) continue;
      const original = previous[ins.index % previous.length]!;
      const message = { ...original, sent_at: ins.keepsTime ? original.sent_at : cursor[k]! + ins.delta };
      deliver(k, message, Math.max(wall + ins.adv, message.sent_at));
    } else {
      const previous = sent[k]!;
      if (previous.length === 0) continue;
      const from = ins.from % previous.length;
      for (const original of previous.slice(from, from + ins.count)) deliver(k, original, Math.max(wall + ins.adv, original.sent_at));
    }
  }
  // Flush: everything left open is force-sealed at the end.
  for (const chat of chats) out.push({ chat, event: { type: 'force', now: wall + 1 } });
  return out;
}

function targets(r: Routed, chats: readonly string[] = CHATS): string[] {
  return r.chat === null ? [...chats] : [r.chat];
}

/** Runs the rules; `roundTrip(i)` says whether to encode and decode the states before event i. */
function runRules(
  events: Routed[], cfg: RulesConfig, roundTrip: (i: number) => boolean = () => false, chats: readonly string[] = CHATS,
): { outputs: Output[][]; states: Map<string, ChatState> } {
  const states = new Map<string, ChatState>(chats.map((c) => [c, emptyChatState(c)]));
  const outputs = events.map((r, i) => {
    const outs: Output[] = [];
    for (const chat of targets(r, chats)) {
      let state = states.get(chat)!;
      if (roundTrip(i)) state = decodeState(encodeState(state));
      const res = step(state, r.event, cfg);
      states.set(chat, res.state);
      outs.push(...res.outputs);
    }
    return outs;
  });
  return { outputs, states };
}

function normalize(outputs: Output[]): unknown {
  return JSON.parse(JSON.stringify(outputs.map((o) => (o.kind === 'invalid' ? { ...o, reason: 'invalid' } : o))));
}

/** Runs the rules and the reference model side by side and compares every output and view. */
function compareWithReference(cfg: RulesConfig, events: Routed[], chats: readonly string[]): void {
  const states = new Map<string, ChatState>(chats.map((c) => [c, emptyChatState(c)]));
  const refs = new Map(chats.map((c) => [c, new ReferenceChat(c, cfg)]));
  events.forEach((r, i) => {
    for (const chat of targets(r, chats)) {
      const where = `after event ${i} (${r.event.type}) on chat ${chat}`;
      const ref = refs.get(chat)!;
      const res = step(states.get(chat)!, r.event, cfg);
      states.set(chat, res.state);
      const expected = ref.step(r.event);
      for (const o of res.outputs) if (o.kind === 'invalid') assert.match(o.reason, /MAX_FUTURE_SKEW/);
      assert.deepStrictEqual(normalize(res.outputs), normalize(expected), `outputs ${where}`);
      const views = openConversations(res.state, cfg).map((c) => ({
        startedAt: c.startedAt, endedAt: c.endedAt, messageCount: c.messageCount, arrivedAt: c.arrivedAt,
        deadline: c.deadline, settlesAt: c.settlesAt, continuesConversationId: c.continuesConversationId,
      }));
      assert.deepStrictEqual(views, ref.openViews(), `open conversations ${where}`);
      assert.equal(nextDeadline(res.state, cfg), ref.nextDeadline(), `nextDeadline ${where}`);
      assert.equal(res.state.sealedReach, ref.sealedReach(), `sealedReach ${where}`);
      assert.equal(res.state.forgottenReach, ref.forgottenReach(), `forgottenReach ${where}`);
      assert.deepStrictEqual(res.state.sealed.map((x) => x.conversationId), ref.rememberedIds(), `remembered conversations ${where}`);
    }
  });
}

const instructions = fc.array(instruction, { minLength: 1, maxLength: 150, size: 'max' });

describe('sessionization rules against the reference model', () => {
  test('every output (sealed conversations with their messages, late, duplicate, invalid), open view and deadline matches', () => {
    fc.assert(
      fc.property(config, instructions, (cfg, ins) => compareWithReference(cfg, materialize(ins), CHATS)),
      { numRuns: 400 },
    );
  });

  test('one busy chat past the 64 remembered conversations: forgetting matches too', () => {
    const longConfig: fc.Arbitrary<RulesConfig> = fc.record({
      gapMs: fc.constant(100),
      gapByTypeMs: fc.constant({ group: 60, direct: 130 }),
      graceMs: fc.constantFrom(0, 30),
      settleMs: fc.constantFrom(0, 40, 60_000),
      maxMessages: fc.constantFrom(1, 2, 3, 1_000_000),
      maxBytes: fc.constant(1_000_000_000),
      maxFutureSkewMs: fc.constant(SKEW),
    });
    fc.assert(
      fc.property(longConfig, fc.array(instruction, { minLength: 200, maxLength: 500, size: 'max' }), (cfg, ins) => {
        compareWithReference(cfg, materialize(ins, ['solo']), ['solo']);
      }),
      { numRuns: 60 },
    );
  });

  test('every message is accounted for exactly once: sealed, late, duplicate or invalid', () => {
    fc.assert(
      fc.property(config, instructions, (cfg, ins) => {
        const events = materialize(ins);
        const outputs = runRules(events, cfg).outputs.flat();
        let fed = 0;
        for (const r of events) if (r.event.type === 'message') fed++;
        let accounted = 0;
        const sealedIds = new Set<string>();
        for (const o of outputs) {
          if (o.kind === 'sealed') {
            accounted += o.conversation.messages.length;
            assert.equal(o.conversation.message_count, o.conversation.messages.length);
            assert.ok(!sealedIds.has(o.conversation.conversation_id), 'a conversation id is sealed twice');
            sealedIds.add(o.conversation.conversation_id);
            const times = o.conversation.messages.map((m) => m.sent_at);
            for (let k = 1; k < times.length; k++) {
              assert.ok(times[k]! >= times[k - 1]!, 'messages in sent_at order');
              // A chat's gap may change once (when its type becomes known), so bound by the largest gap in play.
              assert.ok(times[k]! - times[k - 1]! <= LARGEST_GAP, 'no step larger than the gap');
            }
          } else {
            accounted++;
          }
        }
        assert.equal(accounted, fed);
      }),
      { numRuns: 200 },
    );
  });

  test('nextDeadline is exact: a caught-up tick one millisecond before it seals nothing, a tick at it seals', () => {
    fc.assert(
      fc.property(config, instructions, (cfg, ins) => {
        const events = materialize(ins);
        const states = new Map<string, ChatState>(CHATS.map((c) => [c, emptyChatState(c)]));
        events.forEach((r, i) => {
          for (const chat of targets(r)) {
            const state = step(states.get(chat)!, r.event, cfg).state;
            states.set(chat, state);
            const at = nextDeadline(state, cfg);
            if (at === null) { assert.equal(state.open.length, 0); continue; }
            const before = step(decodeState(encodeState(state)), { type: 'tick', now: at - 1, caughtUp: true }, cfg).outputs;
            assert.deepEqual(before, [], `tick at nextDeadline - 1 after event ${i} on chat ${chat}`);
            const atIt = step(decodeState(encodeState(state)), { type: 'tick', now: at, caughtUp: true }, cfg).outputs;
            assert.ok(atIt.length > 0 && atIt.every((o) => o.kind === 'sealed'), `tick at nextDeadline after event ${i} on chat ${chat}`);
          }
        });
      }),
      { numRuns: 100 },
    );
  });

  test('producing the same messages again: nothing placed or sealed, remembered ones are duplicates, never late', () => {
    fc.assert(
      fc.property(config, instructions, (cfg, ins) => {
        const events = materialize(ins);
        const first = runRules(events, cfg);
        const wall = Math.max(...events.map((r) => r.event.now));
        // Which conversation holds each id, and which conversations each chat still remembers.
        const holder = new Map<string, string>();
        for (const o of first.outputs.flat()) if (o.kind === 'sealed') for (const m of o.conversation.messages) holder.set(m.message_id, o.conversation.conversation_id);
        for (const chat of CHATS) {
          const state = first.states.get(chat)!;
          if (state.forgottenReach !== null) continue; // re-sent copies of forgotten ones may be placed
          const remembered = new Set(state.sealed.map((x) => x.conversationId));
          const before = encodeState(state);
          let k = 0;
          events.forEach((r, i) => {
            if (r.chat !== chat || r.event.type !== 'message') return;
            const kinds = first.outputs[i]!.filter((o) => o.kind !== 'sealed').map((o) => o.kind);
            if (kinds.includes('invalid')) return;
            const m = r.event.message;
            const out = step(state, { type: 'message', message: m, now: wall + ++k }, cfg).outputs;
            assert.equal(out.length, 1, `one output for the re-sent ${m.message_id}`);
            const h = holder.get(m.message_id);
            if (h !== undefined && remembered.has(h)) assert.equal(out[0]!.kind, 'duplicate', `re-sent ${m.message_id} is a duplicate`);
            else assert.equal(out[0]!.kind, 'late', `re-sent ${m.message_id} (late before) is late again`);
          });
          assert.deepEqual(encodeState(state), before, `producing chat ${chat} again changes nothing`);
        }
      }),
      { numRuns: 150 },
    );
  });

  test('history delivered in blocks, in any block order, with pauses shorter than the settle time: the conversations of in-order delivery', () => {
    // SPEC section 2, rule 1 and rule 2: history that arrives behind the chat's newest messages, or
    // in batches into a caught-up tracker, forms the conversations it would have formed in order.
    // Blocks are cut at quiet stretches (a step larger than gap + grace) and each block arrives in
    // sent_at order; ticks come anywhere, but within a block only sooner than the settle time after
    // the last message.
    const blockConfig: fc.Arbitrary<RulesConfig> = fc.record({
      gapMs: fc.constant(100),
      gapByTypeMs: fc.constant({}),
      graceMs: fc.constantFrom(0, 30),
      settleMs: fc.constantFrom(0, 40, 60_000),
      maxMessages: fc.constant(1_000_000),
      maxBytes: fc.constant(1_000_000_000),
      maxFutureSkewMs: fc.constant(1_000_000_000),
    });
    const stepArb = fc.record({
      delta: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(0, 1, 50, 99, 100, 101, 129, 130, 131, 160) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 2000 }) }),
      cut: fc.boolean(),
      tick: fc.option(fc.integer({ min: 0, max: 200 }), { freq: 4 }),
    });
    fc.assert(
      fc.property(blockConfig, fc.array(stepArb, { minLength: 1, maxLength: 60 }), fc.array(fc.nat(), { minLength: 60, maxLength: 60 }), (cfg, steps, keys) => {
        const settle = Math.min(cfg.settleMs, cfg.gapMs + cfg.graceMs);
        let t = 100_000;
        const blocks: ChatMessage[][] = [[]];
        steps.forEach((st, i) => {
          t += st.delta;
          if (i > 0 && st.cut && st.delta > cfg.gapMs + cfg.graceMs) blocks.push([]);
          blocks[blocks.length - 1]!.push({
            message_id: `h-${i}`, chat_id: 'h', sender_id: 's', sent_at: t, text: null, chat_type: null, is_from_me: false,
            reply_to_message_id: null, account_id: null,
          });
        });
        const ticks = new Map<string, number | null>(steps.map((st, i) => [`h-${i}`, st.tick]));
        const conversations = (outputs: Output[]) => outputs
          .flatMap((o) => (o.kind === 'sealed' ? [[o.conversation.conversation_id, o.conversation.messages.map((m) => m.message_id)] as const] : []))
          .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));

        let state = emptyChatState('h');
        const expected: Output[] = [];
        for (const m of blocks.flat()) expected.push(...step(state, { type: 'message', message: m, now: 1 }, cfg).outputs);
        expected.push(...step(state, { type: 'force', now: 2 }, cfg).outputs);

        const order = blocks.map((_, b) => b).sort((x, y) => keys[x]! - keys[y]! || x - y);
        state = emptyChatState('h');
        const got: Output[] = [];
        let wall = 1_000_000;
        for (const b of order) {
          const block = blocks[b]!;
          block.forEach((m, j) => {
            wall += 1;
            got.push(...step(state, { type: 'message', message: m, now: wall }, cfg).outputs);
            const tick = ticks.get(m.message_id);
            if (tick === null || tick === undefined) return;
            const last = j === block.length - 1;
            if (!last && tick >= settle) return; // inside a block, pauses stay under the settle time
            wall += last ? tick * 10 : tick;
            got.push(...step(state, { type: 'tick', now: wall, caughtUp: true }, cfg).outputs);
          });
        }
        got.push(...step(state, { type: 'force', now: wall + 1 }, cfg).outputs);
        assert.deepEqual(got.filter((o) => o.kind !== 'sealed'), [], 'nothing late or duplicate');
        assert.deepEqual(conversations(got), conversations(expected));
      }),
      { numRuns: 300 },
    );
  });

  test('replaying the same stream gives identical outputs', () => {
    fc.assert(
      fc.property(config, instructions, (cfg, ins) => {
        const events = materialize(ins);
        assert.deepStrictEqual(normalize(runRules(events, cfg).outputs.flat()), normalize(runRules(events, cfg).outputs.flat()));
      }),
      { numRuns: 100 },
    );
  });

  test('encoding and decoding the state at random points changes nothing', () => {
    fc.assert(
      fc.property(config, instructions, fc.array(fc.boolean(), { minLength: 1, maxLength: 200 }), (cfg, ins, flips) => {
        const events = materialize(ins);
        const plain = runRules(events, cfg).outputs;
        const roundTripped = runRules(events, cfg, (i) => flips[i % flips.length]!).outputs;
        assert.deepStrictEqual(normalize(roundTripped.flat()), normalize(plain.flat()));
      }),
      { numRuns: 200 },
    );
  });
});
