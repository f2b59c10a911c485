// docker-compose.yml, the Dockerfile, Prometheus and Grafana against the code, without a Docker
// engine: the app services' variables are ones the code reads and loadConfig accepts, the roles
// agree on topics, Prometheus scrapes each role on its METRICS_PORT, Kafka advertises what the
// apps connect to, the registry URL is the Confluent-compatible API, the healthchecks work against
// the real HTTP server, and every metric the Grafana dashboard queries is one the code registers.
// `docker compose config -q` runs too when a docker client with the compose plugin is installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ROOT } from '../support/harness';
import { loadConfig } from '../../src/config';
import { ALL_ROLES } from '../../src/app';
import { topicNames, topicSpecs } from '../../src/topics';
import { startHttpServer } from '../../src/http-server';
import { registry, enableProcessMetrics } from '../../src/metrics';
import { taskMetrics } from '../../src/runtime/runtime-metrics';
import { ConversationTracker } from '../../src/processors/conversation-tracker';
import '../../src/processors/etl';
import '../../src/processors/analysis';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any
type Env = Record<string, string>;

const file = (rel: string) => path.join(ROOT, rel);
const read = (rel: string) => readFileSync(file(rel), 'utf8');

// --- compose: parse and interpolate as `docker compose` does, with no variable set ------------

const unresolved: string[] = [];
/** `${X:-default}` and `${X-default}` give the default, `$$` is a `$`; `${X}` or `$X` would be empty. */
function interpolate(s: string, where: string): string {
  return s.replace(/\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (_all, dollar: string, name?: string, op?: string, arg?: string, bare?: string) => {
      if (dollar === '$') return '$';
      if (bare !== undefined || op === undefined) { unresolved.push(`${where}: $${bare ?? `{${name}}`}`); return ''; }
      if (op.endsWith('?')) { unresolved.push(`${where}: \${${name}${op}${arg}} (required)`); return ''; }
      return arg ?? '';
    });
}
function interpolateAll(v: Json, where: string): Json {
  if (typeof v === 'string') return interpolate(v, where);
  if (Array.isArray(v)) return v.map((x, i) => interpolateAll(x, `${where}[${i}]`));
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, interpolateAll(x, `${where}.${k}`)]));
  return v;
}

const compose = interpolateAll(parseYaml(read('docker-compose.yml'), { merge: true }), 'docker-compose.yml');
const services: Record<string, Json> = compose.services;

