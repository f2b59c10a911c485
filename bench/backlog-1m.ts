// `node dist/bench/backlog-1m.js [records]`: the throughput benchmark's backlog alone (default
// 1M records): raw consume, the exactly-once copy-through, the tracker and Kafka Streams in one
// run, with the restore of the tracker's state; @kafkats/flow left out (it needs minutes more).
// Prints the rows of `npm run bench` for it.
// BACKLOG_THREADS (comma list, default `1`, e.g. `1,2`): for each N > 1 in it, the tracker again
// with STREAM_THREADS=N (its own application id and state directory) and Kafka Streams with
// THREADS=N, each from nothing on the same input after the one-thread runs; their rows follow,
// with the ratios N threads / 1 thread of each and tracker / Kafka Streams at N threads.
import { generateTraffic, emptyStats } from './generator';
import { fmtInt, fmtRatio, KS_JAR } from './lib';
import { ksSystem, runThroughput, trackerSystem, type SystemRun } from './throughput';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './lib';

const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

/** BACKLOG_THREADS as thread counts (1 among them or not: the one-thread rows always run). */
function threadCounts(): number[] {
  const raw = process.env.BACKLOG_THREADS ?? '1';
  const counts = raw.split(',').map((x) => x.trim());
  if (counts.some((x) => !/^[1-9]\d*$/.test(x))) throw new Error(`BACKLOG_THREADS: a comma list of thread counts (e.g. 1,2), not ${JSON.stringify(raw)}`);
  return [...new Set(counts.map(Number))];
}

const trackerRow = (r: SystemRun) => `${r.system} ${fmtInt(r.rate)} rec/s (steady ${fmtInt(r.steadyRate)}), peak RSS ${fmtInt(r.peakRssMb)} MB${r.note ? ` (${r.note})` : ''}`;
const ksRow = (r: SystemRun) => `${r.system} ${fmtInt(r.rate)} rec/s, peak RSS ${fmtInt(r.peakRssMb)} MB${r.note ? ` (${r.note})` : ''}`;

/** The rows of the tracker and Kafka Streams at `n` threads, and their ratios to one thread and to each other. */
function printThreadRows(n: number, by: (system: string) => SystemRun | undefined): void {
  const ours1 = by(trackerSystem(1));
  const ks1 = by(ksSystem(1));
  const ours = by(trackerSystem(n));
  const ks = by(ksSystem(n));
  if (ours) console.log(trackerRow(ours));
  if (ks) console.log(ksRow(ks));
  if (ours && ours1) console.log(`tracker ${n} stream threads / tracker 1 thread ${fmtRatio(ours.rate / ours1.rate)}`);
  if (ks && ks1) console.log(`Kafka Streams ${n} threads / Kafka Streams 1 thread ${fmtRatio(ks.rate / ks1.rate)}`);
  if (ours && ks) console.log(`tracker ${n} stream threads / Kafka Streams ${n} threads ${fmtRatio(ours.rate / ks.rate)}`);
}

async function main(): Promise<void> {
  const records = Number(process.argv[2] ?? 1_000_000);
  const more = threadCounts().filter((n) => n > 1);
  if (!existsSync(KS_JAR)) execFileSync('mvn', ['-q', '-B', 'package'], { cwd: path.join(ROOT, 'bench/kafka-streams-baseline'), stdio: 'inherit' });
  const stats = emptyStats();
  const t = await runThroughput({
    name: 'backlog', describe: `generated, ${fmtInt(records)} messages`, gapMs: 5_400_000,
    messages: () => generateTraffic({ seed: 7, messages: Math.round(records * 1.02), gapMs: 5_400_000 }, stats),
  }, { ks: true, flow: false, compare: false, restore: true, log, budgetMs: 600_000, flowBudgetMs: 0, threads: more });
  const raws = t.runs.filter((r) => r.system.startsWith('raw'));
  const raw = raws.reduce((s, r) => s + r.rate, 0) / Math.max(1, raws.length);
  const by = (name: string) => t.runs.find((r) => r.system === name);
  const ours = by('tracker');
  const copy = by('copy-through');
  const ks = by('Kafka Streams');
  console.log(`records ${fmtInt(t.records)}; raw ${fmtInt(raw)} rec/s (${raws.map((r) => fmtInt(r.rate)).join(' / ')})`);
  if (copy) console.log(`copy-through ${fmtInt(copy.rate)} rec/s, peak RSS ${fmtInt(copy.peakRssMb)} MB`);
  if (ours) console.log(trackerRow(ours));
  if (ks) console.log(ksRow(ks));
  if (ours && copy) console.log(`tracker / copy-through ${fmtRatio(ours.rate / copy.rate)}`);
  if (ours && ks) console.log(`tracker / Kafka Streams ${fmtRatio(ours.rate / ks.rate)}`);
  for (const n of more) printThreadRows(n, by);
  // No count of sealed conversations here: outputs are compared with Kafka Streams' by the throughput benchmark (compare: true).
  if (t.restore) console.log(`restore ${fmtInt(t.restore.restoreMs)} ms (of which rebuilding ${fmtInt(t.restore.rebuildMs)} ms) for ${fmtInt(t.restore.restoredRecords)} changelog records (store ${t.restore.storeMb.toFixed(1)} MB; changelog ${t.restore.changelogMb.toFixed(0)} MB for ${t.produce.mb.toFixed(0)} MB of input); ready after ${fmtInt(t.restore.readyMs)} ms`);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
