// `chatstats produce` against the real broker (and registry): the IRC sample lands chat by chat on
// the partitions the Java client picks; invalid lines are reported and skipped; --strict fails.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { loadConfig } from '../../src/config';
import { runProduce, type ProduceSummary } from '../../src/cli/produce';
import { RecordCodec, SchemaRegistryClient, RECORD_KINDS } from '../../src/records/codec';
import { topicNames } from '../../src/topics';
import { IRC_COUNTS, IRC_FILE, JAVA_MURMUR2_IRC, message } from '../fixtures/records';
import { BROKERS, REGISTRY_URL, deleteTopics, readTopic, testKafka, uniquePrefix } from '../fixtures/kafka';

const kafka = testKafka();
const prefixes: string[] = [];
const dir = mkdtempSync(path.join(tmpdir(), 'chatstats-produce-'));
const MAIN = path.resolve(__dirname, '../../src/cli/produce-main.js');

function envFor(prefix: string, avro: boolean): Record<string, string> {
  prefixes.push(prefix);
  const env: Record<string, string> = { KAFKA_BROKERS: BROKERS.join(','), TOPIC_PREFIX: prefix, LOG_LEVEL: 'warn', LOG_FORMAT: 'json' };
  if (avro) env.SCHEMA_REGISTRY_URL = REGISTRY_URL;
  return env;
}

function sink(): PassThrough & { text: () => string } {
  const s = new PassThrough() as PassThrough & { text: () => string };
  let buf = '';
  s.on('data', (c: Buffer) => { buf += c.toString(); });
  s.text = () => buf;
  return s;
}

function run(args: string[], env: Record<string, string>, stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

async function endOffsets(topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high), 0);
  } finally {
    await admin.disconnect();
  }
}

after(async () => {
  rmSync(dir, { recursive: true, force: true });
  const registry = new SchemaRegistryClient(REGISTRY_URL);
  for (const p of prefixes) {
    await deleteTopics(kafka, p);
    const codec = new RecordCodec({ registryUrl: null, topics: topicNames({ topicPrefix: p, appId: 'chatstats' }) });
    for (const kind of RECORD_KINDS) await registry.deleteSubject(codec.subjectFor(kind), true).catch(() => undefined);
  }
});

for (const avro of [false, true]) {
  test(`the IRC sample (${avro ? 'Avro' : 'JSON'}): every chat on the Java partitioner's partition, counts match`, { timeout: 180_000 }, async () => {
    const prefix = uniquePrefix(avro ? 'produce-avro' : 'produce-json');
    const cfg = loadConfig(envFor(prefix, avro));
    const stderr = sink();
    const summary = await runProduce({ file: IRC_FILE, config: cfg, stderr });
    const topic = `${prefix}chat.messages`;
    assert.equal(summary.topic, topic);
    assert.equal(summary.format, avro ? 'avro' : 'json');
    assert.equal(summary.partition_count, 6);
    assert.equal(summary.lines, 14_018);
    assert.equal(summary.sent, 14_018);
    assert.equal(summary.invalid, 0);
    assert.equal(summary.stopped, null);
    const expectedPartitions: Record<string, number> = {};
    for (const [chat, n] of Object.entries(IRC_COUNTS)) {
      const p = String(JAVA_MURMUR2_IRC[chat]!.p6);
      expectedPartitions[p] = (expectedPartitions[p] ?? 0) + n;
    }
    assert.deepEqual(summary.partitions, expectedPartitions);
    assert.match(stderr.text(), /^produce: 14,018 sent, 0 invalid, in [\d.]+s \([\d,]+ msg\/s\)\n$/);

    // All the other topics were provisioned too.
    const admin = kafka.admin();
    await admin.connect();
    const existing = await admin.listTopics();
    await admin.disconnect();
    for (const t of Object.values(topicNames(cfg))) assert.ok(existing.includes(t), t);

    assert.equal(await endOffsets(topic), 14_018);
    const records = await readTopic(kafka, topic, 14_018, 120_000);
    assert.equal(records.length, 14_018);
    const codec = new RecordCodec({ registryUrl: REGISTRY_URL, topics: topicNames(cfg) });
    const perChat = new Map<string, number>();
    const lastSentAt = new Map<string, number>();
    let outOfOrder = 0;
    for (const r of records) {
      assert.equal(r.value![0], avro ? 0 : 0x7b);
      const m = await codec.decodeChatMessage(r.value);
      assert.equal(r.key!.toString(), m.chat_id);
      assert.equal(r.partition, JAVA_MURMUR2_IRC[m.chat_id]!.p6, `${m.chat_id} on partition ${r.partition}`);
      perChat.set(m.chat_id, (perChat.get(m.chat_id) ?? 0) + 1);
      // File order is kept within a chat: message_id ends with the line number in the chat's log.
      const seq = Number(m.message_id.slice(m.message_id.lastIndexOf(':') + 1));
      if (seq < (lastSentAt.get(m.chat_id) ?? -1)) outOfOrder++;
      lastSentAt.set(m.chat_id, seq);
    }
    assert.deepEqual(Object.fromEntries(perChat), IRC_COUNTS);
    assert.equal(outOfOrder, 0, 'each chat keeps file order on its partition');
  });
}

