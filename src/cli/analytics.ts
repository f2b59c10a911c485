// `chatstats stats` and `chatstats missing`: what is loaded in PostgreSQL and how far each analysis
// pass has got over it. Coverage counts only the conversations that qualify for a pass (its minimum
// message count; an active subscription where it requires one), against its current version.
import { Command } from 'commander';
import { loadConfig } from '../config';
import { enabledPasses, findPass, loadPasses } from '../analysis/passes';
import { openDatabase } from '../backfill/connect';
import { collectStats, findMissing } from '../backfill/coverage';
import { parsePositiveInt } from '../backfill/options';
import { printTable } from './output';
import { streamFigures } from './kafka-figures';

const fmtPct = (p: number | null): string => (p === null ? '-' : `${p.toFixed(1)}%`);

export function statsCommand(): Command {
  return new Command('stats')
    .description('conversations, messages and chats in PostgreSQL, by seal reason; late, duplicate and dead-lettered counts; each pass\'s coverage of the conversations that qualify for it')
    .option('--chat-id <id>', 'only this chat')
    .option('--passes-file <path>', 'passes file (default: PASSES_FILE, else config/passes.json)')
    .option('--json', 'print JSON')
    .addHelpText('after', `
Late and dead-lettered counts are the records on chat.messages.late and the *.dlq
topics (read from Kafka); duplicates are what the running trackers dropped since
they started (their chatstats_tracker_duplicates_total).

Coverage, per pass at its current version, over the conversations that qualify
for it (minimum messages; an active subscription where required): completed,
failed, skipped (recorded as not qualifying, qualifies now), in progress
(pending or running), missing (never looked at); coverage = completed /
qualifying.`)
    .action(async (o: { chatId?: string; passesFile?: string; json?: boolean }) => {
      const cfg = loadConfig();
      const passes = loadPasses(o.passesFile ?? cfg.passesFile);
      const pool = await openDatabase(cfg);
      try {
        const [pgStats, stream] = await Promise.all([collectStats(pool, passes, o.chatId ?? null), streamFigures(cfg, o.chatId ?? null)]);
        const st = { ...pgStats, ...stream };
        if (o.json) { console.log(JSON.stringify(st, null, 2)); return; }
        if (st.chat_id !== null) console.log(`chat ${st.chat_id}`);
        printTable(['what', 'value'], [
          ['conversations', st.conversations],
          ['messages', st.messages],
          ['chats', st.chats],
          ['first started', st.first_started_at ?? '-'],
          ['last ended', st.last_ended_at ?? '-'],
          ['late messages', st.late_messages ?? '-'],
          ['duplicates dropped (since the running trackers started)', st.duplicates_since_start ?? '-'],
          ['dead-lettered chat messages', st.dlq_messages ?? '-'],
          ['dead-lettered sealed conversations (ETL)', st.dlq_sealed ?? '-'],
          ['dead-lettered ready conversations (analysis)', st.dlq_ready ?? '-'],
        ]);
        if (st.kafka_error !== null) console.log(`(late, duplicate and DLQ counts unavailable: ${st.kafka_error})`);
        console.log('');
        printTable(['seal reason', 'conversations'], Object.entries(st.by_seal_reason));
        console.log('');
        printTable(['pass', 'version', 'enabled', 'qualifying', 'completed', 'failed', 'skipped', 'in progress', 'missing', 'not qualifying', 'coverage'],
          st.passes.map((p) => [p.pass, p.version, p.enabled ? 'yes' : 'no', p.qualifying, p.completed, p.failed, p.skipped, p.in_progress, p.missing, p.not_qualifying, fmtPct(p.coverage_percent)]));
      } finally {
        await pool.end();
      }
    });
}

export function missingCommand(): Command {
  return new Command('missing')
    .description('conversations lacking a completed run of an enabled pass they qualify for')
    .option('--chat-id <id>', 'only this chat')
    .option('--pass <name>', 'only this pass (may be a disabled one)')
    .option('--limit <n>', 'rows to list (the totals count everything)', '50')
    .option('--all', 'list every row')
    .option('--passes-file <path>', 'passes file (default: PASSES_FILE, else config/passes.json)')
    .option('--json', 'print JSON')
    .action(async (o: { chatId?: string; pass?: string; limit: string; all?: boolean; passesFile?: string; json?: boolean }) => {
      const cfg = loadConfig();
      const all = loadPasses(o.passesFile ?? cfg.passesFile);
      const passes = o.pass !== undefined ? [findPass(all, o.pass)] : enabledPasses(all);
      const limit = o.all ? null : parsePositiveInt(o.limit, '--limit');
      const pool = await openDatabase(cfg);
      try {
        const rep = await findMissing(pool, passes, o.chatId ?? null, limit);
        if (o.json) { console.log(JSON.stringify(rep, null, 2)); return; }
        if (passes.length === 0) { console.log('no enabled passes'); return; }
        if (rep.rows.length > 0) {
          printTable(['conversation_id', 'chat_id', 'started_at', 'messages', 'pass', 'version', 'status', 'error'],
            rep.rows.map((r) => [r.conversation_id, r.chat_id, r.started_at, r.messages, r.pass, r.version, r.status, r.error === null ? '' : r.error.length > 60 ? `${r.error.slice(0, 57)}...` : r.error]));
          console.log('');
        }
        printTable(['pass', 'missing'], Object.entries(rep.by_pass));
        const shown = rep.rows.length < rep.total ? ` (${rep.rows.length} listed; --limit N or --all for more)` : '';
        console.log(`\n${rep.total} missing run(s) over ${rep.conversations} conversation(s)${o.chatId ? ` of chat ${o.chatId}` : ''}${shown}`);
        if (rep.total > 0) console.log(`run them with: chatstats backfill PASS${o.chatId ? ` --chat-id ${o.chatId}` : ''} (or backfill-all)`);
      } finally {
        await pool.end();
      }
    });
}