function envMap(e: Json): Env {
  if (Array.isArray(e)) return Object.fromEntries(e.map((kv: string) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  return Object.fromEntries(Object.entries(e ?? {}).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

/**
 * `docker compose -f base -f override`: services merge key by key; environment, depends_on and
 * healthcheck maps merge, ports are concatenated, volumes merge by target, other keys are replaced.
 */
function mergeCompose(base: Json, over: Json): Json {
  const out: Json = { ...base, ...over, services: { ...base.services }, volumes: { ...base.volumes, ...over.volumes } };
  for (const [name, o] of Object.entries<Json>(over.services ?? {})) {
    const b = base.services[name];
    if (!b) { out.services[name] = o; continue; }
    const m: Json = { ...b, ...o };
    if (o.environment) m.environment = { ...envMap(b.environment), ...envMap(o.environment) };
    if (o.depends_on) m.depends_on = { ...b.depends_on, ...o.depends_on };
    if (o.healthcheck) m.healthcheck = { ...b.healthcheck, ...o.healthcheck };
    if (o.ports) m.ports = [...new Set([...(b.ports ?? []), ...o.ports])];
    if (o.volumes) {
      const byTarget = new Map<string, Json>();
      for (const v of [...(b.volumes ?? []), ...o.volumes]) byTarget.set(typeof v === 'object' ? v.target : String(v).split(':')[1], v);
      m.volumes = [...byTarget.values()];
    }
    out.services[name] = m;
  }
  return out;
}

const clusterCompose = mergeCompose(compose,
  interpolateAll(parseYaml(read('docker-compose.cluster.yml'), { merge: true }), 'docker-compose.cluster.yml'));

function envOf(service: string, svcs: Record<string, Json> = services): Env {
  return envMap(svcs[service]?.environment);
}

/** Published ports of a service: container port → host port. */
function publishedPorts(service: string, svcs: Record<string, Json> = services): Map<number, number> {
  const out = new Map<number, number>();
  for (const p of svcs[service]?.ports ?? []) {
    if (typeof p === 'object') { out.set(Number(p.target), Number(p.published ?? p.target)); continue; }
    const parts = String(p).replace(/\/(tcp|udp)$/, '').split(':');
    const container = Number(parts.at(-1));
    out.set(container, Number(parts.length >= 2 ? parts.at(-2) : container));
  }
  return out;
}

function mounts(service: string): { source: string; target: string }[] {
  return (services[service]?.volumes ?? []).map((v: Json) => {
    if (typeof v === 'object') return { source: String(v.source), target: String(v.target) };
    const [source, target] = String(v).split(':');
    return { source: source!, target: target! };
  });
}

const appServices = Object.keys(services).filter((s) => services[s].build !== undefined);
const roleOf = (s: string): string | null => {
  const cmd: string[] = services[s].command ?? [];
  return cmd[0] === 'run' ? cmd[1] ?? 'all' : null;
};
const roleServices = appServices.filter((s) => roleOf(s) !== null);

// --- the variables the code reads --------------------------------------------------------------

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}
const SOURCES = sourceFiles(file('src')).map((f) => ({ f: path.relative(ROOT, f), text: readFileSync(f, 'utf8') }));

/** Names loadConfig reads (recorded through a proxy), and names read elsewhere in src/. */
function knownVariables(): Set<string> {
  const names = new Set<string>();
  const env = new Proxy({} as Record<string, string | undefined>, { get: (_t, k) => { if (typeof k === 'string') names.add(k); return undefined; } });
  loadConfig(env);
  for (const { text } of SOURCES) {
    for (const m of text.matchAll(/process\.env\.([A-Z][A-Z0-9_]*)/g)) names.add(m[1]!);
    for (const m of text.matchAll(/process\.env\[\s*'([A-Z][A-Z0-9_]*)'\s*\]/g)) names.add(m[1]!);
    for (const m of text.matchAll(/\benv[A-Z][A-Za-z]*\(\s*'([A-Z][A-Z0-9_]*)'/g)) names.add(m[1]!);
  }
  return names;
}

// --- tests ------------------------------------------------------------------------------------

test('docker-compose.yml has the infrastructure, every role, and a one-shot migrate', () => {
  for (const s of ['kafka', 'schema-registry', 'postgres', 'prometheus', 'grafana', 'migrate']) assert.ok(services[s], `service ${s}`);
  assert.match(services.kafka.image, /^apache\/kafka:4\./);
  assert.match(services['schema-registry'].image, /^apicurio\/apicurio-registry:3\./);
  assert.deepEqual(roleServices.map(roleOf).sort(), [...ALL_ROLES].sort(), 'one service per role of src/app.ts');
  assert.deepEqual(services.migrate.command, ['migrate']);
  assert.equal(String(services.migrate.restart), 'no', 'migrate runs once');
  for (const s of appServices) {
    assert.equal(services[s].build.context ?? services[s].build, '.', `${s} is built from the repository`);
    assert.ok(existsSync(file(services[s].build.dockerfile ?? 'Dockerfile')), `${s}: Dockerfile exists`);
  }
  for (const s of roleServices) {
    if (s === 'tracker') continue;
    assert.equal(services[s].depends_on?.migrate?.condition, 'service_completed_successfully', `${s} waits for the migrations`);
  }
  assert.deepEqual(unresolved, [], 'every ${VARIABLE} has a default (compose would substitute an empty string), in both files');
});

test('every variable the app services set is one the code reads, and loadConfig accepts them', () => {
  const known = knownVariables();
  for (const s of appServices) {
    const env = envOf(s);
    const unknown = Object.keys(env).filter((k) => !known.has(k));
    assert.deepEqual(unknown, [], `${s}: variables no code reads`);
    assert.doesNotThrow(() => loadConfig(env), `${s}: loadConfig rejects its environment`);
    const cfg = loadConfig(env);
    assert.ok(cfg.schemaRegistryUrl, `${s}: SCHEMA_REGISTRY_URL is set`);
    assert.notEqual(env.DATABASE_URL, undefined, `${s}: DATABASE_URL is set`);
  }
  // Every role sees the same topics (same TOPIC_PREFIX, APP_ID and partitions): ETL reads what the tracker writes.
  const names = appServices.map((s) => JSON.stringify([topicNames(loadConfig(envOf(s))), loadConfig(envOf(s)).topicPartitions]));
  assert.equal(new Set(names).size, 1, 'the app services agree on topic names and partition counts');
  // The tracker keeps its stores on a volume.
  const tracker = loadConfig(envOf('tracker'));
  assert.ok(path.isAbsolute(tracker.stateDir));
  const m = mounts('tracker').find((v) => v.target === tracker.stateDir);
  assert.ok(m, `tracker: STATE_DIR ${tracker.stateDir} is a mounted volume`);
  assert.ok(compose.volumes && m.source in compose.volumes, `tracker: ${m.source} is a named volume`);
});

test('Prometheus scrapes every role on its METRICS_PORT, and the ports are published', () => {
  const prometheusMount = mounts('prometheus').find((v) => v.target === '/etc/prometheus/prometheus.yml');
  assert.ok(prometheusMount, 'prometheus.yml is mounted');
  assert.equal(path.normalize(prometheusMount.source), path.normalize('./deploy/prometheus/prometheus.yml'));
  const prom = parseYaml(read('deploy/prometheus/prometheus.yml'));
  const targets = new Map<string, { job: string; port: number; path: string }>();
  for (const job of prom.scrape_configs) {
    for (const sc of job.static_configs ?? []) {
      for (const t of sc.targets) {
        const [host, port] = String(t).split(':');
        targets.set(host!, { job: job.job_name, port: Number(port), path: job.metrics_path ?? '/metrics' });
      }
    }
  }
  const figures: string[] = [];
  for (const s of roleServices) {
    const port = loadConfig(envOf(s)).metricsPort;
    const t = targets.get(s);
    assert.ok(t, `Prometheus has a target for ${s}`);
    assert.equal(t.port, port, `${s}: Prometheus scrapes port ${t.port}, METRICS_PORT is ${port}`);
    assert.equal(t.path, '/metrics');
    assert.match(t.job, /^chatstats-/, 'the dashboard selects the roles by job=~"chatstats-.*"');
    assert.ok(publishedPorts(s).has(port), `${s}: METRICS_PORT ${port} is published`);
    figures.push(`${s}:${port}`);
  }
  // No target points at a service that is not a role (a renamed service would be scraped nowhere).
  for (const [host, t] of targets) {
    if (host in services && host !== 'prometheus') assert.ok(roleServices.includes(host), `target ${host}:${t.port} is a role`);
  }
  console.log(`scrape targets: ${figures.join(', ')}`);
});

test('Prometheus loads the alerting rules: each rule file of prometheus.yml is mounted beside it', () => {
  const prom = parseYaml(read('deploy/prometheus/prometheus.yml'));
  const ruleFiles: string[] = prom.rule_files ?? [];
  assert.ok(ruleFiles.length > 0, 'prometheus.yml has rule_files');
  const byTarget = new Map(mounts('prometheus').map((m) => [m.target, path.normalize(m.source)]));
  for (const f of ruleFiles) {
    const target = path.posix.isAbsolute(f) ? f : path.posix.join('/etc/prometheus', f);
    const source = byTarget.get(target);
    assert.ok(source, `${f}: mounted at ${target} in the prometheus service`);
    assert.equal(source, path.normalize(`deploy/prometheus/${path.posix.basename(f)}`));
    assert.ok(existsSync(file(source)), `${source} exists`);
    const groups = parseYaml(read(source)).groups as { rules: { alert?: string }[] }[];
    assert.ok(groups.flatMap((g) => g.rules).some((r) => r.alert), `${source} has alerting rules`);
  }
});

test('the apps connect to a listener Kafka advertises; the registry URL is the ccompat API', () => {
  const k = envOf('kafka');
  const listeners = new Map(k.KAFKA_LISTENERS!.split(',').map((l) => { const m = /^(\w+):\/\/([^:]*):(\d+)$/.exec(l.trim())!; return [m[1]!, Number(m[3])]; }));
  const advertised = new Map(k.KAFKA_ADVERTISED_LISTENERS!.split(',').map((l) => { const m = /^(\w+):\/\/([^:]+):(\d+)$/.exec(l.trim())!; return [`${m[2]}:${m[3]}`, m[1]!]; }));
  const protocols = new Map(k.KAFKA_LISTENER_SECURITY_PROTOCOL_MAP!.split(',').map((p) => p.split(':') as [string, string]));
  assert.equal(k.KAFKA_PROCESS_ROLES, 'broker,controller', 'KRaft, one node');
  assert.equal(Buffer.from(k.CLUSTER_ID ?? '', 'base64url').length, 16, 'CLUSTER_ID is a base64url UUID (kafka-storage format)');
  for (const [addr, name] of advertised) {
    const [host, port] = addr.split(':');
    assert.equal(listeners.get(name), Number(port), `advertised ${name}://${addr} is a listener on the same port`);
    assert.ok(protocols.has(name), `${name} has a security protocol`);
    if (host === '127.0.0.1' || host === 'localhost') assert.equal(publishedPorts('kafka').get(Number(port)), Number(port), `${addr} is published on the host`);
    else assert.ok(host === 'kafka' || host === services.kafka.hostname, `${addr} names the kafka service`);
  }
  assert.ok(listeners.has(k.KAFKA_INTER_BROKER_LISTENER_NAME!));
  const controller = k.KAFKA_CONTROLLER_LISTENER_NAMES!;
  assert.equal(Number(/@[^:]+:(\d+)$/.exec(k.KAFKA_CONTROLLER_QUORUM_VOTERS!)![1]), listeners.get(controller), 'the quorum voter is the controller listener');
  assert.equal(k.KAFKA_AUTO_CREATE_TOPICS_ENABLE, 'false', 'topics come from src/topics.ts');
  // A single node: every topic the roles create has one replica (the broker default).
  assert.ok(!k.KAFKA_DEFAULT_REPLICATION_FACTOR || k.KAFKA_DEFAULT_REPLICATION_FACTOR === '1');
  for (const key of ['KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR', 'KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR', 'KAFKA_TRANSACTION_STATE_LOG_MIN_ISR']) {
    assert.equal(k[key], '1', `${key}: one node (transactions need it)`);
  }
  // The internal topic of the registry is not one of ours.
  const cfg = loadConfig(envOf('tracker'));
  const reg = envOf('schema-registry');
  assert.ok(!topicSpecs(cfg).some((t) => t.topic === reg.APICURIO_KAFKASQL_TOPIC));
  for (const b of reg.APICURIO_KAFKASQL_BOOTSTRAP_SERVERS!.split(',')) assert.ok(advertised.has(b), `registry bootstrap ${b} is advertised`);

  const registryPort = publishedPorts('schema-registry');
  for (const s of appServices) {
    const c = loadConfig(envOf(s));
    for (const b of c.kafkaBrokers) assert.ok(advertised.has(b), `${s}: KAFKA_BROKERS ${b} is not an advertised listener (${[...advertised.keys()].join(', ')})`);
    const u = new URL(c.schemaRegistryUrl!);
    assert.equal(u.pathname, '/apis/ccompat/v7', `${s}: the Confluent-compatible API of Apicurio`);
    assert.equal(u.hostname, 'schema-registry');
    assert.ok(registryPort.has(Number(u.port || 80)), `${s}: the registry listens on ${u.port}`);
    const db = new URL(c.databaseUrl);
    const pg = envOf('postgres');
    assert.equal(db.hostname, 'postgres');
    assert.equal(decodeURIComponent(db.username), pg.POSTGRES_USER);
    assert.equal(decodeURIComponent(db.password), pg.POSTGRES_PASSWORD);
    assert.equal(db.pathname.slice(1), pg.POSTGRES_DB);
  }
  // From the host, the defaults of the CLI and the tests reach the compose services.
  assert.equal(publishedPorts('schema-registry').get(8080), 8081, 'registry on http://127.0.0.1:8081 as infra/up.sh');
  assert.equal(publishedPorts('postgres').get(5432), 5432);
});

test('the healthchecks of compose and Dockerfile pass only when /healthz and /readyz answer 200', async () => {
  let ready = false;
  const http = await startHttpServer({ port: 0, host: '127.0.0.1', ready: async () => ready });
  const run = (cmd: string[], env: Env) => new Promise<number>((resolve) => {
    assert.equal(cmd[1], 'node', `the healthcheck runs node (the image has no curl): ${cmd.join(' ')}`);
    execFile(process.execPath, cmd.slice(2), { env: { ...process.env, ...env }, timeout: 15_000 }, (err) => resolve(err ? Number((err as { code?: number }).code ?? 1) : 0));
  });
  try {
    const checks: [string, string[], Env][] = [];
    for (const s of roleServices) {
      const hc = services[s].healthcheck;
      assert.ok(hc?.test, `${s} has a healthcheck`);
      const cmd: string[] = hc.test;
      assert.equal(cmd[0], 'CMD');
      assert.match(cmd.join(' '), /\/healthz/);
      assert.match(cmd.join(' '), /\/readyz/);
      checks.push([s, cmd, { ...envOf(s), METRICS_PORT: String(http.port) }]);
    }
    const docker = read('Dockerfile').replace(/\\\n/g, ' ');
    const m = /^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$/m.exec(docker);
    assert.ok(m, 'Dockerfile has an exec-form HEALTHCHECK');
    checks.push(['Dockerfile', ['CMD', ...JSON.parse(m[1]!)], { METRICS_PORT: String(http.port) }]);
    for (const [name, cmd, env] of checks) {
      ready = false;
      assert.notEqual(await run(cmd, env), 0, `${name}: unhealthy while /readyz is 503`);
      ready = true;
      assert.equal(await run(cmd, env), 0, `${name}: healthy when /healthz and /readyz are 200`);
    }
  } finally {
    await http.close();
  }
});

test('the Dockerfile: Debian-based node 20, multi-stage, copies what the code reads at run time', () => {
  const text = read('Dockerfile');
  const froms = [...text.matchAll(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/gim)].map((m) => m[1]!);
  assert.ok(froms.length >= 2, 'multi-stage');
  for (const f of froms) {
    assert.match(f, /^node:20(\.\d+)*-(bookworm|bullseye|trixie)(-slim)?$/, `${f}: a Debian node 20 image (the RocksDB prebuild is glibc)`);
  }
  assert.match(text, /npm ci\b/);
  const runtime = text.slice(text.lastIndexOf('\nFROM '));
  for (const p of ['node_modules', 'dist/src', 'package.json', 'bin', 'schemas', 'migrations', 'config', 'data']) {
    assert.match(runtime, new RegExp(`^COPY\\s+(--from=\\S+\\s+)?\\S*${p.replace('/', '\\/')}\\b`, 'm'), `the runtime stage copies ${p}`);
  }
  assert.match(runtime, /^ENTRYPOINT \["node", "bin\/chatstats\.js"\]/m);
  // What is copied from the context exists and is not excluded by .dockerignore.
  const ignored = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const m of text.matchAll(/^COPY\s+(?!--from)(.+)$/gm)) {
    const parts = m[1]!.trim().split(/\s+/);
    for (const src of parts.slice(0, -1)) {
      assert.ok(existsSync(file(src)), `COPY ${src}: exists`);
      assert.ok(!ignored.includes(src), `COPY ${src}: not in .dockerignore`);
    }
  }
  for (const must of ['node_modules', 'dist', '.infra', '.state', '.git']) assert.ok(ignored.includes(must), `.dockerignore excludes ${must}`);
});

test('Grafana: provisioned datasource and dashboard, and every queried metric is registered by the code', async () => {
  // Every metric the code declares: module-level ones by import, the runtime's and the tracker's on creation.
  enableProcessMetrics();
  taskMetrics();
  const tracker = new ConversationTracker({} as ConstructorParameters<typeof ConversationTracker>[0]);
  const emptyStore = { get: async () => null, range: async () => [], scan: async () => undefined, write: async () => undefined };
  await tracker.init({ partition: 0, store: emptyStore } as unknown as Parameters<ConversationTracker['init']>[0]);
  await tracker.restored();
  const registered = new Map((await registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type)]));

  const grafana = mounts('grafana');
  const provisioning = grafana.find((v) => v.target === '/etc/grafana/provisioning');
  assert.ok(provisioning && path.normalize(provisioning.source) === 'deploy/grafana/provisioning');
  const dashboardsMount = grafana.find((v) => path.normalize(v.source) === 'deploy/grafana/dashboards');
  assert.ok(dashboardsMount, 'the dashboards directory is mounted');
  const ds = parseYaml(read('deploy/grafana/provisioning/datasources/prometheus.yml')).datasources;
  const prom = ds.find((d: Json) => d.type === 'prometheus');
  const url = new URL(prom.url);
  assert.equal(url.hostname, 'prometheus');
  assert.ok(services.prometheus.command.some((c: string) => c === '--config.file=/etc/prometheus/prometheus.yml'));
  assert.equal(Number(url.port), 9090);
  const providers = parseYaml(read('deploy/grafana/provisioning/dashboards/chatstats.yml')).providers;
  assert.ok(providers.some((p: Json) => p.options.path === dashboardsMount.target), 'the provider reads the mounted directory');

  const dash = JSON.parse(read('deploy/grafana/dashboards/chatstats.json'));
  const panels: Json[] = dash.panels.flatMap((p: Json) => [p, ...(p.panels ?? [])]).filter((p: Json) => p.type !== 'row');
  const exprs: string[] = [];
  for (const p of panels) {
    assert.equal(p.datasource?.uid, prom.uid, `panel "${p.title}" uses the provisioned datasource`);
    for (const t of p.targets) exprs.push(t.expr);
  }
  const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'and', 'or', 'unless', 'inf', 'nan']);
  const PROMETHEUS_OWN = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);
  const used = new Set<string>();
  const unknown: string[] = [];
  for (const e of exprs) {
    const bare = e
      .replace(/"(?:[^"\\]|\\.)*"/g, '""')
      .replace(/\{[^}]*\}/g, '')
      .replace(/\[[^\]]*\]/g, '')
      .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
    for (const m of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
      const name = m[0];
      const after = bare.slice(m.index! + name.length).trimStart();
      if (after.startsWith('(') || KEYWORDS.has(name.toLowerCase())) continue; // a function or keyword
      if (PROMETHEUS_OWN.has(name)) continue;
      const base = name.replace(/_(bucket|sum|count)$/, '');
      const ok = registered.has(name) || (base !== name && ['histogram', 'summary'].includes(registered.get(base) ?? ''));
      used.add(ok && !registered.has(name) ? base : name);
      if (!ok) {
        const declared = SOURCES.find((s) => s.text.includes(`'${base}'`));
        unknown.push(`${name} in "${e}"${declared ? ` (declared in ${declared.f}, but this test does not create it)` : ''}`);
      }
    }
  }
  assert.deepEqual(unknown, [], 'metrics the dashboard queries but the code does not register');
  for (const required of ['chatstats_tracker_messages_total', 'chatstats_open_conversations', 'chatstats_seal_delay_seconds',
    'chatstats_consumer_lag', 'chatstats_conversations_sealed_total', 'chatstats_analysis_runs_total', 'chatstats_analysis_conversations_total']) {
    assert.ok(used.has(required), `the dashboard shows ${required}`);
  }
  assert.ok(exprs.some((e) => /histogram_quantile\(0\.\d+, .*chatstats_seal_delay_seconds_bucket/.test(e)), 'seal delay quantiles');
  // Node's default metrics under their stock names (stock Node.js dashboards find them).
  assert.ok(registered.has('process_cpu_seconds_total') && registered.has('nodejs_eventloop_lag_p99_seconds'), 'stock process_* and nodejs_* metrics');
  assert.deepEqual([...registered.keys()].filter((n) => /^chatstats_(process|nodejs)_/.test(n)), [], 'no chatstats_ prefix on the default metrics');
  const unused = [...registered.keys()].filter((n) => n.startsWith('chatstats_') && !used.has(n));
  console.log(`dashboard: ${panels.length} panels, ${exprs.length} queries over ${used.size} metrics; registered but not shown: ${unused.join(', ') || 'none'}`);
});

