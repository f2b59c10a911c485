// `node dist/bench/backlog-1m.js [records]`: the throughput benchmark's backlog alone (default
// 1M records): raw consume, the exactly-once copy-through, the tracker and Kafka Streams in one
// run, with the restore of the tracker's state; @kafkats/flow left out (it needs minutes more).
// Prints the rows of `npm run bench` for it.
import { generateTraffic, emptyStats } from './generator';
import { fmtInt, fmtRatio, KS_JAR } from './lib';
import { runThroughput } from './throughput';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './lib';

const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

async function main(): Promise<void> {
  const records = Number(process.argv[2] ?? 1_000_000);
  if (!existsSync(KS_JAR)) execFileSync('mvn', ['-q', '-B', 'package'], { cwd: path.join(ROOT, 'bench/kafka-streams-baseline'), stdio: 'inherit' });
  const stats = emptyStats();
  const t = await runThroughput({
    name: 'backlog', describe: `generated, ${fmtInt(records)} messages`, gapMs: 5_400_000,
    messages: () => generateTraffic({ seed: 7, messages: Math.round(records * 1.02), gapMs: 5_400_000 }, stats),
  }, { ks: true, flow: false, compare: false, restore: true, log, budgetMs: 600_000, flowBudgetMs: 0 });
  const raws = t.runs.filter((r) => r.system.startsWith('raw'));
  const raw = raws.reduce((s, r) => s + r.rate, 0) / Math.max(1, raws.length);
  const by = (name: string) => t.runs.find((r) => r.system === name);
  const ours = by('tracker');
  const copy = by('copy-through');
  const ks = by('Kafka Streams');
  console.log(`records ${fmtInt(t.records)}; raw ${fmtInt(raw)} rec/s (${raws.map((r) => fmtInt(r.rate)).join(' / ')})`);
  if (copy) console.log(`copy-through ${fmtInt(copy.rate)} rec/s, peak RSS ${fmtInt(copy.peakRssMb)} MB`);
  if (ours) console.log(`tracker ${fmtInt(ours.rate)} rec/s (steady ${fmtInt(ours.steadyRate)}), peak RSS ${fmtInt(ours.peakRssMb)} MB${ours.note ? ` (${ours.note})` : ''}`);
  if (ks) console.log(`Kafka Streams ${fmtInt(ks.rate)} rec/s, peak RSS ${fmtInt(ks.peakRssMb)} MB${ks.note ? ` (${ks.note})` : ''}`);
  if (ours && copy) console.log(`tracker / copy-through ${fmtRatio(ours.rate / copy.rate)}`);
  if (ours && ks) console.log(`tracker / Kafka Streams ${fmtRatio(ours.rate / ks.rate)}`);
  // No count of sealed conversations here: outputs are compared with Kafka Streams' by the throughput benchmark (compare: true).
  if (t.restore) console.log(`restore ${fmtInt(t.restore.restoreMs)} ms (of which rebuilding ${fmtInt(t.restore.rebuildMs)} ms) for ${fmtInt(t.restore.restoredRecords)} changelog records (store ${t.restore.storeMb.toFixed(1)} MB; changelog ${t.restore.changelogMb.toFixed(0)} MB for ${t.produce.mb.toFixed(0)} MB of input); ready after ${fmtInt(t.restore.readyMs)} ms`);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
