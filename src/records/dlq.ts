// Dead-letter records (SPEC section 3, `*.dlq`): the original key and value bytes, untouched, the
// original headers, and headers saying what failed and where the record came from, so that a
// record can be inspected, fixed and replayed to its source topic.
import type { IHeaders, Message } from 'kafkajs';

export const DLQ_HEADERS = {
  reason: 'x-dlq-reason',
  errorClass: 'x-dlq-error-class',
  sourceTopic: 'x-dlq-source-topic',
  sourcePartition: 'x-dlq-source-partition',
  sourceOffset: 'x-dlq-source-offset',
  failedAt: 'x-dlq-failed-at',
} as const;

/** The record that failed, as a kafkajs consumer hands it over. */
export interface DlqSource {
  key: Buffer | string | null | undefined;
  value: Buffer | string | null | undefined;
  headers?: IHeaders | undefined;
}

export interface DlqInfo {
  /** Why the record failed (e.g. InvalidRecordError.message). */
  reason: string;
  sourceTopic: string;
  partition: number;
  offset: string | number | bigint;
  /** Class of the error; defaults to InvalidRecordError. */
  errorClass?: string;
  /** When it failed; defaults to now. */
  failedAt?: Date | number;
}

/** Header values are bytes on the wire; a reason is kept under 4 KiB. */
const MAX_REASON_CHARS = 4000;

/** Builds the DLQ record for a failed input record. */
export function toDlqMessage(source: DlqSource, info: DlqInfo): Message {
  const headers: IHeaders = {};
  if (source.headers) {
    for (const [name, value] of Object.entries(source.headers)) {
      // A record that is dead-lettered a second time gets fresh x-dlq-* headers.
      if (value !== undefined && !name.startsWith('x-dlq-')) headers[name] = value;
    }
  }
  const failedAt = info.failedAt === undefined ? new Date() : new Date(info.failedAt);
  const reason = info.reason.length > MAX_REASON_CHARS ? `${info.reason.slice(0, MAX_REASON_CHARS - 3)}...` : info.reason;
  headers[DLQ_HEADERS.reason] = reason;
  headers[DLQ_HEADERS.errorClass] = info.errorClass ?? 'InvalidRecordError';
  headers[DLQ_HEADERS.sourceTopic] = info.sourceTopic;
  headers[DLQ_HEADERS.sourcePartition] = String(info.partition);
  headers[DLQ_HEADERS.sourceOffset] = String(info.offset);
  headers[DLQ_HEADERS.failedAt] = failedAt.toISOString();
  return {
    key: source.key ?? null,
    value: source.value ?? null,
    headers,
  };
}

/** reason and errorClass for toDlqMessage from a caught error. */
export function dlqErrorInfo(err: unknown): { reason: string; errorClass: string } {
  if (err instanceof Error) return { reason: err.message || err.name, errorClass: err.name || err.constructor.name };
  return { reason: String(err), errorClass: typeof err };
}
