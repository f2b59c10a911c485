// Loading sealed conversations into PostgreSQL (idempotent) and reading them back for analysis.
import { createHash } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import type { ChatMessage, ConversationSealed } from '../records/types';
import type { Conversation } from '../analysis/types';
import { isDataError } from './errors';

/**
 * sha256 over what the analyzers read: each message's sender, time, direction and text, in order.
 * Ids are left out on purpose: the same content under other ids (a re-import) reuses cached results.
 */
export function contentHash(messages: readonly Pick<ChatMessage, 'sender_id' | 'sent_at' | 'is_from_me' | 'text'>[]): string {
  const h = createHash('sha256');
  h.update('chatstats-content-v1\n');
  for (const m of messages) h.update(JSON.stringify([m.sender_id, m.sent_at, m.is_from_me === true, m.text ?? null]) + '\n');
  return h.digest('hex');
}

export type LoadOutcome =
  /** `messages` rows were written; `duplicateMessages` message ids already belonged to another conversation and were left there. */
  | { status: 'inserted'; conversation_id: string; content_hash: string; messages: number; duplicateMessages: number }
  | { status: 'existing'; conversation_id: string; content_hash: string }
  | { status: 'rejected'; conversation_id: string; error: Error };

const CONV_SQL = `
INSERT INTO conversations (conversation_id, chat_id, chat_type, account_id, started_at, ended_at, message_count,
  participant_ids, first_message_id, last_message_id, seal_reason, continues_conversation_id, gap_ms, sealed_at, content_hash)
SELECT c.conversation_id, c.chat_id, c.chat_type, c.account_id,
  timestamptz 'epoch' + c.started_at * interval '1 millisecond',
  timestamptz 'epoch' + c.ended_at * interval '1 millisecond',
  c.message_count,
  ARRAY(SELECT jsonb_array_elements_text(c.participant_ids)),
  c.first_message_id, c.last_message_id, c.seal_reason, c.continues_conversation_id, c.gap_ms,
  timestamptz 'epoch' + c.sealed_at * interval '1 millisecond',
  c.content_hash
FROM jsonb_to_recordset($1::jsonb) AS c(conversation_id text, chat_id text, chat_type text, account_id text,
  started_at bigint, ended_at bigint, message_count integer, participant_ids jsonb, first_message_id text,
  last_message_id text, seal_reason text, continues_conversation_id text, gap_ms bigint, sealed_at bigint, content_hash text)
ON CONFLICT (conversation_id) DO NOTHING
RETURNING conversation_id`;

const MSG_SQL = `
INSERT INTO messages (message_id, conversation_id, position, chat_id, sender_id, sent_at, text, is_from_me, reply_to_message_id, account_id, linked_message_id)
SELECT m.message_id, m.conversation_id, m.position, m.chat_id, m.sender_id,
  timestamptz 'epoch' + m.sent_at * interval '1 millisecond',
  m.text, m.is_from_me, m.reply_to_message_id, m.account_id, m.linked_message_id
FROM jsonb_to_recordset($1::jsonb) AS m(message_id text, conversation_id text, position integer, chat_id text,
  sender_id text, sent_at bigint, text text, is_from_me boolean, reply_to_message_id text, account_id text, linked_message_id text)
ON CONFLICT (message_id) DO NOTHING
RETURNING conversation_id`;

interface Prepared { sealed: ConversationSealed; hash: string }

function convRow(p: Prepared): Record<string, unknown> {
  const c = p.sealed;
  return {
    conversation_id: c.conversation_id, chat_id: c.chat_id, chat_type: c.chat_type, account_id: c.account_id,
    started_at: c.started_at, ended_at: c.ended_at, message_count: c.message_count, participant_ids: c.participant_ids,
    first_message_id: c.first_message_id, last_message_id: c.last_message_id, seal_reason: c.seal_reason,
    continues_conversation_id: c.continues_conversation_id, gap_ms: c.gap_ms, sealed_at: c.sealed_at, content_hash: p.hash,
  };
}

function messageRows(c: ConversationSealed): Record<string, unknown>[] {
  return c.messages.map((m, i) => ({
    message_id: m.message_id, conversation_id: c.conversation_id, position: i, chat_id: m.chat_id ?? c.chat_id,
    sender_id: m.sender_id, sent_at: m.sent_at, text: m.text, is_from_me: m.is_from_me === true,
    reply_to_message_id: m.reply_to_message_id, account_id: m.account_id ?? c.account_id, linked_message_id: m.linked_message_id ?? null,
  }));
}

/** Inserts the conversations that are new, with their messages; returns messages written per new conversation. */
async function insertGroup(client: PoolClient, group: Prepared[]): Promise<Map<string, number>> {
  const { rows } = await client.query<{ conversation_id: string }>(CONV_SQL, [JSON.stringify(group.map(convRow))]);
  const inserted = new Map(rows.map((r) => [r.conversation_id, 0]));
  const msgs = group.filter((p) => inserted.has(p.sealed.conversation_id)).flatMap((p) => messageRows(p.sealed));
  // A message of a conversation not inserted here was loaded with it before: nothing to add.
  for (let i = 0; i < msgs.length; i += 5000) {
    const r = await client.query<{ conversation_id: string }>(MSG_SQL, [JSON.stringify(msgs.slice(i, i + 5000))]);
    for (const row of r.rows) inserted.set(row.conversation_id, (inserted.get(row.conversation_id) ?? 0) + 1);
  }
  return inserted;
}

