// `npm run train:boundaries`: learns the thread model from the annotated Ubuntu IRC corpus and
// writes models/boundaries.json. Deterministic (fixed file order, fixed seed, no threads), CPU only,
// no network. Nothing at run time reads the corpus: only the model file is shipped.
//
// Data: $BOUNDARIES_DATA_DIR, else ../shared/data/irc-disentanglement beside the repository
// (the layout on CI); the training files are its ubuntu/train. ubuntu/dev, when present, is only
// scored and reported at the end (and recorded in the model's meta), never trained on.
//
// Objective: for each annotated message, a softmax over its candidates (none + the window's
// messages, features.ts), maximizing the probability of its gold parents (several links: their
// summed probability). Optimizer: Adam over mini-batches of messages, a few epochs.
// Two stages are trained together: a linear first stage over every candidate (its own softmax),
// and the model proper over the `keep` rows the first stage currently keeps (when a gold row is
// among them), exactly the rows linking will score.
// The features that read earlier links (thread membership) need links for the context lines too,
// which have no annotation. Round 1 uses the gold links where there are some and "none" elsewhere;
// each later round re-links every training file with the previous round's model (exactly as at run
// time) and trains again on those windows. (On dev, more rounds did not help: the default is 1.)
//
// Options (flags; defaults in DEFAULT_TRAIN are those of the committed model): --kind linear|mlp,
// --hidden N, --keep N (0: one stage), --window N, --words N, --rounds N, --epochs N, --lr X,
// --batch N, --seed N, --tuneBias 0|1, --out FILE (models/boundaries.json), --limit N (first N files).

import { readdirSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { computeFeatures, FEATURE_COUNT, FEATURE_NAMES, FeatureBuffer, type WordWeights } from './features';
import { contentHashes } from './text';
import { readLog, firstAnnotated, type CorpusLog } from './corpus';
import { prepareMessage, createWindow, rememberMessage, DEFAULT_WINDOW } from './window';
import { modelParents, clusteringsOf, gapParents, type Parents } from './evaluate';
import { scoreClusterings, type Scores } from './metrics';
import { selectRows, type ThreadModel } from './model';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

export function dataDir(): string {
  return process.env.BOUNDARIES_DATA_DIR ?? path.resolve(REPO_ROOT, '..', 'shared', 'data', 'irc-disentanglement');
}

export function readLogDir(dir: string, limit = Infinity): CorpusLog[] {
  const names = readdirSync(dir).filter((f) => f.endsWith('.ascii.txt')).sort();
  return names.slice(0, limit).map((f) => readLog(path.join(dir, f)));
}

/** mulberry32: a small deterministic PRNG. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface TrainOptions {
  kind: 'linear' | 'mlp';
  hidden: number;
  rounds: number;
  epochs: number;
  lr: number;
  batch: number;
  l2: number;
  seed: number;
  window: number;
  /** How many of the commonest content words get their own weight (0: no word weights). */
  words: number;
  /** Rows the first (linear) stage keeps for the model proper (0: one stage, every row scored). */
  keep: number;
  /** Tune the "none" bias for matched-cluster F on training files after training (1) or not (0). */
  tuneBias: number;
  log: (s: string) => void;
}

export const DEFAULT_TRAIN: TrainOptions = {
  kind: 'mlp', hidden: 16, rounds: 1, epochs: 4, lr: 0.003, batch: 16, l2: 1e-6, seed: 15, window: DEFAULT_WINDOW, words: 3000, keep: 6, tuneBias: 0,
  log: (s) => console.log(s),
};

