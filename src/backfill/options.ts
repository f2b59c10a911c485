// Parsing of the backfill's knobs: the rate limit (`--rate`, BACKFILL_RATE), the time filters
// (`--since`, `--until`) and positive integers. Pure functions, so they are unit-tested directly.
import { parseDuration } from '../config';

export const DEFAULT_RATE_PER_SEC = 50;

/**
 * A rate in conversations per second: `50`, `50/s`, `3000/m`, `100/h`; `unlimited`, `none`, `off`
 * or `0` for no limit (null). Throws with a readable message otherwise.
 */
export function parseRate(text: string): number | null {
  const s = text.trim().toLowerCase();
  if (s === 'unlimited' || s === 'none' || s === 'off' || s === '0' || s === '0/s') return null;
  const m = /^(\d+(?:\.\d+)?)\s*(?:\/\s*(s|sec|second|m|min|minute|h|hour))?$/.exec(s);
  if (!m) throw new Error(`not a rate: "${text}" (use e.g. 50, 50/s, 600/m, or unlimited)`);
  const n = Number(m[1]);
  const per = m[2] === undefined || m[2].startsWith('s') ? 1 : m[2].startsWith('m') ? 60 : 3600;
  const rate = n / per;
  if (!(rate > 0) || !Number.isFinite(rate)) throw new Error(`not a rate: "${text}" (must be positive, or unlimited)`);
  return rate;
}

export function formatRate(rate: number | null): string {
  if (rate === null) return 'unlimited';
  return `${Number.isInteger(rate) ? rate : rate.toFixed(2)}/s`;
}

/**
 * A point in time: ISO-8601 (`2024-05-01`, `2024-05-01T12:00:00Z`), epoch milliseconds, or a
 * duration meaning that long ago (`7d`, `36h`, `90m`). Returns epoch milliseconds.
 */
export function parseTimeArg(text: string, now: number = Date.now()): number {
  const s = text.trim();
  if (/^\d{10,}$/.test(s)) return Number(s);
  if (/^\d+(?:\.\d+)?(ms|s|m|h|d)/.test(s) && !/^\d{4}-/.test(s)) {
    try { return now - parseDuration(s); } catch { /* fall through to a date */ }
  }
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new Error(`not a time: "${text}" (use ISO-8601 like 2024-05-01T00:00:00Z, epoch milliseconds, or an age like 7d)`);
  return t;
}

export function parsePositiveInt(text: string, what: string): number {
  const s = text.trim();
  if (!/^\d+$/.test(s) || Number(s) < 1) throw new Error(`${what} must be a positive integer, got "${text}"`);
  return Number(s);
}

/** How many conversations go to runPass at a time for a rate: about four rounds a second. */
export function chunkSizeFor(rate: number | null, max = 50): number {
  if (rate === null) return max;
  return Math.max(1, Math.min(max, Math.round(rate / 4)));
}
