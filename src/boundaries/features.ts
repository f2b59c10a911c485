// Candidate features of the thread model. For a new message m and a window of the chat's recent
// messages, the candidates are row 0, "none" (m starts a thread), and row k = the message k places
// before m (k = 1..window length). Each row is a vector of FEATURE_COUNT numbers, mostly 0/1
// indicators; the "none" row uses only the m-only features (prefixed `self.`), the other rows only
// the pair features (prefixed `pair.`). Training (train.ts) and linking (model.ts) both call
// `computeFeatures`, so what is learned is what runs.

import { Flag, MAX_TOKENS } from './text';
import type { ThreadWindow, WindowEntry } from './window';

const names: string[] = [];
function feat(name: string): number { names.push(name); return names.length - 1; }
function buckets(prefix: string, edges: number[]): number[] { return edges.map((e) => feat(`${prefix}>=${e}`)); }

/** Index of the bucket of v: the last edge <= v (edges ascending, edges[0] <= any v). */
function bucketOf(v: number, edges: readonly number[]): number {
  let b = 0;
  for (let i = 1; i < edges.length; i++) if (v >= edges[i]!) b = i; else break;
  return b;
}

// --- "none": the message starts a thread -------------------------------------------------------
const S_BIAS = feat('self.bias');
const S_QUESTION = feat('self.question');
const S_GREETING = feat('self.greeting');
const S_THANKS = feat('self.thanks');
const S_ACK = feat('self.ack');
const S_ANYONE = feat('self.ask_anyone');
const S_URL = feat('self.url');
const S_CODE = feat('self.code');
const S_LONG = feat('self.long');
const S_EMPTY = feat('self.empty');
const S_ADDRESSES = feat('self.addresses_someone');
const S_ADDRESSES_RECENT = feat('self.addresses_recent_sender');
const S_NEW_SENDER = feat('self.sender_not_in_window');
const S_WAS_ADDRESSED = feat('self.sender_addressed_recently');
const S_OWN_LAST_START = feat('self.own_last_started_thread');
const S_OWN_LAST_ALONE = feat('self.own_last_thread_alone');
const SELF_GAP_EDGES = [0, 1, 2, 5, 15, 60];
const S_GAP = buckets('self.minutes_since_previous', SELF_GAP_EDGES);
const SELF_OWN_EDGES = [0, 1, 3, 10, 30, 120];
const S_OWN = buckets('self.minutes_since_own_last', SELF_OWN_EDGES);
const SELF_LEN_EDGES = [0, 1, 3, 6, 12];
const S_LEN = buckets('self.content_words', SELF_LEN_EDGES);
const S_EMPTY_WINDOW = feat('self.window_empty');

// --- pairs: m replies to candidate c -----------------------------------------------------------
const DIST_EDGES = [1, 2, 3, 4, 5, 6, 8, 11, 16, 26, 41, 71];
const P_DIST = buckets('pair.distance', DIST_EDGES);
const TIME_EDGES = [0, 1, 2, 3, 5, 10, 20, 60];
const P_TIME = buckets('pair.minutes', TIME_EDGES);
const P_SAME = feat('pair.same_sender');
const P_M_ADDR_C = feat('pair.m_addresses_c');
const P_M_ADDR_C_FIRST = feat('pair.m_addresses_c_first');
const P_C_ADDR_M = feat('pair.c_addresses_m');
const P_M_ADDR_OTHER = feat('pair.m_addresses_other');
const P_C_ADDR_OTHER = feat('pair.c_addresses_other');
const P_M_ADDR_NONE = feat('pair.m_addresses_none');
const P_C_LAST_OF_SENDER = feat('pair.c_last_of_its_sender');
const P_C_LAST_OWN = feat('pair.c_last_own');
const P_C_LAST_TO_M = feat('pair.c_last_addressing_m');
const P_PARTNERS = feat('pair.partners');
const P_M_IN_THREAD = feat('pair.m_sender_in_c_thread');
const P_C_LAST_IN_THREAD = feat('pair.c_last_in_thread');
const P_SAME_THREAD_OWN = feat('pair.c_in_thread_of_own_last');
const P_C_STARTS = feat('pair.c_started_thread');
const P_THREAD_SIZE = feat('pair.log_thread_size');
const P_C_PARENT_IS_M = feat('pair.c_replied_to_m_sender');
const P_C_PARENT_ADDR = feat('pair.c_replied_via_address');
const OVERLAP_EDGES = [0, 1, 2, 3];
const P_OVERLAP = buckets('pair.shared_words', OVERLAP_EDGES);
const P_JACCARD = feat('pair.jaccard');
const P_THREAD_OVERLAP = feat('pair.thread_shared_words');
const IDF_EDGES = [0, 2, 4, 7, 11];
const P_IDF = buckets('pair.shared_weight', IDF_EDGES);
const P_IDF_VALUE = feat('pair.shared_weight_value');
const P_THREAD_IDF = feat('pair.thread_shared_weight');
const P_C_QUESTION = feat('pair.c_question');
const P_CQ_MNOQ = feat('pair.c_question_m_not');
const P_M_QUESTION = feat('pair.m_question');
const P_C_GREETING = feat('pair.c_greeting');
const P_C_ANYONE = feat('pair.c_ask_anyone');
const P_M_THANKS = feat('pair.m_thanks');
const P_M_ACK = feat('pair.m_ack');
const P_M_ACK_NEAR = feat('pair.m_ack_and_distance<=3');
const P_C_ACK = feat('pair.c_ack');
const P_C_URL = feat('pair.c_url');
const P_M_URL = feat('pair.m_url');
const P_C_THANKS = feat('pair.c_thanks');
const P_C_CODE = feat('pair.c_code');
const BETWEEN_EDGES = [0, 1, 2, 4];
const P_M_BETWEEN = buckets('pair.m_sender_messages_since_c', BETWEEN_EDGES);
const P_C_BETWEEN = buckets('pair.c_sender_messages_since_c', BETWEEN_EDGES);
const P_ADDR_TO_C_SINCE = feat('pair.someone_addressed_c_since');
const P_C_SENDER_REPLIED = feat('pair.c_sender_spoke_to_m_since');

