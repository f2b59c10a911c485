// `node dist/bench/coinciding.js [chats] [rounds] [--profile]`: issue 13's hardest case alone and
// repeated. `chats` chats (default 600) send a few messages, then their last ones all with the same
// sent_at (latency.ts' coincidingTraffic), so every deadline falls on the same millisecond; gap
// 3 s and settle time scaled as in the latency benchmark; `chatstats run tracker` with the seal
// timer (tick 1 s). A read_committed consumer receives the sealed events. Per round (default 4):
// the received delay past the deadline (p50, p99, max) and the tracker's own part (`sealed_at`).
// A round takes seconds, not the latency benchmark's minutes, so builds can be compared:
// `COINCIDING_BUILDS=/path/a,/path/b` (checkouts with dist/ and node_modules) starts one tracker
// per build, each on its own topics, and gives them the rounds in turn; the medians of each
// build's rounds and their ratio are printed. `--profile`: each build's last round is CPU-profiled
// from 150 ms before the deadline for 1 s (profile-on-signal.ts); the busiest functions are
// printed, the profile kept in bench/results/. BENCH_TRACKER_LOG_LEVEL=debug and
// BENCH_TRACKER_LOG_DIR=dir keep each tracker's log (the seal timer logs each punctuation's steps).
// `COINCIDING_SEAL_TIMERS=deadline,prepare`: each build's SEAL_TIMER (default deadline), in the
// order of the builds; without COINCIDING_BUILDS, this checkout once per listed mode.
// Each round also reports the CPU time used in the CPU_WINDOW_MS (400) from the deadline by the
// tracker (all its threads, and its main thread alone) and by the broker (cpu-time.ts): the main
// thread is the serial floor of the delay, and the two processes share the machine's cores.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { benchKafka, cleanup, createTopics, fmtInt, loadAverage, newRun, quantile, removeDir, ROOT, sleep, type Child } from './lib';
import { coincidingTraffic, GAP_MS, SETTLE_MS, startTracker } from './latency';
import { topSelf, type CpuProfile } from './profile';
import { topicNames } from '../src/topics';
import { cpuBetween, cpuTime, type CpuReading } from './cpu-time';

interface Build { label: string; root: string }
interface Round {
  received: { p50: number; p99: number; max: number }; sealed: { p50: number; p99: number }; n: number;
  /** CPU ms in the window from the deadline: tracker (all threads, main thread), broker. */
  cpu: { tracker: CpuReading | null; broker: CpuReading | null };
}

const CPU_WINDOW_MS = Number(process.env.CPU_WINDOW_MS ?? 400);
const brokerPidFile = path.join(ROOT, '.infra/kafka/kafka.pid');

/** CPU readings of the tracker and the broker at `at` and CPU_WINDOW_MS later. */
function cpuWindow(trackerPid: number, at: number): Promise<Round['cpu']> {
  const brokerPid = existsSync(brokerPidFile) ? Number(readFileSync(brokerPidFile, 'utf8').trim()) : NaN;
  const read = () => [cpuTime(trackerPid), Number.isInteger(brokerPid) ? cpuTime(brokerPid) : null] as const;
  return new Promise((resolve) => {
    setTimeout(() => {
      const start = read();
      setTimeout(() => {
        const end = read();
        resolve({ tracker: cpuBetween(start[0], end[0]), broker: cpuBetween(start[1], end[1]) });
      }, CPU_WINDOW_MS);
    }, Math.max(0, at - Date.now()));
  });
}

const cpuText = (c: Round['cpu']) => (c.tracker === null ? '' : `; CPU in ${CPU_WINDOW_MS} ms from the deadline: tracker ${fmtInt(c.tracker.allMs)} ms ` +
  `(main thread ${fmtInt(c.tracker.mainMs)} ms)${c.broker === null ? '' : `, broker ${fmtInt(c.broker.allMs)} ms`}`);

const median = (xs: number[]) => quantile(xs, 0.5);