class Params {
  readonly F = FEATURE_COUNT;
  readonly H: number;
  readonly theta: Float64Array; // [lin F][W F*H][b H][v H]
  readonly grad: Float64Array;
  readonly m1: Float64Array;
  readonly m2: Float64Array;
  t = 0;
  readonly oW: number; readonly ob: number; readonly ov: number;
  constructor(H: number, seed: number) {
    this.H = H;
    const F = this.F;
    this.oW = F; this.ob = F + F * H; this.ov = this.ob + H;
    const size = this.ov + H;
    this.theta = new Float64Array(size);
    this.grad = new Float64Array(size);
    this.m1 = new Float64Array(size);
    this.m2 = new Float64Array(size);
    const r = rng(seed);
    for (let i = 0; i < F * H; i++) this.theta[this.oW + i] = (r() - 0.5) * 0.2;
    for (let q = 0; q < H; q++) { this.theta[this.ob + q] = 0.01; this.theta[this.ov + q] = (r() - 0.5) * 0.2; }
  }
  toModel(window: number, words: ThreadModel['words'], meta: Record<string, unknown>): ThreadModel {
    const F = this.F, H = this.H, th = this.theta;
    const round = (v: number) => Math.round(v * 1e6) / 1e6;
    const lin = Array.from(th.subarray(0, F), round);
    const w = words ? { words } : {};
    if (H === 0) return { format: 'chatstats-thread-model', version: 1, kind: 'linear', window, features: [...FEATURE_NAMES], linear: lin, ...w, meta };
    return {
      format: 'chatstats-thread-model', version: 1, kind: 'mlp', window, features: [...FEATURE_NAMES], linear: lin, ...w,
      hidden: {
        size: H,
        W: Array.from(th.subarray(this.oW, this.oW + F * H), round),
        b: Array.from(th.subarray(this.ob, this.ob + H), round),
        v: Array.from(th.subarray(this.ov, this.ov + H), round),
      },
      meta,
    };
  }
}

/** Forward + backward of one message's candidates; accumulates gradients, returns the loss. */
function stepMessage(P: Params, buf: FeatureBuffer, rows: number, goldRows: number[], scores: Float64Array, hid: Float64Array): number {
  const H = P.H, th = P.theta, g = P.grad;
  const idx = buf.idx, val = buf.val, start = buf.start;
  for (let k = 0; k < rows; k++) {
    let s = 0;
    const ho = k * H;
    for (let u = 0; u < H; u++) hid[ho + u] = th[P.ob + u]!;
    for (let q = start[k]!; q < start[k + 1]!; q++) {
      const j = idx[q]!, xj = val[q]!;
      s += xj * th[j]!;
      const r = P.oW + j * H;
      for (let u = 0; u < H; u++) hid[ho + u]! += xj * th[r + u]!;
    }
    for (let u = 0; u < H; u++) { const h = hid[ho + u]!; if (h > 0) s += h * th[P.ov + u]!; }
    scores[k] = s;
  }
  let max = -Infinity;
  for (let k = 0; k < rows; k++) if (scores[k]! > max) max = scores[k]!;
  let z = 0;
  for (let k = 0; k < rows; k++) { scores[k] = Math.exp(scores[k]! - max); z += scores[k]!; }
  let pg = 0;
  for (const k of goldRows) pg += scores[k]! / z;
  const loss = -Math.log(Math.max(pg, 1e-300));
  for (let k = 0; k < rows; k++) {
    const p = scores[k]! / z;
    let d = p;
    if (goldRows.includes(k)) d -= p / pg;
    if (d === 0) continue;
    const ho = k * H;
    for (let u = 0; u < H; u++) {
      const h = hid[ho + u]!;
      if (h <= 0) { hid[ho + u] = 0; continue; }
      g[P.ov + u]! += d * h;
      const dh = d * th[P.ov + u]!;
      hid[ho + u] = dh; // reused as dLoss/d(pre-activation)
      g[P.ob + u]! += dh;
    }
    for (let q = start[k]!; q < start[k + 1]!; q++) {
      const j = idx[q]!, xj = val[q]!;
      g[j]! += d * xj;
      const r = P.oW + j * H;
      for (let u = 0; u < H; u++) { const dh = hid[ho + u]!; if (dh !== 0) g[r + u]! += xj * dh; }
    }
  }
  return loss;
}

function adam(P: Params, lr: number, l2: number, batch: number): void {
  const b1 = 0.9, b2 = 0.999, eps = 1e-8;
  P.t++;
  const c1 = 1 - Math.pow(b1, P.t), c2 = 1 - Math.pow(b2, P.t);
  const th = P.theta, g = P.grad, m1 = P.m1, m2 = P.m2;
  for (let i = 0; i < th.length; i++) {
    const gi = g[i]! / batch + l2 * th[i]!;
    m1[i] = b1 * m1[i]! + (1 - b1) * gi;
    m2[i] = b2 * m2[i]! + (1 - b2) * gi * gi;
    th[i]! -= (lr * (m1[i]! / c1)) / (Math.sqrt(m2[i]! / c2) + eps);
    g[i] = 0;
  }
}

