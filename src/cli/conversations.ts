// `chatstats conversations --chat-id ID [--since T] [--json]`: one chat's conversations: the sealed
// ones loaded into PostgreSQL (ids, spans, counts, seal reasons, the status of every enabled pass)
// and the ones the tracker holds open (with their seal deadline). PostgreSQL is required; the open
// ones are asked of the tracker that owns the chat's partition, and their absence is said.
import { Command } from 'commander';
import type { Pool } from 'pg';
import { loadConfig, type Config } from '../config';
import { byPriority, enabledPasses, loadPasses, type PassDefinition } from '../analysis/passes';
import { cliKafka, openDatabase } from '../backfill/connect';
import { parseTimeArg } from '../backfill/options';
import { checkBrokers } from '../preflight';
import { trackerChat } from './tracker-commands';
import { parsePositive, parseTime } from './options';
import { printTable } from './output';

export interface PassStatus {
  pass: string;
  version: number;
  /** completed, failed, skipped, pending, running, or none (no run recorded). */
  status: string;
  error: string | null;
}

export interface SealedRow {
  state: 'sealed';
  conversation_id: string;
  started_at: string;
  ended_at: string;
  message_count: number;
  participants: number;
  seal_reason: string;
  continues_conversation_id: string | null;
  sealed_at: string;
  passes: PassStatus[];
}

export interface OpenRow {
  state: 'open';
  started_at: string;
  ended_at: string;
  message_count: number;
  bytes: number;
  deadline_at: string;
  continues_conversation_id: string | null;
}

export interface ChatConversations {
  chat_id: string;
  since: string | null;
  /** Sealed conversations loaded into PostgreSQL, oldest first (at most `limit`). */
  sealed: SealedRow[];
  /** All sealed conversations of the chat in PostgreSQL that match --since (sealed may list fewer). */
  sealed_total: number;
  /** Open in the tracker, oldest first. */
  open: OpenRow[];
  tracker: { running: boolean | null; partition: number | null; owner: string | null; error: string | null };
}

export async function sealedOf(pool: Pool, passes: readonly PassDefinition[], chatId: string, since: number | null, limit: number): Promise<{ rows: SealedRow[]; total: number }> {
  const { rows } = await pool.query<{
    conversation_id: string; started_at: Date; ended_at: Date; message_count: number; participants: number;
    seal_reason: string; continues_conversation_id: string | null; sealed_at: Date; total: string;
  }>(
    `SELECT conversation_id, started_at, ended_at, message_count, cardinality(participant_ids) AS participants, seal_reason,
            continues_conversation_id, sealed_at, count(*) OVER () AS total
     FROM conversations WHERE chat_id = $1 AND ($2::timestamptz IS NULL OR started_at >= $2)
     ORDER BY started_at, conversation_id LIMIT $3`,
    [chatId, since === null ? null : new Date(since), limit]);
  const ids = rows.map((r) => r.conversation_id);
  const { rows: runs } = ids.length === 0 ? { rows: [] } : await pool.query<{ conversation_id: string; pass_name: string; pass_version: number; status: string; error: string | null }>(
    `SELECT conversation_id, pass_name, pass_version, status, error FROM analysis_runs WHERE conversation_id = ANY($1)`, [ids]);
  const byKey = new Map(runs.map((r) => [`${r.conversation_id}\u0000${r.pass_name}\u0000${r.pass_version}`, r]));
  const ordered = byPriority(passes);
  return {
    total: rows.length > 0 ? Number(rows[0]!.total) : 0,
    rows: rows.map((r) => ({
      state: 'sealed',
      conversation_id: r.conversation_id,
      started_at: r.started_at.toISOString(),
      ended_at: r.ended_at.toISOString(),
      message_count: r.message_count,
      participants: Number(r.participants),
      seal_reason: r.seal_reason,
      continues_conversation_id: r.continues_conversation_id,
      sealed_at: r.sealed_at.toISOString(),
      passes: ordered.map((p) => {
        const run = byKey.get(`${r.conversation_id}\u0000${p.name}\u0000${p.prompt_version}`);
        return { pass: p.name, version: p.prompt_version, status: run?.status ?? 'none', error: run?.error ?? null };
      }),
    })),
  };
}

