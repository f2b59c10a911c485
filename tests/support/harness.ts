// Shared by the integration tests: an isolated environment per test (topic prefix, app id, state
// directory), tracker processes to start and kill, and polling helpers.
import '../../src/kafkajs-patch'; // before kafkajs loads: in-process trackers run with the fixes bin/chatstats.js has
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { loadConfig, type Config } from '../../src/config';

export const ROOT = path.resolve(__dirname, '../../..');
export const IRC_SAMPLE = path.join(ROOT, 'data/irc/irc-new-domains.messages.jsonl');
export const REGISTRY_URL = process.env.TEST_SCHEMA_REGISTRY_URL ?? 'http://127.0.0.1:8081/apis/ccompat/v7';
export const BROKERS = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';

/** Environment variables for an isolated run: its own topics, groups, state and metrics port. */
export function isolatedEnv(name: string, extra: Record<string, string> = {}): Record<string, string> {
  const id = `${name}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  return {
    KAFKA_BROKERS: BROKERS,
    TOPIC_PREFIX: `${id}.`,
    APP_ID: `cs-${id}`,
    STATE_DIR: mkdtempSync(path.join(os.tmpdir(), `chatstats-${name}-`)),
    METRICS_PORT: '0',
    // Tests that replay a backlog would otherwise wait the default settle minute after catching
    // up before the last conversations seal; the settle rule's own tests set it explicitly.
    CONVERSATION_SETTLE: '1s',
    LOG_LEVEL: 'warn',
    LOG_FORMAT: 'json',
    ...extra,
  };
}

export function configOf(env: Record<string, string>): Config {
  return loadConfig(env);
}

export function testKafka(): Kafka {
  return new Kafka({ clientId: 'test', brokers: [BROKERS], logLevel: logLevel.NOTHING });
}

export interface ChildRole {
  proc: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
}

/** Starts `chatstats run <role>` as a child process with the given environment. */
export function spawnRole(role: string, env: Record<string, string>, extra: Record<string, string> = {}): ChildRole {
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), 'run', role], {
    env: { ...process.env, ...env, ...extra },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => { out += d; });
  proc.stderr!.on('data', (d) => { out += d; });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return { proc, output: () => out, exited, kill: (s) => { proc.kill(s); } };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(everyMs);
  }
}

/** A PostgreSQL database of its own for one test file, created now and dropped by `drop()`. */
export function createTestDatabase(name: string): { url: string; drop(): Promise<void> } {
  const db = `chatstats_test_${name}_${Date.now().toString(36)}`;
  const url = `postgres://postgres@127.0.0.1:5432/${db}`;
  execFileSync(process.execPath, [path.join(ROOT, 'infra/ensure-db.js'), url]);
  return {
    url,
    drop: async () => {
      const { Client } = await import('pg');
      const c = new Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
      await c.connect();
      try { await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`); } finally { await c.end(); }
    },
  };
}
