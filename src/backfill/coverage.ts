// What `stats` and `missing` report, from PostgreSQL: the conversations loaded, and for each pass
// how many of the conversations that qualify for it (minimum message count, an active subscription
// where required, as passes.ts `disqualification` decides) have a completed run of its current
// version, and which do not.
import type { Pool } from 'pg';
import type { PassDefinition } from '../analysis/passes';
import { byPriority } from '../analysis/passes';

/**
 * SQL for "conversation c qualifies for a pass" with $min (min_messages) and $sub (requires a
 * subscription) as the given parameter numbers. The subscription rule is db/subscriptions.ts'
 * activeAccounts: status active or trialing, and now within [valid_from, valid_until).
 */
export function qualifiesSql(minParam: number, subParam: number): string {
  return `(c.message_count >= $${minParam} AND (NOT $${subParam}::boolean OR (c.account_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM subscriptions s WHERE s.account_id = c.account_id AND s.status IN ('active', 'trialing')
      AND s.valid_from <= now() AND (s.valid_until IS NULL OR s.valid_until > now())))))`;
}

export interface PassCoverage {
  pass: string;
  version: number;
  enabled: boolean;
  priority: number;
  /** Conversations that qualify for the pass now. */
  qualifying: number;
  completed: number;
  failed: number;
  /** Recorded skipped (did not qualify when looked at) though they qualify now. */
  skipped: number;
  /** pending or running. */
  in_progress: number;
  /** Qualifying, with no run recorded at all. */
  missing: number;
  not_qualifying: number;
  /** completed / qualifying × 100, one decimal; null when nothing qualifies. */
  coverage_percent: number | null;
}

export interface Stats {
  chat_id: string | null;
  conversations: number;
  messages: number;
  chats: number;
  first_started_at: string | null;
  last_ended_at: string | null;
  by_seal_reason: Record<string, number>;
  passes: PassCoverage[];
}

export function percent(part: number, whole: number): number | null {
  if (whole === 0) return null;
  return Math.floor((1000 * part) / whole) / 10;
}

export async function passCoverage(pool: Pool, pass: PassDefinition, chatId: string | null): Promise<PassCoverage> {
  const { rows } = await pool.query<Record<string, string>>(
    `SELECT count(*) FILTER (WHERE q) AS qualifying,
            count(*) FILTER (WHERE q AND r.status = 'completed') AS completed,
            count(*) FILTER (WHERE q AND r.status = 'failed') AS failed,
            count(*) FILTER (WHERE q AND r.status = 'skipped') AS skipped,
            count(*) FILTER (WHERE q AND r.status IN ('pending', 'running')) AS in_progress,
            count(*) FILTER (WHERE q AND r.status IS NULL) AS missing,
            count(*) FILTER (WHERE NOT q) AS not_qualifying
     FROM (SELECT c.conversation_id, ${qualifiesSql(4, 5)} AS q FROM conversations c WHERE ($1::text IS NULL OR c.chat_id = $1)) c
     LEFT JOIN analysis_runs r ON r.conversation_id = c.conversation_id AND r.pass_name = $2 AND r.pass_version = $3`,
    [chatId, pass.name, pass.prompt_version, pass.requires.min_messages, pass.requires.subscription]);
  const r = rows[0]!;
  const n = (k: string) => Number(r[k] ?? 0);
  return {
    pass: pass.name, version: pass.prompt_version, enabled: pass.enabled, priority: pass.priority,
    qualifying: n('qualifying'), completed: n('completed'), failed: n('failed'), skipped: n('skipped'),
    in_progress: n('in_progress'), missing: n('missing'), not_qualifying: n('not_qualifying'),
    coverage_percent: percent(n('completed'), n('qualifying')),
  };
}

