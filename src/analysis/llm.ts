// llm: renders the pass's prompt template (prompt_templates, by prompt_name and prompt_version)
// with the conversation and asks an OpenAI-compatible chat-completions endpoint
// (POST {LLM_BASE_URL}/chat/completions, Bearer LLM_API_KEY, model LLM_MODEL) for a JSON answer.
//  - each request has a timeout;
//  - 429 and 5xx (and connection failures) are retried with capped exponential backoff, waiting
//    what Retry-After asks for when the server says;
//  - an answer that is not JSON, has no choices, or whose content is not the JSON object the prompt
//    asks for (required_keys in the template's model_settings) is a clear 'malformed' failure.
import type { Pool } from 'pg';
import type { Analyzer, AnalysisContext } from './analyzer';
import { AnalysisError } from './analyzer';
import type { Conversation, JsonObject, JsonValue } from './types';
import { getPromptTemplate, type PromptTemplate } from '../db/prompts';
import { backoffDelay, sleep } from '../db/errors';

export interface LlmOptions {
  /** e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1; /chat/completions is appended. */
  baseUrl: string;
  apiKey?: string | null;
  model?: string | null;
  /** Per request, including reading the body. Default 60 s. */
  timeoutMs?: number;
  /** Retries after the first request, on 429 / 5xx / connection failures. Default 4. */
  maxRetries?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Longest Retry-After honoured; longer asks fail the request (retryable) instead of blocking. Default 60 s. */
  maxRetryAfterMs?: number;
}

export type LlmErrorKind = 'timeout' | 'http' | 'network' | 'malformed' | 'config' | 'aborted';

export class LlmError extends AnalysisError {
  constructor(readonly kind: LlmErrorKind, message: string, retryable: boolean, readonly status?: number, options?: { cause?: unknown }) {
    super(message, retryable, options);
    this.name = 'LlmError';
  }
}

export interface ChatMessageIn { role: 'system' | 'user' | 'assistant'; content: string }

export interface ChatSettings {
  model?: string;
  temperature?: number;
  max_tokens?: number;
  response_format?: 'json_object' | 'text';
}

export interface ChatAnswer {
  content: string;
  model: string | null;
  finish_reason: string | null;
  usage: JsonValue | null;
  /** HTTP requests made, retries included. */
  requests: number;
}

/** Milliseconds from a Retry-After header (delta-seconds or HTTP-date), or null. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (value === null || value.trim() === '') return null;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : Math.max(0, t - now);
}

function snippet(s: string, n = 200): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > n ? `${one.slice(0, n)}…` : one;
}

export class LlmClient {
  private readonly url: string;
  constructor(private readonly opts: LlmOptions) {
    this.url = `${opts.baseUrl.replace(/\/+$/, '')}/chat/completions`;
  }

  async chat(messages: ChatMessageIn[], settings: ChatSettings = {}, signal?: AbortSignal): Promise<ChatAnswer> {
    const model = settings.model ?? this.opts.model ?? null;
    if (!model) throw new LlmError('config', 'no model: set LLM_MODEL or "model" in the prompt template\'s model_settings', false);
    const body: Record<string, unknown> = { model, messages };
    if (settings.temperature !== undefined) body.temperature = settings.temperature;
    if (settings.max_tokens !== undefined) body.max_tokens = settings.max_tokens;
    if (settings.response_format === 'json_object') body.response_format = { type: 'json_object' };
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`;

    const timeoutMs = this.opts.timeoutMs ?? 60_000;
    const maxRetries = this.opts.maxRetries ?? 4;
    const initial = this.opts.initialBackoffMs ?? 1000;
    const maxBackoff = this.opts.maxBackoffMs ?? 30_000;
    const maxRetryAfter = this.opts.maxRetryAfterMs ?? 60_000;

    for (let attempt = 0; ; attempt++) {
      const requests = attempt + 1;
      if (signal?.aborted) throw new LlmError('aborted', 'LLM request aborted', true);
      const timeout = AbortSignal.timeout(timeoutMs);
      const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
      let status: number;
      let text: string;
      let retryAfter: number | null = null;
      try {
        const res = await fetch(this.url, { method: 'POST', headers, body: JSON.stringify(body), signal: combined });
        status = res.status;
        retryAfter = parseRetryAfter(res.headers.get('retry-after'));
        text = await res.text();
      } catch (e) {
        if (timeout.aborted) throw new LlmError('timeout', `LLM request timed out after ${timeoutMs} ms`, true, undefined, { cause: e });
        if (signal?.aborted) throw new LlmError('aborted', 'LLM request aborted', true, undefined, { cause: e });
        // Connection refused/reset, DNS...: like a 503.
        const cause = (e as { cause?: { code?: string; message?: string } }).cause;
        const why = cause?.code ?? cause?.message ?? (e as Error).message;
        if (attempt < maxRetries) { await sleep(backoffDelay(attempt, initial, maxBackoff), signal); continue; }
        throw new LlmError('network', `LLM endpoint unreachable after ${requests} requests: ${why}`, true, undefined, { cause: e });
      }
      if (status === 429 || status >= 500) {
        const wait = retryAfter ?? backoffDelay(attempt, initial, maxBackoff);
        if (attempt < maxRetries && wait <= maxRetryAfter) { await sleep(wait, signal); continue; }
        throw new LlmError('http', `LLM endpoint answered HTTP ${status} after ${requests} requests: ${snippet(text)}`, true, status);
      }
      if (status < 200 || status >= 300) {
        throw new LlmError('http', `LLM endpoint answered HTTP ${status}: ${snippet(text)}`, false, status);
      }
      return { ...parseCompletion(text), requests };
    }
  }
}

/** The first choice's content of a chat-completions response body. */
export function parseCompletion(text: string): Omit<ChatAnswer, 'requests'> {
  let doc: unknown;
  try { doc = JSON.parse(text); } catch {
    throw new LlmError('malformed', `LLM response is not JSON: ${snippet(text)}`, true);
  }
  const d = doc as { choices?: unknown; model?: unknown; usage?: unknown };
  if (!Array.isArray(d?.choices) || d.choices.length === 0) {
    throw new LlmError('malformed', `LLM response has no choices: ${snippet(text)}`, true);
  }
  const choice = d.choices[0] as { message?: { content?: unknown }; finish_reason?: unknown };
  const content = choice?.message?.content;
  if (typeof content !== 'string') {
    throw new LlmError('malformed', `LLM response's first choice has no message content: ${snippet(text)}`, true);
  }
  return {
    content,
    model: typeof d.model === 'string' ? d.model : null,
    finish_reason: typeof choice.finish_reason === 'string' ? choice.finish_reason : null,
    usage: (d.usage ?? null) as JsonValue,
  };
}

