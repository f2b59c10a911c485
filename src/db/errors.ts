// Classifying PostgreSQL failures: is it the data (retrying cannot help: the record is poison) or
// the database (unreachable, restarting, refusing connections: back off and retry the same work)?

/** SQLSTATE of a pg error, or undefined for network and other errors. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * True when the statement failed because of the values it was given: data exceptions (class 22:
 * bad encoding, NUL in text, out of range) and integrity violations (class 23: check, not null,
 * foreign key). The same values fail again, so the record goes to a DLQ instead of being retried.
 */
export function isDataError(err: unknown): boolean {
  const s = sqlState(err);
  return s !== undefined && (s.startsWith('22') || s.startsWith('23'));
}

const TRANSIENT_STATES = new Set([
  '57P01', // admin_shutdown (backend terminated)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down)
  '55000', // object_not_in_prerequisite_state: "database is not currently accepting connections"
  '55006', // object_in_use
  '3D000', // invalid_catalog_name: database does not exist (yet)
  '42501', // insufficient_privilege: CONNECT revoked on the database
  '28000', // invalid_authorization_specification
  '28P01', // invalid_password
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '25006', // read_only_sql_transaction (failover to a standby)
]);

const TRANSIENT_NET = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * True when the database, not the statement, is the problem: connection refused or lost, the server
 * shutting down or refusing connections, resource exhaustion (class 53), connection exceptions
 * (class 08). Work that failed this way is retried unchanged once the database is back.
 */
export function isTransientPgError(err: unknown): boolean {
  const s = sqlState(err);
  if (s !== undefined) return s.startsWith('08') || s.startsWith('53') || TRANSIENT_STATES.has(s);
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e?.code === 'string' && TRANSIENT_NET.has(e.code)) return true;
  const msg = typeof e?.message === 'string' ? e.message : '';
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended|not queryable|socket hang up/i.test(msg);
}

/** Capped exponential backoff with jitter: attempt n waits between half its cap and its cap, the cap min(maxMs, initialMs * 2^n). */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(cap / 2 + (random() * cap) / 2);
}

/** Resolves after ms, or at once (rejecting with AbortError) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(abortError(signal)); return; }
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = (): void => { clearTimeout(t); reject(abortError(signal!)); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function abortError(signal: AbortSignal): Error {
  const reason = signal.reason;
  if (reason instanceof Error) return reason;
  const e = new Error('aborted');
  e.name = 'AbortError';
  return e;
}
