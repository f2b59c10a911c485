// The seal timer of one task: instead of waiting for the next fixed tick, a task arms one timer
// for the wall-clock moment at which its processor says a punctuation would seal something
// (Processor.nextDueAt: for the tracker, the earliest deadline of its index, + 1 ms), and
// punctuates then. One timer per task, never one per chat; re-armed whenever that moment moves
// (after every commit that wrote to the store: a batch, a seal) or a punctuation ran.
//
// The arithmetic is pure (planFire, onFire) so it is tested without Kafka or real time; the
// DeadlineTimer class binds it to a scheduler (setTimeout by default, a fake one in tests).
//
// Coalescing: two timer punctuations of one task start at least COALESCE_MS apart. A deadline
// that falls due within that window after a punctuation waits for the window's end and is sealed
// in one transaction with the others that fell due meanwhile. 10 ms because (a) a transaction
// costs several ms of broker round trips (AddPartitionsToTxn, Produce, EndTxn), and a producer's
// next transaction cannot begin until the previous commit's markers are written (the broker
// answers CONCURRENT_TRANSACTIONS for a few ms), so punctuations closer than that would queue
// behind each other anyway; (b) it bounds a task to 100 timer transactions per second however
// densely its deadlines fall (100k chats whose deadlines spread over a minute would otherwise ask
// for ~1,700 a second), while adding at most 10 ms to a seal, a fifth of the 50 ms p50 target.
//
// Clocks: setTimeout runs on the monotonic clock, deadlines are wall-clock. A timer never sleeps
// longer than maxDelayMs (PUNCTUATE_INTERVAL) before looking at the wall clock again, so a jump
// forward is noticed within that bound (the runtime's fixed tick also punctuates every task at
// that interval). A timer that wakes before its wall-clock moment (the clock went back, or setTimeout and
// Date.now rounded differently) does not punctuate: it sleeps again for what is left. A previous
// punctuation "in the future" (the clock went back past it) is forgotten, so coalescing cannot
// hold the timer for the length of the jump.
//
// Lead (SEAL_TIMER=prepare): the timer may fire `leadMs` before its moment, so that the task does
// the punctuation's work (the rules, the sealed events, the sends into an open transaction) ahead
// of it and only commits at the moment itself (stream-task.ts). The moment, `at`, is unchanged;
// only when the timer wakes moves.

export type SealTimerMode = 'deadline' | 'tick' | 'prepare';

export const COALESCE_MS = 10;

export interface TimerPolicy {
  /** 'deadline': arm for the next due time. 'tick' (the old behaviour, for comparison): only the
   * fixed tick and post-batch punctuations seal; the timer just continues a punctuation that
   * stopped at its seal bound with work left. */
  mode: SealTimerMode;
  /** Minimum spacing between two punctuations of one task (the coalescing window). */
  coalesceMs: number;
  /** Longest sleep before the wall clock is looked at again (PUNCTUATE_INTERVAL). */
  maxDelayMs: number;
}

/** The last punctuation of the task: when it ran (its `now`) and whether it sealed anything. */
export interface LastPunctuation { at: number; sealed: boolean }

export interface TimerInput {
  /** Processor.nextDueAt(): wall-clock ms from which a punctuation would seal something; null: nothing pending. */
  due: number | null;
  /** Wall clock now. */
  now: number;
  /** The task has read its partition to the end last known; rule 2 seals nothing otherwise. */
  caughtUp: boolean;
  last: LastPunctuation | null;
  /** How long before `at` the timer should wake, or that as a function of `at` (0 unless the task prepares its punctuations). */
  leadMs?: number | ((at: number) => number);
}

export interface Plan {
  /** Wall-clock ms at which to punctuate. */
  at: number;
  /** Wall-clock ms at which to wake for it: `at` less the lead. */
  wakeAt: number;
  /** How long to sleep first (at most maxDelayMs; may end before `wakeAt`, to look at the clock again). */
  delayMs: number;
}

/**
 * When to punctuate next, or null for no timer (nothing pending, or behind: a task that is not
 * caught up is punctuated by the batch that catches it up, or by the tick).
 */