function writeMixed(): { file: string; valid: number } {
  const good = (i: number) => JSON.stringify(message({ message_id: `ok-${i}`, chat_id: `chat-${i % 3}` }));
  const lines = [
    good(1),                                                    // 1
    '{"message_id": "x", "chat_id": ',                          // 2 not JSON
    JSON.stringify({ ...message(), chat_id: undefined }),       // 3 missing chat_id
    '',                                                         // 4 blank: skipped, not invalid
    good(2),                                                    // 5
    '[1, 2, 3]',                                                // 6 array
    JSON.stringify({ ...message(), sent_at: 'yesterday' }),     // 7 bad time
    JSON.stringify({ ...message(), is_from_me: 'no' }),         // 8 wrong type
    JSON.stringify({ ...message(), text: 'x'.repeat(70_000) }), // 9 oversize
    `${good(3)}\r`,                                             // 10 CRLF line
    good(4),                                                    // 11
  ];
  const file = path.join(dir, `mixed-${Math.random().toString(36).slice(2)}.jsonl`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return { file, valid: 4 };
}

test('invalid lines are reported with their line numbers and skipped', { timeout: 120_000 }, async () => {
  const prefix = uniquePrefix('produce-invalid');
  const cfg = loadConfig(envFor(prefix, false));
  const { file, valid } = writeMixed();
  const stderr = sink();
  const topic = `${prefix}custom.input`;
  const summary: ProduceSummary = await runProduce({ file, config: cfg, stderr, topic, batchSize: 2 });
  assert.equal(summary.topic, topic);
  assert.equal(summary.sent, valid);
  assert.equal(summary.blank, 1);
  assert.equal(summary.lines, 11);
  assert.deepEqual(summary.invalid_lines.map((l) => l.line), [2, 3, 6, 7, 8, 9]);
  const reasons = summary.invalid_lines.map((l) => l.reason);
  assert.match(reasons[0]!, /^not JSON/);
  assert.equal(reasons[1], 'field chat_id is missing');
  assert.equal(reasons[2], 'not a JSON object (got array)');
  assert.equal(reasons[3], 'field sent_at: not a time: "yesterday"');
  assert.equal(reasons[4], 'field is_from_me must be a boolean (got string)');
  assert.match(reasons[5]!, /^oversize record: \d+ bytes > 65536$/);
  const err = stderr.text();
  assert.match(err, /^line 2: not JSON/m);
  assert.match(err, /^line 3: field chat_id is missing$/m);
  assert.match(err, /^line 9: oversize record/m);
  assert.equal(await endOffsets(topic), valid, 'the --topic override was created and received the valid lines');
  const ids = (await readTopic(kafka, topic, valid)).map((r) => (JSON.parse(r.value!.toString()) as { message_id: string }).message_id).sort();
  assert.deepEqual(ids, ['ok-1', 'ok-2', 'ok-3', 'ok-4']);
});

test('the command: --json summary and exit 0; --strict stops at the first invalid line with exit 1', { timeout: 120_000 }, async () => {
  const prefix = uniquePrefix('produce-cli');
  const env = envFor(prefix, true);
  const { file } = writeMixed();

  const ok = await run([file, '--json'], env);
  assert.equal(ok.code, 0, ok.stderr);
  const s = JSON.parse(ok.stdout) as ProduceSummary;
  assert.equal(s.sent, 4);
  assert.equal(s.invalid, 6);
  assert.equal(s.format, 'avro');
  assert.match(ok.stderr, /^line 7: field sent_at: not a time: "yesterday"$/m);

  const strict = await run([file, '--strict', '--json', '--topic', `${prefix}strict.input`], env);
  assert.equal(strict.code, 1, strict.stderr);
  const ss = JSON.parse(strict.stdout) as ProduceSummary;
  assert.equal(ss.stopped, 'strict');
  assert.equal(ss.sent, 1, 'the line before the invalid one was published');
  assert.deepEqual(ss.invalid_lines, [{ line: 2, reason: ss.invalid_lines[0]!.reason }]);
  assert.match(strict.stderr, /^line 2: not JSON/m);
  assert.match(strict.stderr, /invalid input at line 2 \(--strict\)/);
  assert.doesNotMatch(strict.stderr, /line 3:/);

  const stdin = await run(['-', '--topic', `${prefix}stdin.input`], env, `${JSON.stringify(message({ message_id: 'stdin-1' }))}\n`);
  assert.equal(stdin.code, 0, stdin.stderr);
  assert.match(stdin.stdout, /^sent: +1$/m);
  assert.match(stdin.stdout, /^per partition:$/m);

  const missing = await run([path.join(dir, 'nope.jsonl')], env);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read .*nope\.jsonl: no such file/);

  const badConfig = await run([file], { ...env, KAFKA_BROKERS: 'not a broker' });
  assert.equal(badConfig.code, 1);
  assert.match(badConfig.stderr, /KAFKA_BROKERS/);
});
