// `npm run bench`: every benchmark of BENCHMARKS.md in one run, printing one table.
//   npm run bench                      short: a few minutes (100k-record backlog, 10k/100k chats)
//   npm run bench -- --full            1M-record backlog, 1M chats, seed check every 60 s, plus
//                                      the 20-minute soak and the RocksDB memory comparison
//   BENCH_SCALE=full npm run bench     the same
//   npm run bench -- soak live-amplification      named benchmarks only (any of BENCHES below)
//   npm run bench -- soak --minutes 3             the soak, shorter (default 20 minutes)
//   npm run bench -- --only=throughput,punctuation,latency,burst,idle,e2e   a subset, the older way
//   LATENCY_ALONE=0,1 npm run bench -- --full --only=latency   seal-delay designs 0 and 1 (latency.ts'
//                                      ALL_TRACKERS) each alone with the seed, in turn
// Needs the broker on KAFKA_BROKERS (127.0.0.1:9092), Redis on 127.0.0.1:6379, PostgreSQL on
// 127.0.0.1:5432, Java 17 and Maven (the Kafka Streams baseline is built on first use). Results
// also go to bench/results/<scale>-<time>.json. Figures are to be read as ratios within one run:
// other work on the machine changes the absolute ones.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateTraffic, emptyStats, ircSample, type TrafficStats } from './generator';
import { fmtInt, fmtRatio, IRC_SAMPLE, KS_JAR, loadAverage, ROOT, spawnBenchScript, lastEvent } from './lib';
import { runThroughput, type ThroughputResult } from './throughput';
import { ALL_TRACKERS, runEndToEnd, runSealDelay, type EndToEndResult, type SealDelayResult, type DelayStats } from './latency';
import { runBurst, runIdle, type BurstResult, type IdleResult } from './seal-timer';
import type { SealTimerMode } from '../src/runtime/deadline-timer';
import { amplificationRows, runLiveAmplification, type AmplificationResult } from './live-amplification';
import { minutesArg, runSoak, soakOptionsFromEnv, soakRows, writeSoakSvg, type SoakResult } from './soak';
import { memoryRows, runRocksdbMemory, type MemoryRun } from './rocksdb-memory';

/**
 * Every benchmark by name. `throughput` includes the raw consumer and the exactly-once
 * copy-through beside the tracker, Kafka Streams and @kafkats/flow, and the restore.
 */
const BENCHES = ['throughput', 'punctuation', 'latency', 'burst', 'idle', 'e2e', 'live-amplification', 'soak', 'rocksdb-memory'] as const;
/** What runs when none is named: the long ones only at full scale. */
const DEFAULT_SHORT = ['throughput', 'punctuation', 'latency', 'burst', 'idle', 'e2e', 'live-amplification'];
const DEFAULT_FULL = [...BENCHES];

const GAP = 5_400_000;

interface Scale {
  name: string;
  backlog: number;
  punctuationSizes: number[];
  budgetMs: number;
  flowBudgetMs: number;
  liveChats: number;
  liveSeconds: number;
  seedCheckMs: number;
  /** Chats whose deadlines coincide in the burst benchmark, and open chats of the idle one. */
  burstChats: number;
  idleChats: number;
  idleSeconds: number;
}

const SHORT: Scale = {
  name: 'short', backlog: 100_000, punctuationSizes: [10_000, 100_000], budgetMs: 60_000, flowBudgetMs: 45_000,
  liveChats: 200, liveSeconds: 20, seedCheckMs: 10_000, burstChats: 20_000, idleChats: 20_000, idleSeconds: 30,
};
const FULL: Scale = {
  name: 'full', backlog: 1_000_000, punctuationSizes: [10_000, 100_000, 1_000_000], budgetMs: 300_000, flowBudgetMs: 120_000,
  liveChats: 600, liveSeconds: 120, seedCheckMs: 60_000, burstChats: 100_000, idleChats: 100_000, idleSeconds: 60,
};

function log(s: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
}

