// `chatstats backfill PASS` and `chatstats backfill-all`: run analysis passes over the conversations
// sealed before them, by replaying conversation.sealed (see src/backfill/backfill.ts for how the
// position is kept, what is selected and how a killed backfill resumes without running anything
// twice).
import { Command } from 'commander';
import { ConfigError, loadConfig, type Config } from '../config';
import { byPriority, enabledPasses, findPass, loadPasses, type PassDefinition } from '../analysis/passes';
import { topicNames } from '../topics';
import { checkKafka, cliKafka, openDatabase } from '../backfill/connect';
import { DEFAULT_RATE_PER_SEC, formatRate, parsePositiveInt, parseRate, parseTimeArg } from '../backfill/options';
import { RateLimiter } from '../backfill/rate-limiter';
import { Progress, silentProgress } from '../backfill/progress';
import { openBackfillContext, runBackfill, type BackfillContext, type BackfillSummary } from '../backfill/backfill';
import { parseDuration } from '../config';
import { ExitCode, fail, printTable } from './output';
import { checkRegistry } from '../preflight';

interface CommonOpts {
  dryRun?: boolean;
  limit?: string;
  chatId?: string;
  since?: string;
  until?: string;
  rate?: string;
  concurrency: string;
  fromBeginning?: boolean;
  allowDisabled?: boolean;
  passesFile?: string;
  quiet?: boolean;
  json?: boolean;
}

function withCommonOptions(c: Command): Command {
  return c
    .option('--dry-run', 'count what would run; run nothing, record nothing, commit nothing')
    .option('--limit <n>', 'run at most N conversations (per pass); the next run continues after them')
    .option('--chat-id <id>', 'only this chat (reads only its partition)')
    .option('--since <time>', 'only conversations that started at or after this time (ISO-8601, epoch ms, or an age like 7d)')
    .option('--until <time>', 'only conversations that started before this time')
    .option('--rate <n/s>', `at most this many conversations per second, e.g. 20, 20/s, 600/m, unlimited (default: BACKFILL_RATE, else ${DEFAULT_RATE_PER_SEC}/s)`)
    .option('--concurrency <n>', 'pass runs at once', '4')
    .option('--from-beginning', 'ignore the position an earlier backfill committed: look at everything retained (retries failed runs)')
    .option('--allow-disabled', 'run a pass that is disabled in the passes file')
    .option('--passes-file <path>', 'passes file (default: PASSES_FILE, else config/passes.json)')
    .option('-q, --quiet', 'no progress on stderr')
    .option('--json', 'print the summary as JSON');
}

export function rateFrom(opt: string | undefined, env: NodeJS.ProcessEnv = process.env): number | null {
  if (opt !== undefined) return parseRate(opt);
  const v = env.BACKFILL_RATE?.trim();
  if (!v) return DEFAULT_RATE_PER_SEC;
  try { return parseRate(v); } catch (e) { throw new ConfigError('BACKFILL_RATE', (e as Error).message); }
}

interface Session {
  cfg: Config;
  passes: PassDefinition[];
  ctx: BackfillContext;
  limiter: RateLimiter;
  abort: AbortController;
  close(): Promise<void>;
}

/**
 * Every option and the pass name checked before anything is connected to: a bad argument is
 * reported as such, not as whatever the database or Kafka would say first.
 */
function validate(o: CommonOpts, passes: PassDefinition[], passName: string | null): void {
  if (passName !== null) findPass(passes, passName);
  parsePositiveInt(o.concurrency, '--concurrency');
  if (o.limit !== undefined) parsePositiveInt(o.limit, '--limit');
  if (o.since !== undefined) parseTimeArg(o.since);
  if (o.until !== undefined) parseTimeArg(o.until);
  if (o.since !== undefined && o.until !== undefined && parseTimeArg(o.since) >= parseTimeArg(o.until)) {
    throw new Error(`--since ${o.since} is not before --until ${o.until}: nothing would be selected`);
  }
  progressInterval();
}

