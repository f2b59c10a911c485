// The operator's first minutes with a misconfigured or idle system (issue 14), with `bin/chatstats.js`
// as child processes:
// - an unreachable KAFKA_BROKERS or SCHEMA_REGISTRY_URL: every command that needs it exits 1 within
//   3 s with one line naming the variable and the address tried, and nothing after it;
// - option values are checked before anything is connected to (a bad --timeout, pass name or time
//   is said as such, also when the database would fail first);
// - a taken METRICS_PORT is named, METRICS_HOST narrows where the HTTP server listens;
// - SIGTERM of an idle `run all` exits 0 in under 3 s (the roles stop in parallel).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { isolatedEnv, createTestDatabase, waitFor, sleep, ROOT, IRC_SAMPLE, REGISTRY_URL, testKafka } from '../support/harness';
import { deleteTopics } from '../fixtures/kafka';

interface Run { code: number | null; stdout: string; stderr: string; ms: number }

const children = new Set<ReturnType<typeof spawn>>();
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const f of cleanups) await f().catch(() => undefined);
});

function cli(args: string[], env: Record<string, string>, timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve) => {
    const started = Date.now();
    const proc = spawn(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('exit', (code) => { clearTimeout(timer); children.delete(proc); resolve({ code, stdout, stderr, ms: Date.now() - started }); });
  });
}

/** A loopback port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const lines = (s: string) => s.split('\n').filter((l) => l.trim() !== '');

/**
 * How long this machine takes to start the command and exit (`chatstats --version`): on a loaded
 * machine (CI runners shared with other jobs) Node's start-up alone can take seconds, which is not
 * the command's waiting. The 3 s budget is stretched by whatever start-up takes beyond 1 s.
 */
async function startupAllowance(): Promise<number> {
  const r = await cli(['--version'], {});
  return Math.max(0, r.ms - 1000);
}

/** Exit 1 within 3 s, one line on stderr naming `variable` and `address`, nothing on stdout. */
function assertOneLineFailure(what: string, r: Run, variable: string, address: string, allowanceMs: number): void {
  const msg = `${what}: exit ${r.code} after ${r.ms} ms (start-up allowance ${allowanceMs} ms)\n--- stderr\n${r.stderr.slice(0, 3000)}\n--- stdout\n${r.stdout.slice(0, 1000)}`;
  assert.equal(r.code, 1, msg);
  assert.ok(r.ms < 3000 + allowanceMs, `fails within 3 s: ${msg}`);
  assert.deepEqual(lines(r.stdout), [], `nothing on stdout: ${msg}`);
  const err = lines(r.stderr);
  assert.equal(err.length, 1, `one line, no log lines before or after it: ${msg}`);
  assert.match(err[0]!, /^chatstats( produce)?: /, msg);
  assert.ok(err[0]!.includes(variable), `names ${variable}: ${msg}`);
  assert.ok(err[0]!.includes(address), `names the address ${address}: ${msg}`);
}

// Every command that talks to Kafka (and to the registry, when one is set).
const KAFKA_COMMANDS = [['produce', IRC_SAMPLE, '--no-progress'], ['tracker-status'], ['tracker-status', '--chat-id', 'c'], ['check-sealing'],
  ['force-seal', 'c'], ['run', 'all'], ['run', 'tracker'], ['demo'], ['backfill', 'basic', '--dry-run']];
const REGISTRY_COMMANDS = [['produce', IRC_SAMPLE, '--no-progress'], ['check-sealing'], ['force-seal', 'c'], ['run', 'all'], ['run', 'etl'], ['demo']];

test('an unreachable KAFKA_BROKERS: exit 1 within 3 s, one line naming KAFKA_BROKERS and the address', { timeout: 120_000 }, async (t) => {
  const port = await closedPort();
  const db = createTestDatabase('operator_kafka');
  cleanups.push(() => db.drop());
  const env = isolatedEnv('op-kafka', { KAFKA_BROKERS: `127.0.0.1:${port}`, SCHEMA_REGISTRY_URL: REGISTRY_URL, DATABASE_URL: db.url, LOG_LEVEL: 'info' });
  cleanups.push(() => rm(env.STATE_DIR!, { recursive: true, force: true }));
  // backfill needs the schema in place to get as far as Kafka.
  const migrated = await cli(['migrate'], env);
  assert.equal(migrated.code, 0, migrated.stderr);
  const results: { args: string[]; r: Run; allowance: number }[] = [];
  for (const args of KAFKA_COMMANDS) results.push({ args, allowance: await startupAllowance(), r: await cli(args, env) });
  for (const { args, r, allowance } of results) assertOneLineFailure(`chatstats ${args.join(' ')}`, r, 'KAFKA_BROKERS', `127.0.0.1:${port}`, allowance);
  t.diagnostic(results.map(({ args, r, allowance }) => `${args[0]} ${args[1] ?? ''}: ${r.ms} ms${allowance ? ` (+${allowance} start-up)` : ''}`).join('; '));
  t.diagnostic(lines(results[1]!.r.stderr)[0]!);
});

