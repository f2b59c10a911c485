// Kafka security settings against the local broker's SASL_SSL listener (infra/up.sh, see
// infra/security.sh): TLS with the local CA and SCRAM-SHA-256/512 (and PLAIN) as user chatstats.
// The right credentials connect, create a topic, produce and consume, through loadConfig +
// kafkaFromConfig and through `chatstats produce`; a wrong password, a missing TLS setting and an
// untrusted certificate fail within seconds with a message that names the cause.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Kafka } from 'kafkajs';
import { loadConfig, type Config } from '../../src/config';
import { describeKafkaError, kafkaFromConfig } from '../../src/kafka-client';
import { message } from '../fixtures/records';
import { deleteTopics, readTopic, uniquePrefix } from '../fixtures/kafka';

process.env.LOG_LEVEL ??= 'fatal'; // kafkajs logs every failed attempt; the assertions say what matters

const ROOT = path.resolve(__dirname, '../../..');
const INFRA_HOME = process.env.INFRA_HOME ?? path.join(ROOT, '.infra');
const TLS_DIR = path.join(INFRA_HOME, 'kafka', 'tls');
const CA_FILE = path.join(TLS_DIR, 'ca.pem');
const PASSWORD_FILE = path.join(TLS_DIR, 'scram-password');
const SASL_PORT = Number(process.env.KAFKA_SASL_SSL_PORT ?? 9094);
const SASL_BROKERS = `127.0.0.1:${SASL_PORT}`;
const USER = 'chatstats';
const CLI = path.join(ROOT, 'bin/chatstats.js');

const dir = mkdtempSync(path.join(tmpdir(), 'chatstats-security-'));
const prefixes: string[] = [];
let password = '';

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.setTimeout(2000);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('timeout', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(false));
  });
}

/** Environment for the SASL_SSL listener; `over` replaces or (with undefined) removes variables. */
function secureEnv(over: Record<string, string | undefined> = {}): Record<string, string> {
  const prefix = uniquePrefix('security');
  prefixes.push(prefix); // its topics are deleted at the end
  const env: Record<string, string | undefined> = {
    KAFKA_BROKERS: SASL_BROKERS,
    KAFKA_SSL: 'true',
    KAFKA_SSL_CA_FILE: CA_FILE,
    KAFKA_SASL_MECHANISM: 'scram-sha-256',
    KAFKA_SASL_USERNAME: USER,
    KAFKA_SASL_PASSWORD: password,
    TOPIC_PREFIX: prefix,
    APP_ID: 'chatstats-security-test',
    ...over,
  };
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}

/** How an attempt to connect ends: the error and how long it took. */
async function connectFailure(cfg: Config): Promise<{ err: unknown; ms: number }> {
  const admin = kafkaFromConfig(cfg, 'security-test').admin();
  const started = Date.now();
  try {
    await admin.connect();
    await admin.listTopics();
  } catch (err) {
    return { err, ms: Date.now() - started };
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  assert.fail(`connecting to ${cfg.kafkaBrokers.join(',')} succeeded; expected it to fail`);
}

function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'fatal', LOG_FORMAT: 'json', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr, ms: Date.now() - started }); });
  });
}

before(async () => {
  const missing = [CA_FILE, PASSWORD_FILE].filter((f) => !existsSync(f));
  assert.deepEqual(missing, [], `infra/up.sh makes these on first start; run \`npm run infra:up\` (INFRA_HOME=${INFRA_HOME})`);
  assert.ok(await portOpen(SASL_PORT),
    `nothing listens on ${SASL_BROKERS}: the broker lacks the SASL_SSL listener; \`npm run infra:up\` restarts a broker it started with an older configuration`);
  password = readFileSync(PASSWORD_FILE, 'utf8').trim();
});

after(async () => {
  if (password !== '') {
    const used = [...prefixes];
    const kafka = kafkaFromConfig(loadConfig(secureEnv()), 'security-test-cleanup');
    for (const p of used) await deleteTopics(kafka, p).catch(() => undefined);
  }
  rmSync(dir, { recursive: true, force: true });
});

async function roundTrip(kafka: Kafka, topic: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const { brokers } = await admin.describeCluster();
    assert.deepEqual(brokers.map((b) => `${b.host}:${b.port}`), [SASL_BROKERS], 'the broker advertises its SASL_SSL listener');
    assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true }), true);
  } finally {
    await admin.disconnect();
  }
  const producer = kafka.producer({ idempotent: true, allowAutoTopicCreation: false });
  await producer.connect();
  try {
    await producer.send({ topic, acks: -1, messages: [{ key: 'chat-1', value: 'over SASL_SSL', headers: { via: 'tls' } }] });
  } finally {
    await producer.disconnect();
  }
  const records = await readTopic(kafka, topic, 1, 30_000);
  assert.equal(records.length, 1);
  assert.equal(records[0]!.key?.toString(), 'chat-1');
  assert.equal(records[0]!.value?.toString(), 'over SASL_SSL');
  assert.equal(records[0]!.headers?.via?.toString(), 'tls');
}