/**
 * Writes the conversations and their messages in one transaction. Conversations already present
 * are left as they are ('existing'). A conversation whose values the database rejects (data
 * exception or constraint violation) is isolated with a savepoint and reported 'rejected'; the
 * others still load. Any other error (database unreachable, ...) rolls back everything and is
 * thrown: the caller retries the same batch.
 */
export async function loadConversations(pool: Pool, batch: readonly ConversationSealed[]): Promise<LoadOutcome[]> {
  const prepared: Prepared[] = batch.map((sealed) => ({ sealed, hash: contentHash(sealed.messages) }));
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    let inserted: Map<string, number>;
    const rejected = new Map<string, Error>();
    await client.query('SAVEPOINT whole_batch');
    try {
      inserted = await insertGroup(client, prepared);
      await client.query('RELEASE SAVEPOINT whole_batch');
    } catch (e) {
      if (!isDataError(e)) throw e;
      // Some value is refused: redo one conversation at a time to find which.
      await client.query('ROLLBACK TO SAVEPOINT whole_batch');
      inserted = new Map();
      for (const p of prepared) {
        await client.query('SAVEPOINT one');
        try {
          for (const [id, n] of await insertGroup(client, [p])) inserted.set(id, n);
          await client.query('RELEASE SAVEPOINT one');
        } catch (e1) {
          if (!isDataError(e1)) throw e1;
          await client.query('ROLLBACK TO SAVEPOINT one');
          rejected.set(p.sealed.conversation_id, e1 as Error);
        }
      }
    }
    await client.query('COMMIT');
    return prepared.map((p): LoadOutcome => {
      const id = p.sealed.conversation_id;
      const err = rejected.get(id);
      if (err) return { status: 'rejected', conversation_id: id, error: err };
      const written = inserted.get(id);
      if (written !== undefined) {
        return { status: 'inserted', conversation_id: id, content_hash: p.hash, messages: written, duplicateMessages: p.sealed.messages.length - written };
      }
      return { status: 'existing', conversation_id: id, content_hash: p.hash };
    });
  } catch (e) {
    broken = e as Error;
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    // A client whose connection failed is destroyed rather than returned to the pool.
    client.release(broken !== undefined && !isDataError(broken) ? broken : undefined);
  }
}

interface ConvRow {
  conversation_id: string; chat_id: string; chat_type: string | null; account_id: string | null;
  started_ms: string; ended_ms: string; message_count: number; participant_ids: string[]; content_hash: string;
}

interface MsgRow {
  conversation_id: string; message_id: string; sender_id: string; sent_ms: string; text: string | null;
  is_from_me: boolean; reply_to_message_id: string | null;
}

const MS = (col: string): string => `(extract(epoch FROM ${col}) * 1000)::bigint`;

/** The conversations with their messages, in the order of ids given; missing ids are left out. */
export async function fetchConversations(pool: Pool, ids: readonly string[]): Promise<Conversation[]> {
  if (ids.length === 0) return [];
  const { rows } = await pool.query<ConvRow>(
    `SELECT conversation_id, chat_id, chat_type, account_id, ${MS('started_at')} AS started_ms, ${MS('ended_at')} AS ended_ms,
            message_count, participant_ids, content_hash
     FROM conversations WHERE conversation_id = ANY($1::text[])`, [ids]);
  const { rows: msgs } = await pool.query<MsgRow>(
    `SELECT conversation_id, message_id, sender_id, ${MS('sent_at')} AS sent_ms, text, is_from_me, reply_to_message_id
     FROM messages WHERE conversation_id = ANY($1::text[]) ORDER BY conversation_id, position`, [ids]);
  const byConv = new Map<string, Conversation>();
  for (const r of rows) {
    byConv.set(r.conversation_id, {
      conversation_id: r.conversation_id, chat_id: r.chat_id, chat_type: r.chat_type, account_id: r.account_id,
      started_at: Number(r.started_ms), ended_at: Number(r.ended_ms), message_count: r.message_count,
      participant_ids: r.participant_ids, content_hash: r.content_hash, messages: [],
    });
  }
  for (const m of msgs) {
    byConv.get(m.conversation_id)?.messages.push({
      message_id: m.message_id, sender_id: m.sender_id, sent_at: Number(m.sent_ms), text: m.text,
      is_from_me: m.is_from_me, reply_to_message_id: m.reply_to_message_id,
    });
  }
  return ids.map((id) => byConv.get(id)).filter((c): c is Conversation => c !== undefined);
}

export async function fetchConversation(pool: Pool, id: string): Promise<Conversation | null> {
  return (await fetchConversations(pool, [id]))[0] ?? null;
}
