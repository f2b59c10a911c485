// The analyzer interface: every pass is run by one analyzer, which turns a conversation into a
// JSON result. Errors say whether trying again could help (an LLM timeout) or not (no template).
import type { Conversation, JsonObject } from './types';
import type { AnalyzerKind, PassDefinition } from './passes';

export interface AnalysisContext {
  pass: PassDefinition;
  /** Aborted when the processor shuts down or the attempt's time is up. */
  signal: AbortSignal;
}

export interface Analyzer {
  readonly kind: AnalyzerKind;
  analyze(conversation: Conversation, ctx: AnalysisContext): Promise<JsonObject>;
}

export type AnalyzerRegistry = Record<AnalyzerKind, Analyzer>;

export class AnalysisError extends Error {
  constructor(message: string, readonly retryable: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AnalysisError';
  }
}

/** Whether another attempt could succeed: AnalysisError says so; unknown errors are assumed to be transient. */
export function isRetryable(err: unknown): boolean {
  const r = (err as { retryable?: unknown })?.retryable;
  return typeof r === 'boolean' ? r : true;
}

/** Median of numbers (mean of the middle two for an even count); null for none. */
export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function round(x: number, digits = 4): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