export const FEATURE_NAMES: readonly string[] = Object.freeze(names.slice());
export const FEATURE_COUNT = names.length;

/** The most features one row can have set (a bound on the pair and self blocks). */
const MAX_ACTIVE = 64;

/**
 * Sparse rows, reusable across calls (one per thread of execution): row k holds the features
 * idx[start[k] .. start[k + 1]) with values val[...] (1 for indicators); unset features are 0.
 */
export class FeatureBuffer {
  idx: Int32Array;
  /** 1 everywhere except where a real-valued feature was written (positions listed in `reals`). */
  val: Float64Array;
  start: Int32Array;
  rows = 0;
  reals: Int32Array;
  realCount = 0;
  constructor(capacityRows = 101) {
    this.idx = new Int32Array(capacityRows * MAX_ACTIVE);
    this.val = new Float64Array(capacityRows * MAX_ACTIVE).fill(1);
    this.start = new Int32Array(capacityRows + 1);
    this.reals = new Int32Array(capacityRows * MAX_ACTIVE);
  }
  ensure(rows: number): void {
    if (rows + 1 > this.start.length) {
      this.idx = new Int32Array(rows * MAX_ACTIVE);
      this.val = new Float64Array(rows * MAX_ACTIVE).fill(1);
      this.start = new Int32Array(rows + 1);
      this.reals = new Int32Array(rows * MAX_ACTIVE);
      this.realCount = 0;
    }
  }
  /** Sets every value back to 1 (the real-valued ones written last time). */
  resetValues(): void {
    const val = this.val, reals = this.reals;
    for (let i = 0; i < this.realCount; i++) val[reals[i]!] = 1;
    this.realCount = 0;
  }
  /** Row k as a dense array (tests, inspection). */
  dense(k: number): Float64Array {
    const out = new Float64Array(FEATURE_COUNT);
    for (let q = this.start[k]!; q < this.start[k + 1]!; q++) out[this.idx[q]!] = this.val[q]!;
    return out;
  }
}

const MIN = 60_000;

/**
 * How informative a content word is (inverse document frequency, learned with the model): the
 * model file lists the commonest words' weights; any other word weighs `rare`.
 */
export interface WordWeights { map: Map<number, number>; rare: number }

// m's content words as a small open-addressing table (hash -> weight), probed once per entry word.
const TABLE = 64;
if (TABLE < 3 * MAX_TOKENS) throw new Error('word table too small');
const wordTable = new Uint32Array(TABLE);
const wordTableUsed = new Uint8Array(TABLE);
const wordTableWeight = new Float64Array(TABLE);

