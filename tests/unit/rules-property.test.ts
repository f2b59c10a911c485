import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ChatMessage } from '../../src/records/types';
import {
  decodeState, emptyChatState, encodeState, openConversations, step, type ChatEvent, type ChatState, type Output,
  type RulesConfig,
} from '../../src/sessionization/rules';
import { ReferenceChat } from './reference-model';

// Streams are generated as instructions and turned into concrete events by a deterministic walk:
// each chat has a cursor (its last sent_at) and each message steps away from it by a delta drawn
// mostly from values right around the thresholds (gap 100, group gap 60, grace 30), in both
// directions, so joins, splits, merges, out-of-order and late arrivals are all frequent.

const CHATS: readonly string[] = ['a', 'b', 'c'];
const LARGEST_GAP = 130;
const THRESHOLD_DELTAS = [
  -161, -131, -101, -100, -99, -61, -60, -59, -31, -30, -1, 0, 0, 1, 1, 5, 10, 20, 29, 30, 31, 59, 60, 60, 61, 89, 90, 91, 99, 100, 100,
  101, 101, 129, 130, 131, 131, 160, 161, 161, 230, 231,
];

type Instruction =
  | { t: 'msg'; chat: number; delta: number; dup: number | null; dupKeepsTime: boolean; sender: number; type: number; account: number; text: number; nowOffset: number }
  | { t: 'tick'; advance: number; caughtUp: boolean }
  | { t: 'force'; chat: number };

const instruction: fc.Arbitrary<Instruction> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      t: fc.constant('msg' as const),
      chat: fc.integer({ min: 0, max: CHATS.length - 1 }),
      delta: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...THRESHOLD_DELTAS) }, { weight: 1, arbitrary: fc.integer({ min: -300, max: 500 }) }),
      dup: fc.oneof({ weight: 7, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat() }),
      dupKeepsTime: fc.boolean(),
      sender: fc.integer({ min: 0, max: 3 }),
      type: fc.integer({ min: 0, max: 5 }),
      account: fc.integer({ min: 0, max: 3 }),
      text: fc.integer({ min: 0, max: 60 }),
      nowOffset: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 80 }) }, { weight: 1, arbitrary: fc.integer({ min: -260, max: -150 }) }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('tick' as const), advance: fc.integer({ min: 0, max: 250 }), caughtUp: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('force' as const), chat: fc.integer({ min: 0, max: CHATS.length - 1 }) }) },
);

const config: fc.Arbitrary<RulesConfig> = fc.record({
  gapMs: fc.constant(100),
  gapByTypeMs: fc.constant({ group: 60, direct: 130 }),
  graceMs: fc.constantFrom(0, 0, 30, 200),
  settleMs: fc.constant(0),
  maxMessages: fc.constantFrom(2, 4, 7, 1_000_000),
  maxBytes: fc.constantFrom(500, 900, 1_000_000_000),
  maxFutureSkewMs: fc.constant(200),
});

/** An event addressed to one chat, or a tick for every chat. */
type Routed = { chat: string | null; event: ChatEvent };

const TYPES: Array<string | null> = [null, null, null, 'group', 'direct', 'channel'];
const ACCOUNTS: Array<string | null> = [null, null, 'acct-1', 'acct-2'];
// Multi-byte characters, an astral one (cut in half by the slicing below: a lone surrogate) and
// characters JSON escapes, so byte counting is exercised.
const TEXT = 'hé😀 a"b\\c\nd日本\u0001';

function materialize(instructions: Instruction[]): Routed[] {
  const cursor = CHATS.map(() => 10_000);
  const sent: ChatMessage[][] = CHATS.map(() => []);
  let wall = 10_000;
  let n = 0;
  const out: Routed[] = [];
  for (const ins of instructions) {
    if (ins.t === 'tick') {
      wall += ins.advance;
      out.push({ chat: null, event: { type: 'tick', now: wall, caughtUp: ins.caughtUp } });
    } else if (ins.t === 'force') {
      out.push({ chat: CHATS[ins.chat]!, event: { type: 'force', now: wall } });
    } else {
      const chat = CHATS[ins.chat]!;
      const previous = sent[ins.chat]!;
      let message: ChatMessage;
      if (ins.dup !== null && previous.length > 0) {
        const original = previous[ins.dup % previous.length]!;
        message = { ...original, sent_at: ins.dupKeepsTime ? original.sent_at : cursor[ins.chat]! + ins.delta };
      } else {
        cursor[ins.chat] = cursor[ins.chat]! + ins.delta;
        message = {
          message_id: `${chat}-${n++}`,
          chat_id: chat,
          sender_id: `user-${ins.sender}`,
          sent_at: cursor[ins.chat]!,
          text: ins.text === 0 ? null : TEXT.repeat(ins.text).slice(0, ins.text * 3),
          chat_type: TYPES[ins.type]!,
          is_from_me: ins.sender === 0,
          reply_to_message_id: ins.sender === 1 ? 'r' : null,
          account_id: ACCOUNTS[ins.account]!,
        };
        previous.push(message);
      }
      // The wall clock follows the event time of the latest message, give or take (chats drift
      // apart, so ticks find some chats idle); a negative offset beyond the skew makes it invalid.
      const now = message.sent_at + ins.nowOffset;
      wall = now;
      out.push({ chat, event: { type: 'message', message, now } });
    }
  }
  // Flush: everything left open is force-sealed at the end.
  for (const chat of CHATS) out.push({ chat, event: { type: 'force', now: wall + 1 } });
  return out;
}

