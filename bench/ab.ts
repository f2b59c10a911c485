// An A/B of two builds of the tracker on one backlog, in one session, interleaved (A B A B ...):
//
//   node dist/bench/ab.js /path/to/build-a /path/to/build-b [records] [rounds]
//
// Each path is a checkout with its dist/ built and node_modules installed. The backlog (the
// throughput benchmark's traffic, default 300k records) is written once to the broker of
// KAFKA_BROKERS; AB_ENV_A and AB_ENV_B (`NAME=value ...`) add settings to one side's trackers,
// so that one build can be compared against itself with a setting changed. Every run is a fresh
// application id (its own group, changelog and outputs) of one `chatstats run tracker` of that
// build, timed from its start to its group's committed offsets reaching the end. Interleaving spreads the machine's other load over both builds.
import path from 'node:path';
import { generateTraffic } from './generator';
import { benchKafka, cleanup, createTopics, fmtInt, loadAverage, newRun, produceAll, removeDir, spawnChild, topicEnd, waitForGroup } from './lib';
import { topicNames } from '../src/topics';

async function main(): Promise<void> {
  const [a, b] = [process.argv[2], process.argv[3]];
  if (!a || !b) throw new Error('usage: node dist/bench/ab.js BUILD_A BUILD_B [records] [rounds]');
  const records = Number(process.argv[4] ?? 300_000);
  const rounds = Number(process.argv[5] ?? 2);
  const kafka = benchKafka('bench-ab');
  const admin = kafka.admin();
  await admin.connect();
  const base = newRun('ab', { LOG_LEVEL: 'warn', PUNCTUATE_INTERVAL: '1s' });
  const input = topicNames({ topicPrefix: base.prefix, appId: base.appId }).messages;
  const rates: Record<string, number[]> = { A: [], B: [] };
  const dirs = [base.stateDir];
  try {
    await createTopics(admin, [input]);
    await produceAll(kafka, input, generateTraffic({ seed: 7, messages: records, gapMs: 5_400_000 }));
    const end = await topicEnd(admin, input);
    const sideEnv = (name: string) => Object.fromEntries((process.env[name] ?? '').split(/\s+/).filter(Boolean).map((kv) => {
      const i = kv.indexOf('=');
      if (i <= 0) throw new Error(`${name}: expected NAME=value, got "${kv}"`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }));
    const extra = { A: sideEnv('AB_ENV_A'), B: sideEnv('AB_ENV_B') };
    console.log(`${fmtInt(end)} records on ${input}; A = ${a} ${JSON.stringify(extra.A)}, B = ${b} ${JSON.stringify(extra.B)}`);
    for (let r = 0; r < rounds; r++) {
      for (const [label, root] of [['A', a], ['B', b]] as const) {
        const appId = `${base.appId}-${label}${r}`;
        const stateDir = `${base.stateDir}-${label}${r}`;
        dirs.push(stateDir);
        const t0 = Date.now();
        const child = spawnChild(process.execPath, [path.join(root, 'bin/chatstats.js'), 'run', 'tracker'], { ...base.env, ...extra[label], APP_ID: appId, STATE_DIR: stateDir });
        const p = await waitForGroup(admin, `${appId}-tracker`, input, end, {
          timeoutMs: 900_000, onTick: () => child.sample(),
          failed: () => (child.exitCode() !== undefined ? `${label} exited: ${child.output().slice(-1500)}` : null),
        });
        await child.stop('SIGTERM', 30_000);
        const rate = p.doneAt === null ? NaN : (end * 1000) / (p.doneAt - t0);
        rates[label]!.push(rate);
        console.log(`round ${r + 1} ${label}: ${fmtInt(Math.round(rate))} records/s (${((p.doneAt ?? NaN) - t0) / 1000} s), peak RSS ${Math.round(child.mem.peakRssMb)} MB, load ${loadAverage()}`);
      }
    }
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    console.log(`A ${rates.A!.map((x) => fmtInt(Math.round(x))).join(' / ')} (mean ${fmtInt(Math.round(mean(rates.A!)))}), `
      + `B ${rates.B!.map((x) => fmtInt(Math.round(x))).join(' / ')} (mean ${fmtInt(Math.round(mean(rates.B!)))}): B/A ${(mean(rates.B!) / mean(rates.A!)).toFixed(2)}`);
  } finally {
    await cleanup(admin, [base.prefix, base.appId]).catch(() => undefined);
    await admin.disconnect();
    for (const d of dirs) removeDir(d);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