/** table[v] = the feature of v's bucket, for integer v in 0 .. max (larger v: the last bucket). */
function bucketTable(features: number[], edges: readonly number[], max: number): Int32Array {
  const t = new Int32Array(max + 1);
  for (let v = 0; v <= max; v++) t[v] = features[bucketOf(Math.max(v, edges[0]!), edges)]!;
  return t;
}
const DIST_T = bucketTable(P_DIST, DIST_EDGES, 128);
const TIME_T = bucketTable(P_TIME, TIME_EDGES, 64);
const OVERLAP_T = bucketTable(P_OVERLAP, OVERLAP_EDGES, 8);
const M_BETWEEN_T = bucketTable(P_M_BETWEEN, BETWEEN_EDGES, 8);
const C_BETWEEN_T = bucketTable(P_C_BETWEEN, BETWEEN_EDGES, 8);
const LOG_SIZE = Float64Array.from({ length: 257 }, (_, v) => Math.log2(1 + v) / 4);

// Scratch arrays, grown as needed (computeFeatures is not re-entrant).
let cap = 0;
let cLater = new Int32Array(0); // messages by c's sender after c
let mLater = new Int32Array(0); // messages by m's sender after c
let spokeLater = new Uint8Array(0); // c's sender addressed m's sender after c
let addrSince = new Uint8Array(0); // someone addressed c's sender after c
let shared = new Int32Array(0); // content words c shares with m
let head = new Int32Array(0); // the first entry of c's thread within the window
let tSize = new Int32Array(0); // per thread head: entries
let tLast = new Int32Array(0); // per thread head: the latest entry
let tHasM = new Uint8Array(0); // per thread head: m's sender wrote in it
let tShared = new Int32Array(0); // per thread head: content words shared with m, summed
let sharedW = new Float64Array(0); // weight of the content words c shares with m
let tSharedW = new Float64Array(0); // per thread head: weight of shared words, summed
function grow(n: number): void {
  if (n <= cap) return;
  cap = Math.max(n, 128);
  cLater = new Int32Array(cap); mLater = new Int32Array(cap); spokeLater = new Uint8Array(cap);
  addrSince = new Uint8Array(cap); shared = new Int32Array(cap); head = new Int32Array(cap);
  tSize = new Int32Array(cap); tLast = new Int32Array(cap); tHasM = new Uint8Array(cap); tShared = new Int32Array(cap);
  sharedW = new Float64Array(cap); tSharedW = new Float64Array(cap);
}

/**
 * Fills `buf` with the features of every candidate for m: row 0 "none", row k the entry k places
 * back (window.entries[len - k]). Returns the number of rows (len + 1).
 */
