// The thread model: scores every candidate of a new message (features.ts) and picks the best, or
// "none". Pure and deterministic: the same window, message and model give the same link.
//
//   const model = loadThreadModel();                 // models/boundaries.json, once per process
//   const window = createWindow(model.window);       // per chat, plain JSON (window.ts)
//   for each message of the chat, in the order the tracker places them:
//     const { parentMessageId, entry } = linkMessage(window, message, model);
//     rememberMessage(window, message, parentMessageId, entry);
//
// An explicit reply_to_message_id that names a message in the window always wins. Otherwise the
// scorer is a linear function of the features plus, for kind "mlp", one hidden layer of ReLUs:
//   score(x) = w . x + v . relu(W x + b)       (the "none" row scored the same way)
// and the highest-scoring candidate is chosen; ties go to the nearer candidate, "none" last.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { ChatMessage } from '../records/types';
import { computeFeatures, FEATURE_COUNT, FEATURE_NAMES, FeatureBuffer, type WordWeights } from './features';
import { prepareMessage, type ThreadWindow, type WindowEntry } from './window';

export interface ThreadModel {
  format: 'chatstats-thread-model';
  version: 1;
  kind: 'linear' | 'mlp';
  /** The window bound the model was trained with (createWindow(model.window)). */
  window: number;
  /** Feature names, in order: must equal FEATURE_NAMES of the code that reads the model. */
  features: string[];
  /** Linear weights, one per feature. */
  linear: number[];
  /** kind "mlp": hidden size H, W as features x H (row j = the weights of feature j), b and v of size H. */
  hidden?: { size: number; W: number[]; b: number[]; v: number[] };
  /**
   * Two stages: a linear first stage (weights per feature) scores every pair row; only the `keep`
   * best of them (and "none") are scored by the model proper. Absent: every row is scored.
   */
  prune?: { keep: number; linear: number[] };
  /** Content-word weights (inverse document frequency in the training chat): hashes (text.ts hashWord) and weights; other words weigh `rare`. */
  words?: { hashes: number[]; weights: number[]; rare: number };
  /** How it was trained and scored (informational). */
  meta?: Record<string, unknown>;
}

/** Where the committed model lives: models/boundaries.json at the package root. */
export const DEFAULT_MODEL_PATH = path.resolve(__dirname, '..', '..', '..', 'models', 'boundaries.json');

/** Checks a parsed model file against this code's features; throws with the reason if unusable. */
export function validateThreadModel(m: unknown): ThreadModel {
  const o = m as ThreadModel;
  if (!o || typeof o !== 'object' || o.format !== 'chatstats-thread-model' || o.version !== 1) {
    throw new Error('not a chatstats thread model (format/version)');
  }
  if (!Array.isArray(o.features) || o.features.length !== FEATURE_COUNT || o.features.some((f, i) => f !== FEATURE_NAMES[i])) {
    throw new Error('thread model features do not match this code (retrain with npm run train:boundaries)');
  }
  if (!Array.isArray(o.linear) || o.linear.length !== FEATURE_COUNT) throw new Error('thread model: bad linear weights');
  if (!Number.isInteger(o.window) || o.window < 1) throw new Error('thread model: bad window');
  if (o.kind === 'mlp') {
    const h = o.hidden;
    if (!h || !Number.isInteger(h.size) || h.W.length !== FEATURE_COUNT * h.size || h.b.length !== h.size || h.v.length !== h.size) {
      throw new Error('thread model: bad hidden layer');
    }
  } else if (o.kind !== 'linear') throw new Error(`thread model: unknown kind ${String(o.kind)}`);
  if (o.prune !== undefined && (!Number.isInteger(o.prune.keep) || o.prune.keep < 1
    || !Array.isArray(o.prune.linear) || o.prune.linear.length !== FEATURE_COUNT)) {
    throw new Error('thread model: bad first stage');
  }
  if (o.words !== undefined && (!Array.isArray(o.words.hashes) || !Array.isArray(o.words.weights)
    || o.words.hashes.length !== o.words.weights.length || typeof o.words.rare !== 'number')) {
    throw new Error('thread model: bad word weights');
  }
  return o;
}

export function loadThreadModel(file: string = DEFAULT_MODEL_PATH): ThreadModel {
  return validateThreadModel(JSON.parse(readFileSync(file, 'utf8')));
}

/** Per-model scoring arrays, built once (typed arrays for speed). */
interface Compiled { weights: WordWeights | null; prune: Float64Array | null; lin: Float64Array; W: Float64Array | null; b: Float64Array | null; v: Float64Array | null; H: number; h: Float64Array }
const compiled = new WeakMap<ThreadModel, Compiled>();
function compile(model: ThreadModel): Compiled {
  let c = compiled.get(model);
  if (!c) {
    const H = model.kind === 'mlp' && model.hidden ? model.hidden.size : 0;
    const w = model.words;
    c = {
      weights: w ? { map: new Map(w.hashes.map((h, i) => [h, w.weights[i]!])), rare: w.rare } : null,
      prune: model.prune ? Float64Array.from(model.prune.linear) : null,
      lin: Float64Array.from(model.linear),
      W: H > 0 ? Float64Array.from(model.hidden!.W) : null,
      b: H > 0 ? Float64Array.from(model.hidden!.b) : null,
      v: H > 0 ? Float64Array.from(model.hidden!.v) : null,
      H,
      h: new Float64Array(H),
    };
    compiled.set(model, c);
  }
  return c;
}

/** The model's content-word weights, for computeFeatures. */
export function modelWordWeights(model: ThreadModel): WordWeights | null {
  return compile(model).weights;
}

