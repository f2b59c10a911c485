// analysis_runs and analysis_cache: the per-(conversation, pass, version) record of every pass, and
// the content-keyed result cache. A run is claimed before it is worked on (status 'running', with
// the worker's id and a heartbeat), so two processors never run the same pass at once, and a
// processor that died leaves a claim that expires (lease) and is taken over.
import type { Pool } from 'pg';
import type { JsonValue } from '../analysis/types';

export type RunStatus = 'pending' | 'running' | 'completed' | 'failed' | 'skipped';

export interface RunKey {
  conversation_id: string;
  pass_name: string;
  pass_version: number;
}

export type ClaimResult =
  | { kind: 'claimed'; id: string; attempts: number }
  /** Finished earlier (completed, or failed/skipped and not to be redone): nothing to do. */
  | { kind: 'done'; status: RunStatus }
  /** Another worker holds a live claim; look again later. */
  | { kind: 'busy'; worker: string | null; heartbeatAgeMs: number };

export interface ClaimOptions {
  worker: string;
  /** A 'running' claim whose heartbeat is older than this is taken over. */
  leaseMs: number;
  /** Finished statuses that are run again (backfill: ['failed'] or ['failed', 'skipped']). */
  redo?: RunStatus[];
}

export async function claimRun(pool: Pool, key: RunKey, opts: ClaimOptions): Promise<ClaimResult> {
  const redo = opts.redo ?? [];
  const { rows } = await pool.query<{ id: string; attempts: number }>(
    `INSERT INTO analysis_runs AS r (conversation_id, pass_name, pass_version, status, attempts, worker, started_at, heartbeat_at)
     VALUES ($1, $2, $3, 'running', 0, $4, now(), now())
     ON CONFLICT (conversation_id, pass_name, pass_version) DO UPDATE
       SET status = 'running', worker = $4, started_at = now(), heartbeat_at = now(), error = NULL,
           finished_at = NULL, duration_ms = NULL,
           attempts = CASE WHEN r.status IN ('pending', 'running') THEN r.attempts ELSE 0 END
       WHERE r.status = 'pending'
          OR (r.status = 'running' AND (r.heartbeat_at IS NULL OR r.heartbeat_at < now() - $5 * interval '1 millisecond'))
          OR r.status = ANY($6::text[])
     RETURNING id, attempts`,
    [key.conversation_id, key.pass_name, key.pass_version, opts.worker, opts.leaseMs, redo],
  );
  if (rows[0]) return { kind: 'claimed', id: String(rows[0].id), attempts: rows[0].attempts };
  const { rows: cur } = await pool.query<{ status: RunStatus; worker: string | null; age_ms: string | null }>(
    `SELECT status, worker, (extract(epoch FROM now() - heartbeat_at) * 1000)::bigint AS age_ms
     FROM analysis_runs WHERE conversation_id = $1 AND pass_name = $2 AND pass_version = $3`,
    [key.conversation_id, key.pass_name, key.pass_version],
  );
  const c = cur[0];
  if (!c) throw new Error(`analysis run ${key.pass_name} v${key.pass_version} of ${key.conversation_id} vanished while being claimed`);
  if (c.status === 'running') return { kind: 'busy', worker: c.worker, heartbeatAgeMs: Number(c.age_ms ?? 0) };
  return { kind: 'done', status: c.status };
}

/** Counts one more attempt on a claimed run; false when the claim was lost (taken over). */
export async function beginAttempt(pool: Pool, id: string, worker: string): Promise<number | null> {
  const { rows } = await pool.query<{ attempts: number }>(
    `UPDATE analysis_runs SET attempts = attempts + 1, heartbeat_at = now()
     WHERE id = $1 AND worker = $2 AND status = 'running' RETURNING attempts`, [id, worker]);
  return rows[0]?.attempts ?? null;
}

export async function heartbeatRun(pool: Pool, id: string, worker: string): Promise<boolean> {
  const r = await pool.query(`UPDATE analysis_runs SET heartbeat_at = now() WHERE id = $1 AND worker = $2 AND status = 'running'`, [id, worker]);
  return r.rowCount === 1;
}

export async function completeRun(pool: Pool, id: string, worker: string, result: JsonValue, cached: boolean): Promise<boolean> {
  const r = await pool.query(
    `UPDATE analysis_runs SET status = 'completed', result = $3::jsonb, cached = $4, error = NULL, finished_at = now(),
       duration_ms = (extract(epoch FROM now() - started_at) * 1000)::integer, heartbeat_at = NULL, emitted_at = NULL
     WHERE id = $1 AND worker = $2 AND status = 'running'`,
    [id, worker, JSON.stringify(result), cached]);
  return r.rowCount === 1;
}