async function open(o: CommonOpts, passName: string | null): Promise<Session> {
  const cfg = loadConfig();
  const passes = loadPasses(o.passesFile ?? cfg.passesFile);
  const limiter = new RateLimiter(rateFrom(o.rate));
  validate(o, passes, passName);
  const concurrency = parsePositiveInt(o.concurrency, '--concurrency');
  const pool = await openDatabase(cfg, { max: concurrency + 4, applicationName: 'chatstats-backfill' });
  try {
    const kafka = cliKafka(cfg, `${cfg.appId}-backfill`);
    const t = topicNames(cfg);
    const partitions = await checkKafka(cfg, [t.sealed, t.completed]);
    await checkRegistry(cfg);
    const ctx = await openBackfillContext(cfg, kafka, pool, partitions.get(t.sealed)!, o.dryRun === true);
    const abort = new AbortController();
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals > 1) { process.stderr.write(`\n${sig} again: exiting now (the position committed so far is kept)\n`); process.exit(130); }
      process.stderr.write(`\n${sig}: stopping after the conversations in progress; the position is committed (${sig} again to exit at once)\n`);
      abort.abort(new Error(sig));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    return {
      cfg, passes, ctx, limiter, abort,
      close: async () => {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await ctx.close();
        await pool.end().catch(() => undefined);
      },
    };
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw e;
  }
}

function runOne(sess: Session, pass: PassDefinition, o: CommonOpts): Promise<BackfillSummary> {
  const progress = o.quiet ? silentProgress : new Progress(process.stderr, { intervalMs: progressInterval() });
  return runBackfill(sess.ctx, {
    pass, passes: sess.passes, dryRun: o.dryRun === true,
    limit: o.limit === undefined ? null : parsePositiveInt(o.limit, '--limit'),
    chatId: o.chatId ?? null,
    since: o.since === undefined ? null : parseTimeArg(o.since),
    until: o.until === undefined ? null : parseTimeArg(o.until),
    limiter: sess.limiter, concurrency: parsePositiveInt(o.concurrency, '--concurrency'),
    fromBeginning: o.fromBeginning === true, allowDisabled: o.allowDisabled === true,
    progress, signal: sess.abort.signal,
  });
}

function progressInterval(): number {
  const v = process.env.BACKFILL_PROGRESS_INTERVAL?.trim();
  if (!v) return 5000;
  try { return parseDuration(v); } catch (e) { throw new ConfigError('BACKFILL_PROGRESS_INTERVAL', (e as Error).message); }
}

/** The rows of the summary table: label, count, and the JSON field it shows. */
export function summaryRows(s: BackfillSummary): [string, number, keyof BackfillSummary][] {
  // records read = considered + filtered out + duplicates + undecodable + past the limit.
  const rows: [string, number, keyof BackfillSummary][] = [
    ['offsets scanned', s.offsets, 'offsets'],
    ['records read', s.records, 'records'],
    ['  filtered out', s.filtered_out, 'filtered_out'],
    ['  duplicates', s.duplicates, 'duplicates'],
    ['  undecodable', s.undecodable, 'undecodable'],
    ['  past the limit (next run)', s.past_limit, 'past_limit'],
    ['conversations considered', s.conversations, 'conversations'],
    ['not loaded in PostgreSQL', s.not_loaded, 'not_loaded'],
    ['already completed', s.already_completed, 'already_completed'],
    ['  of which events owed', s.events_owed, 'events_owed'],
    ['not qualifying', s.not_qualifying, 'not_qualifying'],
    [s.dry_run ? 'would run' : 'selected to run', s.selected, 'selected'],
    ['  of which claimed elsewhere', s.claimed_elsewhere, 'claimed_elsewhere'],
  ];
  if (!s.dry_run) {
    rows.push(
      ['completed', s.completed, 'completed'],
      ['completed from cache', s.cached, 'cached'],
      ['failed', s.failed, 'failed'],
      ['found done meanwhile', s.already, 'already'],
      ['taken over', s.lost, 'lost'],
      ['skips recorded', s.skips_recorded, 'skips_recorded'],
    );
  }
  return rows;
}

function printSummary(s: BackfillSummary): void {
  const from = s.partitions.map((p) => `${p.partition}:${p.from}-${p.to}`).join(' ');
  console.log(`backfill ${s.pass} v${s.version}${s.dry_run ? ' (dry run)' : ''}: ${s.topic} partitions ${from}${s.resumed ? ' (resumed from the committed position)' : ''}`);
  console.log(`group ${s.group_id}, rate ${formatRate(s.rate_limit)}, ${(s.elapsed_ms / 1000).toFixed(1)}s`);
  printTable(['what', 'count'], summaryRows(s).map(([l, n]) => [l, n]));
  if (s.offsets > s.records) console.log(`\n(${s.offsets - s.records} of the ${s.offsets} offsets scanned are transaction markers of the tracker's commits, not records)`);
  notes(s);
}

