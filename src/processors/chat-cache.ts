// The tracker's cache of loaded chats. The state lives in the task's store; the cache only saves
// reads. It is bounded by a budget (cacheBytes, the task's share of STATE_CACHE) counted in an
// estimate of each chat's heap size, taken when a chat is loaded and again at each commit that
// changes it, so that trimming costs the chats it evicts, not the size of the cache. Chats are
// kept in the order they last changed; trimming evicts the least recently changed first.
//
// An evicted chat leaves its open messages behind, parked, when they are all in memory: they are
// what costs most to read again (a key range, an iterator in the store's binding, against one
// multi-get for a batch's chat, summary and seal records), and they are needed again when the
// chat's next message seals its conversation, which on a backlog is when a quiet chat is seen
// next. Parked messages are bounded by a budget of their own; a load takes them back.
import type { ChatMessage } from '../records/types';
import { type ChatState, type SealedSummary, isComplete } from '../sessionization/rules';

/** The default budget of one task (STATE_CACHE split across a process's tasks). */
export const DEFAULT_CACHE_BYTES = 8 * 1024 * 1024;

/**
 * The share of a task's budget that parks evicted chats' open messages. Measured on the 1M backlog
 * (BENCHMARKS.md, eleventh session): with a quarter or a half of the same budget parked, the
 * tracker ran 1.10x the rate of no parking at lower peak RSS; a half and a quarter ran alike, the
 * half at less RSS. A chat's remembered seals, most of its heap, are read back in the batch's one
 * multi-get; its open messages would each cost a key range.
 */
export const PARKED_SHARE = 0.5;

/** A task's cache budget split between cached chats and parked messages. */
export function cacheBudgets(bytes: number): { chats: number; parked: number } {
  const parked = Math.floor(bytes * PARKED_SHARE);
  return { chats: bytes - parked, parked };
}

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

/** What the cache keeps of a chat: its state, its open messages' arrival numbers, and the estimate it counted for it. */
export interface Cached {
  state: ChatState;
  seqOf: Map<ChatMessage, number>;
  heap: number;
}

/** The open messages of an evicted chat, as its message records hold them: each with its arrival sequence number. */
export interface Parked {
  messages: ChatMessage[];
  seqs: number[];
  heap: number;
}

/** An evicted chat's open messages, when they can be parked: all held, in gap mode's layout (thread mode keeps more per message). */
function parkable(e: Cached): Parked | null {
  const open = e.state.open;
  if (open.length === 0 || (e.state.window !== undefined && e.state.window !== null)) return null;
  let n = 0;
  let heap = 0;
  for (const c of open) {
    if (!isComplete(c)) return null;
    n += c.count;
    heap += c.bytes + MESSAGE_OVERHEAD * c.count;
  }
  const messages: ChatMessage[] = new Array(n);
  const seqs: number[] = new Array(n);
  let i = 0;
  for (const c of open) {
    for (const m of c.messages) {
      const seq = e.seqOf.get(m);
      if (seq === undefined) return null;
      messages[i] = m;
      seqs[i++] = seq;
    }
  }
  return { messages, seqs, heap };
}

export class ChatCache<E extends Cached> {
  /** Least recently changed first. */
  private readonly chats = new Map<string, E>();
  private total = 0;
  /** Least recently parked first. */
  private readonly parked = new Map<string, Parked>();
  private parkedTotal = 0;

  /** `budget` for the chats, `parkBudget` for the parked messages of evicted chats (0: none parked). */
  constructor(private readonly budget: number = DEFAULT_CACHE_BYTES, private readonly parkBudget = 0) {}

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

  /** Forgets a chat, parked messages included (its records are about to change behind the cache). */
  delete(chat: string): void {
    this.unpark(chat);
    const e = this.chats.get(chat);
    if (e === undefined) return;
    this.total -= e.heap;
    this.chats.delete(chat);
  }

  /** The parked open messages of an evicted chat, taken out of the cache (the chat is being loaded). */
  takeParked(chat: string): Parked | undefined {
    return this.unpark(chat);
  }

  /**
   * Evicts the least recently changed chats while over the budget, parking their open messages,
   * then the least recently parked messages while over theirs. The caller keeps no uncommitted
   * change in any chat, and clears the cache if the transaction that wrote them fails.
   */
  trim(): void {
    for (const [chat, e] of this.chats) {
      if (this.total <= this.budget) break;
      this.total -= e.heap;
      this.chats.delete(chat);
      const p = this.parkBudget > 0 ? parkable(e) : null;
      if (p !== null) {
        this.parked.set(chat, p);
        this.parkedTotal += p.heap;
      }
    }
    for (const [chat, p] of this.parked) {
      if (this.parkedTotal <= this.parkBudget) break;
      this.parkedTotal -= p.heap;
      this.parked.delete(chat);
    }
  }

  clear(): void {
    this.chats.clear();
    this.total = 0;
    this.parked.clear();
    this.parkedTotal = 0;
  }

  private unpark(chat: string): Parked | undefined {
    const p = this.parked.get(chat);
    if (p === undefined) return undefined;
    this.parkedTotal -= p.heap;
    this.parked.delete(chat);
    return p;
  }

  /** The estimated heap bytes of the cached chats. */
  get heapBytes(): number {
    return this.total;
  }

  /** The estimated heap bytes of the parked messages. */
  get parkedBytes(): number {
    return this.parkedTotal;
  }
}
