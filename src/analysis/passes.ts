// Analysis pass definitions (SPEC section 7), read from a JSON file (config/passes.json by default,
// PASSES_FILE overrides) and validated: an error names the file, the pass and the field.
// A pass's version is its prompt_version: a new prompt (or new analyzer behaviour) is a new
// version, tracked and cached separately, and backfilled.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

export const ANALYZER_KINDS = ['basic', 'sentiment', 'keywords', 'language', 'llm'] as const;
export type AnalyzerKind = (typeof ANALYZER_KINDS)[number];

export interface PassRequirements {
  /** The conversation's account_id must have an active subscription. */
  subscription: boolean;
  /** At least this many messages (1 when not given). */
  min_messages: number;
}

export interface PassDefinition {
  name: string;
  prompt_name: string;
  prompt_version: number;
  prompt_category: string;
  description: string;
  priority: number;
  enabled: boolean;
  analyzer: AnalyzerKind;
  requires: PassRequirements;
}

export class PassConfigError extends Error {
  constructor(readonly file: string, readonly pass: string | null, readonly field: string | null, detail: string) {
    super(`${file}: ${pass !== null ? `pass "${pass}": ` : ''}${field !== null ? `field "${field}": ` : ''}${detail}`);
    this.name = 'PassConfigError';
  }
}

const PASS_FIELDS = new Set(['name', 'prompt_name', 'prompt_version', 'prompt_category', 'description', 'priority', 'enabled', 'analyzer', 'requires']);
const REQUIRE_FIELDS = new Set(['subscription', 'min_messages']);

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * Validates the parsed contents of a passes file: `{ "passes": [ {...}, ... ] }`. `file` only
 * names the source in error messages.
 */
export function validatePasses(doc: unknown, file: string): PassDefinition[] {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new PassConfigError(file, null, null, 'expected an object with a "passes" array');
  }
  const top = doc as Record<string, unknown>;
  for (const k of Object.keys(top)) {
    if (k !== 'passes' && k !== '$comment') throw new PassConfigError(file, null, k, 'unknown top-level field (expected "passes")');
  }
  if (!Array.isArray(top.passes)) throw new PassConfigError(file, null, 'passes', `must be an array, got ${describe(top.passes)}`);
  const seen = new Set<string>();
  const out: PassDefinition[] = [];
  top.passes.forEach((raw, i) => {
    const label = typeof (raw as { name?: unknown })?.name === 'string' && (raw as { name: string }).name !== ''
      ? (raw as { name: string }).name : `#${i + 1}`;
    const fail = (field: string | null, detail: string): never => { throw new PassConfigError(file, label, field, detail); };
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail(null, `must be an object, got ${describe(raw)}`);
    const p = raw as Record<string, unknown>;
    for (const k of Object.keys(p)) if (!PASS_FIELDS.has(k) && k !== '$comment') fail(k, 'unknown field');

    const str = (field: string, pattern?: RegExp, hint?: string): string => {
      const v = p[field];
      if (typeof v !== 'string' || v.trim() === '') return fail(field, `must be a non-empty string, got ${describe(v)}`);
      if (pattern && !pattern.test(v)) return fail(field, `${hint}, got ${describe(v)}`);
      return v;
    };
    const int = (field: string, obj: Record<string, unknown>, min: number, max: number, def?: number): number => {
      const v = obj[field];
      if (v === undefined && def !== undefined) return def;
      if (typeof v !== 'number' || !Number.isInteger(v)) return fail(field, `must be an integer, got ${describe(v)}`);
      if (v < min || v > max) return fail(field, `must be between ${min} and ${max}, got ${v}`);
      return v;
    };

    const name = str('name', /^[a-z][a-z0-9_]{0,62}$/, 'must be lower-case letters, digits and "_", starting with a letter');
    if (seen.has(name)) fail('name', 'defined twice');
    seen.add(name);
    const prompt_name = str('prompt_name');
    const prompt_version = int('prompt_version', p, 1, 1_000_000);
    const prompt_category = str('prompt_category');
    const description = p.description === undefined ? '' : typeof p.description === 'string' ? p.description : fail('description', `must be a string, got ${describe(p.description)}`);
    const priority = int('priority', p, -1_000_000, 1_000_000);
    if (typeof p.enabled !== 'boolean') fail('enabled', `must be true or false, got ${describe(p.enabled)}`);
    const analyzer = p.analyzer;
    if (typeof analyzer !== 'string' || !(ANALYZER_KINDS as readonly string[]).includes(analyzer)) {
      fail('analyzer', `must be one of ${ANALYZER_KINDS.join(', ')}, got ${describe(analyzer)}`);
    }
    let requires: PassRequirements = { subscription: false, min_messages: 1 };
    if (p.requires !== undefined) {
      const r = p.requires;
      if (typeof r !== 'object' || r === null || Array.isArray(r)) return fail('requires', `must be an object, got ${describe(r)}`);
      const ro = r as Record<string, unknown>;
      for (const k of Object.keys(ro)) if (!REQUIRE_FIELDS.has(k)) fail(`requires.${k}`, 'unknown requirement (expected subscription, min_messages)');
      if (ro.subscription !== undefined && typeof ro.subscription !== 'boolean') fail('requires.subscription', `must be true or false, got ${describe(ro.subscription)}`);
      const min = ro.min_messages === undefined ? 1 : (() => {
        const v = ro.min_messages;
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) return fail('requires.min_messages', `must be an integer of at least 1, got ${describe(v)}`);
        return v;
      })();
      requires = { subscription: ro.subscription === true, min_messages: min };
    }
    out.push({ name, prompt_name, prompt_version, prompt_category, description, priority, enabled: p.enabled as boolean, analyzer: analyzer as AnalyzerKind, requires });
  });
  return out;
}