export async function collectStats(pool: Pool, passes: readonly PassDefinition[], chatId: string | null): Promise<Stats> {
  const { rows: [t] } = await pool.query<{ conversations: string; messages: string; chats: string; first: Date | null; last: Date | null }>(
    `SELECT count(*) AS conversations, coalesce(sum(message_count), 0) AS messages, count(DISTINCT chat_id) AS chats,
            min(started_at) AS first, max(ended_at) AS last
     FROM conversations WHERE ($1::text IS NULL OR chat_id = $1)`, [chatId]);
  const { rows: reasons } = await pool.query<{ seal_reason: string; n: string }>(
    `SELECT seal_reason, count(*) AS n FROM conversations WHERE ($1::text IS NULL OR chat_id = $1) GROUP BY 1 ORDER BY 2 DESC, 1`, [chatId]);
  const by_seal_reason: Record<string, number> = {};
  for (const r of reasons) by_seal_reason[r.seal_reason] = Number(r.n);
  const cov: PassCoverage[] = [];
  for (const p of byPriority(passes)) cov.push(await passCoverage(pool, p, chatId));
  return {
    chat_id: chatId,
    conversations: Number(t!.conversations), messages: Number(t!.messages), chats: Number(t!.chats),
    first_started_at: t!.first?.toISOString() ?? null, last_ended_at: t!.last?.toISOString() ?? null,
    by_seal_reason, passes: cov,
  };
}

export interface MissingRow {
  conversation_id: string;
  chat_id: string;
  started_at: string;
  messages: number;
  pass: string;
  version: number;
  /** none (never run), failed, skipped, pending, running */
  status: string;
  error: string | null;
}

export interface MissingReport {
  chat_id: string | null;
  passes: string[];
  /** Missing (conversation, pass) runs in all. */
  total: number;
  /** Distinct conversations with at least one missing run. */
  conversations: number;
  by_pass: Record<string, number>;
  limit: number | null;
  rows: MissingRow[];
}

/**
 * Qualifying conversations without a completed run of each given pass (current version), highest
 * priority pass first, then oldest conversation first; at most `limit` rows (null: all).
 */
export async function findMissing(pool: Pool, passes: readonly PassDefinition[], chatId: string | null, limit: number | null): Promise<MissingReport> {
  const ordered = byPriority(passes);
  const rep: MissingReport = { chat_id: chatId, passes: ordered.map((p) => p.name), total: 0, conversations: 0, by_pass: {}, limit, rows: [] };
  if (ordered.length === 0) return rep;
  // One SELECT per pass with its own parameters ($1 is the chat): $k pass, $k+1 version, $k+2 min, $k+3 sub.
  const params: unknown[] = [chatId];
  const parts = ordered.map((p, i) => {
    const k = 2 + 4 * i;
    params.push(p.name, p.prompt_version, p.requires.min_messages, p.requires.subscription);
    return `SELECT ${i} AS rank, c.conversation_id, c.chat_id, c.started_at, c.message_count, r.status, r.error
      FROM conversations c
      LEFT JOIN analysis_runs r ON r.conversation_id = c.conversation_id AND r.pass_name = $${k} AND r.pass_version = $${k + 1}
      WHERE ($1::text IS NULL OR c.chat_id = $1) AND ${qualifiesSql(k + 2, k + 3)} AND (r.status IS NULL OR r.status <> 'completed')`;
  });
  const all = parts.join('\n      UNION ALL\n');
  const { rows: counts } = await pool.query<{ rank: number | null; n: string; conversations: string }>(
    `SELECT rank, count(*) AS n, count(DISTINCT conversation_id) AS conversations FROM (${all}) m GROUP BY GROUPING SETS ((rank), ())`, params);
  const perRank = new Map<number, number>();
  for (const c of counts) {
    if (c.rank === null) { rep.total = Number(c.n); rep.conversations = Number(c.conversations); }
    else perRank.set(c.rank, Number(c.n));
  }
  ordered.forEach((p, i) => { rep.by_pass[p.name] = perRank.get(i) ?? 0; });
  const { rows } = await pool.query<{ rank: number; conversation_id: string; chat_id: string; started_at: Date; message_count: number; status: string | null; error: string | null }>(
    `SELECT * FROM (${all}) m ORDER BY rank, started_at, conversation_id${limit === null ? '' : ` LIMIT ${Math.max(0, Math.floor(limit))}`}`, params);
  rep.rows = rows.map((r) => ({
    conversation_id: r.conversation_id, chat_id: r.chat_id, started_at: r.started_at.toISOString(), messages: r.message_count,
    pass: ordered[r.rank]!.name, version: ordered[r.rank]!.prompt_version, status: r.status ?? 'none', error: r.error,
  }));
  return rep;
}
