// Throughput of the tracker on a Kafka cluster with one, two and three instances in its group.
//
//   npm run infra:up -- --brokers 3            a three-node cluster on 127.0.0.1:29092..29094
//   set -a; . .infra/cluster/client.env; set +a
//   npm run build && node dist/bench/cluster-scaling.js [--records 1000000] [--instances 1,2,3]
//
// The backlog of `npm run bench -- --full` (seed 7, ~1M records, 6 partitions) is written once
// into a topic replicated 3 with min.insync 2 (KAFKA_BROKERS, TOPIC_REPLICATION_FACTOR and
// TOPIC_MIN_INSYNC_REPLICAS as client.env sets them). Then, for each instance count, a fresh
// application id (its own group, changelog and command topic, so every run starts from nothing)
// starts that many `chatstats run tracker` processes at once, each with its own state directory,
// and the time from their start to the group's committed offsets reaching the end is measured:
// from the start (joins, rebalances, restores of empty stores included) and steady (from the first
// commit). Everything shares one machine: the brokers, the instances and this script compete for
// the same cores, so the figures say what contention costs here, not what more machines give.
// Results go to bench/results/cluster-scaling-<time>.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { generateTraffic, emptyStats } from './generator';
import { cleanup, fmtInt, loadAverage, produceAll, removeDir, ROOT, spawnRole, topicEnd, waitForGroup, type Child } from './lib';
import { loadConfig } from '../src/config';
import { ensureTopics, topicNames } from '../src/topics';
import { freePort } from './throughput';

const GAP = 5_400_000;

function arg(name: string, def: string): string {
  const i = process.argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return def;
  const a = process.argv[i]!;
  return a.includes('=') ? a.slice(a.indexOf('=') + 1) : process.argv[i + 1] ?? def;
}

function log(s: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
}

interface RunResult {
  instances: number;
  records: number;
  ms: number | null;
  steadyMs: number | null;
  rate: number;
  steadyRate: number;
  firstCommitMs: number | null;
  peakRssMb: number[];
  assigned: number[][];
  load: string;
}

