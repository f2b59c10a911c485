// `chatstats demo`: the main job as a newcomer meets it. Runs every role in this process, replays
// the bundled real chat logs into fresh topics, waits until every conversation is sealed, loaded
// and analysed, and prints what happened, then where to look next.
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { compareModes } from '../report/mode-comparison';
import { rulesConfigFrom } from '../sessionization/rules';
import { threadLinker } from '../boundaries/linker';
import { loadThreadModel } from '../boundaries/model';
import { parseChatMessageJson } from '../records/validate';
import { Command } from 'commander';
import type { Admin } from 'kafkajs';
import { loadConfig, type Config } from '../config';
import { startApp } from '../app';
import { runProduce } from './produce';
import { kafkaFromConfig } from '../kafka-client';
import { topicNames } from '../topics';
import { RecordCodec } from '../records/codec';
import { PartitionReader } from '../runtime/partition-reader';
import { createPool } from '../db/pool';
import { migrate } from '../db/migrate';
import { printTable } from './output';
import { progressText, waitForDemo } from './demo-wait';
import { parseSeconds } from './options';
import { preflight } from '../preflight';
import type { ConversationSealed } from '../records/types';
import { writeHtmlReport, type ReportData } from '../report/html-report';

const SAMPLE = path.resolve(__dirname, '../../../data/irc/irc-new-domains.messages.jsonl');

async function readAll(reader: PartitionReader, topic: string, partitions: number[]): Promise<(Buffer | null)[]> {
  const begins = await reader.beginOffsets(topic, partitions);
  const ends = await reader.endOffsets(topic, partitions);
  const out: (Buffer | null)[] = [];
  for (const p of partitions) {
    await reader.read(topic, p, begins.get(p) ?? 0, ends.get(p) ?? 0, (rs) => { for (const r of rs) out.push(r.value); });
  }
  return out;
}