test('an unreachable SCHEMA_REGISTRY_URL: exit 1 within 3 s, one line naming SCHEMA_REGISTRY_URL and the URL', { timeout: 120_000 }, async (t) => {
  const port = await closedPort();
  const url = `http://127.0.0.1:${port}/apis/ccompat/v7`;
  const env = isolatedEnv('op-registry', { SCHEMA_REGISTRY_URL: url, LOG_LEVEL: 'info' });
  cleanups.push(() => rm(env.STATE_DIR!, { recursive: true, force: true }));
  const results: { args: string[]; r: Run; allowance: number }[] = [];
  for (const args of REGISTRY_COMMANDS) results.push({ args, allowance: await startupAllowance(), r: await cli(args, env) });
  for (const { args, r, allowance } of results) assertOneLineFailure(`chatstats ${args.join(' ')}`, r, 'SCHEMA_REGISTRY_URL', url, allowance);
  // A registry that answers, but not the Confluent-compatible API.
  const wrong = await cli(['check-sealing'], { ...env, SCHEMA_REGISTRY_URL: REGISTRY_URL.replace('/apis/ccompat/v7', '/nope') });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /SCHEMA_REGISTRY_URL\) answered HTTP 404 to GET \/subjects/);
  t.diagnostic(lines(results[0]!.r.stderr)[0]!);
  // Nothing was created on the real broker: each command stopped before touching it.
  const admin = testKafka().admin();
  await admin.connect();
  try {
    assert.deepEqual((await admin.listTopics()).filter((x) => x.startsWith(env.TOPIC_PREFIX!)), []);
  } finally { await admin.disconnect(); }
});

