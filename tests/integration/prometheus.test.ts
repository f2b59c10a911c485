// The monitoring side against a real Prometheus (Debian's `prometheus` package, which .ci/run
// installs; this test installs it with apt-get when it can, or skips saying how):
// - `promtool check config` and `check rules` accept deploy/prometheus/, and `promtool test rules`
//   runs the alerts' unit tests (deploy/prometheus/alerts.test.yml);
// - a Prometheus of its own (free loopback port, temporary data directory, 1 s scrape and rule
//   evaluation) scrapes `chatstats run all` while the IRC sample is replayed into it; then every
//   PromQL expression of the Grafana dashboard (with $__rate_interval substituted) evaluates without
//   error and returns data, except the few that are empty on a healthy system (named below, with
//   why), and every alerting rule is loaded and evaluates without error.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { isolatedEnv, createTestDatabase, waitFor, sleep, ROOT, IRC_SAMPLE, REGISTRY_URL, testKafka } from '../support/harness';
import { deleteTopics } from '../fixtures/kafka';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const children: ChildProcess[] = [];
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const f of cleanups) await f().catch(() => undefined);
});

/** A binary of Debian's prometheus package, installing the package when apt-get can. */
function findBinary(name: 'prometheus' | 'promtool'): { path: string | null; note: string } {
  const candidates = [`/usr/bin/${name}`, `/usr/local/bin/${name}`];
  const found = () => candidates.find((c) => existsSync(c)) ?? (spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim() || null);
  let p = found();
  if (p) return { path: p, note: 'found' };
  if (spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).status !== 0) return { path: null, note: 'not installed, and no apt-get' };
  const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'prometheus'], { encoding: 'utf8', timeout: 600_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  p = found();
  return p ? { path: p, note: 'installed with apt-get' } : { path: null, note: `apt-get install prometheus failed (${r.status}): ${(r.stderr || '').trim().split('\n').slice(-2).join(' ')}` };
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const PROM_DIR = path.join(ROOT, 'deploy/prometheus');

test('promtool: the Prometheus config and alerting rules are valid, and the rules pass their unit tests', { timeout: 700_000 }, (t) => {
  const promtool = findBinary('promtool');
  if (!promtool.path) { t.skip(`promtool: ${promtool.note}; on Debian: apt-get install prometheus`); return; }
  const run = (args: string[]) => spawnSync(promtool.path!, args, { cwd: PROM_DIR, encoding: 'utf8', timeout: 120_000 });
  const config = run(['check', 'config', 'prometheus.yml']);
  assert.equal(config.status, 0, `promtool check config: ${config.stdout}${config.stderr}`);
  const rules = run(['check', 'rules', 'alerts.yml']);
  assert.equal(rules.status, 0, `promtool check rules: ${rules.stdout}${rules.stderr}`);
  const alerts = (parseYaml(readFileSync(path.join(PROM_DIR, 'alerts.yml'), 'utf8')).groups as { rules: { alert: string }[] }[]).flatMap((g) => g.rules.map((r) => r.alert));
  assert.match(rules.stdout, new RegExp(`SUCCESS: ${alerts.length} rules found`));
  const unit = run(['test', 'rules', 'alerts.test.yml']);
  assert.equal(unit.status, 0, `promtool test rules: ${unit.stdout}${unit.stderr}`);
  // Every alert has at least one test in which it fires.
  const tests = parseYaml(readFileSync(path.join(PROM_DIR, 'alerts.test.yml'), 'utf8')).tests as { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
  const firing = new Set(tests.flatMap((x) => x.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
  assert.deepEqual(alerts.filter((a) => !firing.has(a)), [], 'alerts without a firing test');
  t.diagnostic(`promtool ${promtool.note}; ${alerts.length} alerts: ${alerts.join(', ')}`);
});

// Dashboard expressions that are empty on a healthy system, and why. Every other one must return data.
const MAY_BE_EMPTY: Record<string, string> = {
  'count(chatstats_partition_caught_up == 0)': 'no partition is behind once the replay is processed',
  'sum by (reason) (rate(chatstats_tracker_dlq_total[$__rate_interval]))': 'the DLQ reasons are open-ended (no zeroed series); nothing was dead-lettered',
  'min by (partition) (chatstats_next_seal_due_timestamp_seconds) - time()': 'a partition has a next due time only while something is open; the replayed history is all sealed by the end',
};

test('a real Prometheus scraping `chatstats run all` during the IRC replay: every dashboard query and alert rule evaluates', { timeout: 700_000 }, async (t) => {
  const prometheus = findBinary('prometheus');
  if (!prometheus.path) { t.skip(`prometheus: ${prometheus.note}; on Debian: apt-get install prometheus`); return; }

  const db = createTestDatabase('prometheus');
  cleanups.push(() => db.drop());
  const metricsPort = await freePort();
  const env = isolatedEnv('prom', {
    SCHEMA_REGISTRY_URL: REGISTRY_URL, DATABASE_URL: db.url, METRICS_PORT: String(metricsPort), METRICS_HOST: '127.0.0.1',
    PUNCTUATE_INTERVAL: '200ms', LOG_LEVEL: 'warn',
  });
  cleanups.push(() => rm(env.STATE_DIR!, { recursive: true, force: true }));
  cleanups.push(() => deleteTopics(testKafka(), env.TOPIC_PREFIX!));
  const stop = (c: ChildProcess) => new Promise<void>((r) => { if (c.exitCode !== null || c.signalCode !== null) return r(); c.once('exit', () => r()); c.kill('SIGTERM'); });

  // chatstats run all
  const app = spawn(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), 'run', 'all'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(app);
  let appLog = '';
  app.stderr!.on('data', (d) => { appLog += d; });
  await waitFor('run all ready', 120_000, async () => {
    if (app.exitCode !== null) throw new Error(`run all exited ${app.exitCode}: ${appLog.slice(-2000)}`);
    return (await fetch(`http://127.0.0.1:${metricsPort}/readyz`).then((r) => r.status, () => 0)) === 200 ? true : undefined;
  }, 200);

  // Prometheus: its own port and data directory, our rules, a 1 s scrape of the app.
  const promPort = await freePort();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'chatstats-prometheus-'));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  const config = path.join(dataDir, 'prometheus.yml');
  writeFileSync(config, [
    'global:', '  scrape_interval: 1s', '  scrape_timeout: 1s', '  evaluation_interval: 1s',
    'rule_files:', `  - ${JSON.stringify(path.join(PROM_DIR, 'alerts.yml'))}`,
    'scrape_configs:', '  - job_name: chatstats-all', '    static_configs:', `      - targets: ["127.0.0.1:${metricsPort}"]`, '',
  ].join('\n'));
  const prom = spawn(prometheus.path, [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dataDir, 'data')}`,
    `--web.listen-address=127.0.0.1:${promPort}`, '--storage.tsdb.retention.time=1h', '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(prom);
  let promLog = '';
  prom.stderr!.on('data', (d) => { promLog += d; });
  const api = async (p: string): Promise<Json> => {
    const res = await fetch(`http://127.0.0.1:${promPort}${p}`, { signal: AbortSignal.timeout(10_000) });
    return res.json();
  };
  await waitFor('Prometheus ready', 60_000, async () => {
    if (prom.exitCode !== null) throw new Error(`prometheus exited ${prom.exitCode}: ${promLog.slice(-2000)}`);
    return (await fetch(`http://127.0.0.1:${promPort}/-/ready`).then((r) => r.status, () => 0)) === 200 ? true : undefined;
  }, 200);
  await waitFor('the app scraped', 30_000, async () => {
    const targets = (await api('/api/v1/targets')).data.activeTargets as { health: string }[];
    return targets.length === 1 && targets[0]!.health === 'up' ? true : undefined;
  }, 500);

  // The replay, into the running system.
  const produced = await new Promise<number | null>((resolve) => {
    const p = spawn(process.execPath, [path.join(ROOT, 'bin/chatstats.js'), 'produce', IRC_SAMPLE, '--no-progress'], { env: { ...process.env, ...env }, stdio: 'ignore' });
    p.on('exit', (code) => resolve(code));
  });
  assert.equal(produced, 0, 'chatstats produce');
  const query = async (expr: string): Promise<{ status: string; error?: string; result: { metric: Record<string, string>; value: [number, string] }[] }> => {
    const r = await api(`/api/v1/query?query=${encodeURIComponent(expr)}`);
    return { status: r.status, error: r.error, result: r.data?.result ?? [] };
  };
  const value = async (expr: string) => Number((await query(expr)).result[0]?.value[1] ?? NaN);
  // Until the replay is loaded and analysed, as Prometheus sees it.
  await waitFor('sealed, loaded and analysed conversations in Prometheus', 180_000, async () => {
    if (app.exitCode !== null) throw new Error(`run all exited ${app.exitCode}: ${appLog.slice(-2000)}`);
    const sealed = await value('sum(chatstats_conversations_sealed_total)');
    const loaded = await value('sum(chatstats_etl_conversations_loaded_total)');
    const analysed = await value('sum(chatstats_analysis_conversations_total{result="analysed"})');
    return sealed > 0 && loaded >= sealed && analysed >= sealed ? true : undefined;
  }, 1000);
  await sleep(5000); // a few more scrapes and rule evaluations after the last change

  // Every dashboard expression, as Grafana would send it.
  const RATE_INTERVAL = '30s'; // Grafana: max(4 × scrape interval, step + scrape interval), over a long enough window here
  const dash = JSON.parse(readFileSync(path.join(ROOT, 'deploy/grafana/dashboards/chatstats.json'), 'utf8'));
  const panels: Json[] = dash.panels.flatMap((p: Json) => [p, ...(p.panels ?? [])]).filter((p: Json) => p.type !== 'row');
  const exprs = [...new Set<string>(panels.flatMap((p) => p.targets.map((x: Json) => x.expr as string)))];
  const failures: string[] = [];
  const empty: string[] = [];
  for (const expr of exprs) {
    const r = await query(expr.replaceAll('$__rate_interval', RATE_INTERVAL));
    if (r.status !== 'success') failures.push(`${expr}: ${r.error}`);
    else if (r.result.length === 0 && !(expr in MAY_BE_EMPTY)) empty.push(expr);
  }
  assert.deepEqual(failures, [], 'dashboard expressions that do not evaluate');
  assert.deepEqual(empty, [], 'dashboard expressions without data after the replay');
  // Some figures, as the panels show them.
  assert.equal(await value('sum(up{job=~"chatstats-.*"})'), 1);
  assert.equal(await value('sum(chatstats_ready)'), 3, 'three roles ready');
  assert.ok(await value('sum(rate(chatstats_tracker_messages_total[30s]))') >= 0);
  const groups = (await query('sum by (group) (chatstats_consumer_lag)')).result.map((r) => r.metric.group).sort();
  assert.deepEqual(groups, [`${env.APP_ID}-analysis`, `${env.APP_ID}-etl`, `${env.APP_ID}-tracker`], 'consumer lag of every group');
  assert.ok(await value('process_resident_memory_bytes') > 0, 'stock process metrics');

  // Every alerting rule: loaded, evaluated, no error; and each expression evaluates by itself.
  const rules = await waitFor('every rule evaluated', 30_000, async () => {
    const groups = (await api('/api/v1/rules')).data.groups as { rules: { name: string; health: string; lastError?: string; query: string; state: string }[] }[];
    const all = groups.flatMap((g) => g.rules);
    return all.length > 0 && all.every((r) => r.health !== 'unknown') ? all : undefined;
  }, 500);
  const expected = (parseYaml(readFileSync(path.join(PROM_DIR, 'alerts.yml'), 'utf8')).groups as { rules: { alert: string }[] }[]).flatMap((g) => g.rules.map((r) => r.alert));
  assert.deepEqual(rules.map((r) => r.name).sort(), [...expected].sort());
  assert.deepEqual(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`), [], 'rules evaluating with errors');
  for (const r of rules) {
    const q = await query(r.query);
    assert.equal(q.status, 'success', `${r.name}: ${q.error}`);
  }
  // A healthy system: nothing fires (ChatstatsRoleDown and the rest stay inactive).
  const firing = rules.filter((r) => r.state === 'firing').map((r) => r.name);
  assert.deepEqual(firing, [], 'alerts firing on a healthy system');
  t.diagnostic(`prometheus ${prometheus.note}; ${exprs.length} dashboard expressions (${Object.keys(MAY_BE_EMPTY).length} allowed empty), ${rules.length} alert rules`);

  await stop(prom);
  await stop(app);
  assert.equal(app.exitCode, 0, appLog.slice(-2000));
});
