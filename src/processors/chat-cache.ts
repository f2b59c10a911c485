// The tracker's cache of loaded chats. The state lives in the task's store; the cache only saves
// reads. It is bounded by a budget (cacheBytes, the task's share of STATE_CACHE) counted in an
// estimate of each chat's heap size, taken when a chat is loaded and again at each commit that
// changes it, so that trimming costs the chats it evicts, not the size of the cache. Chats are
// kept in the order they last changed; trimming evicts the least recently changed first.
import type { ChatState, SealedSummary } from '../sessionization/rules';

/** The default budget of one task (STATE_CACHE split across a process's tasks). */
export const DEFAULT_CACHE_BYTES = 8 * 1024 * 1024;

/** Heap estimate: per cached chat, per open message beyond its counted bytes, per remembered sealed id. */
const CHAT_OVERHEAD = 600;
const MESSAGE_OVERHEAD = 160;
const SEALED_ID_OVERHEAD = 32;

/**
 * Heap estimate of a remembered sealed conversation, kept with it: summaries never change once
 * made, and a chat's estimate is taken at every commit that changes it, so walking their ids each
 * time would cost the chat's whole remembered history per message.
 */
const summaryHeap = new WeakMap<SealedSummary, number>();
function sealedHeap(x: SealedSummary): number {
  let n = summaryHeap.get(x);
  if (n === undefined) {
    n = 0;
    for (const id of x.messageIds) n += id.length + SEALED_ID_OVERHEAD;
    summaryHeap.set(x, n);
  }
  return n;
}

/** A chat's heap size, estimated from what it holds: open messages held in memory (their share of the counted bytes) and remembered sealed ids. */
export function heapEstimate(state: ChatState): number {
  let n = CHAT_OVERHEAD;
  for (const c of state.open) {
    const held = c.messages.length;
    if (held > 0) n += (held === c.count ? c.bytes : Math.ceil(c.bytes * held / c.count)) + MESSAGE_OVERHEAD * held;
  }
  for (const x of state.sealed) n += sealedHeap(x);
  return n;
}

/** What the cache keeps of a chat: its state, and the estimate it counted for it. */
export interface Cached {
  state: ChatState;
  heap: number;
}

export class ChatCache<E extends Cached> {
  /** Least recently changed first. */
  private readonly chats = new Map<string, E>();
  private total = 0;

  constructor(private readonly budget: number = DEFAULT_CACHE_BYTES) {}

  get(chat: string): E | undefined {
    return this.chats.get(chat);
  }

  has(chat: string): boolean {
    return this.chats.has(chat);
  }

  /** A chat read from the store. */
  add(chat: string, e: E): void {
    this.delete(chat);
    e.heap = heapEstimate(e.state);
    this.total += e.heap;
    this.chats.set(chat, e);
  }

  /** A chat a commit changed: its estimate taken again, and it becomes the most recently changed. */
  changed(chat: string, e: E): void {
    const heap = heapEstimate(e.state);
    this.total += heap - e.heap;
    e.heap = heap;
    this.chats.delete(chat);
    this.chats.set(chat, e);
  }

  delete(chat: string): void {
    const e = this.chats.get(chat);
    if (e === undefined) return;
    this.total -= e.heap;
    this.chats.delete(chat);
  }

  /** Evicts the least recently changed chats while over the budget (the caller keeps no uncommitted change in any). */
  trim(): void {
    for (const [chat, e] of this.chats) {
      if (this.total <= this.budget) break;
      this.total -= e.heap;
      this.chats.delete(chat);
    }
  }

  clear(): void {
    this.chats.clear();
    this.total = 0;
  }

  /** The estimated heap bytes of the cached chats. */
  get heapBytes(): number {
    return this.total;
  }
}