export function computeFeatures(window: ThreadWindow, m: WindowEntry, buf: FeatureBuffer, weights: WordWeights | null = null): number {
  const es = window.entries;
  const n = es.length;
  const rows = n + 1;
  buf.ensure(rows);
  buf.resetValues();
  buf.rows = rows;
  grow(n);
  const idx = buf.idx, val = buf.val, start = buf.start, reals = buf.reals;
  let nr = 0;
  const ms = m.s, mw = m.w, mAddr = m.a, f = m.f;
  const QUESTION = Flag.QUESTION, GREETING = Flag.GREETING, ANYONE = Flag.ASK_ANYONE, THANKS = Flag.THANKS;
  const ACK = Flag.ACK, URL = Flag.URL, CODE = Flag.CODE;

  // m's words, for counting the words each entry shares with m (and their weight).
  wordTableUsed.fill(0);
  for (let j = 0; j < mw.length; j++) {
    const hw = mw[j]!;
    let slot = hw & (TABLE - 1);
    while (wordTableUsed[slot] === 1 && wordTable[slot] !== hw) slot = (slot + 1) & (TABLE - 1);
    wordTableUsed[slot] = 1;
    wordTable[slot] = hw;
    wordTableWeight[slot] = weights !== null ? weights.map.get(hw) ?? weights.rare : 0;
  }
  // Forward pass: threads (by the same-thread pointers) and shared words.
  let ownLast = -1;
  for (let i = 0; i < n; i++) {
    const e = es[i]!;
    const h = e.dt > 0 && i - e.dt >= 0 ? head[i - e.dt]! : i;
    head[i] = h;
    if (h === i) { tSize[i] = 0; tHasM[i] = 0; tShared[i] = 0; tSharedW[i] = 0; }
    tSize[h]!++;
    tLast[h] = i;
    const own = e.s === ms;
    if (own) { tHasM[h] = 1; ownLast = i; }
    let sh = 0, sw = 0;
    if (mw.length > 0) {
      const ew = e.w;
      for (let j = 0; j < ew.length; j++) {
        const hw = ew[j]!;
        let slot = hw & (TABLE - 1);
        while (wordTableUsed[slot] === 1) {
          if (wordTable[slot] === hw) { sh++; sw += wordTableWeight[slot]!; break; }
          slot = (slot + 1) & (TABLE - 1);
        }
      }
    }
    shared[i] = sh;
    tShared[h]! += sh;
    sharedW[i] = sw;
    tSharedW[h]! += sw;
    cLater[i] = 0;
    spokeLater[i] = 0;
  }
  // Backward pass: what followed each entry (by the same-sender pointers).
  let mCount = 0;
  let lastToM = -1;
  let addressedAfter: Set<string> | null = null;
  for (let i = n - 1; i >= 0; i--) {
    const e = es[i]!;
    mLater[i] = mCount;
    if (e.s === ms) mCount++;
    addrSince[i] = addressedAfter !== null && addressedAfter.has(e.s) ? 1 : 0;
    const ea = e.a;
    let toM = 0;
    if (ea.length > 0) {
      if (addressedAfter === null) addressedAfter = new Set();
      for (let j = 0; j < ea.length; j++) {
        addressedAfter.add(ea[j]!);
        if (ea[j] === ms) toM = 1;
      }
      if (toM === 1 && lastToM < 0) lastToM = i;
    }
    const prev = i - e.ds;
    if (e.ds > 0 && prev >= 0) {
      cLater[prev] = cLater[i]! + 1;
      spokeLater[prev] = spokeLater[i]! | toM;
    }
  }
  const ownLastEntry = ownLast >= 0 ? es[ownLast]! : null;
  const ownAddr = ownLastEntry ? ownLastEntry.a : [];
  const ownHead = ownLast >= 0 ? head[ownLast]! : -1;

  let q = 0;
  // Row 0: none.
  start[0] = 0;
  idx[q++] = S_BIAS;
  if (f & Flag.QUESTION) idx[q++] = S_QUESTION;
  if (f & Flag.GREETING) idx[q++] = S_GREETING;
  if (f & Flag.THANKS) idx[q++] = S_THANKS;
  if (f & Flag.ACK) idx[q++] = S_ACK;
  if (f & Flag.ASK_ANYONE) idx[q++] = S_ANYONE;
  if (f & Flag.URL) idx[q++] = S_URL;
  if (f & Flag.CODE) idx[q++] = S_CODE;
  if (f & Flag.LONG) idx[q++] = S_LONG;
  if (f & Flag.EMPTY) idx[q++] = S_EMPTY;
  if (mAddr.length > 0) {
    idx[q++] = S_ADDRESSES;
    let recent = false;
    for (let i = 0; i < n && !recent; i++) if (mAddr.includes(es[i]!.s)) recent = true;
    if (recent) idx[q++] = S_ADDRESSES_RECENT;
  }
  if (ownLast < 0) idx[q++] = S_NEW_SENDER;
  if (lastToM >= 0 && n - lastToM <= 30) idx[q++] = S_WAS_ADDRESSED;
  if (ownLastEntry) {
    if (ownLastEntry.p === null) idx[q++] = S_OWN_LAST_START;
    if (tSize[ownHead] === 1) idx[q++] = S_OWN_LAST_ALONE;
    idx[q++] = S_OWN[bucketOf(Math.max(0, m.t - ownLastEntry.t) / MIN, SELF_OWN_EDGES)]!;
  }
  if (n === 0) idx[q++] = S_EMPTY_WINDOW;
  else idx[q++] = S_GAP[bucketOf(Math.max(0, m.t - es[n - 1]!.t) / MIN, SELF_GAP_EDGES)]!;
  idx[q++] = S_LEN[bucketOf(mw.length, SELF_LEN_EDGES)]!;

  // Rows 1..n: pairs. Values are 1 unless set otherwise right after.
  const mQuestion = (f & QUESTION) !== 0;
  const mNoAddr = mAddr.length === 0;
  const mt = m.t;
  for (let k = 1; k <= n; k++) {
    start[k] = q;
    const i = n - k;
    const c = es[i]!;
    idx[q++] = DIST_T[k > 128 ? 128 : k]!;
    const dtm = mt - c.t;
    idx[q++] = TIME_T[dtm <= 0 ? 0 : dtm >= 64 * MIN ? 64 : Math.floor(dtm / MIN)]!;
    const same = c.s === ms;
    if (same) idx[q++] = P_SAME;
    if (mNoAddr) idx[q++] = P_M_ADDR_NONE;
    else if (!same && mAddr.includes(c.s)) {
      idx[q++] = P_M_ADDR_C;
      if (mAddr[0] === c.s) idx[q++] = P_M_ADDR_C_FIRST;
    } else idx[q++] = P_M_ADDR_OTHER;
    const ca = c.a;
    const cAddrM = ca.length > 0 && ca.includes(ms);
    if (ca.length > 0) idx[q++] = cAddrM ? P_C_ADDR_M : P_C_ADDR_OTHER;
    const later = cLater[i]!;
    if (later === 0) idx[q++] = P_C_LAST_OF_SENDER;
    if (i === ownLast) idx[q++] = P_C_LAST_OWN;
    if (i === lastToM) idx[q++] = P_C_LAST_TO_M;
    const spoke = spokeLater[i]!;
    if (!same && (cAddrM || spoke !== 0 || ownAddr.includes(c.s))) idx[q++] = P_PARTNERS;
    const h = head[i]!;
    if (tHasM[h] === 1) idx[q++] = P_M_IN_THREAD;
    if (tLast[h] === i) idx[q++] = P_C_LAST_IN_THREAD;
    if (h === ownHead) idx[q++] = P_SAME_THREAD_OWN;
    if (c.p === null) idx[q++] = P_C_STARTS;
    const cq = c.q;
    if (cq !== null) {
      if (cq === ms) idx[q++] = P_C_PARENT_IS_M;
      if (ca.length > 0 && ca.includes(cq)) idx[q++] = P_C_PARENT_ADDR;
    }
    const sh = shared[i]!;
    idx[q++] = OVERLAP_T[sh > 8 ? 8 : sh]!;
    const cf = c.f;
    if (cf & QUESTION) { idx[q++] = P_C_QUESTION; if (!mQuestion) idx[q++] = P_CQ_MNOQ; }
    if (mQuestion) idx[q++] = P_M_QUESTION;
    if (cf & GREETING) idx[q++] = P_C_GREETING;
    if (cf & ANYONE) idx[q++] = P_C_ANYONE;
    if (f & THANKS) idx[q++] = P_M_THANKS;
    if (f & ACK) { idx[q++] = P_M_ACK; if (k <= 3) idx[q++] = P_M_ACK_NEAR; }
    if (cf & ACK) idx[q++] = P_C_ACK;
    if (cf & URL) idx[q++] = P_C_URL;
    if (f & URL) idx[q++] = P_M_URL;
    if (cf & THANKS) idx[q++] = P_C_THANKS;
    if (cf & CODE) idx[q++] = P_C_CODE;
    const ml = mLater[i]!;
    idx[q++] = M_BETWEEN_T[ml > 8 ? 8 : ml]!;
    idx[q++] = C_BETWEEN_T[later > 8 ? 8 : later]!;
    if (addrSince[i] === 1) idx[q++] = P_ADDR_TO_C_SINCE;
    if (spoke !== 0) idx[q++] = P_C_SENDER_REPLIED;
    // Real-valued features last (their positions noted, to be set back to 1 next time).
    const size = tSize[h]!;
    idx[q] = P_THREAD_SIZE; val[q] = LOG_SIZE[size > 256 ? 256 : size]!; reals[nr++] = q++;
    if (sh > 0) { idx[q] = P_JACCARD; val[q] = sh / (mw.length + c.w.length - sh); reals[nr++] = q++; }
    const ts = tShared[h]!;
    if (ts > 0) { idx[q] = P_THREAD_OVERLAP; val[q] = (ts > 4 ? 4 : ts) / 4; reals[nr++] = q++; }
    if (weights !== null) {
      const sw = sharedW[i]!;
      idx[q++] = P_IDF[sw >= IDF_EDGES[4]! ? 4 : sw >= IDF_EDGES[3]! ? 3 : sw >= IDF_EDGES[2]! ? 2 : sw >= IDF_EDGES[1]! ? 1 : 0]!;
      if (sw > 0) { idx[q] = P_IDF_VALUE; val[q] = (sw > 20 ? 20 : sw) / 20; reals[nr++] = q++; }
      const tsw = tSharedW[h]!;
      if (tsw > 0) { idx[q] = P_THREAD_IDF; val[q] = (tsw > 30 ? 30 : tsw) / 30; reals[nr++] = q++; }
    }
  }
  start[rows] = q;
  buf.realCount = nr;
  return rows;
}
