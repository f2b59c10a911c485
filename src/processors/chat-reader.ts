// Reads chats from a task's store, in the layout chat-state-layout.ts describes: one chat, or many
// at once in as few store reads as the layout allows (the chat and summary records of all of them
// in one multi-get, their remembered seals in another, then only the ranges a chat needs).
import type { StateStore } from '../runtime/state-store';
import type { Parked } from './chat-cache';
import {
  type MetaRecord, type StoredChat, assembleChat, legacyMessagePrefix, messagePrefix, metaKey, needsMessages, parseMeta, prefixEnd, sealedKey,
  summaryKey, windowPrefix,
} from './chat-state-layout';
import { STATE_VERSION } from '../sessionization/rules';

/** Chats whose ranges are read at once: each holds open iterators in the store. */
export const READ_CONCURRENCY = 32;

/** What a caller already read of a chat, or holds of it (`parked`: its open messages, from a cache). */
export interface KnownRecords { meta: Buffer | null; summary: Buffer | null; rec?: MetaRecord; sealed?: [string, Buffer][]; parked?: Parked }

export class ChatReader {
  constructor(
    private readonly store: StateStore,
    /** Whether chats of a type are split in thread mode (their open messages are always read). */
    private readonly isThreadType: (chatType: string | null) => boolean,
  ) {}

  /**
   * A chat (null: the store has no record of it): its chat record, summaries, remembered seals and
   * window, and its open messages only where it must (thread mode, a chat of no known type yet, a
   * version-2 chat to convert) or `withMessages`; parked messages, when given for a chat in gap
   * mode's layout, take the place of its message records (and make it whole, needed or not).
   */
  async read(chat: string, known?: KnownRecords, withMessages = false): Promise<StoredChat | null> {
    const meta = known === undefined ? await this.store.get(metaKey(chat)) : known.meta;
    if (!meta) return null;
    // The chat record says which of its other ranges hold anything: read only those, at once.
    const rec = known?.rec ?? parseMeta(meta);
    const held = known?.parked !== undefined && rec.o.length > 0 && rec.v === STATE_VERSION && rec.W === undefined ? known.parked : undefined;
    const messagesToo = held === undefined && rec.o.length > 0 && (withMessages || needsMessages(rec, this.isThreadType));
    const [summary, messages, sealed, window] = await Promise.all([
      rec.o.length > 0 && rec.v !== 2 ? (known?.summary ?? this.store.get(summaryKey(chat))) : null,
      messagesToo ? this.range(rec.v === 2 ? legacyMessagePrefix(chat) : messagePrefix(chat), Infinity) : null,
      known?.sealed ?? this.sealedRecords([chat], [rec]).then((r) => r[0]!),
      rec.W !== undefined ? this.range(windowPrefix(chat), 100_000) : [],
    ]);
    return assembleChat(chat, { meta: rec, summary, messages: messages ?? (rec.o.length > 0 ? null : []), held, sealed, window });
  }

  /** Chats, in the order given (null: not in the store), READ_CONCURRENCY chats' ranges at a time; `parked[i]`: the parked messages of chats[i]. */
  async readMany(chats: string[], withMessages = false, parked?: (Parked | undefined)[]): Promise<(StoredChat | null)[]> {
    // Chat and summary records of every chat in one read: most loads need nothing more.
    const n = chats.length;
    const heads = await this.store.getMany([...chats.map(metaKey), ...chats.map(summaryKey)]);
    // Then every chat's remembered seals in one read: the chat records name their keys.
    const recs = chats.map((_, i) => (heads[i] ? parseMeta(heads[i]!) : null));
    const sealed = await this.sealedRecords(chats, recs);
    const out: (StoredChat | null)[] = new Array(n);
    for (let from = 0; from < n; from += READ_CONCURRENCY) {
      const to = Math.min(n, from + READ_CONCURRENCY);
      const part = await Promise.all(chats.slice(from, to).map((chat, i) => this.read(chat, {
        meta: heads[from + i] ?? null, summary: heads[n + from + i] ?? null, rec: recs[from + i] ?? undefined, sealed: sealed[from + i],
        parked: parked?.[from + i],
      }, withMessages)));
      for (let i = 0; i < part.length; i++) out[from + i] = part[i]!;
    }
    return out;
  }

  /** A chat's open-message records, in key order. */
  openMessages(chat: string): Promise<[string, Buffer][]> {
    return this.range(messagePrefix(chat), Infinity);
  }

  /**
   * The remembered-seal records (`h␀`) of chats, per chat in key order, in one point read: their
   * keys are in the chat records (`h`), so no range is read (an iterator costs far more than a
   * batch of gets in the store's binding).
   */
  private async sealedRecords(chats: string[], recs: (MetaRecord | null)[]): Promise<[string, Buffer][][]> {
    const keys: string[] = [];
    for (let i = 0; i < chats.length; i++) for (const seq of recs[i]?.h ?? []) keys.push(sealedKey(chats[i]!, seq));
    const values = keys.length > 0 ? await this.store.getMany(keys) : [];
    const out: [string, Buffer][][] = [];
    let k = 0;
    for (const rec of recs) {
      const rows: [string, Buffer][] = [];
      for (const end = k + (rec?.h.length ?? 0); k < end; k++) if (values[k] !== undefined) rows.push([keys[k]!, values[k]!]);
      out.push(rows);
    }
    return out;
  }

  private range(prefix: string, limit: number): Promise<[string, Buffer][]> {
    return this.store.range(prefix, prefixEnd(prefix), limit);
  }
}