export function planFire(input: TimerInput, policy: TimerPolicy): Plan | null {
  const { now, caughtUp } = input;
  let { due } = input;
  if (due === null || !caughtUp) return null;
  // Forget a punctuation that the wall clock says has not happened yet (the clock went back).
  const last = input.last !== null && input.last.at <= now ? input.last : null;
  if (policy.mode === 'tick') {
    // Only a continuation: the last punctuation sealed, and stopped with work already due.
    if (last === null || !last.sealed || due > last.at) return null;
  }
  // Due at or before a punctuation that sealed nothing: the processor cannot honour its due time
  // yet (a condition its due time does not reflect). Retry at the tick's pace, not in a loop.
  if (last !== null && !last.sealed && due <= last.at) due = last.at + policy.maxDelayMs;
  const at = last === null ? due : Math.max(due, last.at + policy.coalesceMs);
  const lead = typeof input.leadMs === 'function' ? input.leadMs(at) : input.leadMs ?? 0;
  const wakeAt = at - Math.max(0, lead);
  return { at, wakeAt, delayMs: Math.min(Math.max(0, wakeAt - now), policy.maxDelayMs) };
}

/** A timer woke at wall-clock `now` for a plan: punctuate, or sleep again (woke early, or the clock went back). */
export function onFire(plan: Plan, now: number): 'punctuate' | 'rearm' {
  return now >= plan.wakeAt ? 'punctuate' : 'rearm';
}

export interface Scheduler {
  now(): number;
  set(fn: () => void, delayMs: number): unknown;
  clear(handle: unknown): void;
}

export const realScheduler: Scheduler = {
  now: () => Date.now(),
  set: (fn, ms) => { const t = setTimeout(fn, ms); t.unref?.(); return t; },
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * One task's timer. The task calls update() with what planFire needs whenever it changes (after
 * each commit and punctuation); the timer calls `fire` with the plan's moment when the plan says
 * to wake, at most one punctuation at a time: until the task calls done(), further updates only
 * record their input.
 */
export class DeadlineTimer {
  private handle: unknown = null;
  private plan: Plan | null = null;
  private input: Omit<TimerInput, 'now'> = { due: null, caughtUp: false, last: null };
  private firing = false;
  private closed = false;

  constructor(
    private readonly policy: TimerPolicy,
    private readonly fire: (at: number) => void,
    private readonly sched: Scheduler = realScheduler,
  ) {}

  /** Wall-clock ms the timer is armed for, or null. */
  get armedAt(): number | null { return this.plan?.at ?? null; }
  get mode(): SealTimerMode { return this.policy.mode; }

  update(input: Omit<TimerInput, 'now'>): void {
    this.input = input;
    if (this.firing || this.closed) return;
    const plan = planFire({ ...input, now: this.sched.now() }, this.policy);
    if (plan === null) { this.disarm(); return; }
    // Already armed for the same moment: keep that timer (an update per batch costs nothing).
    if (this.plan !== null && this.plan.at === plan.at && this.plan.wakeAt === plan.wakeAt && this.handle !== null) return;
    this.arm(plan);
  }

  /** The punctuation that fire() started has finished (committed or failed): plan again. */
  done(): void {
    this.firing = false;
    this.update(this.input);
  }

  cancel(): void {
    this.closed = true;
    this.disarm();
  }

  private disarm(): void {
    if (this.handle !== null) this.sched.clear(this.handle);
    this.handle = null;
    this.plan = null;
  }

  private arm(plan: Plan): void {
    this.disarm();
    this.plan = plan;
    this.handle = this.sched.set(() => this.wake(plan), plan.delayMs);
  }

  private wake(plan: Plan): void {
    if (this.plan !== plan || this.closed) return;
    this.handle = null;
    const now = this.sched.now();
    if (onFire(plan, now) === 'rearm') {
      this.plan = null;
      this.update(this.input);
      return;
    }
    this.plan = null;
    this.firing = true;
    this.fire(plan.at);
  }
}
