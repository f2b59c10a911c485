// Progress of a backfill on stderr: a bar redrawn in place, with rate and ETA, when stderr is a
// terminal; otherwise (a log file, CI) a plain line every few seconds and at each phase change.

export interface ProgressState {
  /** `scan`: reading conversation.sealed (counted in offsets) and checking PostgreSQL; `run`: running the pass. */
  phase: 'scan' | 'run';
  label: string;
  done: number;
  total: number;
  /** Shown after the counts, e.g. `completed 12, failed 0`. */
  detail?: string;
}

export interface ProgressSink {
  update(s: ProgressState): void;
  /** Final line of a phase; the bar (if any) is left on its own line. */
  end(message?: string): void;
}

export interface ProgressWriter {
  isTTY?: boolean;
  columns?: number;
  write(s: string): unknown;
}

export function fmtEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function fmtRate(perSec: number): string {
  if (!Number.isFinite(perSec) || perSec <= 0) return '0/s';
  return perSec >= 10 ? `${Math.round(perSec)}/s` : `${perSec.toFixed(1)}/s`;
}

export function bar(done: number, total: number, width: number): string {
  const f = total > 0 ? Math.min(1, done / total) : 1;
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}]`;
}

const pct = (done: number, total: number): string => `${total > 0 ? Math.floor((100 * done) / total) : 100}%`;

/** One line describing the state; `rate` in units per second since the phase started. */
export function progressLine(s: ProgressState, rate: number, withBar: number | null): string {
  // The scan counts offsets (records and the transaction markers between them), so that it ends
  // at the total; the detail says how many records they held.
  const unit = s.phase === 'scan' ? 'offsets' : 'conversations';
  const eta = rate > 0 && s.total > s.done ? ` ETA ${fmtEta((s.total - s.done) / rate)}` : '';
  const r = Number.isNaN(rate) ? '' : ` ${fmtRate(rate)}`;
  const head = `${s.label} ${s.phase === 'scan' ? 'scanning' : 'running'}`;
  const counts = `${s.done}/${s.total} ${unit} ${pct(s.done, s.total)}`;
  const b = withBar !== null ? ` ${bar(s.done, s.total, withBar)}` : '';
  return `${head}${b} ${counts}${r}${eta}${s.detail ? `  ${s.detail}` : ''}`;
}

export class Progress implements ProgressSink {
  private readonly tty: boolean;
  private phaseStart = 0;
  private lastDraw: number | null = null;
  private last: ProgressState | null = null;
  /** The state last written, so end() does not repeat it. */
  private drawnState: ProgressState | null = null;
  private lineOpen = false;

  constructor(private readonly out: ProgressWriter, private readonly opts: { intervalMs?: number; now?: () => number; tty?: boolean } = {}) {
    this.tty = opts.tty ?? out.isTTY === true;
  }

  private now(): number { return (this.opts.now ?? Date.now)(); }

  update(s: ProgressState): void {
    const now = this.now();
    if (this.last === null || s.phase !== this.last.phase || s.label !== this.last.label) {
      this.closeLine();
      this.phaseStart = now;
      this.lastDraw = null;
    }
    this.last = { ...s };
    const every = this.tty ? 100 : (this.opts.intervalMs ?? 5000);
    if (this.lastDraw === null || now - this.lastDraw >= every) this.draw(now);
  }

  private closeLine(): void {
    if (this.lineOpen) this.out.write('\n');
    this.lineOpen = false;
  }

  private draw(now: number): void {
    const s = this.last;
    if (s === null) return;
    // A rate over less than a quarter of a second says little: none is shown (nor an ETA).
    const elapsed = now - this.phaseStart;
    const rate = elapsed >= 250 ? s.done / (elapsed / 1000) : NaN;
    this.lastDraw = now;
    this.drawnState = s;
    if (this.tty) {
      const cols = this.out.columns ?? 100;
      let line = progressLine(s, rate, Math.max(10, Math.min(40, cols - 90)));
      if (line.length >= cols) line = line.slice(0, cols - 1);
      this.out.write(`\r\x1b[2K${line}`);
      this.lineOpen = true;
    } else {
      this.out.write(`${progressLine(s, rate, null)}\n`);
    }
  }

  end(message?: string): void {
    const s = this.last;
    if (s !== null && (this.drawnState === null || this.drawnState.done !== s.done || this.drawnState.detail !== s.detail || this.drawnState.total !== s.total)) {
      this.draw(this.now());
    }
    this.closeLine();
    this.last = null;
    this.drawnState = null;
    if (message) this.out.write(`${message}\n`);
  }
}

/** A sink that shows nothing (tests, --quiet). */
export const silentProgress: ProgressSink = { update: () => undefined, end: () => undefined };
