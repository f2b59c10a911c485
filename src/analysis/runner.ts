// Running one pass on one conversation, with everything around it: claiming the run in
// analysis_runs (so that it runs once even with several processors), the content cache, attempts
// with backoff up to maxAttempts, recording the outcome, and emitting analysis.completed.
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram } from 'prom-client';
import { registry } from '../metrics';
import { logger } from '../log';
import type { AnalysisCompleted } from '../records/downstream-types';
import {
  beginAttempt, cachedResult, claimRun, completeRun, failRun, getRun, heartbeatRun, markEmitted, releaseRun,
  storeCachedResult, type RunKey, type RunStatus,
} from '../db/analysis';
import { backoffDelay, sleep } from '../db/errors';
import { errorSummary } from '../db/pool';
import { withPgRetry } from '../db/retry';
import { isRetryable, type AnalyzerRegistry } from './analyzer';
import type { PassDefinition } from './passes';
import type { Conversation, JsonValue } from './types';

export const metrics = {
  runs: new Counter({
    name: 'chatstats_analysis_runs_total',
    help: 'Analysis pass runs finished, by pass and outcome (completed, cached, failed, skipped)',
    labelNames: ['pass', 'outcome'] as const,
    registers: [registry],
  }),
  attemptErrors: new Counter({
    name: 'chatstats_analysis_attempt_errors_total',
    help: 'Failed attempts of analysis passes, by pass and whether another attempt could help',
    labelNames: ['pass', 'retryable'] as const,
    registers: [registry],
  }),
  duration: new Histogram({
    name: 'chatstats_analysis_run_duration_seconds',
    help: 'Time from claiming a pass run to recording its outcome',
    labelNames: ['pass'] as const,
    buckets: [0.005, 0.02, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 180],
    registers: [registry],
  }),
  pgErrors: new Counter({
    name: 'chatstats_analysis_pg_errors_total',
    help: 'PostgreSQL failures in the analysis processor that were retried',
    registers: [registry],
  }),
  queued: new Gauge({
    name: 'chatstats_analysis_queue_depth',
    help: 'Pass runs waiting for a worker',
    registers: [registry],
  }),
  running: new Gauge({
    name: 'chatstats_analysis_running',
    help: 'Pass runs being worked on',
    registers: [registry],
  }),
};

/** Thrown when work is abandoned because the processor is stopping; its claim was given back. */
export class StoppedError extends Error {
  constructor() { super('stopped'); this.name = 'StoppedError'; }
}

export type Emit = (event: AnalysisCompleted) => Promise<void>;

export interface RunnerOptions {
  pool: Pool;
  analyzers: AnalyzerRegistry;
  /** This processor's identity in claims; default host:pid:random. */
  worker?: string;
  /** Attempts before a run is recorded failed. Default 3. */
  maxAttempts?: number;
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Longest one attempt may take. Default 5 minutes. */
  attemptTimeoutMs?: number;
  /** A claim whose heartbeat is older is taken over. Default 60 s; heartbeats every lease/3. */
  leaseMs?: number;
  /** Delivers analysis.completed events; null: no events (the runs still record that one is owed). */
  emit?: Emit | null;
  log?: Logger;
  pgBackoff?: { initialMs?: number; maxMs?: number };
}

export type Outcome =
  | { kind: 'completed'; cached: boolean; attempts: number; durationMs: number }
  | { kind: 'failed'; attempts: number; error: string; durationMs: number }
  /** Recorded before (completed, or failed/skipped and not asked to redo). */
  | { kind: 'already'; status: RunStatus }
  /** Another processor holds the run; try again after retryInMs. */
  | { kind: 'busy'; retryInMs: number }
  /** The claim was taken over while working (lease expired); the other holder records it. */
  | { kind: 'lost' };

export interface ExecuteOptions {
  /** Finished statuses to run again (backfill): e.g. ['failed'] or ['failed', 'skipped']. */
  redo?: RunStatus[];
  /** Aborts the work (shutdown): the claim is given back and StoppedError thrown. */
  signal?: AbortSignal;
}

export function defaultWorkerId(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e) => { signal.removeEventListener('abort', onAbort); reject(e); },
    );
  });
}

export class PassRunner {
  readonly worker: string;
  readonly maxAttempts: number;
  private readonly pool: Pool;
  private readonly log: Logger;
  private readonly leaseMs: number;