/** The score of row k of a feature buffer. */
export function scoreRow(model: ThreadModel, buf: FeatureBuffer, k: number): number {
  return scoreCompiled(compile(model), buf, k);
}

function scoreCompiled(c: Compiled, buf: FeatureBuffer, k: number): number {
  const idx = buf.idx, val = buf.val;
  const from = buf.start[k]!, to = buf.start[k + 1]!;
  const lin = c.lin;
  let s = 0;
  if (c.H === 0) {
    for (let q = from; q < to; q++) s += val[q]! * lin[idx[q]!]!;
    return s;
  }
  const H = c.H, W = c.W!, h = c.h;
  h.set(c.b!);
  for (let q = from; q < to; q++) {
    const j = idx[q]!, xj = val[q]!;
    s += xj * lin[j]!;
    const r = j * H;
    if (xj === 1) for (let u = 0; u < H; u++) h[u]! += W[r + u]!;
    else for (let u = 0; u < H; u++) h[u]! += xj * W[r + u]!;
  }
  const v = c.v!;
  for (let u = 0; u < H; u++) { const hu = h[u]!; if (hu > 0) s += hu * v[u]!; }
  return s;
}

export interface LinkResult {
  /** The message replied to, or null: the message starts a thread. */
  parentMessageId: string | null;
  /** How: an explicit reply_to_message_id in the window, the model, or none (empty window and no explicit link). */
  via: 'explicit' | 'model';
  /** The message as remembered by rememberMessage (pass it on to skip re-reading the text). */
  entry: WindowEntry;
}

const sharedBuffer = new FeatureBuffer();

/**
 * Chooses the earlier message of the window that `message` replies to, or none. Reads `window`
 * without changing it. Call rememberMessage(window, message, result.parentMessageId, result.entry)
 * afterwards to let later messages link to this one.
 */
export function linkMessage(window: ThreadWindow, message: ChatMessage, model: ThreadModel, buf: FeatureBuffer = sharedBuffer): LinkResult {
  const entry = prepareMessage(window, message);
  const explicit = message.reply_to_message_id;
  if (explicit !== null && explicit !== undefined) {
    for (let i = window.entries.length - 1; i >= 0; i--) {
      if (window.entries[i]!.id === explicit) return { parentMessageId: explicit, via: 'explicit', entry };
    }
  }
  const best = bestCandidate(window, entry, model, buf);
  return { parentMessageId: best === 0 ? null : window.entries[window.entries.length - best]!.id, via: 'model', entry };
}

/** Scratch for the pruning stage. */
let keepScore = new Float64Array(64);
let keepRow = new Int32Array(64);

/**
 * The rows the full scorer looks at: with `model.prune`, "none" and the `keep` pair rows with the
 * highest first-stage (linear) scores, ties to the nearer row; without it, every row. Ascending.
 * Training (train.ts) selects rows with this same function.
 */
export function candidateRows(model: ThreadModel, buf: FeatureBuffer, rows: number, out: number[]): number[] {
  const c = compile(model);
  return selectRows(c.prune, model.prune ? model.prune.keep : 0, buf, rows, out);
}

/** candidateRows with the first stage's weights `plin` (null: keep every row) and `K` rows to keep. */
export function selectRows(plin: Float64Array | null, K: number, buf: FeatureBuffer, rows: number, out: number[]): number[] {
  out.length = 0;
  if (plin === null || rows - 1 <= K) {
    for (let k = 0; k < rows; k++) out.push(k);
    return out;
  }
  if (keepScore.length < K + 1) { keepScore = new Float64Array(K + 1); keepRow = new Int32Array(K + 1); }
  let count = 0;
  const idx = buf.idx, val = buf.val, start = buf.start;
  for (let k = 1; k < rows; k++) {
    let s = 0;
    for (let q = start[k]!; q < start[k + 1]!; q++) s += val[q]! * plin[idx[q]!]!;
    // Insert into the descending top list; an equal score stays behind the nearer row already in.
    if (count === K && s <= keepScore[K - 1]!) continue;
    let pos = count < K ? count : K - 1;
    while (pos > 0 && keepScore[pos - 1]! < s) { keepScore[pos] = keepScore[pos - 1]!; keepRow[pos] = keepRow[pos - 1]!; pos--; }
    keepScore[pos] = s;
    keepRow[pos] = k;
    if (count < K) count++;
  }
  // "none", then the kept rows in ascending order (insertion sort: a dozen rows).
  out.push(0);
  for (let i = 0; i < count; i++) {
    const k = keepRow[i]!;
    let pos = out.length;
    out.push(k);
    while (pos > 1 && out[pos - 1]! > k) { out[pos] = out[pos - 1]!; pos--; }
    out[pos] = k;
  }
  return out;
}

const rowScratch: number[] = [];

/** The chosen row: 0 for none, k for the entry k places back. */
export function bestCandidate(window: ThreadWindow, entry: WindowEntry, model: ThreadModel, buf: FeatureBuffer = sharedBuffer): number {
  const c = compile(model);
  const rows = computeFeatures(window, entry, buf, c.weights);
  const cand = selectRows(c.prune, model.prune ? model.prune.keep : 0, buf, rows, rowScratch);
  let best = 0;
  let bestScore = scoreCompiled(c, buf, 0);
  for (let i = 1; i < cand.length; i++) {
    const k = cand[i]!;
    const s = scoreCompiled(c, buf, k);
    if (s > bestScore || (best === 0 && s === bestScore)) { best = k; bestScore = s; }
  }
  return best;
}
