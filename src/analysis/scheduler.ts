// Bounded-concurrency execution of pass runs in priority order across conversations: every
// (conversation, pass) waits in one PriorityQueue ordered by (pass priority desc, arrival), and
// `concurrency` workers take from it. A backlog of low-priority work therefore never delays a
// high-priority pass by more than the runs already in progress.
import type { Logger } from 'pino';
import { logger } from '../log';
import { backoffDelay, isTransientPgError } from '../db/errors';
import { errorSummary } from '../db/pool';
import type { RunStatus } from '../db/analysis';
import type { PassDefinition } from './passes';
import { PriorityQueue } from './priority-queue';
import { metrics, StoppedError, type Outcome, type PassRunner } from './runner';
import type { Conversation } from './types';

/** The final outcome of a submitted run (never 'busy'). */
export type FinalOutcome = Exclude<Outcome, { kind: 'busy' }>;

interface Task {
  conversation: Conversation;
  pass: PassDefinition;
  resolve: (o: FinalOutcome) => void;
  reject: (e: unknown) => void;
  unexpectedFailures: number;
}

export interface SchedulerOptions {
  concurrency: number;
  log?: Logger;
  redo?: RunStatus[];
  /**
   * What to do when running a task throws something other than a recorded failure (a database
   * error that is not transient, a bug): 'retry' it after a backoff (stream processing: never drop
   * work) or 'reject' the task's promise (backfill: report it).
   */
  onUnexpected?: 'retry' | 'reject';
}

export class PassScheduler {
  private readonly queue = new PriorityQueue<Task>();
  private readonly idle: (() => void)[] = [];
  private readonly delayed = new Set<{ timer: NodeJS.Timeout; task: Task }>();
  private readonly workers: Promise<void>[] = [];
  private readonly stopCtrl = new AbortController();
  private inProgress = 0;
  private stopping = false;
  private readonly log: Logger;

  constructor(private readonly runner: PassRunner, private readonly opts: SchedulerOptions) {
    if (!Number.isInteger(opts.concurrency) || opts.concurrency < 1) throw new Error(`concurrency must be a positive integer, got ${opts.concurrency}`);
    this.log = opts.log ?? logger('AnalysisPasses');
    for (let i = 0; i < opts.concurrency; i++) this.workers.push(this.work());
  }

  /** Runs waiting, delayed or in progress. */
  get size(): number { return this.queue.size + this.delayed.size + this.inProgress; }

  /** Queues the pass on the conversation; resolves with its recorded outcome. */
  submit(conversation: Conversation, pass: PassDefinition): Promise<FinalOutcome> {
    if (this.stopping) return Promise.reject(new StoppedError());
    return new Promise<FinalOutcome>((resolve, reject) => {
      this.enqueue({ conversation, pass, resolve, reject, unexpectedFailures: 0 });
    });
  }

  private enqueue(task: Task): void {
    this.queue.push(task, task.pass.priority);
    metrics.queued.set(this.queue.size);
    this.idle.shift()?.();
  }

  private later(task: Task, ms: number): void {
    const entry = { task, timer: setTimeout(() => { this.delayed.delete(entry); if (this.stopping) task.reject(new StoppedError()); else this.enqueue(task); }, ms) };
    this.delayed.add(entry);
  }

  private async work(): Promise<void> {
    for (;;) {
      if (this.stopping) return;
      const task = this.queue.pop();
      if (task === undefined) {
        await new Promise<void>((r) => this.idle.push(r));
        continue;
      }
      metrics.queued.set(this.queue.size);
      this.inProgress++;
      try {
        const o = await this.runner.execute(task.conversation, task.pass, { redo: this.opts.redo, signal: this.stopCtrl.signal });
        if (o.kind === 'busy') this.later(task, o.retryInMs);
        else task.resolve(o);
      } catch (e) {
        if (e instanceof StoppedError || this.stopping) { task.reject(e instanceof StoppedError ? e : new StoppedError()); }
        else if ((this.opts.onUnexpected ?? 'retry') === 'reject') { task.reject(e); }
        else {
          task.unexpectedFailures++;
          const delay = backoffDelay(task.unexpectedFailures - 1, 1000, 30_000);
          this.log.error({ err: errorSummary(e), transient: isTransientPgError(e), pass: task.pass.name, conversation_id: task.conversation.conversation_id, retryInMs: delay },
            'analysis run could not be recorded; trying again later');
          this.later(task, delay);
        }
      } finally {
        this.inProgress--;
      }
    }
  }

  /**
   * Stops: nothing new starts; waiting runs are rejected with StoppedError (not recorded, so the
   * input is not committed and they run after a restart); runs in progress get up to graceMs to
   * finish, then are aborted (their claims given back).
   */
  async stop(graceMs = 30_000): Promise<void> {
    if (this.stopping) { await Promise.all(this.workers); return; }
    this.stopping = true;
    for (const t of this.queue.drain()) t.reject(new StoppedError());
    metrics.queued.set(0);
    for (const d of this.delayed) { clearTimeout(d.timer); d.task.reject(new StoppedError()); }
    this.delayed.clear();
    for (const wake of this.idle.splice(0)) wake();
    const all = Promise.all(this.workers);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), graceMs); });
    if ((await Promise.race([all.then(() => 'done' as const), timeout])) === 'timeout') {
      this.log.warn({ graceMs }, 'analysis runs still in progress at shutdown; aborting them');
      this.stopCtrl.abort(new StoppedError());
    }
    clearTimeout(timer);
    await all;
  }
}
