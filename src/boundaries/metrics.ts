// Conversation-level metrics of the disentanglement corpus (its README; the authors' evaluation):
// conversations are the connected components of the reply links; each metric compares predicted
// and gold conversations over the same messages.
//   1 - scaled VI:  100 * (1 - VI / log2(n)), VI = H(U|V) + H(V|U) in bits, n messages
//   ARI:            adjusted Rand index (Hubert & Arabie), * 100
//   matched clusters: a gold conversation of 2+ messages counts as found only when some predicted
//     conversation has exactly its messages; precision = found / predicted conversations of 2+,
//     recall = found / gold conversations of 2+, F = harmonic mean (all * 100)
// Several files score together by pooling their conversations (as the corpus' tools do): a
// conversation never spans two files.

export type Clustering = number[][];

/**
 * Conversations from links, as the corpus' tools build them: links are (child, parent) with
 * child >= parent (a self link for a start); the nodes are every child and every parent; the
 * components are then cut to the nodes >= cutoff (the first evaluated line), in ascending order.
 */
export function clustersFromLinks(links: Iterable<readonly [number, number]>, cutoff: number): Clustering {
  const parent = new Map<number, number>();
  const find = (x: number): number => {
    let r = x;
    while (parent.get(r)! !== r) r = parent.get(r)!;
    while (parent.get(x)! !== r) { const nx = parent.get(x)!; parent.set(x, r); x = nx; }
    return r;
  };
  const add = (x: number) => { if (!parent.has(x)) parent.set(x, x); };
  for (const [c, p] of links) {
    add(c); add(p);
    const a = find(c), b = find(p);
    if (a !== b) { if (a < b) parent.set(b, a); else parent.set(a, b); }
  }
  const groups = new Map<number, number[]>();
  for (const x of [...parent.keys()].sort((a, b) => a - b)) {
    if (x < cutoff) continue;
    const r = find(x);
    const g = groups.get(r);
    if (g) g.push(x); else groups.set(r, [x]);
  }
  return [...groups.values()].sort((a, b) => a[0]! - b[0]!);
}

export interface Scores {
  messages: number;
  goldConversations: number;
  predictedConversations: number;
  oneMinusVI: number;
  ari: number;
  precision: number;
  recall: number;
  f: number;
}

/** One file's pair of clusterings over the same messages. */
export interface ClusteringPair { gold: Clustering; predicted: Clustering }

/**
 * Scores predicted against gold conversations, pooled over files. Each file's predicted clustering
 * must cover exactly the gold one's messages (throws otherwise).
 */
export function scoreClusterings(pairs: readonly ClusteringPair[]): Scores {
  // Contingency: per file, predicted cluster x gold cluster -> overlap.
  const cells: number[] = [];
  const rowSizes: number[] = [];
  const colSizes: number[] = [];
  let n = 0;
  let goldMulti = 0, predMulti = 0, matched = 0;
  for (const { gold, predicted } of pairs) {
    const goldOf = new Map<number, number>();
    gold.forEach((g, gi) => { for (const x of g) goldOf.set(x, gi); });
    let covered = 0;
    for (const p of predicted) {
      const counts = new Map<number, number>();
      for (const x of p) {
        const gi = goldOf.get(x);
        if (gi === undefined) throw new Error(`predicted message ${x} is not among the gold messages`);
        counts.set(gi, (counts.get(gi) ?? 0) + 1);
      }
      covered += p.length;
      rowSizes.push(p.length);
      for (const c of counts.values()) cells.push(c);
    }
    const total = gold.reduce((s, g) => s + g.length, 0);
    if (covered !== total) throw new Error(`predicted clustering covers ${covered} messages, gold ${total}`);
    for (const g of gold) colSizes.push(g.length);
    n += total;
    // Matched clusters (2+ messages).
    const predKeys = new Set<string>();
    for (const p of predicted) if (p.length >= 2) { predMulti++; predKeys.add([...p].sort((a, b) => a - b).join(',')); }
    for (const g of gold) if (g.length >= 2) {
      goldMulti++;
      if (predKeys.has([...g].sort((a, b) => a - b).join(','))) matched++;
    }
  }
  const lg = Math.log2;
  // VI = H(U|V) + H(V|U) = 2 H(U,V) - H(U) - H(V), in bits.
  let hJoint = 0, hU = 0, hV = 0;
  for (const r of rowSizes) hU -= (r / n) * lg(r / n);
  for (const c of colSizes) hV -= (c / n) * lg(c / n);
  for (const c of cells) hJoint -= (c / n) * lg(c / n);
  const vi = 2 * hJoint - hU - hV;
  const oneMinusVI = n > 1 ? 100 * (1 - vi / lg(n)) : 100;

  const choose2 = (k: number) => (k * (k - 1)) / 2;
  let index = 0, sumRows = 0, sumCols = 0;
  for (const c of cells) index += choose2(c);
  for (const r of rowSizes) sumRows += choose2(r);
  for (const c of colSizes) sumCols += choose2(c);
  const expected = n > 1 ? (sumRows * sumCols) / choose2(n) : 0;
  const max = 0.5 * (sumRows + sumCols);
  const ari = max - expected === 0 ? (index === max ? 100 : 0) : (100 * (index - expected)) / (max - expected);

  const precision = predMulti > 0 ? (100 * matched) / predMulti : 0;
  const recall = goldMulti > 0 ? (100 * matched) / goldMulti : 0;
  const f = matched > 0 ? (2 * precision * recall) / (precision + recall) : 0;
  return {
    messages: n, goldConversations: colSizes.length, predictedConversations: rowSizes.length,
    oneMinusVI, ari, precision, recall, f,
  };
}
