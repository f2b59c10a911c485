// Connections of the data commands (stats, missing, backfill), checked up front so that a broker
// or database that cannot be reached gives one clear sentence and a non-zero exit, not a stack
// trace or minutes of retries.
import '../kafkajs-patch'; // before kafkajs loads: its grouping, Encoder growth and Produce encoding
import { Kafka, logLevel, type Admin } from 'kafkajs';
import type { Pool } from 'pg';
import type { Config } from '../config';
import { describeKafkaError, securityFromConfig } from '../kafka-client';
import { createPool, errorSummary } from '../db/pool';
import { UnreachableError, checkBrokers } from '../preflight';

/** Kafka, the registry or PostgreSQL could not be reached or is not set up. */
export { UnreachableError };

/** The database URL without its password, for messages. */
export function describeDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.username ? `${decodeURIComponent(u.username)}@` : ''}${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}

/**
 * A pool on DATABASE_URL whose first query has succeeded and whose schema is in place. Throws
 * UnreachableError naming the server (never the password) otherwise.
 */
export async function openDatabase(cfg: Pick<Config, 'databaseUrl'>, opts: { max?: number; applicationName?: string } = {}): Promise<Pool> {
  const pool = createPool(cfg.databaseUrl, { max: opts.max ?? 4, applicationName: opts.applicationName ?? 'chatstats-cli', connectionTimeoutMillis: 5000 });
  const where = describeDatabaseUrl(cfg.databaseUrl);
  let schema: boolean;
  try {
    const { rows } = await pool.query<{ ok: boolean }>(`SELECT to_regclass('analysis_runs') IS NOT NULL AND to_regclass('conversations') IS NOT NULL AS ok`);
    schema = rows[0]?.ok === true;
  } catch (e) {
    await pool.end().catch(() => undefined);
    const s = errorSummary(e);
    throw new UnreachableError(`cannot reach PostgreSQL at ${where} (DATABASE_URL): ${s.message}${s.code && !s.message.includes(s.code) ? ` [${s.code}]` : ''}`);
  }
  if (!schema) {
    await pool.end().catch(() => undefined);
    throw new UnreachableError(`PostgreSQL database ${where} has no chatstats tables; run \`chatstats migrate\` (or start the etl role) first`);
  }
  return pool;
}

/** A Kafka client for a command: no library logging (errors surface as messages), short retries. */
export function cliKafka(cfg: Config, clientId: string): Kafka {
  return new Kafka({
    clientId,
    brokers: cfg.kafkaBrokers,
    ...securityFromConfig(cfg),
    connectionTimeout: 5000,
    requestTimeout: 30_000,
    retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 5000 },
    logLevel: logLevel.NOTHING,
  });
}

/**
 * Checks, with a client of its own that gives up within seconds, that the brokers answer and the
 * topics exist; returns their partition counts.
 */
export async function checkKafka(cfg: Config, topics: string[]): Promise<Map<string, number>> {
  const kafka = new Kafka({
    clientId: `${cfg.appId}-cli-check`, brokers: cfg.kafkaBrokers, ...securityFromConfig(cfg),
    connectionTimeout: 3000, retry: { retries: 1, initialRetryTime: 300, maxRetryTime: 1000 }, logLevel: logLevel.NOTHING,
  });
  const admin: Admin = kafka.admin();
  try {
    await checkBrokers(cfg);
    await admin.connect();
    const existing = new Set(await admin.listTopics());
    const absent = topics.filter((t) => !existing.has(t));
    if (absent.length > 0) {
      throw new UnreachableError(`topic${absent.length > 1 ? 's' : ''} ${absent.join(', ')} ${absent.length > 1 ? 'do' : 'does'} not exist on ${cfg.kafkaBrokers.join(',')}: `
        + 'nothing has run with this TOPIC_PREFIX yet, or TOPIC_PREFIX does not match the running system');
    }
    const md = await admin.fetchTopicMetadata({ topics });
    return new Map(md.topics.map((t) => [t.name, t.partitions.length]));
  } catch (e) {
    if (e instanceof UnreachableError) throw e;
    // Rejected credentials or certificates are said as such; anything else is "cannot reach".
    const said = describeKafkaError(e, cfg);
    throw new UnreachableError(said !== (e as Error).message ? said : `cannot reach Kafka at ${cfg.kafkaBrokers.join(',')} (KAFKA_BROKERS): ${said}`);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