  constructor(private readonly opts: RunnerOptions) {
    this.pool = opts.pool;
    this.worker = opts.worker ?? defaultWorkerId();
    this.maxAttempts = opts.maxAttempts ?? 3;
    if (!Number.isInteger(this.maxAttempts) || this.maxAttempts < 1) throw new Error(`maxAttempts must be a positive integer, got ${this.maxAttempts}`);
    this.leaseMs = opts.leaseMs ?? 60_000;
    this.log = opts.log ?? logger('AnalysisPasses');
  }

  private pg<T>(what: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return withPgRetry(what, fn, {
      signal, log: this.log, initialMs: this.opts.pgBackoff?.initialMs, maxMs: this.opts.pgBackoff?.maxMs,
      onRetry: () => metrics.pgErrors.inc(),
    });
  }

  /** Runs the pass on the conversation unless already recorded; the outcome is in analysis_runs. */
  async execute(conv: Conversation, pass: PassDefinition, opts: ExecuteOptions = {}): Promise<Outcome> {
    const { signal } = opts;
    const key: RunKey = { conversation_id: conv.conversation_id, pass_name: pass.name, pass_version: pass.prompt_version };
    const claim = await this.stoppable(signal, () => this.pg('claim run', () => claimRun(this.pool, key, { worker: this.worker, leaseMs: this.leaseMs, redo: opts.redo }), signal));
    if (claim.kind === 'done') {
      await this.emitOwed(conv, pass, key, signal);
      return { kind: 'already', status: claim.status };
    }
    if (claim.kind === 'busy') {
      return { kind: 'busy', retryInMs: Math.max(250, Math.min(5000, this.leaseMs - claim.heartbeatAgeMs)) };
    }

    const runId = claim.id;
    const lost = new AbortController();
    const hb = setInterval(() => {
      heartbeatRun(this.pool, runId, this.worker)
        .then((ok) => { if (!ok) lost.abort(new Error('claim lost')); })
        .catch(() => undefined);
    }, Math.max(100, Math.floor(this.leaseMs / 3)));
    hb.unref();
    const started = Date.now();
    const end = metrics.duration.startTimer({ pass: pass.name });
    metrics.running.inc();
    try {
      const hit = await this.stoppable(signal, () => this.pg('read cache', () => cachedResult(this.pool, pass.name, pass.prompt_version, conv.content_hash), signal), runId);
      if (hit !== null) {
        const n = await this.stoppable(signal, () => this.pg('count attempt', () => beginAttempt(this.pool, runId, this.worker), signal), runId);
        if (n === null) return { kind: 'lost' };
        return await this.finishCompleted(conv, pass, runId, hit, true, n, started, signal);
      }

      let attempts = claim.attempts;
      let lastError: string | null = null;
      for (;;) {
        if (attempts >= this.maxAttempts) {
          const error = lastError ?? `gave up: ${attempts} attempts were started without finishing (the processor stopped or died during them)`;
          return await this.finishFailed(conv, pass, runId, error, attempts, started, signal);
        }
        const n = await this.stoppable(signal, () => this.pg('count attempt', () => beginAttempt(this.pool, runId, this.worker), signal), runId);
        if (n === null) return { kind: 'lost' };
        attempts = n;
        const timeoutMs = this.opts.attemptTimeoutMs ?? 300_000;
        const timeout = AbortSignal.timeout(timeoutMs);
        const attemptSignal = AbortSignal.any([timeout, lost.signal, ...(signal ? [signal] : [])]);
        let result: JsonValue;
        try {
          result = await raceAbort(this.opts.analyzers[pass.analyzer].analyze(conv, { pass, signal: attemptSignal }), attemptSignal);
        } catch (e) {
          if (signal?.aborted) { await this.release(runId); throw new StoppedError(); }
          if (lost.signal.aborted) return { kind: 'lost' };
          const retryable = timeout.aborted ? true : isRetryable(e);
          lastError = timeout.aborted ? `attempt ${n} timed out after ${timeoutMs} ms` : (e as Error)?.message ?? String(e);
          metrics.attemptErrors.inc({ pass: pass.name, retryable: String(retryable) });
          this.log.warn({ pass: pass.name, conversation_id: conv.conversation_id, attempt: n, maxAttempts: this.maxAttempts, retryable, error: lastError }, 'analysis attempt failed');
          if (!retryable || n >= this.maxAttempts) {
            return await this.finishFailed(conv, pass, runId, lastError, n, started, signal);
          }
          const delay = backoffDelay(n - 1, this.opts.retryInitialMs ?? 1000, this.opts.retryMaxMs ?? 30_000);
          try { await sleep(delay, signal); } catch { await this.release(runId); throw new StoppedError(); }
          continue;
        }
        await this.stoppable(signal, () => this.pg('store cache', () => storeCachedResult(this.pool, pass.name, pass.prompt_version, conv.content_hash, result, conv.conversation_id), signal), runId);
        return await this.finishCompleted(conv, pass, runId, result, false, n, started, signal);
      }
    } finally {
      clearInterval(hb);
      end();
      metrics.running.dec();
    }
  }

