// Parsers of command-line option values, for commander: a bad value stops the command before it
// connects to anything, with commander's "option '--x <v>' argument 'abc' is invalid. <why>".
import { InvalidArgumentError } from 'commander';
import { parsePositiveInt, parseTimeArg } from '../backfill/options';

/** A positive number of seconds (`30`, `2.5`). */
export function parseSeconds(v: string): number {
  const s = v.trim();
  if (!/^\d+(\.\d+)?$/.test(s) || Number(s) <= 0) throw new InvalidArgumentError('expected a positive number of seconds, e.g. 30');
  return Number(s);
}

/** A positive integer. */
export function parsePositive(v: string): number {
  try { return parsePositiveInt(v, 'the value'); } catch { throw new InvalidArgumentError('expected a positive integer'); }
}

/** A point in time: ISO-8601, epoch milliseconds, or an age like 7d; kept as given, checked now. */
export function parseTime(v: string): string {
  try { parseTimeArg(v); } catch (e) { throw new InvalidArgumentError((e as Error).message); }
  return v;
}