async function main(): Promise<void> {
  const records = Number(arg('records', '1000000'));
  const counts = arg('instances', '1,2,3').split(',').map(Number);
  const brokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094';
  const rf = process.env.TOPIC_REPLICATION_FACTOR ?? '3';
  const isr = process.env.TOPIC_MIN_INSYNC_REPLICAS ?? '2';
  const id = `bench-scale-${Date.now().toString(36)}`;
  const prefix = `${id}.`;
  const kafka = new Kafka({ clientId: 'bench-scale', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const cluster = await admin.describeCluster();
  log(`cluster: ${cluster.brokers.length} brokers (${brokers}); topics replicated ${rf}, min.insync ${isr}; ${os.cpus().length} cores, load ${loadAverage()}`);
  const base = {
    KAFKA_BROKERS: brokers, TOPIC_PREFIX: prefix, TOPIC_REPLICATION_FACTOR: rf, TOPIC_MIN_INSYNC_REPLICAS: isr,
    TOPIC_PARTITIONS: '6', CONVERSATION_GAP: `${GAP}ms`, PUNCTUATE_INTERVAL: '1s', LOG_LEVEL: 'info', LOG_FORMAT: 'json',
  };
  const dirs: string[] = [];
  const children: Child[] = [];
  const results: RunResult[] = [];
  try {
    // The input topic (and the shared output topics) under the first run's settings.
    await ensureTopics(admin, loadConfig({ ...base, APP_ID: `cs-${id}-0` }));
    const input = topicNames({ topicPrefix: prefix, appId: 'x' }).messages;
    const stats = emptyStats();
    log(`producing ~${fmtInt(records)} records (seed 7, the backlog of bench --full)`);
    const produced = await produceAll(kafka, input, generateTraffic({ seed: 7, messages: Math.round(records * 1.02 / 1.01), gapMs: GAP }, stats));
    const end = await topicEnd(admin, input);
    log(`${fmtInt(end)} records (${(produced.bytes / 1e6).toFixed(0)} MB) in ${stats.chats ? fmtInt(stats.chats) : '?'} chats produced in ${(produced.ms / 1000).toFixed(1)} s (acks=all, replication ${rf})`);

    for (const n of counts) {
      const appId = `cs-${id}-${n}`;
      const group = `${appId}-tracker`;
      const procs: Child[] = [];
      const t0 = Date.now();
      for (let i = 0; i < n; i++) {
        const stateDir = path.join(os.tmpdir(), `${appId}-${i}`);
        dirs.push(stateDir);
        const child = spawnRole('tracker', { ...base, APP_ID: appId, STATE_DIR: stateDir, METRICS_PORT: String(await freePort()) });
        procs.push(child);
        children.push(child);
      }
      const load0 = loadAverage();
      let lastLog = Date.now();
      const p = await waitForGroup(admin, group, input, end, {
        timeoutMs: 900_000,
        everyMs: 200,
        onTick: (c) => {
          for (const c2 of procs) c2.sample();
          if (Date.now() - lastLog > 15_000) { lastLog = Date.now(); log(`  ${n} instance(s): ${fmtInt(c)} / ${fmtInt(end)} committed`); }
        },
        failed: () => {
          const dead = procs.find((c) => c.exitCode() !== undefined);
          return dead ? `a tracker exited with ${dead.exitCode()}: ${dead.output().slice(-2000)}` : null;
        },
      });
      const ms = p.doneAt === null ? null : p.doneAt - t0;
      const steadyMs = p.doneAt === null || p.firstAt === null ? null : p.doneAt - p.firstAt;
      const assigned = procs.map((c) => {
        const lines = c.output().split('\n').filter((l) => l.includes('"partitions assigned"'));
        try { return (JSON.parse(lines.at(-1) ?? '{}') as { assigned?: number[] }).assigned ?? []; } catch { return []; }
      });
      const r: RunResult = {
        instances: n, records: end, ms, steadyMs,
        rate: ms ? (end * 1000) / ms : NaN,
        steadyRate: steadyMs ? ((end - p.firstCommitted) * 1000) / steadyMs : NaN,
        firstCommitMs: p.firstAt === null ? null : p.firstAt - t0,
        peakRssMb: procs.map((c) => Math.round(c.mem.peakRssMb)),
        assigned,
        load: `${load0} -> ${loadAverage()}`,
      };
      results.push(r);
      log(`${n} instance(s): ${fmtInt(Math.round(r.rate))} records/s from the start (${ms === null ? 'unfinished' : `${(ms / 1000).toFixed(1)} s`}), `
        + `${fmtInt(Math.round(r.steadyRate))} records/s from the first commit (${r.firstCommitMs} ms after the start); partitions ${JSON.stringify(assigned)}; `
        + `peak RSS ${r.peakRssMb.join(' / ')} MB; load ${r.load}`);
      await Promise.all(procs.map((c) => c.stop('SIGTERM', 30_000)));
    }
  } finally {
    for (const c of children) if (c.exitCode() === undefined) await c.stop('SIGKILL', 5000).catch(() => undefined);
    await cleanup(admin, [prefix, `cs-${id}`]).catch(() => undefined);
    await admin.disconnect();
    for (const d of dirs) removeDir(d);
  }
  const out = path.join(ROOT, 'bench/results');
  mkdirSync(out, { recursive: true });
  const file = path.join(out, `cluster-scaling-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ brokers, replication: rf, minInsync: isr, cores: os.cpus().length, results }, null, 2));
  const one = results.find((r) => r.instances === 1);
  console.log('\n| instances | records/s from start | records/s steady | vs one instance | first commit after | peak RSS per instance |');
  console.log('|---|---|---|---|---|---|');
  for (const r of results) {
    console.log(`| ${r.instances} | ${fmtInt(Math.round(r.rate))} | ${fmtInt(Math.round(r.steadyRate))} | ${one ? `${(r.rate / one.rate).toFixed(2)}x` : ''} | ${r.firstCommitMs ?? '-'} ms | ${r.peakRssMb.join(' / ')} MB |`);
  }
  console.log(`\nresults: ${path.relative(ROOT, file)}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
