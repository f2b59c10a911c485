// The version-1 changelog fixture (tests/fixtures/v1-changelog/): the backlog it was made from,
// split into the two phases, and readers for the files tests/fixtures/v1-changelog/make.ts wrote.
//
// The input messages are not stored: they are regenerated here from a fixed seed and start time
// (generateBacklog is deterministic in its options), and meta.json holds their sha256, so a change
// of the generator shows as a clear failure instead of a confusing mismatch.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { ChatMessage, ConversationSealed, LateMessage } from '../../src/records/types';
import { emptyChatState, step, type ChatState, type RulesConfig } from '../../src/sessionization/rules';
import { conversationKey, generateBacklog } from './backlog';

export const FIXTURE_DIR = path.resolve(__dirname, '../../../tests/fixtures/v1-changelog');

/** The backlog: 40 chats, about 4,000 messages, 90 minute gap, in October 2026 (in the past). */
export const BACKLOG_OPTIONS = {
  seed: 20_261_001,
  chats: 40,
  messages: 4000,
  gapMs: 90 * 60_000,
  startMs: Date.UTC(2026, 9, 1),
  endMs: Date.UTC(2026, 9, 15),
  // In order: no deliveries minutes or hours behind their neighbours (version 1 and 2 apply
  // rule 1 differently to those), only the generator's small network delays.
  reorderRate: 0,
  lateRate: 0,
  duplicateRate: 0.02,
} as const;

/** Share of each chat's deliveries in phase 1 (processed by version 1). */
export const PHASE1_SHARE = 0.6;

export interface Phases {
  phase1: ChatMessage[];
  phase2: ChatMessage[];
  /** Duplicate deliveries dropped because their message was already sealed when they came. */
  droppedResends: number;
}

/**
 * The backlog without re-sends of already-sealed messages (version 1 calls those late, version 2
 * duplicates, and a converted version-1 summary knows no message ids), split per chat: the first
 * PHASE1_SHARE of each chat's deliveries is phase 1, the rest phase 2, each in production order.
 */
export function fixturePhases(rules: RulesConfig): Phases {
  const backlog = generateBacklog({ ...BACKLOG_OPTIONS });
  const states = new Map<string, ChatState>();
  const kept: ChatMessage[] = [];
  let droppedResends = 0;
  const seen = new Set<string>();
  for (const m of backlog.messages) {
    let state = states.get(m.chat_id);
    if (!state) states.set(m.chat_id, (state = emptyChatState(m.chat_id)));
    if (seen.has(m.message_id) && !state.open.some((c) => c.messages.some((x) => x.message_id === m.message_id))) {
      droppedResends++;
      continue;
    }
    seen.add(m.message_id);
    kept.push(m);
    states.set(m.chat_id, step(state, { type: 'message', message: { ...m }, now: Date.UTC(2027, 0, 1) }, rules).state);
  }
  const perChat = new Map<string, number>();
  for (const m of kept) perChat.set(m.chat_id, (perChat.get(m.chat_id) ?? 0) + 1);
  const taken = new Map<string, number>();
  const phase1: ChatMessage[] = [];
  const phase2: ChatMessage[] = [];
  for (const m of kept) {
    const n = taken.get(m.chat_id) ?? 0;
    taken.set(m.chat_id, n + 1);
    (n < Math.round(perChat.get(m.chat_id)! * PHASE1_SHARE) ? phase1 : phase2).push(m);
  }
  return { phase1, phase2, droppedResends };
}

export function sha256OfMessages(messages: readonly ChatMessage[]): string {
  return createHash('sha256').update(JSON.stringify(messages)).digest('hex');
}

// --- the fixture's files ---------------------------------------------------------------------

export interface FixtureMeta {
  /** The commit whose tracker made the fixture, and how (see make.ts). */
  v1Commit: string;
  backlog: typeof BACKLOG_OPTIONS;
  phase1Share: number;
  phase1Messages: number;
  phase2Messages: number;
  phase1Sha256: string;
  phase2Sha256: string;
  droppedResends: number;
  partitions: number;
  /** The environment the version-1 tracker ran with (besides topic prefix, app id, state dir). */
  v1Env: Record<string, string>;
  /** Records per partition: phase-1 input, changelog. */
  inputEnd: Record<string, number>;
  changelogRecords: Record<string, number>;
  /** The version-1 store's checkpoint per partition after the clean stop (its changelog offsets). */
  v1Checkpoint: Record<string, number>;
  sealed: number;
  late: number;
  dlq: number;
  /** Open conversations and messages in the version-1 states at the stop. */
  openConversations: number;
  openMessages: number;
}

/** A changelog record: partition, offset in the version-1 run's topic, key, value (a version-1 ChatState as JSON, or null). */
export interface ChangelogLine { p: number; o: number; k: string; v: unknown }

/** A store entry other than `s:` (those equal the changelog's last value of their chat: `s` only names them). */
export interface StoreLine { p: number; k: string; v?: string; s?: true }

/** A sealed conversation of phase 1: what identifies it, and the sha256 of its conversationKey (every field but sealed_at). */
export interface SealedLine {
  conversation_id: string; chat_id: string; started_at: number; ended_at: number; seal_reason: string; message_count: number; key_sha256: string;
}

export function keyHash(c: ConversationSealed): string {
  return createHash('sha256').update(conversationKey(c)).digest('hex');
}

function jsonLines<T>(file: string): T[] {
  return readFileSync(path.join(FIXTURE_DIR, file), 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as T);
}

export interface Fixture {
  meta: FixtureMeta;
  changelog: ChangelogLine[];
  store: StoreLine[];
  sealed: SealedLine[];
  late: LateMessage[];
}

export function loadFixture(): Fixture {
  return {
    meta: JSON.parse(readFileSync(path.join(FIXTURE_DIR, 'meta.json'), 'utf8')) as FixtureMeta,
    changelog: jsonLines<ChangelogLine>('changelog.jsonl'),
    store: jsonLines<StoreLine>('store.jsonl'),
    sealed: jsonLines<SealedLine>('sealed.jsonl'),
    late: jsonLines<LateMessage>('late.jsonl'),
  };
}

/** A changelog value as the version-1 tracker wrote it (JSON.stringify of the state). */
export function changelogValue(line: ChangelogLine): Buffer | null {
  return line.v === null ? null : Buffer.from(JSON.stringify(line.v), 'utf8');
}
