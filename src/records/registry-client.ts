// A small client for a schema registry's Confluent-compatible REST API (Confluent Schema
// Registry, Apicurio's /apis/ccompat/v7, ...): what the codec needs to register its schemas, set
// their compatibility and resolve the schema ids of records it reads.

export class SchemaRegistryError extends Error {
  constructor(message: string, readonly status: number | null, readonly errorCode: number | null) {
    super(message);
    this.name = 'SchemaRegistryError';
  }
}

export type CompatibilityLevel = 'NONE' | 'BACKWARD' | 'BACKWARD_TRANSITIVE' | 'FORWARD' | 'FORWARD_TRANSITIVE' | 'FULL' | 'FULL_TRANSITIVE';

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';

/** A small client for the Confluent-compatible registry API. Credentials may be in the URL. */
export class SchemaRegistryClient {
  readonly baseUrl: string;
  private readonly authorization: string | null;

  constructor(url: string, private readonly opts: { timeoutMs?: number; retries?: number } = {}) {
    const u = new URL(url);
    this.authorization = u.username !== '' || u.password !== ''
      ? `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`
      : null;
    u.username = '';
    u.password = '';
    this.baseUrl = u.toString().replace(/\/+$/, '');
  }

  /** The URL without credentials, for messages. */
  toString(): string {
    return this.baseUrl;
  }

  async request<T>(method: string, urlPath: string, body?: unknown): Promise<T> {
    const retries = this.opts.retries ?? 3;
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        const headers: Record<string, string> = { accept: `${CONTENT_TYPE}, application/json` };
        if (body !== undefined) headers['content-type'] = CONTENT_TYPE;
        if (this.authorization !== null) headers.authorization = this.authorization;
        res = await fetch(this.baseUrl + urlPath, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000),
        });
      } catch (e) {
        if (attempt < retries) { await sleep(100 * 3 ** attempt); continue; }
        throw new SchemaRegistryError(`schema registry ${this.baseUrl} unreachable: ${method} ${urlPath}: ${(e as Error).message}`, null, null);
      }
      const text = await res.text();
      if (res.ok) return (text === '' ? null : JSON.parse(text)) as T;
      if (res.status >= 500 && attempt < retries) { await sleep(100 * 3 ** attempt); continue; }
      let message = text;
      let code: number | null = null;
      try {
        const j = JSON.parse(text) as { message?: string; error_code?: number };
        message = j.message ?? text;
        code = typeof j.error_code === 'number' ? j.error_code : null;
      } catch { /* not JSON */ }
      throw new SchemaRegistryError(`schema registry: ${method} ${urlPath}: HTTP ${res.status}: ${message}`, res.status, code);
    }
  }

  /** The schema text of a schema id, or null when the registry does not know the id. */
  async schemaById(id: number): Promise<{ schema: string; schemaType: string } | null> {
    try {
      const r = await this.request<{ schema: string; schemaType?: string }>('GET', `/schemas/ids/${id}`);
      return { schema: r.schema, schemaType: r.schemaType ?? 'AVRO' };
    } catch (e) {
      if (e instanceof SchemaRegistryError && e.status === 404) return null;
      throw e;
    }
  }

  /** Registers a schema under a subject (or finds it already there); returns its id. */
  async register(subject: string, schema: string): Promise<number> {
    const r = await this.request<{ id: number }>('POST', `/subjects/${encodeURIComponent(subject)}/versions`, { schema });
    return r.id;
  }

  /** The subject's compatibility level; null when the subject has none of its own (or is unknown). */
  async compatibility(subject: string): Promise<string | null> {
    try {
      const r = await this.request<{ compatibilityLevel?: string; compatibility?: string }>('GET', `/config/${encodeURIComponent(subject)}`);
      return r.compatibilityLevel ?? r.compatibility ?? null;
    } catch (e) {
      if (e instanceof SchemaRegistryError && e.status === 404) return null;
      throw e;
    }
  }

  async setCompatibility(subject: string, level: CompatibilityLevel): Promise<void> {
    await this.request('PUT', `/config/${encodeURIComponent(subject)}`, { compatibility: level });
  }

  /** Whether the schema could be registered under the subject (checked against its latest version). */
  async isCompatible(subject: string, schema: string): Promise<boolean> {
    const r = await this.request<{ is_compatible: boolean }>('POST', `/compatibility/subjects/${encodeURIComponent(subject)}/versions/latest`, { schema });
    return r.is_compatible;
  }

  async versions(subject: string): Promise<number[]> {
    return this.request<number[]>('GET', `/subjects/${encodeURIComponent(subject)}/versions`);
  }

  /** Deletes a subject (soft, then permanently when asked). */
  async deleteSubject(subject: string, permanent = false): Promise<void> {
    const s = encodeURIComponent(subject);
    try {
      await this.request('DELETE', `/subjects/${s}`);
    } catch (e) {
      if (!(e instanceof SchemaRegistryError && e.status === 404)) throw e;
    }
    if (permanent) await this.request('DELETE', `/subjects/${s}?permanent=true`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