/** A Kafka node's listeners: name → port; advertised host:port → listener name; name → protocol. */
function kafkaListeners(k: Env) {
  const listeners = new Map(k.KAFKA_LISTENERS!.split(',').map((l) => { const m = /^(\w+):\/\/([^:]*):(\d+)$/.exec(l.trim())!; return [m[1]!, Number(m[3])]; }));
  const advertised = new Map(k.KAFKA_ADVERTISED_LISTENERS!.split(',').map((l) => { const m = /^(\w+):\/\/([^:]+):(\d+)$/.exec(l.trim())!; return [`${m[2]}:${m[3]}`, m[1]!]; }));
  const protocols = new Map(k.KAFKA_LISTENER_SECURITY_PROTOCOL_MAP!.split(',').map((p) => p.split(':') as [string, string]));
  return { listeners, advertised, protocols };
}

test('docker-compose.cluster.yml over docker-compose.yml: three KRaft nodes in one quorum, replication 3 and min.insync 2 everywhere', () => {
  const svcs: Record<string, Json> = clusterCompose.services;
  assert.notEqual(clusterCompose.name, compose.name, 'a project of its own (a single node\'s data cannot join a quorum)');
  const nodes = Object.keys(svcs).filter((n) => /^apache\/kafka:4\./.test(svcs[n].image ?? ''));
  assert.equal(nodes.length, 3, `three Kafka nodes (${nodes.join(', ')})`);
  const ids = new Map(nodes.map((n) => [Number(envOf(n, svcs).KAFKA_NODE_ID), n]));
  assert.deepEqual([...ids.keys()].sort(), [1, 2, 3], 'node ids 1, 2, 3');
  const hostPorts = new Set<number>();
  const internal: string[] = [];
  for (const n of nodes) {
    const k = envOf(n, svcs);
    const { listeners, advertised, protocols } = kafkaListeners(k);
    assert.equal(k.KAFKA_PROCESS_ROLES, 'broker,controller', `${n}: broker and controller`);
    assert.equal(k.CLUSTER_ID, envOf(nodes[0]!, svcs).CLUSTER_ID, `${n}: the same CLUSTER_ID`);
    assert.equal(Buffer.from(k.CLUSTER_ID ?? '', 'base64url').length, 16, 'CLUSTER_ID is a base64url UUID');
    for (const [addr, name] of advertised) {
      const [host, port] = addr.split(':');
      assert.equal(listeners.get(name), Number(port), `${n}: advertised ${name}://${addr} is a listener on the same port`);
      assert.ok(protocols.has(name), `${n}: ${name} has a security protocol`);
      if (host === '127.0.0.1') {
        assert.equal(publishedPorts(n, svcs).get(Number(port)), Number(port), `${n}: ${addr} is published on the host`);
        assert.ok(!hostPorts.has(Number(port)), `${n}: host port ${port} is its own`);
        hostPorts.add(Number(port));
      } else {
        assert.ok(host === n || host === svcs[n].hostname, `${n}: ${addr} names the node's own service`);
        if (name === k.KAFKA_INTER_BROKER_LISTENER_NAME) internal.push(addr);
      }
    }
    // The quorum: every node lists the same three voters, each at that node's controller listener.
    const voters = k.KAFKA_CONTROLLER_QUORUM_VOTERS!.split(',').map((v) => { const m = /^(\d+)@([^:]+):(\d+)$/.exec(v.trim())!; return { id: Number(m[1]), host: m[2]!, port: Number(m[3]) }; });
    assert.deepEqual(voters.map((v) => v.id).sort(), [1, 2, 3], `${n}: three voters`);
    for (const v of voters) {
      const node = ids.get(v.id)!;
      assert.ok(v.host === node || v.host === svcs[node].hostname, `${n}: voter ${v.id} is ${node}`);
      assert.equal(kafkaListeners(envOf(node, svcs)).listeners.get(envOf(node, svcs).KAFKA_CONTROLLER_LISTENER_NAMES!), v.port, `${n}: voter ${v.id} at ${node}'s controller listener`);
    }
    assert.equal(k.KAFKA_AUTO_CREATE_TOPICS_ENABLE, 'false');
    for (const [key, want] of [['KAFKA_DEFAULT_REPLICATION_FACTOR', '3'], ['KAFKA_MIN_INSYNC_REPLICAS', '2'], ['KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR', '3'],
      ['KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR', '3'], ['KAFKA_TRANSACTION_STATE_LOG_MIN_ISR', '2'],
      ['KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR', '3'], ['KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR', '2']] as const) {
      assert.equal(k[key], want, `${n}: ${key}`);
    }
    const data = (svcs[n].volumes ?? []).map((v: Json) => String(v).split(':')[0]);
    assert.equal(data.length, 1, `${n}: one data volume`);
    assert.ok(data[0] in clusterCompose.volumes, `${n}: ${data[0]} is a named volume`);
  }
  assert.equal(new Set(nodes.map((n) => (svcs[n].volumes ?? []).map((v: Json) => String(v).split(':')[0])[0])).size, 3, 'a data volume per node');

  // The apps: every node to bootstrap from, and topics replicated within what the cluster can hold
  // with one node down (min.insync below the replication factor).
  const known = knownVariables();
  for (const s of appServices) {
    const env = envOf(s, svcs);
    assert.deepEqual(Object.keys(env).filter((k) => !known.has(k)), [], `${s}: variables no code reads`);
    const cfg = loadConfig(env);
    assert.deepEqual([...cfg.kafkaBrokers].sort(), [...internal].sort(), `${s}: KAFKA_BROKERS lists every node's internal listener`);
    assert.equal(cfg.topicReplicationFactor, 3, `${s}: TOPIC_REPLICATION_FACTOR`);
    assert.equal(cfg.topicMinInsyncReplicas, 2, `${s}: TOPIC_MIN_INSYNC_REPLICAS`);
    assert.ok(cfg.topicReplicationFactor! <= nodes.length && cfg.topicMinInsyncReplicas! < cfg.topicReplicationFactor!);
    for (const t of topicSpecs(cfg)) assert.equal(t.replicationFactor, 3, `${s}: ${t.topic}`);
  }
  const names = appServices.map((s) => JSON.stringify([topicNames(loadConfig(envOf(s, svcs))), loadConfig(envOf(s, svcs)).topicPartitions]));
  assert.equal(new Set(names).size, 1, 'the app services agree on topic names and partition counts');
  const reg = envOf('schema-registry', svcs);
  assert.deepEqual(reg.APICURIO_KAFKASQL_BOOTSTRAP_SERVERS!.split(',').sort(), [...internal].sort(), 'the registry bootstraps from every node');
  for (const dependant of ['schema-registry', 'tracker']) {
    for (const n of nodes) assert.equal(svcs[dependant].depends_on?.[n]?.condition, 'service_healthy', `${dependant} waits for ${n}`);
  }
  for (const n of nodes) assert.ok(svcs[n].healthcheck?.test, `${n} has a healthcheck`);
  console.log(`cluster variant: ${nodes.join(', ')}; host ports ${[...hostPorts].join(', ')}; apps bootstrap from ${internal.join(',')}`);
});

test('docker compose config -q (single node and cluster), when a docker client with the compose plugin is installed', (t) => {
  const probe = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8', timeout: 20_000 });
  if (probe.error || probe.status !== 0) {
    t.skip(`no docker compose here (${probe.error ? (probe.error as Error).message : (probe.stderr || probe.stdout).trim().split('\n')[0]})`);
    return;
  }
  const r = spawnSync('docker', ['compose', '-f', file('docker-compose.yml'), 'config', '-q'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `docker compose config -q: ${r.stderr}`);
  const c = spawnSync('docker', ['compose', '-f', file('docker-compose.yml'), '-f', file('docker-compose.cluster.yml'), 'config', '-q'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.equal(c.status, 0, `docker compose (cluster) config -q: ${c.stderr}`);
});