function notes(s: BackfillSummary): void {
  if (s.not_loaded > 0) {
    console.log(`\n${s.not_loaded} sealed conversation(s) are not loaded in PostgreSQL yet (is the ETL behind or stopped?), e.g. ${s.not_loaded_ids.slice(0, 3).join(', ')}; `
      + (s.pass_enabled
        ? `the analysis role runs ${s.pass} on them when the ETL loads them${s.dry_run ? '' : ', so the backfill moves past them'}.`
        : `${s.pass} is disabled, so nothing runs it on them when the ETL loads them: run \`chatstats backfill ${s.pass} --from-beginning --allow-disabled\` again then.`));
  }
  if (s.undecodable > 0) console.log(`\n${s.undecodable} record(s) of ${s.topic} could not be decoded and were passed over (see the warnings logged; the ETL sends such records to its DLQ).`);
  if (s.limit_reached) console.log(`\n--limit ${s.limit} reached: more conversations lack ${s.pass}; run the command again to continue.`);
  if (s.failed > 0) console.log(`\n${s.failed} run(s) failed: see \`chatstats missing --pass ${s.pass}\`; \`chatstats backfill ${s.pass} --from-beginning\` tries them again.`);
  if (s.interrupted) console.log('\ninterrupted: the position is committed; run the command again to resume.');
}

function exitFor(summaries: BackfillSummary[]): void {
  const failed = summaries.reduce((n, s) => n + s.failed, 0);
  if (summaries.some((s) => s.interrupted)) process.exitCode = 130;
  else if (failed > 0) fail(`${failed} pass run(s) failed`, ExitCode.Failure);
}

export function backfillCommand(): Command {
  return withCommonOptions(new Command('backfill'))
    .description('run one pass over past conversations by replaying conversation.sealed, with progress; resumes where an interrupted backfill stopped')
    .argument('<pass>', 'the pass (see chatstats list-passes)')
    .addHelpText('after', `
Reads conversation.sealed from the position committed to the consumer group
APP_ID-backfill-PASS-vVERSION (a filtered backfill has its own group) up to the
end it has at start, checks the conversations against PostgreSQL in batches and
runs the pass on those that qualify and lack it. Stopped or killed, it resumes
there; nothing completed runs again.

Environment: BACKFILL_RATE (default ${DEFAULT_RATE_PER_SEC}/s), BACKFILL_PROGRESS_INTERVAL (progress
lines when stderr is not a terminal, default 5s).
Exit codes: 0 done, 1 failure (Kafka or PostgreSQL unreachable, runs failed),
2 invalid configuration, 130 interrupted (position committed).`)
    .action(async (passName: string, o: CommonOpts) => {
      const sess = await open(o, passName);
      try {
        const pass = findPass(sess.passes, passName);
        const s = await runOne(sess, pass, o);
        if (o.json) console.log(JSON.stringify(s, null, 2));
        else printSummary(s);
        exitFor([s]);
      } finally {
        await sess.close();
      }
    });
}

export function backfillAllCommand(): Command {
  return withCommonOptions(new Command('backfill-all'))
    .description('backfill every enabled pass, highest priority first (one rate limit for all)')
    .action(async (o: CommonOpts) => {
      const sess = await open(o, null);
      try {
        const passes = byPriority(o.allowDisabled ? sess.passes : enabledPasses(sess.passes));
        const out: BackfillSummary[] = [];
        for (const pass of passes) {
          if (sess.abort.signal.aborted) break;
          out.push(await runOne(sess, pass, o));
        }
        const totals = {
          selected: out.reduce((n, s) => n + s.selected, 0),
          completed: out.reduce((n, s) => n + s.completed + s.cached, 0),
          failed: out.reduce((n, s) => n + s.failed, 0),
          not_loaded: Math.max(0, ...out.map((s) => s.not_loaded)),
        };
        if (o.json) {
          console.log(JSON.stringify({ dry_run: o.dryRun === true, passes: out, totals }, null, 2));
        } else {
          const dry = o.dryRun === true;
          printTable(['pass', 'version', 'considered', 'already completed', 'not qualifying', 'not loaded', dry ? 'would run' : 'selected', ...(dry ? [] : ['completed', 'failed'])],
            out.map((s) => [s.pass, s.version, s.conversations, s.already_completed, s.not_qualifying, s.not_loaded, s.selected, ...(dry ? [] : [s.completed + s.cached, s.failed])]));
          console.log(`\n${out.length} pass(es); ${dry ? 'would run' : 'selected'} ${totals.selected} run(s)${dry ? '' : `, completed ${totals.completed}, failed ${totals.failed}`}`);
          for (const s of out) notes(s);
        }
        exitFor(out);
      } finally {
        await sess.close();
      }
    });
}