export async function failRun(pool: Pool, id: string, worker: string, error: string): Promise<boolean> {
  const r = await pool.query(
    `UPDATE analysis_runs SET status = 'failed', error = $3, result = NULL, finished_at = now(),
       duration_ms = (extract(epoch FROM now() - started_at) * 1000)::integer, heartbeat_at = NULL, emitted_at = NULL
     WHERE id = $1 AND worker = $2 AND status = 'running'`,
    [id, worker, error]);
  return r.rowCount === 1;
}

/** Gives a claim back unfinished (shutdown in the middle of a pass): the next claimer redoes it. */
export async function releaseRun(pool: Pool, id: string, worker: string): Promise<void> {
  await pool.query(
    `UPDATE analysis_runs SET status = 'pending', worker = NULL, heartbeat_at = NULL WHERE id = $1 AND worker = $2 AND status = 'running'`,
    [id, worker]);
}

/** Records that the conversation does not qualify for the pass; never overwrites a run that happened. */
export async function skipRun(pool: Pool, key: RunKey, reason: string): Promise<void> {
  await pool.query(
    `INSERT INTO analysis_runs AS r (conversation_id, pass_name, pass_version, status, error, finished_at)
     VALUES ($1, $2, $3, 'skipped', $4, now())
     ON CONFLICT (conversation_id, pass_name, pass_version) DO UPDATE
       SET status = 'skipped', error = $4, finished_at = now()
       WHERE r.status IN ('pending', 'skipped')`,
    [key.conversation_id, key.pass_name, key.pass_version, reason]);
}

export interface RunRow {
  conversation_id: string;
  pass_name: string;
  pass_version: number;
  status: RunStatus;
  attempts: number;
  error: string | null;
  result: JsonValue | null;
  cached: boolean;
  duration_ms: number | null;
}

export async function runsOf(pool: Pool, conversationIds: readonly string[]): Promise<RunRow[]> {
  const { rows } = await pool.query<RunRow>(
    `SELECT conversation_id, pass_name, pass_version, status, attempts, error, result, cached, duration_ms
     FROM analysis_runs WHERE conversation_id = ANY($1::text[]) ORDER BY conversation_id, pass_name, pass_version`,
    [conversationIds]);
  return rows;
}

export async function cachedResult(pool: Pool, passName: string, passVersion: number, hash: string): Promise<JsonValue | null> {
  const { rows } = await pool.query<{ result: JsonValue }>(
    `UPDATE analysis_cache SET hits = hits + 1, last_hit_at = now()
     WHERE pass_name = $1 AND pass_version = $2 AND content_hash = $3 RETURNING result`,
    [passName, passVersion, hash]);
  return rows[0] ? rows[0].result : null;
}

export async function storeCachedResult(pool: Pool, passName: string, passVersion: number, hash: string, result: JsonValue, conversationId: string): Promise<void> {
  await pool.query(
    `INSERT INTO analysis_cache (pass_name, pass_version, content_hash, result, source_conversation_id)
     VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT DO NOTHING`,
    [passName, passVersion, hash, JSON.stringify(result), conversationId]);
}

export interface FinishedRun {
  id: string;
  status: RunStatus;
  attempts: number;
  error: string | null;
  result: JsonValue | null;
  cached: boolean;
  duration_ms: number | null;
  finished_at_ms: number | null;
  emitted: boolean;
}

/** The run's outcome as recorded (for the analysis.completed event), or null when there is no row. */
export async function getRun(pool: Pool, key: RunKey): Promise<FinishedRun | null> {
  const { rows } = await pool.query<Omit<FinishedRun, 'emitted' | 'finished_at_ms'> & { finished_ms: string | null; emitted_at: Date | null }>(
    `SELECT id, status, attempts, error, result, cached, duration_ms, emitted_at,
            (extract(epoch FROM finished_at) * 1000)::bigint AS finished_ms
     FROM analysis_runs WHERE conversation_id = $1 AND pass_name = $2 AND pass_version = $3`,
    [key.conversation_id, key.pass_name, key.pass_version]);
  const r = rows[0];
  if (!r) return null;
  return {
    id: String(r.id), status: r.status, attempts: r.attempts, error: r.error, result: r.result, cached: r.cached,
    duration_ms: r.duration_ms, finished_at_ms: r.finished_ms === null ? null : Number(r.finished_ms), emitted: r.emitted_at !== null,
  };
}

/** Notes that the run's analysis.completed event was delivered. */
export async function markEmitted(pool: Pool, id: string): Promise<void> {
  await pool.query('UPDATE analysis_runs SET emitted_at = now() WHERE id = $1', [id]);
}
