// runPass: one pass over a list of conversations (the backfill's engine, also usable from tests
// and scripts). The conversations must be in PostgreSQL; qualification is checked as in stream
// processing, runs already completed are left alone, and by default runs that failed or were
// skipped earlier are tried again (a subscription may have started since).
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { logger } from '../log';
import { fetchConversations } from '../db/conversations';
import { activeAccounts } from '../db/subscriptions';
import { runsOf, skipRun, type RunStatus } from '../db/analysis';
import { withPgRetry } from '../db/retry';
import type { AnalyzerRegistry } from './analyzer';
import { createAnalyzers } from './analyzers';
import type { LlmOptions } from './llm';
import { disqualification, findPass, type PassDefinition } from './passes';
import { PassRunner, type Emit } from './runner';
import { PassScheduler } from './scheduler';

export interface RunPassOptions {
  pool: Pool;
  passes: readonly PassDefinition[];
  /** Default: the built-in analyzers, with `llm` for the LLM one. */
  analyzers?: AnalyzerRegistry;
  llm?: LlmOptions | null;
  /** analysis.completed events; null or absent: none (the runs record that one is owed). */
  emit?: Emit | null;
  concurrency?: number;
  maxAttempts?: number;
  attemptTimeoutMs?: number;
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Finished statuses to run again. Default ['failed', 'skipped']. */
  redo?: RunStatus[];
  /** Only count what would run. */
  dryRun?: boolean;
  /** Run the pass even when it is disabled in the configuration. */
  allowDisabled?: boolean;
  /** Conversations loaded per round. Default 100. */
  chunkSize?: number;
  onProgress?: (p: RunPassSummary) => void;
  log?: Logger;
}

export interface RunPassSummary {
  pass: string;
  version: number;
  total: number;
  processed: number;
  /** Ids not found in PostgreSQL. */
  missing: number;
  completed: number;
  cached: number;
  failed: number;
  skipped: number;
  /** Recorded before and not redone. */
  already: number;
  /** Dry run: how many would run. */
  wouldRun: number;
  /** Taken over by another processor while running. */
  lost: number;
  dryRun: boolean;
}

export async function runPass(passName: string, conversationIds: readonly string[], o: RunPassOptions): Promise<RunPassSummary> {
  const pass = findPass(o.passes, passName);
  if (!pass.enabled && !o.allowDisabled) throw new Error(`analysis pass "${passName}" is disabled; enable it in the passes file (or allow disabled passes explicitly)`);
  const log = o.log ?? logger('AnalysisPasses');
  const redo = o.redo ?? ['failed', 'skipped'];
  const ids = [...new Set(conversationIds)];
  const s: RunPassSummary = {
    pass: pass.name, version: pass.prompt_version, total: ids.length, processed: 0, missing: 0, completed: 0, cached: 0,
    failed: 0, skipped: 0, already: 0, wouldRun: 0, lost: 0, dryRun: o.dryRun === true,
  };
  const analyzers = o.analyzers ?? createAnalyzers({ pool: o.pool, llm: o.llm ?? null });
  const runner = new PassRunner({
    pool: o.pool, analyzers, emit: o.emit ?? null, maxAttempts: o.maxAttempts, attemptTimeoutMs: o.attemptTimeoutMs,
    retryInitialMs: o.retryInitialMs, retryMaxMs: o.retryMaxMs, log,
  });
  const scheduler = o.dryRun ? null : new PassScheduler(runner, { concurrency: o.concurrency ?? 4, redo, log, onUnexpected: 'reject' });
  const pg = <T>(what: string, fn: () => Promise<T>): Promise<T> => withPgRetry(what, fn, { log });
  try {
    const chunk = o.chunkSize ?? 100;
    for (let i = 0; i < ids.length; i += chunk) {
      const slice = ids.slice(i, i + chunk);
      const convs = await pg('load conversations', () => fetchConversations(o.pool, slice));
      s.missing += slice.length - convs.length;
      const accounts = [...new Set(convs.map((c) => c.account_id).filter((a): a is string => a !== null))];
      const active = pass.requires.subscription ? await pg('read subscriptions', () => activeAccounts(o.pool, accounts)) : new Set<string>();
      const prior = o.dryRun ? new Map((await pg('read runs', () => runsOf(o.pool, convs.map((c) => c.conversation_id))))
        .filter((r) => r.pass_name === pass.name && r.pass_version === pass.prompt_version)
        .map((r) => [r.conversation_id, r.status])) : null;
      await Promise.all(convs.map(async (c) => {
        const why = disqualification(pass, { message_count: c.messages.length, account_id: c.account_id, subscriptionActive: c.account_id !== null && active.has(c.account_id) });
        if (why !== null) {
          if (!o.dryRun) await pg('record skip', () => skipRun(o.pool, { conversation_id: c.conversation_id, pass_name: pass.name, pass_version: pass.prompt_version }, why));
          s.skipped++;
          return;
        }
        if (prior !== null) {
          const st = prior.get(c.conversation_id);
          if (st === undefined || st === 'pending' || st === 'running' || redo.includes(st)) s.wouldRun++;
          else s.already++;
          return;
        }
        const out = await scheduler!.submit(c, pass);
        switch (out.kind) {
          case 'completed': if (out.cached) s.cached++; else s.completed++; break;
          case 'failed': s.failed++; break;
          case 'already': s.already++; break;
          case 'lost': s.lost++; break;
        }
      }));
      s.processed += slice.length;
      o.onProgress?.({ ...s });
    }
  } finally {
    await scheduler?.stop();
  }
  return s;
}