for (const mechanism of ['scram-sha-256', 'scram-sha-512', 'plain'] as const) {
  test(`SASL_SSL with ${mechanism}: connect, create a topic, produce and consume`, { timeout: 60_000 }, async () => {
    const cfg = loadConfig(secureEnv({ KAFKA_SASL_MECHANISM: mechanism }));
    assert.equal(cfg.kafkaSsl, true);
    assert.equal(cfg.kafkaSaslMechanism, mechanism);
    await roundTrip(kafkaFromConfig(cfg, 'security-test'), `${cfg.topicPrefix}roundtrip`);
  });
}

test('`chatstats produce` publishes through SASL_SSL with SCRAM-SHA-512', { timeout: 90_000 }, async () => {
  const env = secureEnv({ KAFKA_SASL_MECHANISM: 'scram-sha-512' });
  const file = path.join(dir, 'messages.jsonl');
  const lines = [1, 2, 3, 4, 5].map((i) => JSON.stringify(message({ message_id: `m-${i}`, chat_id: `chat-${i % 2}`, sent_at: Date.UTC(2024, 4, 1, 12, i) })));
  writeFileSync(file, `${lines.join('\n')}\n`);
  const r = await runCli(['produce', file, '--json', '--no-progress'], env);
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as { topic: string; sent: number; invalid: number };
  assert.equal(summary.topic, `${env.TOPIC_PREFIX}chat.messages`);
  assert.equal(summary.sent, 5);
  assert.equal(summary.invalid, 0);
  const records = await readTopic(kafkaFromConfig(loadConfig(env), 'security-test'), summary.topic, 5, 30_000);
  assert.deepEqual(records.map((x) => JSON.parse(x.value!.toString()).message_id).sort(), ['m-1', 'm-2', 'm-3', 'm-4', 'm-5']);
});

for (const mechanism of ['scram-sha-256', 'scram-sha-512'] as const) {
  test(`a wrong password with ${mechanism} fails at once with an authentication error`, { timeout: 60_000 }, async () => {
    const cfg = loadConfig(secureEnv({ KAFKA_SASL_MECHANISM: mechanism, KAFKA_SASL_PASSWORD: `${password}-wrong` }));
    const { err, ms } = await connectFailure(cfg);
    assert.ok(ms < 15_000, `failed after ${ms}ms`);
    assert.equal((err as Error).name, 'KafkaJSSASLAuthenticationError');
    assert.match((err as Error).message, /authentication failed/i);
    const text = describeKafkaError(err, cfg);
    assert.match(text, new RegExp(`^Kafka authentication failed for user "chatstats" with mechanism ${mechanism.toUpperCase()} at ${SASL_BROKERS}: `));
    assert.match(text, /invalid credentials/);
    assert.match(text, /KAFKA_SASL_PASSWORD/);
    assert.ok(!text.includes(password), 'the message does not show the password');
  });
}

test('`chatstats produce` with a wrong password exits 1 naming authentication', { timeout: 90_000 }, async () => {
  const env = secureEnv({ KAFKA_SASL_PASSWORD: 'not-the-password' });
  const file = path.join(dir, 'one.jsonl');
  writeFileSync(file, `${JSON.stringify(message())}\n`);
  const r = await runCli(['produce', file, '--no-progress'], env);
  assert.equal(r.code, 1, r.stdout);
  assert.ok(r.ms < 20_000, `exited after ${r.ms}ms`);
  assert.match(r.stderr, /^chatstats produce: .*authentication failed.*SCRAM-SHA-256/im);
  assert.ok(!r.stderr.includes('not-the-password'), 'the message does not show the password');
});

test('no TLS against the SASL_SSL listener fails within seconds and says TLS may be expected', { timeout: 60_000 }, async () => {
  const cfg = loadConfig(secureEnv({ KAFKA_SSL: undefined, KAFKA_SSL_CA_FILE: undefined }));
  assert.equal(cfg.kafkaSsl, false);
  const { err, ms } = await connectFailure(cfg);
  assert.ok(ms < 30_000, `failed after ${ms}ms`);
  assert.match(describeKafkaError(err, cfg), new RegExp(`^Kafka broker at ${SASL_BROKERS} closed the connection before answering: the listener may expect TLS \\(KAFKA_SSL is not true\\)`));
});

test('TLS without the local CA fails within seconds and says the certificate is not trusted', { timeout: 60_000 }, async () => {
  const cfg = loadConfig(secureEnv({ KAFKA_SSL_CA_FILE: undefined }));
  const { err, ms } = await connectFailure(cfg);
  assert.ok(ms < 30_000, `failed after ${ms}ms`);
  const text = describeKafkaError(err, cfg);
  assert.match(text, new RegExp(`^Kafka TLS connection failed at ${SASL_BROKERS}: .*self[- ]signed certificate`));
  assert.match(text, /set KAFKA_SSL_CA_FILE/);
});