/** The JSON object in an answer's content (a ```json fence around it is allowed). */
export function parseJsonAnswer(content: string, requiredKeys: readonly string[] = [], finishReason: string | null = null): JsonObject {
  const fenced = /^\s*```(?:json)?\s*([\s\S]*?)\s*```\s*$/i.exec(content);
  const body = fenced ? fenced[1]! : content;
  let v: unknown;
  try { v = JSON.parse(body); } catch {
    const cut = finishReason === 'length' ? ' (the answer was cut off: finish_reason "length"; raise max_tokens)' : '';
    throw new LlmError('malformed', `LLM answer is not the JSON object the prompt asks for${cut}: ${snippet(content)}`, true);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new LlmError('malformed', `LLM answer is JSON but not an object: ${snippet(content)}`, true);
  }
  const missing = requiredKeys.filter((k) => !(k in (v as object)));
  if (missing.length > 0) {
    throw new LlmError('malformed', `LLM answer lacks the keys the prompt asks for: ${missing.join(', ')} (got ${Object.keys(v as object).join(', ') || 'none'})`, true);
  }
  return v as JsonObject;
}

export interface TemplateVars { [name: string]: string | number }

/** Replaces {{name}} placeholders; an unknown placeholder is an error, not an empty string. */
export function renderTemplate(template: string, vars: TemplateVars, label = 'template'): string {
  const unknown = new Set<string>();
  const out = template.replace(/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g, (_, name: string) => {
    if (!(name in vars)) { unknown.add(name); return ''; }
    return String(vars[name]);
  });
  if (unknown.size > 0) {
    throw new AnalysisError(`${label}: unknown placeholder(s) ${[...unknown].map((n) => `{{${n}}}`).join(', ')} (known: ${Object.keys(vars).join(', ')})`, false);
  }
  return out;
}

/** One line per message; when longer than maxChars, the middle is left out and said so. */
export function transcript(c: Conversation, maxChars = 60_000): string {
  const lines = c.messages.map((m) => `[${new Date(m.sent_at).toISOString()}] ${m.sender_id}${m.is_from_me ? ' (me)' : ''}: ${m.text ?? '(no text)'}`);
  const full = lines.join('\n');
  if (full.length <= maxChars) return full;
  const half = Math.floor(maxChars / 2);
  const head: string[] = [];
  let size = 0;
  let i = 0;
  for (; i < lines.length && size + lines[i]!.length + 1 <= half; i++) { head.push(lines[i]!); size += lines[i]!.length + 1; }
  const tail: string[] = [];
  size = 0;
  let j = lines.length - 1;
  for (; j >= i && size + lines[j]!.length + 1 <= half; j--) { tail.unshift(lines[j]!); size += lines[j]!.length + 1; }
  return [...head, `[… ${j - i + 1} messages left out …]`, ...tail].join('\n');
}

