// Runs a linker over a corpus log and scores it against the annotation, the way the corpus' tools
// do: links of the evaluated lines only (from the first annotated line on), conversations as their
// connected components, restricted to the lines the annotation covers.

import { clustersFromLinks, type ClusteringPair } from './metrics';
import { firstAnnotated, type CorpusLog } from './corpus';
import { linkMessage, type ThreadModel } from './model';
import { createWindow, rememberMessage } from './window';

/** The time-gap rule: a message follows the chat's previous message unless more than this passed. */
export const GAP_RULE_MS = 90 * 60_000;

/** parents[i] = the line that line i replies to, or i itself (a start; always for system lines). */
export type Parents = number[];

function indexOfId(log: CorpusLog): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of log.lines) if (l.message) m.set(l.message.message_id, l.index);
  return m;
}

/** The model over the whole log in order (context lines too), through linkMessage/rememberMessage. */
export function modelParents(log: CorpusLog, model: ThreadModel): Parents {
  const window = createWindow(model.window);
  const ids = indexOfId(log);
  return log.lines.map((l) => {
    if (!l.message) return l.index;
    const r = linkMessage(window, l.message, model);
    rememberMessage(window, l.message, r.parentMessageId, r.entry);
    return r.parentMessageId === null ? l.index : ids.get(r.parentMessageId)!;
  });
}

export function gapParents(log: CorpusLog, gapMs: number = GAP_RULE_MS): Parents {
  let prev: { index: number; t: number } | null = null;
  return log.lines.map((l) => {
    if (!l.message) return l.index;
    const p: number = prev !== null && l.message.sent_at - prev.t <= gapMs ? prev.index : l.index;
    prev = { index: l.index, t: l.message.sent_at };
    return p;
  });
}

export function singletonParents(log: CorpusLog): Parents {
  return log.lines.map((l) => l.index);
}

/** Gold and predicted conversations of the annotated lines (the log must have an annotation). */
export function clusteringsOf(log: CorpusLog, parents: Parents): ClusteringPair {
  if (!log.gold) throw new Error(`${log.name}: no annotation`);
  const cutoff = firstAnnotated(log.gold);
  const goldLinks: [number, number][] = [];
  for (const [c, ps] of log.gold) for (const p of ps) goldLinks.push([c, p]);
  const gold = clustersFromLinks(goldLinks, cutoff);
  const covered = new Set<number>();
  for (const g of gold) for (const x of g) covered.add(x);
  const predLinks: [number, number][] = [];
  for (let i = cutoff; i < parents.length; i++) predLinks.push([i, parents[i]!]);
  const predicted = clustersFromLinks(predLinks, cutoff)
    .map((c) => c.filter((x) => covered.has(x)))
    .filter((c) => c.length > 0);
  const seen = new Set<number>();
  for (const c of predicted) for (const x of c) seen.add(x);
  for (const x of covered) if (!seen.has(x)) predicted.push([x]);
  return { gold, predicted };
}
