// When the demo is done, decided from committed state only, in an order that cannot see a stale
// view (issue 14, item 9):
//   1. the tracker's committed input offsets (its consumer group's, committed in the same
//      transactions as its outputs) have reached the input's end: every message's effects are
//      committed;
//   2. the tracker reports no open conversation, as of its last committed transaction: the
//      wall-clock seals that follow catching up are committed too;
//   3. only then is conversation.sealed read (read_committed): it holds everything sealed;
//   4. every one of those conversations is loaded into PostgreSQL and analysed (no pass pending or
//      running).
// Reading the sealed topic before asking the tracker (as the demo once did) can return an early,
// partial list while the answer about open conversations, which waits for the tracker's turn,
// describes the state after the remaining seals: done too early, with wrong numbers.

export interface DemoProbes<C> {
  /** Partitions whose committed tracker offset is below the input's end (0: all caught up). */
  inputBehind(): Promise<{ behind: number; committed: number; end: number }>;
  /** Open conversations across every partition as of their last commits; null while unknown. */
  openConversations(): Promise<number | null>;
  /** Everything on conversation.sealed (read_committed), and the number of late messages. */
  sealed(): Promise<C[]>;
  late(): Promise<number>;
  /** Of these conversations: how many are loaded, analysed, and pass runs still in progress. */
  downstream(conversations: C[]): Promise<{ loaded: number; analysed: number; busy: number }>;
}

export interface DemoProgress {
  committed: number;
  end: number;
  open: number | null;
  sealed: number;
  late: number;
  loaded: number;
  analysed: number;
  busy: number;
}

export function progressText(p: DemoProgress): string {
  return `  input committed ${p.committed}/${p.end}, open ${p.open ?? '?'}, sealed ${p.sealed}, late ${p.late}, `
    + `loaded ${p.loaded}, analysed ${p.analysed}, passes in progress ${p.busy}`;
}

export async function waitForDemo<C>(probes: DemoProbes<C>, opts: {
  timeoutMs: number; pollMs?: number; onProgress?: (p: DemoProgress) => void; now?: () => number; sleep?: (ms: number) => Promise<void>;
}): Promise<{ sealed: C[]; late: number }> {
  const now = opts.now ?? Date.now;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const deadline = now() + opts.timeoutMs;
  for (;;) {
    const input = await probes.inputBehind();
    const open = input.behind === 0 ? await probes.openConversations() : null;
    // Read after the two answers above, never before: what they describe is committed, so visible.
    const sealed = await probes.sealed();
    const late = await probes.late();
    const d = sealed.length > 0 ? await probes.downstream(sealed) : { loaded: 0, analysed: 0, busy: 0 };
    const p: DemoProgress = { committed: input.committed, end: input.end, open, sealed: sealed.length, late, ...d };
    opts.onProgress?.(p);
    if (input.behind === 0 && open === 0 && sealed.length > 0 && d.loaded === sealed.length && d.analysed === sealed.length && d.busy === 0) {
      return { sealed, late };
    }
    if (now() > deadline) throw new Error(`demo did not finish within ${opts.timeoutMs / 1000}s (${progressText(p).trim()})`);
    await sleep(opts.pollMs ?? 500);
  }
}