  /** Runs fn; when the signal aborted meanwhile, gives the claim back (if any) and throws StoppedError. */
  private async stoppable<T>(signal: AbortSignal | undefined, fn: () => Promise<T>, runId?: string): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (signal?.aborted) {
        if (runId !== undefined) await this.release(runId);
        throw new StoppedError();
      }
      throw e;
    }
  }

  private async release(runId: string): Promise<void> {
    await releaseRun(this.pool, runId, this.worker).catch((err) => this.log.warn({ err: errorSummary(err) }, 'could not give back an analysis claim; it expires with its lease'));
  }

  private async finishCompleted(conv: Conversation, pass: PassDefinition, runId: string, result: JsonValue, cached: boolean, attempts: number, started: number, signal?: AbortSignal): Promise<Outcome> {
    const ok = await this.stoppable(signal, () => this.pg('record result', () => completeRun(this.pool, runId, this.worker, result, cached), signal), runId);
    if (!ok) return { kind: 'lost' };
    const durationMs = Date.now() - started;
    metrics.runs.inc({ pass: pass.name, outcome: cached ? 'cached' : 'completed' });
    this.log.debug({ pass: pass.name, conversation_id: conv.conversation_id, cached, attempts, durationMs }, 'analysis pass completed');
    await this.emitOwed(conv, pass, { conversation_id: conv.conversation_id, pass_name: pass.name, pass_version: pass.prompt_version }, signal);
    return { kind: 'completed', cached, attempts, durationMs };
  }

  private async finishFailed(conv: Conversation, pass: PassDefinition, runId: string, error: string, attempts: number, started: number, signal?: AbortSignal): Promise<Outcome> {
    const ok = await this.stoppable(signal, () => this.pg('record failure', () => failRun(this.pool, runId, this.worker, error), signal), runId);
    if (!ok) return { kind: 'lost' };
    metrics.runs.inc({ pass: pass.name, outcome: 'failed' });
    this.log.error({ pass: pass.name, conversation_id: conv.conversation_id, attempts, error }, 'analysis pass failed');
    await this.emitOwed(conv, pass, { conversation_id: conv.conversation_id, pass_name: pass.name, pass_version: pass.prompt_version }, signal);
    return { kind: 'failed', attempts, error, durationMs: Date.now() - started };
  }

  /**
   * Emits the analysis.completed event of a finished run if it has not been delivered yet (also
   * for runs finished earlier whose event was lost to a crash), then notes it delivered.
   */
  private async emitOwed(conv: Conversation, pass: PassDefinition, key: RunKey, signal?: AbortSignal): Promise<void> {
    const emit = this.opts.emit;
    if (!emit) return;
    const run = await this.stoppable(signal, () => this.pg('read run', () => getRun(this.pool, key), signal));
    if (run === null || run.emitted || (run.status !== 'completed' && run.status !== 'failed')) return;
    const event: AnalysisCompleted = {
      conversation_id: conv.conversation_id,
      chat_id: conv.chat_id,
      pass_name: pass.name,
      pass_version: pass.prompt_version,
      status: run.status,
      result_json: run.result === null ? null : JSON.stringify(run.result),
      error: run.error,
      duration_ms: run.duration_ms ?? 0,
      completed_at: run.finished_at_ms ?? Date.now(),
    };
    for (let attempt = 0; ; attempt++) {
      try {
        await emit(event);
        break;
      } catch (e) {
        if (signal?.aborted) throw new StoppedError();
        const delay = backoffDelay(attempt, 500, 30_000);
        this.log.warn({ err: errorSummary(e), retryInMs: delay }, 'could not emit analysis.completed; retrying');
        try { await sleep(delay, signal); } catch { throw new StoppedError(); }
      }
    }
    await this.stoppable(signal, () => this.pg('mark emitted', () => markEmitted(this.pool, run.id), signal));
  }
}
