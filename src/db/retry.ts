// Retrying database work while PostgreSQL is unreachable: capped exponential backoff, a log line
// and a callback (for metrics) per failure, no limit on attempts (losing the work is worse than
// waiting), but abortable so that shutdown is not held up.
import type { Logger } from 'pino';
import { backoffDelay, isTransientPgError, sleep } from './errors';
import { errorSummary } from './pool';

export interface PgRetryOptions {
  signal?: AbortSignal;
  log?: Logger;
  initialMs?: number;
  maxMs?: number;
  /** Called for each failure that will be retried. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Which errors are retried; default: transient database errors. */
  retryIf?: (err: unknown) => boolean;
}

export async function withPgRetry<T>(what: string, fn: () => Promise<T>, opts: PgRetryOptions = {}): Promise<T> {
  const retryIf = opts.retryIf ?? isTransientPgError;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (!retryIf(e) || opts.signal?.aborted) throw e;
      const delay = backoffDelay(attempt, opts.initialMs ?? 200, opts.maxMs ?? 30_000);
      opts.onRetry?.(e, attempt + 1, delay);
      opts.log?.warn({ err: errorSummary(e), attempt: attempt + 1, retryInMs: delay }, `PostgreSQL unavailable (${what}); retrying`);
      await sleep(delay, opts.signal);
    }
  }
}