function targets(r: Routed): string[] {
  return r.chat === null ? [...CHATS] : [r.chat];
}

/** Runs the rules; `roundTrip(i)` says whether to encode and decode the states before event i. */
function runRules(events: Routed[], cfg: RulesConfig, roundTrip: (i: number) => boolean = () => false): Output[][] {
  const states = new Map<string, ChatState>(CHATS.map((c) => [c, emptyChatState(c)]));
  return events.map((r, i) => {
    const outputs: Output[] = [];
    for (const chat of targets(r)) {
      let state = states.get(chat)!;
      if (roundTrip(i)) state = decodeState(encodeState(state));
      const res = step(state, r.event, cfg);
      states.set(chat, res.state);
      outputs.push(...res.outputs);
    }
    return outputs;
  });
}

function normalize(outputs: Output[]): unknown {
  return JSON.parse(JSON.stringify(outputs.map((o) => (o.kind === 'invalid' ? { ...o, reason: 'invalid' } : o))));
}

const instructions = fc.array(instruction, { minLength: 1, maxLength: 150, size: 'max' });

describe('sessionization rules against the reference model', () => {
  test('every output (sealed conversations with their messages, late, duplicate, invalid) matches', () => {
    fc.assert(
      fc.property(config, instructions, (cfg, ins) => {
        const events = materialize(ins);
        const states = new Map<string, ChatState>(CHATS.map((c) => [c, emptyChatState(c)]));
        const refs = new Map(CHATS.map((c) => [c, new ReferenceChat(c, cfg)]));
        events.forEach((r, i) => {
          for (const chat of targets(r)) {
            const res = step(states.get(chat)!, r.event, cfg);
            states.set(chat, res.state);
            const expected = refs.get(chat)!.step(r.event);
            for (const o of res.outputs) if (o.kind === 'invalid') assert.match(o.reason, /MAX_FUTURE_SKEW/);
            assert.deepStrictEqual(normalize(res.outputs), normalize(expected), `event ${i} (${r.event.type}) on chat ${chat}`);
            const spans = openConversations(res.state, cfg).map((c) => [c.startedAt, c.endedAt, c.messageCount]);
            assert.deepStrictEqual(spans, refs.get(chat)!.openSpans(), `open conversations after event ${i} on chat ${chat}`);
          }
        });
      }),
      { numRuns: 400 },
    );
  });

  test('every message is accounted for exactly once: sealed, late, duplicate or invalid', () => {
    fc.assert(
      fc.property(config, instructions, (cfg, ins) => {
        const events = materialize(ins);
        const outputs = runRules(events, cfg).flat();
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

  test('replaying the same stream gives identical outputs', () => {
    fc.assert(
      fc.property(config, instructions, (cfg, ins) => {
        const events = materialize(ins);
        assert.deepStrictEqual(normalize(runRules(events, cfg).flat()), normalize(runRules(events, cfg).flat()));
      }),
      { numRuns: 100 },
    );
  });

  test('encoding and decoding the state at random points changes nothing', () => {
    fc.assert(
      fc.property(config, instructions, fc.array(fc.boolean(), { minLength: 1, maxLength: 200 }), (cfg, ins, flips) => {
        const events = materialize(ins);
        const plain = runRules(events, cfg);
        const roundTripped = runRules(events, cfg, (i) => flips[i % flips.length]!);
        assert.deepStrictEqual(normalize(roundTripped.flat()), normalize(plain.flat()));
      }),
      { numRuns: 200 },
    );
  });
});