export function templateVars(c: Conversation, maxTranscriptChars?: number): TemplateVars {
  return {
    conversation_id: c.conversation_id,
    chat_id: c.chat_id,
    chat_type: c.chat_type ?? 'chat',
    account_id: c.account_id ?? '',
    message_count: c.messages.length,
    participant_count: c.participant_ids.length,
    participants: c.participant_ids.join(', '),
    started_at: new Date(c.started_at).toISOString(),
    ended_at: new Date(c.ended_at).toISOString(),
    duration_minutes: Math.round((c.ended_at - c.started_at) / 60_000),
    transcript: transcript(c, maxTranscriptChars),
  };
}

function settingsOf(t: PromptTemplate): { chat: ChatSettings; requiredKeys: string[]; maxTranscriptChars?: number } {
  const s = t.model_settings ?? {};
  const label = `prompt template ${t.name} v${t.version}: model_settings`;
  const num = (k: string): number | undefined => {
    const v = s[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number') throw new AnalysisError(`${label}.${k} must be a number`, false);
    return v;
  };
  const chat: ChatSettings = {};
  if (typeof s.model === 'string') chat.model = s.model;
  const temperature = num('temperature');
  if (temperature !== undefined) chat.temperature = temperature;
  const maxTokens = num('max_tokens');
  if (maxTokens !== undefined) chat.max_tokens = maxTokens;
  if (s.response_format === 'json_object' || s.response_format === 'text') chat.response_format = s.response_format;
  const rk = s.required_keys;
  if (rk !== undefined && (!Array.isArray(rk) || rk.some((k) => typeof k !== 'string'))) {
    throw new AnalysisError(`${label}.required_keys must be an array of strings`, false);
  }
  const out: { chat: ChatSettings; requiredKeys: string[]; maxTranscriptChars?: number } = { chat, requiredKeys: (rk as string[] | undefined) ?? [] };
  const mtc = num('max_transcript_chars');
  if (mtc !== undefined) out.maxTranscriptChars = mtc;
  return out;
}

export interface LlmAnalyzerDeps {
  pool: Pool;
  /** null: LLM_BASE_URL is not set; every llm pass then fails with that reason. */
  llm: LlmOptions | null;
  /** How long a template read from PostgreSQL is reused. Default 60 s. */
  templateTtlMs?: number;
}

export function createLlmAnalyzer(deps: LlmAnalyzerDeps): Analyzer {
  const client = deps.llm ? new LlmClient(deps.llm) : null;
  const cache = new Map<string, { at: number; t: PromptTemplate }>();
  const ttl = deps.templateTtlMs ?? 60_000;

  async function template(name: string, version: number): Promise<PromptTemplate> {
    const key = `${name}\u0000${version}`;
    const hit = cache.get(key);
    if (hit && Date.now() - hit.at < ttl) return hit.t;
    const t = await getPromptTemplate(deps.pool, name, version);
    if (t === null) throw new AnalysisError(`prompt template ${name} v${version} not found in prompt_templates`, false);
    cache.set(key, { at: Date.now(), t });
    return t;
  }

  return {
    kind: 'llm',
    async analyze(c: Conversation, ctx: AnalysisContext): Promise<JsonObject> {
      if (client === null) throw new LlmError('config', 'LLM_BASE_URL is not set: llm passes cannot run', false);
      const t = await template(ctx.pass.prompt_name, ctx.pass.prompt_version);
      const s = settingsOf(t);
      const vars = templateVars(c, s.maxTranscriptChars);
      const label = `prompt template ${t.name} v${t.version}`;
      const messages: ChatMessageIn[] = [];
      if (t.system_prompt) messages.push({ role: 'system', content: renderTemplate(t.system_prompt, vars, label) });
      messages.push({ role: 'user', content: renderTemplate(t.template, vars, label) });
      const answer = await client.chat(messages, s.chat, ctx.signal);
      const parsed = parseJsonAnswer(answer.content, s.requiredKeys, answer.finish_reason);
      return {
        answer: parsed,
        prompt_name: t.name,
        prompt_version: t.version,
        model: answer.model,
        usage: answer.usage,
        requests: answer.requests,
      };
    },
  };
}