/**
 * Content-word weights from the training chat: each message is a document; the `k` words in the
 * most messages get weight ln(N / df); any other word weighs as much as the rarest listed, plus 1.
 */
export function wordWeights(logs: CorpusLog[], k: number): ThreadModel['words'] | undefined {
  if (k <= 0) return undefined;
  const df = new Map<number, number>();
  let n = 0;
  for (const log of logs) for (const l of log.lines) {
    if (!l.message) continue;
    n++;
    for (const h of contentHashes(l.message.text ?? '')) df.set(h, (df.get(h) ?? 0) + 1);
  }
  const top = [...df.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, k);
  const r3 = (v: number) => Math.round(v * 1000) / 1000;
  const weights = top.map(([, d]) => r3(Math.log(n / d)));
  const rare = r3((weights.length > 0 ? weights[weights.length - 1]! : Math.log(n)) + 1);
  return { hashes: top.map(([h]) => h), weights, rare };
}

function weightsOf(words: ThreadModel['words']): WordWeights | null {
  return words ? { map: new Map(words.hashes.map((h, i) => [h, words.weights[i]!])), rare: words.rare } : null;
}

/** One pass over the training logs with the given window links; returns the mean loss. */
function epoch(P: Params, Pp: Params | null, logs: CorpusLog[], links: Parents[], opt: TrainOptions, lr: number, weights: WordWeights | null): { loss: number; pruneLoss: number; pruneRecall: number } {
  const buf = new FeatureBuffer(opt.window + 1);
  const sub = new FeatureBuffer(opt.keep + 2);
  const sel: number[] = [];
  let pruneTotal = 0, kept = 0, usable = 0;
  const scores = new Float64Array(opt.window + 1);
  const hid = new Float64Array((opt.window + 1) * Math.max(1, P.H));
  let total = 0, count = 0, inBatch = 0;
  logs.forEach((log, li) => {
    const parents = links[li]!;
    const gold = log.gold!;
    const cutoff = firstAnnotated(gold);
    const window = createWindow(opt.window);
    const row = new Map<number, number>(); // line index -> position in window.entries (absolute count)
    let placed = 0;
    for (const l of log.lines) {
      if (!l.message) continue;
      const entry = prepareMessage(window, l.message);
      const ps = l.index >= cutoff ? gold.get(l.index) : undefined;
      if (ps) {
        const n = window.entries.length;
        const goldRows: number[] = [];
        for (const p of ps) {
          if (p === l.index) { goldRows.push(0); continue; }
          const at = row.get(p);
          if (at === undefined) continue;
          const k = placed - at; // distance in window messages
          if (k >= 1 && k <= n) goldRows.push(k);
        }
        if (goldRows.length > 0) {
          const rows = computeFeatures(window, entry, buf, weights);
          usable++;
          if (Pp === null) {
            total += stepMessage(P, buf, rows, goldRows, scores, hid);
            count++;
          } else {
            pruneTotal += stepMessage(Pp, buf, rows, goldRows, scores, hid);
            // The model proper learns on the rows the first stage keeps (as linking will), when a gold one is among them.
            selectRows(Pp.theta.subarray(0, FEATURE_COUNT), opt.keep, buf, rows, sel);
            const subGold: number[] = [];
            sub.start[0] = 0;
            let q = 0;
            sel.forEach((k, r) => {
              if (goldRows.includes(k)) subGold.push(r);
              for (let u = buf.start[k]!; u < buf.start[k + 1]!; u++) { sub.idx[q] = buf.idx[u]!; sub.val[q] = buf.val[u]!; q++; }
              sub.start[r + 1] = q;
            });
            if (subGold.length > 0) {
              kept++;
              total += stepMessage(P, sub, sel.length, subGold, scores, hid);
              count++;
            }
          }
          if (++inBatch === opt.batch) {
            adam(P, lr, opt.l2, inBatch);
            if (Pp !== null) adam(Pp, lr, opt.l2, inBatch);
            inBatch = 0;
          }
        }
      }
      const p = parents[l.index]!;
      rememberMessage(window, l.message, p === l.index ? null : log.lines[p]?.message?.message_id ?? null, entry);
      row.set(l.index, placed++);
    }
  });
  if (inBatch > 0) { adam(P, lr, opt.l2, inBatch); if (Pp !== null) adam(Pp, lr, opt.l2, inBatch); }
  return { loss: total / Math.max(1, count), pruneLoss: pruneTotal / Math.max(1, usable), pruneRecall: (100 * kept) / Math.max(1, usable) };
}