async function main(): Promise<void> {
  const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const chats = Number(args[0] ?? 600);
  const rounds = Number(args[1] ?? 4);
  const profile = process.argv.includes('--profile');
  const modes = (process.env.COINCIDING_SEAL_TIMERS ?? 'deadline').split(',');
  const roots = (process.env.COINCIDING_BUILDS ?? modes.map(() => ROOT).join(',')).split(',').map((p) => path.resolve(p));
  const builds: Build[] = roots.map((root, i) => ({ label: roots.length > 1 ? String.fromCharCode(65 + i) : 'tracker', root }));
  builds.forEach((b, i) => console.log(`${b.label}: ${b.root} SEAL_TIMER=${modes[i] ?? modes[0]}`));
  const kafka = benchKafka('bench-coinciding');
  const admin = kafka.admin();
  await admin.connect();
  const runs = builds.map((b, i) => newRun(`coinciding-${b.label}`, {
    CONVERSATION_GAP: `${GAP_MS}ms`, CONVERSATION_SETTLE: `${SETTLE_MS}ms`, PUNCTUATE_INTERVAL: '1000ms', SEAL_TIMER: modes[i] ?? modes[0]!,
  }));
  const topics = runs.map((r) => topicNames({ topicPrefix: r.prefix, appId: r.appId }));
  const children: Child[] = [];
  const extraChildren: Child[] = [];
  const resultsDir = path.join(ROOT, 'bench/results');
  mkdirSync(resultsDir, { recursive: true });
  const profiles = builds.map((b) => path.join(resultsDir, `coinciding-${b.label}-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`));
  // Per sealed topic, per chat: [received delay, sealed_at delay] of its first receipt.
  const received = new Map<string, Map<string, [number, number]>>(topics.map((t) => [t.sealed, new Map()]));
  const consumer = kafka.consumer({ groupId: `${runs[0]!.prefix}downstream`, readUncommitted: false, maxWaitTimeInMs: 50 });
  try {
    for (const t of topics) await createTopics(admin, [t.messages], 6, { 'retention.ms': String(86_400_000) });
    for (let i = 0; i < builds.length; i++) {
      const env: Record<string, string> = { ...runs[i]!.env };
      if (process.env.BENCH_TRACKER_LOG_LEVEL) env.LOG_LEVEL = process.env.BENCH_TRACKER_LOG_LEVEL;
      if (profile) {
        env.NODE_OPTIONS = `--require ${path.join(__dirname, 'profile-on-signal.js')}`;
        env.PROFILE_OUT = profiles[i]!;
      }
      // Each build's own tracker: its bin/chatstats.js.
      const { child } = await startTracker(env, path.join(builds[i]!.root, 'bin/chatstats.js'));
      children.push(child);
      // COINCIDING_INSTANCES=n: n trackers per build in one group (each its own state directory), as n replicas would run.
      for (let k = 1; k < Number(process.env.COINCIDING_INSTANCES ?? 1); k++) {
        const extra = await startTracker({ ...env, STATE_DIR: `${runs[i]!.stateDir}-${k}`, PROFILE_OUT: `${profiles[i]!}-${k}` }, path.join(builds[i]!.root, 'bin/chatstats.js'));
        extraChildren.push(extra.child);
      }
    }
    await consumer.connect();
    await consumer.subscribe({ topics: topics.map((t) => t.sealed), fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ topic, message }) => {
        const now = Date.now();
        const c = JSON.parse(message.value!.toString('utf8')) as { chat_id: string; ended_at: number; gap_ms: number; sealed_at: number };
        const deadline = c.ended_at + c.gap_ms;
        const byChat = received.get(topic)!;
        if (!byChat.has(c.chat_id)) byChat.set(c.chat_id, [now - deadline, c.sealed_at - deadline]);
      },
    });
    await sleep(3000); // the consumer joins its group
    console.log(`${chats} chats whose deadlines coincide, gap ${GAP_MS} ms, ${rounds} rounds${builds.length > 1 ? ` per build, ${builds.map((b) => `${b.label} = ${b.root}`).join(', ')}` : ''}; load ${loadAverage()}`);
    const results = builds.map((): Round[] => []);
    for (let r = 1; r <= rounds; r++) {
      for (let i = 0; i < builds.length; i++) {
        const ids = Array.from({ length: chats }, (_, c) => `r${r}-${c}`);
        const T = await coincidingTraffic(kafka, [topics[i]!.messages], ids, GAP_MS - 500, 13 + r);
        if (profile && r === rounds) {
          const pid = children[i]!.proc.pid!;
          setTimeout(() => process.kill(pid, 'SIGUSR2'), Math.max(0, T + GAP_MS - 150 - Date.now()));
        }
        const cpu = cpuWindow(children[i]!.proc.pid!, T + GAP_MS);
        const byChat = received.get(topics[i]!.sealed)!;
        const until = T + GAP_MS + 30_000;
        while (Date.now() < until && ids.some((c) => !byChat.has(c))) await sleep(100);
        await sleep(500);
        const got = ids.map((c) => byChat.get(c)).filter((x): x is [number, number] => x !== undefined);
        const rec = got.map((x) => x[0]);
        const sealed = got.map((x) => x[1]);
        const round: Round = {
          n: got.length,
          received: { p50: quantile(rec, 0.5), p99: quantile(rec, 0.99), max: Math.max(...rec) },
          sealed: { p50: quantile(sealed, 0.5), p99: quantile(sealed, 0.99) },
          cpu: await cpu,
        };
        results[i]!.push(round);
        console.log(`round ${r}${builds.length > 1 ? ` [${builds[i]!.label}]` : ''}: ${round.n}/${chats} received p50 ${fmtInt(round.received.p50)} ms, p99 ${fmtInt(round.received.p99)} ms, ` +
          `max ${fmtInt(round.received.max)} ms; sealed_at p50 ${fmtInt(round.sealed.p50)} ms, p99 ${fmtInt(round.sealed.p99)} ms${cpuText(round.cpu)}`);
      }
    }
    for (let i = 0; i < builds.length; i++) {
      const rs = results[i]!;
      console.log(`${builds[i]!.label}: median of rounds received p50 ${fmtInt(median(rs.map((x) => x.received.p50)))} ms, p99 ${fmtInt(median(rs.map((x) => x.received.p99)))} ms; ` +
        `sealed_at p99 ${fmtInt(median(rs.map((x) => x.sealed.p99)))} ms; ${rs.reduce((s, x) => s + x.n, 0)}/${rounds * chats} received` +
        (rs.every((x) => x.cpu.tracker !== null) ? `; median CPU in ${CPU_WINDOW_MS} ms from the deadline: tracker ${fmtInt(median(rs.map((x) => x.cpu.tracker!.allMs)))} ms ` +
          `(main thread ${fmtInt(median(rs.map((x) => x.cpu.tracker!.mainMs)))} ms)` +
          (rs.every((x) => x.cpu.broker !== null) ? `, broker ${fmtInt(median(rs.map((x) => x.cpu.broker!.allMs)))} ms` : '') : ''));
    }
    if (builds.length > 1) {
      const p99 = results.map((rs) => median(rs.map((x) => x.received.p99)));
      for (let i = 1; i < builds.length; i++) console.log(`${builds[i]!.label}/A received p99: ${(p99[i]! / p99[0]!).toFixed(2)}`);
    }
    if (profile) {
      await sleep(1500);
      for (let i = 0; i < builds.length; i++) {
        const file = profiles[i]!.replace(/\.cpuprofile$/, '-1.cpuprofile');
        const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
        const top = topSelf(p, 15, true);
        const busyMs = topSelf(p, Infinity, true).reduce((s, f) => s + f.ms, 0);
        console.log(`${builds[i]!.label}: ${fmtInt(busyMs)} ms busy in the profiled second (${path.relative(ROOT, file)}); top self time:`);
        for (const f of top) console.log(`  ${(f.share * 100).toFixed(1).padStart(5)} %  ${f.ms.toFixed(1).padStart(6)} ms  ${f.name}`);
      }
    }
  } finally {
    await consumer.disconnect().catch(() => undefined);
    for (const c of [...children, ...extraChildren]) await c.stop('SIGTERM', 10_000).catch(() => undefined);
    if (process.env.BENCH_TRACKER_LOG_DIR) {
      children.forEach((c, i) => writeFileSync(path.join(process.env.BENCH_TRACKER_LOG_DIR!, `coinciding-${builds[i]!.label}.log`), c.output()));
    }
    await cleanup(admin, runs.flatMap((r) => [r.prefix, r.appId])).catch(() => 0);
    await admin.disconnect();
    for (const r of runs) removeDir(r.stateDir);
  }
}

if (require.main === module) main().catch((e) => { console.error(e); process.exit(1); });
