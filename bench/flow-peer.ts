// The youngest Node peer, @kafkats/flow (a Kafka-Streams-like DSL on its own Kafka client), doing
// the tracker's job as far as its DSL allows: group by chat, session windows with the same gap,
// exactly_once. Run as a child process by the throughput benchmark.
//
// What its DSL offers and what this uses (@kafkats/flow 0.12.0):
// - SessionWindows.withInactivityGap(gap) with count() and reduce() only: windowed aggregate()
//   ignores the session windows and builds fixed windows of `gap` (WindowedAggregateNode), so the
//   sessions' message ids are collected by reduce() over the ids (string concatenation).
// - No grace, no suppress, no emit-on-window-close: every input record forwards the session's
//   new value (and a tombstone for each session it merged). The sealed sessions are the last
//   value of each (chat, window) that no tombstone removed, once the input is consumed.
// - Event time is the record timestamp (the benchmark produces records with timestamp = sent_at).
// - State: the default in-memory session store with a changelog topic; no RocksDB provider ships.
//
// Environment: BOOTSTRAP, APPLICATION_ID, INPUT, OUTPUT, STATE_DIR, GAP_MS.
import { flow, SessionWindows, string } from '@kafkats/flow';

async function main(): Promise<void> {
  const gapMs = Number(process.env.GAP_MS ?? 5_400_000);
  const app = flow({
    applicationId: process.env.APPLICATION_ID!,
    client: { brokers: [process.env.BOOTSTRAP ?? '127.0.0.1:9092'], clientId: 'bench-flow' } as never,
    processingGuarantee: 'exactly_once',
    stateDir: process.env.STATE_DIR,
    changelog: { topicConfigs: { 'retention.ms': '-1' } },
  });
  app.stream(process.env.INPUT!, { key: string(), value: string(), offsetReset: 'earliest' })
    .mapValues((v) => {
      try { return String((JSON.parse(v ?? '') as { message_id?: unknown }).message_id ?? ''); } catch { return ''; }
    })
    .groupByKey({ key: string(), value: string() })
    .windowedBy(SessionWindows.withInactivityGap(gapMs))
    .reduce((a, b) => `${a}\n${b}`, { value: string() })
    .toStream()
    .to(process.env.OUTPUT!);
  const t0 = Date.now();
  await app.start();
  console.log(JSON.stringify({ event: 'running', ms: Date.now() - t0 }));
  const stop = () => {
    app.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => { console.error(JSON.stringify({ event: 'failed', error: String(e?.stack ?? e) })); process.exit(1); });
