// The tracker's index of its open chats by due time: the first wall-clock time at which a
// caught-up punctuation seals one of a chat's conversations (past the deadline and settled). Local
// keys of the task's store, not changelogged (a restore rebuilds them from the chat records):
//   d:<due, 15 digits>:<chat>   one entry per chat with an open conversation, in due order
//   x␀<chat>                    the due time the chat is indexed under, to replace its entry
// A punctuation reads only the entries that are due; the seal timer reads the first one.
import type { StateStore, StoreOp } from '../runtime/state-store';

const pad = (n: number) => String(Math.max(0, Math.floor(n))).padStart(15, '0');
const entryKey = (due: number, chat: string) => `d:${pad(due)}:${chat}`;
/** Where an entry's chat id starts: after `d:`, 15 digits and `:`. */
const CHAT_AT = 18;
/** The key that holds the due time a chat is indexed under. */
export const indexedKey = (chat: string) => `x\u0000${chat}`;

export class DueIndex {
  /**
   * No entry is below this time (-Infinity: not known yet; Infinity: the index is empty). Reads
   * start here rather than at the index's first key: entries are deleted as chats are sealed, and
   * RocksDB keeps their tombstones until a compaction, so a read from the start would step over
   * every chat sealed since then. Lowered by every write of an entry, raised to the first entry
   * that first() finds.
   */
  private floor = -Infinity;

  constructor(private readonly store: StateStore) {}

  /** The store writes that move a chat's entry from `was` to `due` (null: no entry); lowers the floor to `due`. */
  move(ops: StoreOp[], chat: string, was: number | null, due: number | null): void {
    if (was !== null) ops.push({ type: 'del', key: entryKey(was, chat) });
    if (due === null) {
      ops.push({ type: 'del', key: indexedKey(chat) });
      return;
    }
    ops.push({ type: 'put', key: entryKey(due, chat), value: Buffer.alloc(0) }, { type: 'put', key: indexedKey(chat), value: Buffer.from(String(due)) });
    if (due < this.floor) this.floor = due;
  }

  /** The earliest due time of the store's index (null: empty); what is committed, since moves are written after their commit. */
  async first(): Promise<number | null> {
    const floor = this.floor;
    if (floor === Infinity) return null;
    const [entry] = await this.store.range(this.start(), 'd;', 1);
    const due = entry === undefined ? null : Number(entry[0].slice(2, 17));
    // Everything is at or above the first entry (unless a move lowered the floor meanwhile: keep that).
    if (this.floor === floor) this.floor = due ?? Infinity;
    return due;
  }

  /** True when no entry is due at `now`, known without a read. */
  nothingDueAt(now: number): boolean {
    return this.floor > now;
  }

  /**
   * Up to `limit` chats due at `now`, in due order, after the entry `cursor` (null: from the
   * start), and the cursor to continue from.
   */
  async dueAt(now: number, limit: number, cursor: string | null): Promise<{ chats: string[]; cursor: string | null }> {
    const rows = await this.store.range(cursor === null ? this.start() : `${cursor}\u0000`, `d:${pad(now + 1)}`, limit);
    return { chats: rows.map(([k]) => k.slice(CHAT_AT)), cursor: rows.length > 0 ? rows[rows.length - 1]![0] : cursor };
  }

  /** The first `limit` entries, for status queries. */
  async next(limit: number): Promise<{ chat_id: string; deadline: number }[]> {
    const rows = await this.store.range('d:', 'd;', limit);
    return rows.map(([k]) => ({ chat_id: k.slice(CHAT_AT), deadline: Number(k.slice(2, 17)) }));
  }

  /** Deletes every entry (a version-1 store's, rebuilt once its chats are converted). */
  async clear(): Promise<void> {
    const ops: StoreOp[] = [];
    await this.store.scan('d:', 'd;', (k) => { ops.push({ type: 'del', key: k }); });
    await this.store.write(ops);
  }

  /** Where reads start: the index's first key, or the floor's. */
  private start(): string {
    return Number.isFinite(this.floor) ? `d:${pad(this.floor)}` : 'd:';
  }
}