async function openOf(cfg: Config, chatId: string): Promise<{ open: OpenRow[]; tracker: ChatConversations['tracker'] }> {
  try {
    await checkBrokers(cfg);
    const c = await trackerChat(cliKafka(cfg, `${cfg.appId}-cli`), cfg, chatId);
    if (!c.running) return { open: [], tracker: { running: false, partition: c.partition, owner: null, error: `no tracker is running (consumer group ${cfg.appId}-tracker has no members)` } };
    if (c.owner === null || c.reply === null) return { open: [], tracker: { running: true, partition: c.partition, owner: null, error: `partition ${c.partition} has no owner right now (rebalancing?)` } };
    const open: OpenRow[] = (c.reply.open ?? []).map((o: Omit<OpenRow, 'state'>) => ({ state: 'open', ...o }));
    return { open, tracker: { running: true, partition: c.partition, owner: c.owner, error: null } };
  } catch (e) {
    return { open: [], tracker: { running: null, partition: null, owner: null, error: (e as Error).message } };
  }
}

const short = (s: string) => ({ completed: 'done', failed: 'FAILED', skipped: 'skip', pending: 'pend', running: 'run', none: '-' } as Record<string, string>)[s] ?? s;

export function conversationsCommand(): Command {
  return new Command('conversations')
    .description("one chat's conversations: sealed ones from PostgreSQL with each pass's status, and the ones the tracker holds open")
    .requiredOption('--chat-id <id>', 'the chat')
    .option('--since <time>', 'only conversations that started at or after this time (ISO-8601, epoch ms, or an age like 7d)', parseTime)
    .option('--limit <n>', 'sealed conversations to list, oldest first', parsePositive, 200)
    .option('--passes-file <path>', 'passes file (default: PASSES_FILE, else config/passes.json)')
    .option('--json', 'print JSON')
    .addHelpText('after', `
Pass status per enabled pass (current version): done (completed), FAILED, skip
(skipped: did not qualify, or no LLM configured), pend/run (pending, running),
- (no run recorded yet: see chatstats missing). Open conversations come from the
tracker owning the chat's partition; without a running tracker they are not shown.`)
    .action(async (o: { chatId: string; since?: string; limit: number; passesFile?: string; json?: boolean }) => {
      const cfg = loadConfig();
      const passes = enabledPasses(loadPasses(o.passesFile ?? cfg.passesFile));
      const since = o.since === undefined ? null : parseTimeArg(o.since);
      const pool = await openDatabase(cfg);
      try {
        const [sealed, live] = await Promise.all([sealedOf(pool, passes, o.chatId, since, o.limit), openOf(cfg, o.chatId)]);
        const out: ChatConversations = {
          chat_id: o.chatId, since: since === null ? null : new Date(since).toISOString(),
          sealed: sealed.rows, sealed_total: sealed.total,
          open: live.open.filter((c) => since === null || Date.parse(c.started_at) >= since), tracker: live.tracker,
        };
        if (o.json) { console.log(JSON.stringify(out, null, 2)); return; }
        const names = byPriority(passes).map((p) => p.name);
        console.log(`chat ${o.chatId}${out.since ? ` since ${out.since}` : ''}: ${out.sealed_total} sealed conversation(s) in PostgreSQL, ${out.open.length} open in the tracker`);
        if (out.sealed.length > 0 || out.open.length > 0) {
          console.log('');
          printTable(['state', 'conversation_id', 'started_at', 'ended_at', 'messages', 'sealed by', 'continues', ...names],
            [
              ...out.sealed.map((c) => ['sealed', c.conversation_id, c.started_at, c.ended_at, c.message_count, c.seal_reason, c.continues_conversation_id ?? '', ...c.passes.map((p) => short(p.status))]),
              ...out.open.map((c) => ['open', '', c.started_at, c.ended_at, c.message_count, `seals at ${c.deadline_at}`, c.continues_conversation_id ?? '', ...names.map(() => '')]),
            ]);
        }
        if (out.sealed.length < out.sealed_total) console.log(`\n${out.sealed.length} of ${out.sealed_total} sealed conversations listed (--limit N for more, --since T for later ones)`);
        if (out.tracker.error !== null) console.log(`\nopen conversations unknown: ${out.tracker.error}`);
        const failed = out.sealed.filter((c) => c.passes.some((p) => p.status === 'failed')).length;
        if (failed > 0) console.log(`\n${failed} conversation(s) with a failed pass: see chatstats missing --chat-id ${o.chatId}`);
      } finally {
        await pool.end();
      }
    });
}