test('option values are checked before anything is connected to', { timeout: 60_000 }, async () => {
  // A database that cannot be reached: a bad argument must be said first.
  const env = isolatedEnv('op-options', { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere', KAFKA_BROKERS: '127.0.0.1:1' });
  cleanups.push(() => rm(env.STATE_DIR!, { recursive: true, force: true }));
  const cases: [string[], RegExp][] = [
    [['check-sealing', '--timeout', 'abc'], /--timeout <seconds>' argument 'abc' is invalid.*positive number of seconds/],
    [['check-sealing', '--timeout', '0'], /argument '0' is invalid/],
    [['force-seal', 'x', '--timeout', '-1'], /argument '-1' is invalid/],
    [['demo', '--timeout', 'soon'], /argument 'soon' is invalid/],
    [['backfill', 'nosuchpass', '--dry-run'], /no analysis pass named "nosuchpass"/],
    [['backfill', 'basic', '--dry-run', '--since', 'yesterday'], /not a time: "yesterday"/],
    [['backfill', 'basic', '--dry-run', '--until', 'later'], /not a time: "later"/],
    [['backfill', 'basic', '--dry-run', '--limit', '0'], /--limit must be a positive integer/],
    [['backfill', 'basic', '--dry-run', '--concurrency', 'many'], /--concurrency must be a positive integer/],
    [['backfill', 'basic', '--dry-run', '--since', '2024-05-02', '--until', '2024-05-01'], /is not before --until/],
    [['backfill-all', '--dry-run', '--limit', 'x'], /--limit must be a positive integer/],
    [['conversations', '--chat-id', 'c', '--since', 'yesterday'], /not a time: "yesterday"/],
    [['conversations', '--chat-id', 'c', '--limit', '-3'], /argument '-3' is invalid/],
    [['missing', '--limit', 'none'], /--limit must be a positive integer/],
  ];
  const results: { args: string[]; re: RegExp; r: Run }[] = [];
  for (const [args, re] of cases) results.push({ args, re, r: await cli(args, env) });
  for (const { args, re, r } of results) {
    assert.notEqual(r.code, 0, `chatstats ${args.join(' ')} exits non-zero`);
    assert.match(r.stderr, re, `chatstats ${args.join(' ')}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /PostgreSQL|KAFKA_BROKERS|DATABASE_URL/, `chatstats ${args.join(' ')}: the argument is said, not the database: ${r.stderr}`);
  }
});

test('a taken METRICS_PORT is named; METRICS_HOST narrows the listening address', { timeout: 120_000 }, async (t) => {
  const holder = net.createServer();
  await new Promise<void>((r) => holder.listen(0, '0.0.0.0', () => r()));
  const port = (holder.address() as AddressInfo).port;
  try {
    const env = isolatedEnv('op-port', { METRICS_PORT: String(port), SCHEMA_REGISTRY_URL: REGISTRY_URL });
    cleanups.push(() => rm(env.STATE_DIR!, { recursive: true, force: true }));
    const r = await cli(['run', 'tracker'], env);
    assert.equal(r.code, 2, r.stderr);
    assert.deepEqual(lines(r.stderr), [`chatstats: invalid configuration: METRICS_PORT: port ${port} is already in use on 0.0.0.0 (another chatstats process?); set METRICS_PORT to a free port, or 0 for any free one`]);
  } finally {
    await new Promise<void>((r) => holder.close(() => r()));
  }
  const bad = await cli(['run', 'tracker'], isolatedEnv('op-host', { METRICS_HOST: 'not a host' }));
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid configuration: METRICS_HOST: expected an IP address or host name/);

  // METRICS_HOST=127.0.0.1: /metrics on loopback, not on the machine's other addresses.
  const other = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
  const listenPort = await closedPort();
  const env = isolatedEnv('op-host', { METRICS_HOST: '127.0.0.1', METRICS_PORT: String(listenPort), SCHEMA_REGISTRY_URL: REGISTRY_URL });
  cleanups.push(() => rm(env.STATE_DIR!, { recursive: true, force: true }));
  cleanups.push(() => deleteTopics(testKafka(), env.TOPIC_PREFIX!));
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), 'run', 'tracker'], { env: { ...process.env, ...env }, stdio: 'ignore' });
  children.add(proc);
  try {
    await waitFor('/healthz on 127.0.0.1', 60_000, async () => (await fetch(`http://127.0.0.1:${listenPort}/healthz`).then((x) => x.status, () => 0)) === 200 ? true : undefined);
    if (other) {
      const reached = await fetch(`http://${other}:${listenPort}/healthz`, { signal: AbortSignal.timeout(2000) }).then(() => true, () => false);
      assert.equal(reached, false, `not listening on ${other}`);
      t.diagnostic(`listening on 127.0.0.1:${listenPort}, not on ${other}`);
    } else {
      t.diagnostic('no non-loopback IPv4 address on this machine: only loopback checked');
    }
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
  }
});

test('SIGTERM of an idle `run all` exits 0 in under 3 s', { timeout: 180_000 }, async (t) => {
  const db = createTestDatabase('operator_sigterm');
  cleanups.push(() => db.drop());
  const port = await closedPort();
  const env = isolatedEnv('op-sigterm', { METRICS_PORT: String(port), SCHEMA_REGISTRY_URL: REGISTRY_URL, DATABASE_URL: db.url, LOG_LEVEL: 'info' });
  cleanups.push(() => rm(env.STATE_DIR!, { recursive: true, force: true }));
  cleanups.push(() => deleteTopics(testKafka(), env.TOPIC_PREFIX!));
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), 'run', 'all'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(proc);
  let log = '';
  proc.stderr!.on('data', (d) => { log += d; });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  await waitFor('run all ready', 120_000, async () => {
    if (proc.exitCode !== null) throw new Error(`run all exited ${proc.exitCode}: ${log.slice(-2000)}`);
    return (await fetch(`http://127.0.0.1:${port}/readyz`).then((x) => x.status, () => 0)) === 200 ? true : undefined;
  }, 200);
  await sleep(2000); // idle: every consumer waiting in a fetch
  const signalled = Date.now();
  proc.kill('SIGTERM');
  const code = await Promise.race([exited, sleep(20_000).then(() => 'timeout' as const)]);
  const ms = Date.now() - signalled;
  t.diagnostic(`exit ${code} ${ms} ms after SIGTERM`);
  assert.equal(code, 0, log.slice(-2000));
  assert.ok(ms < 3000, `exited ${ms} ms after SIGTERM`);
});
