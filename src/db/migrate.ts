// Versioned SQL migrations: migrations/NNN_name.sql, applied in order, each in its own transaction,
// recorded in schema_migrations with a checksum. Concurrent starts (several processors, a CLI) are
// serialized by a session-level advisory lock, so each migration is applied exactly once.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Pool, PoolClient } from 'pg';

/** pg_advisory_lock key: the first 8 bytes of sha256("chatstats:migrations"). */
const LOCK_KEY = BigInt.asIntN(64, BigInt('0x' + createHash('sha256').update('chatstats:migrations').digest('hex').slice(0, 16))).toString();

export interface Migration {
  version: number;
  name: string;
  file: string;
  sql: string;
  checksum: string;
}

export interface MigrateResult {
  applied: Migration[];
  alreadyApplied: number;
}

/** The migrations directory: MIGRATIONS_DIR, or `migrations/` at the package root. */
export function defaultMigrationsDir(): string {
  const env = process.env.MIGRATIONS_DIR;
  if (env) return resolve(env);
  // From src/db (ts) or dist/src/db (js): the package root is where migrations/ is.
  for (const up of ['../..', '../../..']) {
    const dir = resolve(__dirname, up, 'migrations');
    if (existsSync(dir)) return dir;
  }
  throw new Error(`migrations directory not found near ${__dirname} (set MIGRATIONS_DIR)`);
}

export function readMigrations(dir: string = defaultMigrationsDir()): Migration[] {
  const out: Migration[] = [];
  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith('.sql')) continue;
    const m = /^(\d+)_([A-Za-z0-9_-]+)\.sql$/.exec(file);
    if (!m) throw new Error(`${join(dir, file)}: migration files are named NNN_name.sql`);
    const sql = readFileSync(join(dir, file), 'utf8');
    out.push({
      version: Number(m[1]),
      name: m[2]!,
      file,
      sql,
      checksum: createHash('sha256').update(sql).digest('hex'),
    });
  }
  for (let i = 1; i < out.length; i++) {
    if (out[i]!.version === out[i - 1]!.version) {
      throw new Error(`${dir}: two migrations have version ${out[i]!.version} (${out[i - 1]!.file}, ${out[i]!.file})`);
    }
  }
  return out;
}

/**
 * Applies the migrations that are missing, in version order, each in a transaction. A migration
 * already applied whose file has changed since is an error (write a new migration instead).
 */
export async function migrate(pool: Pool, opts: { dir?: string } = {}): Promise<MigrateResult> {
  const migrations = readMigrations(opts.dir);
  const client = await pool.connect();
  let locked = false;
  try {
    await client.query('SELECT pg_advisory_lock($1::bigint)', [LOCK_KEY]);
    locked = true;
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    integer PRIMARY KEY,
      name       text        NOT NULL,
      checksum   text        NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const { rows } = await client.query<{ version: number; name: string; checksum: string }>(
      'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
    );
    const done = new Map(rows.map((r) => [r.version, r]));
    const applied: Migration[] = [];
    for (const m of migrations) {
      const prior = done.get(m.version);
      if (prior) {
        if (prior.checksum !== m.checksum) {
          throw new Error(`migration ${m.file} was changed after it was applied (checksum differs); add a new migration instead`);
        }
        continue;
      }
      await applyOne(client, m);
      applied.push(m);
    }
    return { applied, alreadyApplied: migrations.length - applied.length };
  } finally {
    if (locked) await client.query('SELECT pg_advisory_unlock($1::bigint)', [LOCK_KEY]).catch(() => undefined);
    client.release();
  }
}

async function applyOne(client: PoolClient, m: Migration): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(m.sql);
    await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [m.version, m.name, m.checksum]);
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    const err = e as Error;
    err.message = `migration ${m.file} failed: ${err.message}`;
    throw err;
  }
}

/** Versions recorded in schema_migrations (empty when the table does not exist yet). */
export async function appliedMigrations(pool: Pool): Promise<{ version: number; name: string; applied_at: Date }[]> {
  const { rows: t } = await pool.query("SELECT to_regclass('schema_migrations') AS t");
  if (t[0]?.t === null) return [];
  const { rows } = await pool.query<{ version: number; name: string; applied_at: Date }>(
    'SELECT version, name, applied_at FROM schema_migrations ORDER BY version',
  );
  return rows;
}