/** config/passes.json at the package root (from src/analysis or dist/src/analysis). */
export function defaultPassesFile(): string {
  for (const up of ['../..', '../../..']) {
    const f = resolve(__dirname, up, 'config', 'passes.json');
    if (existsSync(f)) return f;
  }
  return resolve(process.cwd(), 'config', 'passes.json');
}

/** Reads and validates the passes file: `file`, else PASSES_FILE, else config/passes.json. */
export function loadPasses(file?: string | null): PassDefinition[] {
  const path = file ?? process.env.PASSES_FILE ?? defaultPassesFile();
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (e) {
    throw new PassConfigError(path, null, null, `cannot read: ${(e as Error).message}`);
  }
  let doc: unknown;
  try { doc = JSON.parse(text); } catch (e) {
    throw new PassConfigError(path, null, null, `not valid JSON: ${(e as Error).message}`);
  }
  return validatePasses(doc, path);
}

/** Highest priority first; equal priorities by name, so the order is stable. */
export function byPriority(passes: readonly PassDefinition[]): PassDefinition[] {
  return [...passes].sort((a, b) => b.priority - a.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export function enabledPasses(passes: readonly PassDefinition[]): PassDefinition[] {
  return byPriority(passes.filter((p) => p.enabled));
}

export function findPass(passes: readonly PassDefinition[], name: string): PassDefinition {
  const p = passes.find((x) => x.name === name);
  if (!p) throw new Error(`no analysis pass named "${name}" (known: ${passes.map((x) => x.name).join(', ')})`);
  return p;
}

export interface QualificationInput {
  message_count: number;
  account_id: string | null;
  /** Whether account_id has an active subscription now. */
  subscriptionActive: boolean;
}

/** null when the conversation qualifies for the pass, else why it does not. */
export function disqualification(pass: PassDefinition, c: QualificationInput): string | null {
  if (c.message_count < pass.requires.min_messages) {
    return `needs at least ${pass.requires.min_messages} messages, has ${c.message_count}`;
  }
  if (pass.requires.subscription) {
    if (c.account_id === null) return 'needs an active subscription; the conversation has no account_id';
    if (!c.subscriptionActive) return `needs an active subscription; account ${c.account_id} has none`;
  }
  return null;
}

export interface PassPlan {
  run: PassDefinition[];
  skip: { pass: PassDefinition; reason: string }[];
}

/** The enabled passes a conversation qualifies for (highest priority first) and those it does not. */
export function planPasses(passes: readonly PassDefinition[], c: QualificationInput): PassPlan {
  const plan: PassPlan = { run: [], skip: [] };
  for (const pass of enabledPasses(passes)) {
    const why = disqualification(pass, c);
    if (why === null) plan.run.push(pass);
    else plan.skip.push({ pass, reason: why });
  }
  return plan;
}