export function demoCommand(): Command {
  return new Command('demo')
    .description('replay the bundled real chat logs through tracker, ETL and analysis, and print a summary')
    .option('--file <jsonl>', 'chat messages to replay (JSON Lines)', SAMPLE)
    .option('--report <html>', 'where to write the HTML report', 'reports/demo.html')
    .option('--timeout <seconds>', 'give up after this long', parseSeconds, 300)
    .action(async (opts: { file: string; report: string; timeout: number }) => {
      // The demo prints its own story; the roles' info logs would bury it (LOG_LEVEL overrides).
      process.env.LOG_LEVEL ??= 'warn';
      const base = loadConfig();
      const timeoutS = opts.timeout;
      await preflight(base);
      const run = `demo-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
      const cfg: Config = {
        ...base,
        topicPrefix: `${base.topicPrefix}${run}.`,
        appId: `${base.appId}-${run}`,
        stateDir: path.join(base.stateDir, run),
        punctuateIntervalMs: Math.min(base.punctuateIntervalMs, 250),
        // Everything is published before the tracker starts, so no import batch can be split:
        // the last conversations need not wait the default settle minute (CONVERSATION_SETTLE
        // set explicitly still applies).
        settleMs: process.env.CONVERSATION_SETTLE ? base.settleMs : Math.min(base.settleMs, 2000),
        // An ephemeral port, so the demo runs beside a `chatstats run` that holds METRICS_PORT.
        metricsPort: 0,
      };
      const t = topicNames(cfg);
      const say = (s: string) => process.stderr.write(`${s}\n`);
      const started = Date.now();
      say(`chatstats demo: run ${run}; topics ${t.messages} → ${t.sealed} → ${t.ready} → ${t.completed}`);

      const pool = createPool(cfg.databaseUrl);
      await migrate(pool);
      // The logs are history: published first, they are a backlog the tracker sessionizes by
      // event time. Published into a running tracker, every pause between produce requests
      // would find the partition caught up, and the wall clock would rightly seal what was read.
      say(`replaying ${path.relative(process.cwd(), opts.file)}`);
      const produced = await runProduce({ file: opts.file, config: cfg });
      say(`produced ${produced.sent} messages (${produced.invalid} invalid) in ${(produced.elapsed_ms / 1000).toFixed(1)}s`);
      const app = await startApp(cfg, ['tracker', 'etl', 'analysis']);
      const kafka = kafkaFromConfig(cfg, `${cfg.appId}-demo`);
      const reader = new PartitionReader(kafka);
      const admin = kafka.admin();
      const codec = new RecordCodec({ registryUrl: cfg.schemaRegistryUrl, topics: t });
      try {

        // Done when everything is committed and visible (see demo-wait.ts for the order): the
        // tracker's committed offsets reach the input's end, nothing is open as of its last
        // commit (the logs are history, so the wall clock seals each chat's last conversation),
        // and every conversation then on conversation.sealed is loaded and analysed.
        const partitions = Array.from({ length: cfg.topicPartitions }, (_, i) => i);
        await admin.connect();
        let lastLine = '';
        const { sealed, late: lateCount } = await waitForDemo<ConversationSealed>({
          inputBehind: async () => {
            const ends = await reader.endOffsets(t.messages, partitions);
            const committed = await committedOffsets(admin, `${cfg.appId}-tracker`, t.messages);
            let behind = 0;
            let c = 0;
            let e = 0;
            for (const p of partitions) {
              const end = ends.get(p) ?? 0;
              const at = Math.min(end, Math.max(0, committed.get(p) ?? 0));
              if (at < end) behind++;
              c += at;
              e += end;
            }
            return { behind, committed: c, end: e };
          },
          openConversations: async () => ((await app.ready()) ? openConversations(app.port, partitions.length) : null),
          sealed: async () => Promise.all((await readAll(reader, t.sealed, partitions)).map((v) => codec.decode('ConversationSealed', v))),
          late: async () => (await readAll(reader, t.late, partitions)).length,
          downstream: async (convs) => {
            const ids = convs.map((c) => c.conversation_id);
            const { rows } = await pool.query<{ loaded: string; busy: string; runs: string }>(
              `SELECT (SELECT count(*) FROM conversations WHERE conversation_id = ANY($1)) AS loaded,
                      (SELECT count(*) FROM analysis_runs WHERE conversation_id = ANY($1) AND status IN ('pending','running')) AS busy,
                      (SELECT count(DISTINCT conversation_id) FROM analysis_runs WHERE conversation_id = ANY($1)) AS runs`, [ids]);
            return { loaded: Number(rows[0]!.loaded), analysed: Number(rows[0]!.runs), busy: Number(rows[0]!.busy) };
          },
        }, {
          timeoutMs: timeoutS * 1000,
          onProgress: (p) => { const line = progressText(p); if (line !== lastLine) { say(line); lastLine = line; } },
        });
        const elapsed = (Date.now() - started) / 1000;
        const data = await summary(pool, sealed, lateCount, produced.sent, elapsed, run, cfg, app.port);
        // The same messages in thread mode beside gap mode (what CONVERSATION_MODE_BY_TYPE changes).
        const messages = readFileSync(opts.file, 'utf8').split('\n').filter((l) => l.trim()).map(parseChatMessageJson);
        data.modes = compareModes(messages, rulesConfigFrom(cfg), threadLinker(loadThreadModel()));
        print(data);
        await writeHtmlReport(opts.report, data);
        console.log(`\nHTML report: ${path.resolve(opts.report)}`);
      } finally {
        await admin.disconnect().catch(() => undefined);
        await reader.disconnect().catch(() => undefined);
        await app.stop();
        await pool.end();
      }
    });
}

/**
 * Open conversations across the tracker's partitions as of each one's last committed transaction
 * (the status is read in the task's turn, between transactions), or null unless every one of the
 * input's partitions is running.
 */
async function openConversations(port: number, partitionCount: number): Promise<number | null> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/tracker/status`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { partitions: { state: string; open_conversations: number | null }[] };
  if (body.partitions.length !== partitionCount || body.partitions.some((p) => p.state !== 'running' || p.open_conversations === null)) return null;
  return body.partitions.reduce((s, p) => s + (p.open_conversations ?? 0), 0);
}

/** The committed offsets of a consumer group on a topic, by partition (absent: none yet). */
async function committedOffsets(admin: Admin, groupId: string, topic: string): Promise<Map<number, number>> {
  const res = await admin.fetchOffsets({ groupId, topics: [topic] });
  const out = new Map<number, number>();
  for (const p of res[0]?.partitions ?? []) if (Number(p.offset) >= 0) out.set(p.partition, Number(p.offset));
  return out;
}

async function summary(pool: ReturnType<typeof createPool>, sealed: ConversationSealed[], late: number, produced: number, elapsedS: number, run: string, cfg: Config, port: number): Promise<ReportData> {
  const ids = sealed.map((c) => c.conversation_id);
  const { rows: coverage } = await pool.query<{ pass_name: string; status: string; n: string }>(
    `SELECT pass_name, status, count(*) AS n FROM analysis_runs WHERE conversation_id = ANY($1) GROUP BY 1, 2 ORDER BY 1, 2`, [ids]);
  const { rows: skips } = await pool.query<{ pass_name: string; error: string }>(
    `SELECT DISTINCT ON (pass_name) pass_name, error FROM analysis_runs
     WHERE conversation_id = ANY($1) AND status = 'skipped' AND error IS NOT NULL
     GROUP BY pass_name, error ORDER BY pass_name, count(*) DESC`, [ids]);
  const { rows: results } = await pool.query<{ conversation_id: string; pass_name: string; result: unknown }>(
    `SELECT conversation_id, pass_name, result FROM analysis_runs WHERE conversation_id = ANY($1) AND status = 'completed' ORDER BY conversation_id, pass_name`, [ids]);
  const byConversation = new Map<string, Record<string, unknown>>();
  for (const r of results) {
    const m = byConversation.get(r.conversation_id) ?? {};
    m[r.pass_name] = r.result;
    byConversation.set(r.conversation_id, m);
  }
  return {
    run, produced, late, elapsedSeconds: elapsedS,
    conversations: sealed.map((c) => ({
      conversation_id: c.conversation_id, chat_id: c.chat_id, started_at: c.started_at, ended_at: c.ended_at,
      message_count: c.message_count, participants: c.participant_ids.length, seal_reason: c.seal_reason,
      continues_conversation_id: c.continues_conversation_id,
      first_texts: c.messages.slice(0, 3).map((m) => `${m.sender_id}: ${m.text ?? ''}`.slice(0, 160)),
      analysis: byConversation.get(c.conversation_id) ?? {},
    })),
    coverage: coverage.map((r) => ({ pass: r.pass_name, status: r.status, count: Number(r.n) })),
    skipReasons: Object.fromEntries(skips.map((r) => [r.pass_name, r.error])),
    metricsUrl: `http://127.0.0.1:${port}/metrics`,
    topicPrefix: cfg.topicPrefix,
  };
}

function print(d: ReportData): void {
  const reasons = new Map<string, number>();
  for (const c of d.conversations) reasons.set(c.seal_reason, (reasons.get(c.seal_reason) ?? 0) + 1);
  const messages = d.conversations.reduce((s, c) => s + c.message_count, 0);
  const chats = new Set(d.conversations.map((c) => c.chat_id)).size;
  console.log(`\n== chatstats demo: ${d.produced.toLocaleString('en')} messages replayed in ${d.elapsedSeconds.toFixed(1)}s ==\n`);
  console.log(`${d.conversations.length} conversations in ${chats} chats hold ${messages.toLocaleString('en')} messages; ${d.late.toLocaleString('en')} messages arrived late.\n`);
  printTable(['seal reason', 'conversations'], [...reasons].sort().map(([r, n]) => [r, n]));
  console.log('');
  const passes = [...new Set(d.coverage.map((c) => c.pass))].sort();
  printTable(['pass', 'completed', 'skipped', 'failed', 'coverage'], passes.map((p) => {
    const n = (s: string) => d.coverage.find((c) => c.pass === p && c.status === s)?.count ?? 0;
    return [p, n('completed'), n('skipped'), n('failed'), `${((100 * n('completed')) / d.conversations.length).toFixed(0)} %`];
  }));
  if (d.modes) {
    console.log('\nGap mode and thread mode (CONVERSATION_MODE_BY_TYPE=group=threads) on the same messages:');
    printTable(['chat', 'messages', 'gap: conv.', 'largest', 'threads: conv.', 'largest', 'median', 'single'],
      d.modes.map((m) => [m.chat_id, m.messages, m.gap.conversations, m.gap.largest, m.threads.conversations, m.threads.largest, m.threads.median, m.threads.singletons]));
  }
  console.log('\nA few conversations:');
  const picks = [...d.conversations].sort((a, b) => b.message_count - a.message_count).filter((_, i) => i % 30 === 0).slice(0, 3);
  for (const c of picks) {
    const a = c.analysis as Record<string, any>;
    console.log(`\n  ${c.conversation_id}  ${c.chat_id}  ${new Date(c.started_at).toISOString()} → ${new Date(c.ended_at).toISOString()}`);
    console.log(`    ${c.message_count} messages, ${c.participants} participants, sealed ${c.seal_reason}`);
    if (a.sentiment) console.log(`    sentiment: ${a.sentiment.label ?? JSON.stringify(a.sentiment).slice(0, 80)}`);
    if (a.language) console.log(`    language: ${a.language.language ?? JSON.stringify(a.language).slice(0, 80)}`);
    if (a.keywords) console.log(`    keywords: ${(a.keywords.keywords ?? []).slice(0, 6).map((k: any) => k.term).join(', ')}`);
    for (const line of c.first_texts) console.log(`    | ${line}`);
  }
  console.log(`\nWhere to look next:
  metrics:                  chatstats run all, then http://127.0.0.1:9464/metrics (METRICS_PORT)
  the tracker:              chatstats tracker-status -v
  the passes:               chatstats list-passes
  SQL:                      psql "$DATABASE_URL" -c "SELECT seal_reason, count(*) FROM conversations GROUP BY 1"
                            psql "$DATABASE_URL" -c "SELECT pass_name, status, count(*) FROM analysis_runs GROUP BY 1, 2"
  topics of this run:       ${d.topicPrefix}*`);
}
