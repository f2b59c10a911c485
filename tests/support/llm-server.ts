// A local stand-in for an OpenAI-compatible chat-completions endpoint (POST /v1/chat/completions),
// with scripted behaviours: answer, fail with a status (429 + Retry-After, 5xx), hang past the
// client's timeout, or answer malformed bodies. Records every request for assertions.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Behaviour =
  /** 200 with one choice whose content is `content` (objects are JSON-encoded). */
  | { kind: 'answer'; content: string | object | null; model?: string; finishReason?: string }
  /** An error status, with an optional Retry-After header. */
  | { kind: 'status'; status: number; retryAfter?: string; body?: string }
  /** Never answers (until the server closes). */
  | { kind: 'hang' }
  /** 200 with this exact body (not JSON, JSON without choices, ...). */
  | { kind: 'raw'; body: string; status?: number; contentType?: string }
  /** Closes the connection without an answer. */
  | { kind: 'reset' };

export interface RecordedRequest {
  method: string;
  path: string;
  authorization: string | undefined;
  body: any;
  at: number;
}

export interface LlmServer {
  /** Base URL for LLM_BASE_URL, e.g. http://127.0.0.1:PORT/v1. */
  baseUrl: string;
  requests: RecordedRequest[];
  /** Behaviours for the next requests, in order; when used up, `fallback` answers. */
  script(...behaviours: Behaviour[]): void;
  /** Drops the behaviours not used yet. */
  clearScript(): void;
  /** Answers requests when the script is empty (default: a JSON answer echoing the model). */
  fallback: (req: RecordedRequest) => Behaviour;
  close(): Promise<void>;
}

export async function startLlmServer(): Promise<LlmServer> {
  const queue: Behaviour[] = [];
  const requests: RecordedRequest[] = [];
  const hanging = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text;
      try { body = JSON.parse(text); } catch { /* recorded as text */ }
      const rec: RecordedRequest = { method: req.method ?? '', path: req.url ?? '', authorization: req.headers.authorization, body, at: Date.now() };
      requests.push(rec);
      if (req.method !== 'POST' || !/\/chat\/completions$/.test(rec.path)) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `no route ${req.method} ${rec.path}` } }));
        return;
      }
      const b = queue.shift() ?? api.fallback(rec);
      switch (b.kind) {
        case 'answer': {
          const content = b.content === null || typeof b.content === 'string' ? b.content : JSON.stringify(b.content);
          const model = b.model ?? (rec.body as { model?: string })?.model ?? 'test-model';
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
            id: `chatcmpl-${requests.length}`, object: 'chat.completion', created: Math.floor(Date.now() / 1000), model,
            choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: b.finishReason ?? 'stop' }],
            usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
          }));
          return;
        }
        case 'status': {
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          if (b.retryAfter !== undefined) headers['retry-after'] = b.retryAfter;
          res.writeHead(b.status, headers).end(b.body ?? JSON.stringify({ error: { message: `scripted ${b.status}` } }));
          return;
        }
        case 'raw':
          res.writeHead(b.status ?? 200, { 'content-type': b.contentType ?? 'application/json' }).end(b.body);
          return;
        case 'hang':
          hanging.add(res);
          res.on('close', () => hanging.delete(res));
          return;
        case 'reset':
          req.socket.destroy();
          return;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const api: LlmServer = {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    script: (...bs) => { queue.push(...bs); },
    clearScript: () => { queue.length = 0; },
    fallback: () => ({ kind: 'answer', content: { ok: true } }),
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return api;
}
