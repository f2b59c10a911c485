// PostgreSQL connection pools. An idle client that loses its server (restart, terminated backend)
// makes the pool emit 'error'; without a listener that would crash the process, so every pool made
// here logs it instead and the next query gets a fresh connection (or a clear error to retry on).
import { Pool, type PoolConfig } from 'pg';
import type { Logger } from 'pino';

export interface PoolOptions {
  max?: number;
  applicationName?: string;
  connectionTimeoutMillis?: number;
  log?: Logger;
}

export function createPool(databaseUrl: string, opts: PoolOptions = {}): Pool {
  const config: PoolConfig = {
    connectionString: databaseUrl,
    max: opts.max ?? 10,
    connectionTimeoutMillis: opts.connectionTimeoutMillis ?? 5000,
    idleTimeoutMillis: 30_000,
    application_name: opts.applicationName ?? 'chatstats',
  };
  const pool = new Pool(config);
  pool.on('error', (err) => {
    opts.log?.warn({ err: errorSummary(err) }, 'PostgreSQL connection lost (idle client); it will be replaced');
  });
  return pool;
}

/** A loggable summary of a pg or network error, without connection strings. */
export function errorSummary(err: unknown): { message: string; code?: string } {
  const e = err as { message?: string; code?: string };
  const out: { message: string; code?: string } = { message: String(e?.message ?? err) };
  if (typeof e?.code === 'string') out.code = e.code;
  return out;
}
