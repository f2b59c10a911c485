// A binary heap ordered by (priority descending, arrival ascending): the highest priority comes
// out first, and among equals the oldest. Work of a high-priority pass that arrives after a long
// backlog of low-priority work is therefore taken next, not after the backlog.

interface Node<T> { item: T; priority: number; seq: number }

export class PriorityQueue<T> {
  private heap: Node<T>[] = [];
  private seq = 0;

  get size(): number { return this.heap.length; }

  push(item: T, priority: number): void {
    this.heap.push({ item, priority, seq: this.seq++ });
    this.up(this.heap.length - 1);
  }

  peek(): T | undefined { return this.heap[0]?.item; }

  pop(): T | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) { h[0] = last; this.down(0); }
    return top.item;
  }

  /** Removes and returns every item, in priority order. */
  drain(): T[] {
    const out: T[] = [];
    for (let x = this.pop(); x !== undefined; x = this.pop()) out.push(x);
    return out;
  }

  private before(a: Node<T>, b: Node<T>): boolean {
    return a.priority > b.priority || (a.priority === b.priority && a.seq < b.seq);
  }

  private up(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private down(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.before(h[l]!, h[m]!)) m = l;
      if (r < h.length && this.before(h[r]!, h[m]!)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}