function ensureKsJar(): void {
  if (existsSync(KS_JAR)) return;
  log('building the Kafka Streams baseline (mvn -q -B package)');
  execFileSync('mvn', ['-q', '-B', 'package'], { cwd: path.join(ROOT, 'bench/kafka-streams-baseline'), stdio: 'inherit' });
}

interface PunctuationResult {
  chats: number; populateMs: number;
  idleTickMs: { p50: number; p99: number };
  dueTickMs: { mean: number; max: number };
  sealedPerDueTick: number;
  memory: { rssMb: number; heapUsedMb: number };
}

async function punctuation(sizes: number[]): Promise<PunctuationResult[]> {
  const out: PunctuationResult[] = [];
  for (const n of sizes) {
    log(`[punctuation] ${fmtInt(n)} open chats`);
    const child = spawnBenchScript('punctuation', { CHATS: String(n) }, ['--expose-gc']);
    const code = await child.exited;
    const r = lastEvent<PunctuationResult>(child.output(), 'punctuation');
    if (code !== 0 || r === null) throw new Error(`punctuation ${n} failed: ${child.output().slice(-2000)}`);
    out.push(r);
  }
  return out;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

async function main(): Promise<void> {
  const full = process.argv.includes('--full') || process.env.BENCH_SCALE === 'full';
  const scale = full ? FULL : SHORT;
  const args = process.argv.slice(2);
  const named = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--minutes');
  const only = [...named, ...(args.find((a) => a.startsWith('--only='))?.slice(7).split(',') ?? [])];
  for (const n of only) if (!(BENCHES as readonly string[]).includes(n)) throw new Error(`unknown benchmark "${n}"; one of ${BENCHES.join(', ')}`);
  const selected = only.length > 0 ? only : full ? DEFAULT_FULL : DEFAULT_SHORT;
  const want = (s: string) => selected.includes(s);
  const soakMinutes = minutesArg(args);
  const started = Date.now();
  const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGb: Math.round(os.totalmem() / 2 ** 30), loadBefore: loadAverage(), node: process.version };
  log(`scale ${scale.name}; ${machine.cpus} CPUs, load average ${machine.loadBefore}`);

  const results: {
    scale: string; machine: typeof machine; loadAfter?: string; seconds?: number;
    throughput: ThroughputResult[]; generated?: TrafficStats; punctuation: PunctuationResult[];
    sealDelay: SealDelayResult | null; burst: BurstResult[]; idle: IdleResult | null; endToEnd: EndToEndResult | null;
    liveAmplification: AmplificationResult | null; soak: SoakResult | null; rocksdbMemory: MemoryRun[];
  } = {
    scale: scale.name, machine, throughput: [], punctuation: [], sealDelay: null, burst: [], idle: null, endToEnd: null,
    liveAmplification: null, soak: null, rocksdbMemory: [],
  };
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');

  if (want('throughput')) {
    ensureKsJar();
    const genStats = emptyStats();
    const datasets = [
      { name: 'irc', describe: 'IRC sample (14,018 messages, 12 chats)', gapMs: GAP, messages: () => ircSample(IRC_SAMPLE) },
      {
        name: 'clean', describe: 'generated, 20k messages, no duplicates or reordering', gapMs: GAP,
        messages: () => generateTraffic({ seed: 3, messages: 20_000, gapMs: GAP, duplicateRate: 0, reorderRate: 0, lateRate: 0 }),
      },
      {
        name: 'backlog', describe: `generated, ${fmtInt(scale.backlog)} messages (1% duplicates, 2% reordered, 0.3% hours late)`, gapMs: GAP,
        messages: () => generateTraffic({ seed: 7, messages: Math.round(scale.backlog * 1.02), gapMs: GAP }, genStats),
      },
    ];
    for (const ds of datasets) {
      const big = ds.name === 'backlog';
      results.throughput.push(await runThroughput(ds, {
        ks: true, flow: true, compare: true, restore: true, log,
        // The tracker's budget is the same as the peers'; it needs far less.
        budgetMs: big ? scale.budgetMs : 90_000, flowBudgetMs: big ? scale.flowBudgetMs : 60_000,
      }));
    }
    results.generated = genStats;
  }
  if (want('punctuation')) results.punctuation = await punctuation(scale.punctuationSizes);
  if (want('latency')) {
    const latency = { chats: scale.liveChats, seconds: scale.liveSeconds, seedCheckMs: scale.seedCheckMs, log };
    const alone = (process.env.LATENCY_ALONE ?? '').split(',').filter((x) => x !== '').map(Number);
    if (alone.length > 0) {
      if (alone.some((i) => !Number.isInteger(i) || ALL_TRACKERS[i] === undefined)) throw new Error(`LATENCY_ALONE: indices of ${ALL_TRACKERS.map((t, i) => `${i} ${t.label}`).join(', ')}`);
      // Each chosen tracker design alone with the seed, one after another in this run, on the
      // same traffic (same seeds): the delays without the other trackers competing for the CPU.
      const parts: SealDelayResult[] = [];
      for (const i of alone) parts.push(await runSealDelay({ ...latency, only: [i] }));
      results.sealDelay = {
        ...parts[0]!, trackers: parts.flatMap((p) => p.trackers),
        coincide: parts[0]!.coincide && { ...parts[0]!.coincide, trackers: parts.flatMap((p) => p.coincide?.trackers ?? []) },
      };
    } else {
      results.sealDelay = await runSealDelay(latency);
    }
  }
  if (want('burst')) {
    results.burst = await runBurst({
      chats: scale.burstChats, gapMs: 60_000, probesPerSecond: 200, log,
      // BURST_VARIANTS=deadline:250,tick:1000,... (SEAL_TIMER:PUNCTUATE_MAX_SEALS) picks others.
      variants: (process.env.BURST_VARIANTS ?? 'deadline:1000,deadline:250,deadline:0').split(',').map((v) => {
        const [sealTimer, max] = v.split(':') as [SealTimerMode, string];
        const maxSeals = Number(max);
        return {
          sealTimer, maxSeals,
          variant: `${{ deadline: 'seal timer', prepare: 'seal timer, prepared', tick: 'fixed tick' }[sealTimer]}, ${maxSeals === 0 ? 'no bound (one transaction per partition)' : `PUNCTUATE_MAX_SEALS ${maxSeals}`}`,
        };
      }),
    });
  }
  if (want('idle')) results.idle = await runIdle({ chats: scale.idleChats, seconds: scale.idleSeconds, log });
  if (want('e2e')) results.endToEnd = await runEndToEnd({ chats: Math.min(100, scale.liveChats), seconds: 15, log });
  if (want('live-amplification')) results.liveAmplification = await runLiveAmplification({ log });
  if (want('rocksdb-memory')) results.rocksdbMemory = await runRocksdbMemory({ log });
  if (want('soak')) {
    results.soak = await runSoak({ minutes: soakMinutes, ...soakOptionsFromEnv(), log });
    writeSoakSvg(results.soak, `${scale.name}-${stamp}-soak`);
  }

  results.loadAfter = loadAverage();
  results.seconds = Math.round((Date.now() - started) / 1000);
  mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true });
  const file = path.join(ROOT, `bench/results/${scale.name}-${stamp}.json`);
  writeFileSync(file, JSON.stringify(results, null, 2));

  // One table.
  const rows: string[][] = [['benchmark', 'system', 'figure', 'vs baseline (same run)']];
  for (const t of results.throughput) {
    const raws = t.runs.filter((r) => r.system.startsWith('raw'));
    const raw = raws.reduce((s, r) => s + r.rate, 0) / Math.max(1, raws.length);
    const ours = t.runs.find((r) => r.system === 'tracker');
    const copy = t.runs.find((r) => r.system === 'copy-through');
    const ks = t.runs.find((r) => r.system === 'Kafka Streams');
    const fl = t.runs.find((r) => r.system === '@kafkats/flow');
    const what = `throughput ${t.dataset} (${fmtInt(t.records)} records)`;
    rows.push([what, 'raw kafkajs consumer', `${fmtInt(raw)} rec/s (${raws.map((r) => fmtInt(r.rate)).join(' / ')})`, 'baseline']);
    if (copy) rows.push([what, 'copy-through (kafkajs EOS, no processing)', `${fmtInt(copy.rate)} rec/s (steady ${fmtInt(copy.steadyRate)})${copy.note ? ` (${copy.note})` : ''}, ${fmtInt(copy.transactions ?? NaN)} transactions, peak RSS ${fmtInt(copy.peakRssMb)} MB`, `${fmtRatio(copy.rate / raw)} of raw`]);
    if (ours) rows.push([what, 'tracker (ours, EOS)', `${fmtInt(ours.rate)} rec/s (steady ${fmtInt(ours.steadyRate)})${ours.note ? ' (unfinished)' : ''}, peak RSS ${fmtInt(ours.peakRssMb)} MB`, `${fmtRatio(ours.rate / raw)} of raw${copy ? `; ours/copy-through ${fmtRatio(ours.rate / copy.rate)}` : ''}`]);
    if (ks) rows.push([what, 'Kafka Streams (EOS v2)', `${fmtInt(ks.rate)} rec/s (steady ${fmtInt(ks.steadyRate)})${ks.note ? ' (unfinished)' : ''}, peak RSS ${fmtInt(ks.peakRssMb)} MB`, ours ? `ours/KS ${fmtRatio(ours.rate / ks.rate)}` : '']);
    if (fl) rows.push([what, '@kafkats/flow (EOS)', `${fmtInt(fl.rate)} rec/s (steady ${fmtInt(fl.steadyRate)})${fl.note ? ' (unfinished)' : ''}, peak RSS ${fmtInt(fl.peakRssMb)} MB`, ours ? `ours/flow ${fmtRatio(ours.rate / fl.rate)}` : '']);
    rows.push([what, 'tracker output', `${fmtInt(t.sealed.total)} conversations ${JSON.stringify(t.sealed.byReason)}, ${fmtInt(t.sealed.late)} late`, '']);
    for (const a of t.agreements) {
      rows.push([what, `agreement with ${a.other}`, `${fmtInt(a.identical)} of ${fmtInt(a.ours)} NEXT_MESSAGE conversations identical`,
        `${fmtInt(a.identicalCountDiffers)} of them counted with duplicates; ${fmtInt(a.sameBoundsOtherIds)} same bounds other ids; ${fmtInt(a.missing)} missing (${fmtInt(a.missingOverlapped)} overlapped by other bounds); ${fmtInt(a.otherSessions)} emitted`]);
    }
    if (t.ksDropped !== null) rows.push([what, 'Kafka Streams dropped (late)', `${fmtInt(t.ksDropped)} records`, '']);
    if (t.restore) rows.push([what, 'restore from changelog', `${fmtInt(t.restore.restoreMs)} ms for ${fmtInt(t.restore.restoredRecords)} records (store ${t.restore.storeMb.toFixed(1)} MB; changelog ${t.restore.changelogMb.toFixed(0)} MB for ${t.produce.mb.toFixed(0)} MB of input)`, `ready after ${fmtInt(t.restore.readyMs)} ms`]);
  }
  for (const p of results.punctuation) {
    rows.push([`punctuation, ${fmtInt(p.chats)} open chats`, 'tracker + RocksDB', `idle tick p50 ${p.idleTickMs.p50.toFixed(3)} ms p99 ${p.idleTickMs.p99.toFixed(2)} ms; 1% due ${p.dueTickMs.mean.toFixed(1)} ms (${fmtInt(p.sealedPerDueTick)} sealed)`,
      `RSS ${fmtInt(p.memory.rssMb)} MB, heap ${p.memory.heapUsedMb.toFixed(1)} MB`]);
  }
  if (results.sealDelay) {
    const s = results.sealDelay;
    const counts = (d: DelayStats) => `${d.n}/${d.expected}, ${d.missing ?? 0} missing, ${d.duplicates ?? 0} duplicated${d.split ? `, ${d.split} chats split` : ''}`;
    const phases = [{ what: `seal delay past deadline (live, gap 3 s, ${s.chats} chats)`, p: { trackers: s.trackers, seed: s.seed } }];
    if (s.coincide) phases.push({ what: `seal delay past deadline (all ${s.coincide.chats} deadlines coincide)`, p: s.coincide });
    for (const { what, p } of phases) {
      for (const t of p.trackers) {
        rows.push([what, `tracker, ${t.label}`, `received p50 ${fmtInt(t.received.p50)} ms, p99 ${fmtInt(t.received.p99)} ms (${counts(t.received)}); sealed_at p50 ${fmtInt(t.sealed.p50)} ms p99 ${fmtInt(t.sealed.p99)} ms`,
          `seed p99 / ours p99 ${fmtRatio(p.seed.p99 / t.received.p99)}`]);
      }
      rows.push([what, `seed: Redis zset, check every ${s.seedCheckMs / 1000} s`, `received p50 ${fmtInt(p.seed.p50)} ms, p99 ${fmtInt(p.seed.p99)} ms (${counts(p.seed)})`, 'baseline']);
    }
  }
  for (const b of results.burst) {
    rows.push([`burst: ${fmtInt(b.chats)} deadlines in the same ms`, b.variant,
      `last sealed ${fmtInt(b.lastSealMs)} ms past the deadline (first ${fmtInt(b.firstSealMs)} ms); ${fmtInt(b.received)} received, ${b.missing} missing, ${b.duplicates} duplicated; sealing punctuations ${JSON.stringify(b.sealingPunctuations)}`,
      `input lag (${b.probesPerSecond} msg/s) during: p50 ${fmtInt(b.inputLagDuring.p50)} ms p99 ${fmtInt(b.inputLagDuring.p99)} ms max ${fmtInt(b.inputLagDuring.max)} ms; before: p99 ${fmtInt(b.inputLagBefore.p99)} ms${b.readyBeforeDeadline ? '' : ' (input not caught up before the deadline)'}`]);
  }
  if (results.idle) {
    const base = results.idle.trackers.find((t) => t.sealTimer === 'tick' && t.tickMs === 1000);
    for (const t of results.idle.trackers) {
      rows.push([`idle CPU, ${fmtInt(results.idle.chats)} open chats, no traffic (${results.idle.seconds.toFixed(0)} s)`, `tracker, ${t.label}`,
        `${t.cpuPercent.toFixed(2)} % of a core (${fmtInt(t.cpuMs)} ms CPU: ${t.windowsMs.map(fmtInt).join(' / ')} in three windows), RSS ${fmtInt(t.rssMb)} MB`, base ? `${fmtRatio(t.cpuMs / base.cpuMs)} of fixed tick 1 s` : '']);
    }
  }
  if (results.endToEnd) {
    const e = results.endToEnd;
    rows.push(['end to end: last message -> analysis.completed', `tracker+ETL+analysis (${e.passes.length} passes)`,
      `first pass p50 ${fmtInt(e.firstPass.p50)} ms p99 ${fmtInt(e.firstPass.p99)} ms; all passes p50 ${fmtInt(e.allPasses.p50)} ms p99 ${fmtInt(e.allPasses.p99)} ms`,
      `includes the ${e.gapMs} ms gap; ${e.conversations} conversations`]);
  }
  if (results.liveAmplification) rows.push(...amplificationRows(results.liveAmplification));
  rows.push(...memoryRows(results.rocksdbMemory));
  if (results.soak) rows.push(...soakRows(results.soak));
  console.log(`\nchatstats benchmarks, scale ${scale.name}, ${new Date().toISOString()}, ${machine.cpus} CPUs ${machine.cpuModel}, ${machine.memGb} GB, Node ${machine.node}`);
  console.log(`load average before ${machine.loadBefore}, after ${results.loadAfter} (shared machine: read figures as ratios within this run)\n`);
  console.log(table(rows));
  console.log(`\n${results.seconds} s; details in ${path.relative(ROOT, file)}`);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