export function scoreLogs(logs: CorpusLog[], parentsOf: (log: CorpusLog) => Parents): Scores {
  return scoreClusterings(logs.map((l) => clusteringsOf(l, parentsOf(l))));
}

/** Link accuracy: share of annotated messages whose chosen parent is one of the gold ones. */
export function linkAccuracy(logs: CorpusLog[], parentsOf: (log: CorpusLog) => Parents): number {
  let ok = 0, n = 0;
  for (const log of logs) {
    const ps = parentsOf(log);
    for (const [c, gs] of log.gold!) { n++; if (gs.includes(ps[c]!)) ok++; }
  }
  return (100 * ok) / Math.max(1, n);
}

export function train(trainLogs: CorpusLog[], opt: TrainOptions, devLogs: CorpusLog[] = []): ThreadModel {
  const P = new Params(opt.kind === 'mlp' ? opt.hidden : 0, opt.seed);
  const Pp = opt.keep > 0 ? new Params(0, opt.seed) : null;
  const toModel = (): ThreadModel => {
    const m = P.toModel(opt.window, words, {});
    if (Pp !== null) m.prune = { keep: opt.keep, linear: Array.from(Pp.theta.subarray(0, FEATURE_COUNT), (v) => Math.round(v * 1e6) / 1e6) };
    return m;
  };
  // Round 1 links: gold where annotated (first parent that is not a system line), else none.
  let links: Parents[] = trainLogs.map((log) => log.lines.map((l) => {
    const ps = log.gold!.get(l.index);
    if (!ps || !l.message) return l.index;
    const p = ps.find((q) => q !== l.index && log.lines[q]?.message);
    return p ?? l.index;
  }));
  const words = wordWeights(trainLogs, opt.words);
  const weights = weightsOf(words);
  let model = toModel();
  const started = Date.now();
  for (let round = 1; round <= opt.rounds; round++) {
    for (let e = 1; e <= opt.epochs; e++) {
      const lr = opt.lr * (e === opt.epochs ? 0.3 : 1);
      const r = epoch(P, Pp, trainLogs, links, opt, lr, weights);
      const stage = Pp !== null ? `; first stage loss ${r.pruneLoss.toFixed(4)}, a gold row kept for ${r.pruneRecall.toFixed(2)} %` : '';
      opt.log(`round ${round} epoch ${e}: loss ${r.loss.toFixed(4)}${stage} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    }
    model = toModel();
    if (round < opt.rounds || devLogs.length > 0) {
      const predicted = new Map<CorpusLog, Parents>();
      const parentsOf = (l: CorpusLog) => { let p = predicted.get(l); if (!p) { p = modelParents(l, model); predicted.set(l, p); } return p; };
      if (round < opt.rounds) {
        links = trainLogs.map(parentsOf);
        const s = scoreLogs(trainLogs, parentsOf);
        opt.log(`round ${round} train: links ${linkAccuracy(trainLogs, parentsOf).toFixed(2)} F ${s.f.toFixed(2)} VI ${s.oneMinusVI.toFixed(2)} ARI ${s.ari.toFixed(2)}`);
      }
      if (devLogs.length > 0) {
        const s = scoreLogs(devLogs, parentsOf);
        opt.log(`round ${round} dev:   links ${linkAccuracy(devLogs, parentsOf).toFixed(2)} F ${s.f.toFixed(2)} (P ${s.precision.toFixed(2)} R ${s.recall.toFixed(2)}) VI ${s.oneMinusVI.toFixed(2)} ARI ${s.ari.toFixed(2)}`);
      }
    }
  }
  if (opt.tuneBias) model = tuneNoneBias(model, trainLogs.filter((_, i) => i % 3 === 0), opt);
  return model;
}

/**
 * Shifts the "none" score (feature self.bias) by the offset that gives the best matched-cluster F
 * on (a third of) the training files: the softmax is trained for links, the metric counts whole
 * conversations. The offset 0 is kept unless another one scores higher.
 */
export function tuneNoneBias(model: ThreadModel, logs: CorpusLog[], opt: TrainOptions): ThreadModel {
  const j = FEATURE_NAMES.indexOf('self.bias');
  const withOffset = (d: number): ThreadModel => {
    const linear = model.linear.slice();
    linear[j] = Math.round((linear[j]! + d) * 1e6) / 1e6;
    return { ...model, linear };
  };
  let best = 0, bestF = -1;
  for (const d of [0, -1, -0.5, -0.25, 0.25, 0.5, 1]) {
    const m = withOffset(d);
    const s = scoreLogs(logs, (l) => modelParents(l, m));
    opt.log(`none-bias offset ${d}: train F ${s.f.toFixed(2)} (P ${s.precision.toFixed(2)} R ${s.recall.toFixed(2)})`);
    if (s.f > bestF) { bestF = s.f; best = d; }
  }
  opt.log(`none-bias offset chosen: ${best}`);
  return withOffset(best);
}

function parseArgs(argv: string[]): Partial<TrainOptions> & { out?: string; limit?: number } {
  const o: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--')) {
      const [k, v] = a.slice(2).split('=');
      o[k!] = v ?? argv[++i]!;
    }
  }
  const num = (k: string) => (o[k] !== undefined ? Number(o[k]) : undefined);
  const r: Partial<TrainOptions> & { out?: string; limit?: number } = {};
  if (o.kind) r.kind = o.kind as 'linear' | 'mlp';
  for (const k of ['hidden', 'rounds', 'epochs', 'lr', 'batch', 'l2', 'seed', 'window', 'words', 'keep', 'limit', 'tuneBias'] as const) {
    const v = num(k);
    if (v !== undefined) (r as Record<string, number>)[k] = v;
  }
  if (o.out) r.out = o.out;
  return r;
}

if (require.main === module) {
  const args = parseArgs(process.argv.slice(2));
  const opt: TrainOptions = { ...DEFAULT_TRAIN, ...args };
  const dir = dataDir();
  const trainDir = path.join(dir, 'ubuntu', 'train');
  if (!existsSync(trainDir)) {
    console.error(`train:boundaries: no training data at ${trainDir} (set BOUNDARIES_DATA_DIR)`);
    process.exit(1);
  }
  const trainLogs = readLogDir(trainDir, args.limit ?? Infinity).filter((l) => l.gold !== null);
  const devDir = path.join(dir, 'ubuntu', 'dev');
  const devLogs = existsSync(devDir) ? readLogDir(devDir).filter((l) => l.gold !== null) : [];
  console.log(`training on ${trainLogs.length} files of ${trainDir}: ${opt.kind}${opt.kind === 'mlp' ? ` (${opt.hidden} hidden)` : ''}, window ${opt.window}, ${opt.rounds} rounds x ${opt.epochs} epochs`);
  const started = Date.now();
  const model = train(trainLogs, opt, devLogs);
  const meta: Record<string, unknown> = {
    trained_on: 'irc-disentanglement ubuntu/train (Kummerfeld et al. 2019, CC-BY-4.0)',
    files: trainLogs.length,
    options: { kind: opt.kind, hidden: opt.hidden, rounds: opt.rounds, epochs: opt.epochs, lr: opt.lr, batch: opt.batch, l2: opt.l2, seed: opt.seed, window: opt.window, words: opt.words, keep: opt.keep, tuneBias: opt.tuneBias },
  };
  if (devLogs.length > 0) {
    const s = scoreLogs(devLogs, (l) => modelParents(l, model));
    const gap = scoreLogs(devLogs, (l) => gapParents(l));
    const r2 = (v: number) => Math.round(v * 100) / 100;
    meta.dev = { files: devLogs.length, one_minus_vi: r2(s.oneMinusVI), ari: r2(s.ari), precision: r2(s.precision), recall: r2(s.recall), f: r2(s.f) };
    console.log(`dev (${devLogs.length} files): model 1-VI ${s.oneMinusVI.toFixed(2)} ARI ${s.ari.toFixed(2)} P ${s.precision.toFixed(2)} R ${s.recall.toFixed(2)} F ${s.f.toFixed(2)}; 90-min gap F ${gap.f.toFixed(2)}`);
  }
  model.meta = meta;
  const out = args.out ?? path.join(REPO_ROOT, 'models', 'boundaries.json');
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(model) + '\n');
  console.log(`wrote ${out} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}
