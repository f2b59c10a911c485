// Validation of input records (SPEC section 4). A value that is not a well-formed ChatMessage is
// rejected with an InvalidRecordError whose `reason` is short, stable and safe to put in a DLQ
// header. Future clock skew is not checked here: the tracker checks it against its wall clock.
import type { ChatMessage } from './types';

/** A record that cannot be decoded or fails validation. `reason` says why, for humans and the DLQ. */
export class InvalidRecordError extends Error {
  constructor(readonly reason: string, readonly detail?: string) {
    super(detail === undefined ? reason : `${reason} (${detail})`);
    this.name = 'InvalidRecordError';
  }
}

/** JSON.parse that fails with InvalidRecordError('not JSON'). */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InvalidRecordError('not JSON', (e as Error).message);
  }
}

/** The JSON type name of a value, as used in reasons: object, array, string, number, boolean, null. */
export function jsonTypeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** A value quoted for a reason, cut short so that a reason stays small. */
function show(v: unknown): string {
  let s: string;
  try { s = JSON.stringify(v) ?? String(v); } catch { s = String(v); }
  return s.length > 64 ? `${s.slice(0, 61)}...` : s;
}

// ISO-8601 / RFC 3339 date-time with a zone: 2013-01-26T15:04:04Z, 2013-01-26T15:04:04.123+01:00,
// 2013-01-26T15:04Z, 2013-01-26T15:04:04.123456789-0500, 2013-01-26T15:04:04+01.
const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)$/;

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const MAX_DATE_MS = 8.64e15;

/**
 * Parses an ISO-8601 date-time that names its zone (Z or an offset) into epoch milliseconds, or
 * returns null. A time without a zone is refused: it would mean a different instant on every
 * machine. Fractions finer than a millisecond are truncated.
 */
export function parseIsoTime(s: string): number | null {
  const m = ISO_RE.exec(s);
  if (m === null) return null;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = m[6] === undefined ? 0 : Number(m[6]);
  const ms = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return null;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const dim = month === 2 && leap ? 29 : DAYS[month - 1]!;
  if (day > dim) return null;
  let offsetMin = 0;
  if (m[8] === undefined) {
    const oh = Number(m[10]);
    const om = m[11] === undefined ? 0 : Number(m[11]);
    if (oh > 23 || om > 59) return null;
    offsetMin = (oh * 60 + om) * (m[9] === '-' ? -1 : 1);
  }
  const t = Date.UTC(year, month - 1, day, hour, minute, second, ms) - offsetMin * 60_000;
  return Number.isFinite(t) && Math.abs(t) <= MAX_DATE_MS ? t : null;
}

/**
 * A time as JSON carries it: integer epoch milliseconds, or an ISO-8601 string with a zone.
 * Returns epoch milliseconds, or null when the value is not a time.
 */
export function parseTime(v: unknown): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) && Math.abs(v) <= MAX_DATE_MS ? v : null;
  if (typeof v === 'string') return parseIsoTime(v.trim());
  return null;
}

function requiredString(o: Record<string, unknown>, name: string, prefix: string): string {
  const v = o[name];
  if (typeof v === 'string') {
    if (v.length === 0) throw new InvalidRecordError(`field ${prefix}${name} must not be empty`);
    return v;
  }
  if (v === undefined) throw new InvalidRecordError(`field ${prefix}${name} is missing`);
  throw new InvalidRecordError(`field ${prefix}${name} must be a string`, `got ${jsonTypeOf(v)}`);
}

function nullableString(o: Record<string, unknown>, name: string, prefix: string): string | null {
  const v = o[name];
  if (typeof v === 'string') return v;
  if (v === undefined || v === null) return null;
  throw new InvalidRecordError(`field ${prefix}${name} must be a string or null`, `got ${jsonTypeOf(v)}`);
}

/**
 * Turns a parsed JSON value (or a decoded Avro record) into a ChatMessage, or throws
 * InvalidRecordError. Unknown fields are ignored (a newer producer may send more); the result is
 * a fresh object with exactly the ChatMessage fields. `path` prefixes field names in reasons when
 * the message is nested in another record (e.g. "messages[3].").
 */
export function validateChatMessage(value: unknown, path = ''): ChatMessage {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidRecordError(path === '' ? `not a JSON object (got ${jsonTypeOf(value)})` : `field ${path.replace(/\.$/, '')} must be an object (got ${jsonTypeOf(value)})`);
  }
  const o = value as Record<string, unknown>;
  const message_id = requiredString(o, 'message_id', path);
  const chat_id = requiredString(o, 'chat_id', path);
  const sender_id = requiredString(o, 'sender_id', path);
  const rawSentAt = o.sent_at;
  if (rawSentAt === undefined) throw new InvalidRecordError(`field ${path}sent_at is missing`);
  const sent_at = parseTime(rawSentAt);
  if (sent_at === null) throw new InvalidRecordError(`field ${path}sent_at: not a time: ${show(rawSentAt)}`);
  const text = nullableString(o, 'text', path);
  const chat_type = nullableString(o, 'chat_type', path);
  const rawFromMe = o.is_from_me;
  let is_from_me = false;
  if (rawFromMe !== undefined) {
    if (typeof rawFromMe !== 'boolean') throw new InvalidRecordError(`field ${path}is_from_me must be a boolean`, `got ${jsonTypeOf(rawFromMe)}`);
    is_from_me = rawFromMe;
  }
  const reply_to_message_id = nullableString(o, 'reply_to_message_id', path);
  const account_id = nullableString(o, 'account_id', path);
  const m: ChatMessage = { message_id, chat_id, sender_id, sent_at, text, chat_type, is_from_me, reply_to_message_id, account_id };
  // Only in a sealed conversation's messages (thread mode); an input message's is ignored. Null
  // (a thread's first message) and absent (gap mode) read the same: absent.
  if (path !== '' && o.linked_message_id !== undefined) {
    const linked = nullableString(o, 'linked_message_id', path);
    if (linked !== null) m.linked_message_id = linked;
  }
  return m;
}

/** Parses one JSON text (a record value, a line of a JSON Lines file) into a ChatMessage. */
export function parseChatMessageJson(text: string): ChatMessage {
  return validateChatMessage(parseJson(text));
}
