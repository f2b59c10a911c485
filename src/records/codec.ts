// Encoding and decoding of every record kind (SPEC section 4). With a schema registry, values are
// Avro in the Confluent wire format (byte 0, a 4-byte big-endian schema id, the Avro binary); without
// one, JSON. Decoding accepts both whatever the setting: a value starting with byte 0 is
// registry-framed Avro, one starting with "{" is JSON. Avro written with another (compatible)
// version of a schema is read through an Avro resolver into the version this code knows.
//
// The registry is spoken to through its Confluent-compatible REST API (Confluent Schema Registry,
// Apicurio's /apis/ccompat/v7, ...). Subjects follow TopicNameStrategy: `<topic>-value`, and
// init() sets their compatibility to BACKWARD explicitly (Apicurio's global default is NONE).
//
// The pieces live beside it: the kinds and schemas (schemas.ts), the JSON reader compiled from
// them (json-reader.ts) and the registry client (registry-client.ts).
import { isUtf8 } from 'node:buffer';
import { Type, type Resolver, type Schema } from 'avsc';
import type { TopicNames } from '../topics';
import type { ChatMessage, CommandResult, ConversationSealed, LateMessage } from './types';
import type { AnalysisCompleted, ConversationReady } from './downstream-types';
import { InvalidRecordError, jsonTypeOf, parseJson } from './validate';
import { type AvscRecord, type RecordKind, type RecordTypes, RECORD_KINDS, loadSchemas } from './schemas';
import { type Read, compileReader } from './json-reader';
import { SchemaRegistryClient, SchemaRegistryError } from './registry-client';

export { type RecordKind, type RecordTypes, RECORD_KINDS, defaultSchemaDir, loadSchemas } from './schemas';
export { SchemaRegistryClient, SchemaRegistryError, type CompatibilityLevel } from './registry-client';

export type RecordFormat = 'avro' | 'json';

/** Default size limits: one chat message is small; the other records carry whole conversations. */
export const DEFAULT_MAX_CHAT_MESSAGE_BYTES = 64 * 1024;
export const DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024;

const MAGIC = 0;
const HEADER = 5;
const BRACE = 0x7b;

export interface RecordCodecOptions {
  /** Confluent-compatible registry API; null: write JSON (Avro input is then refused). */
  registryUrl: string | null;
  topics: TopicNames;
  /** Topic of ChatCommand records; default: `chat.commands` with the prefix of topics.messages. */
  commandsTopic?: string;
  /** Size limits per kind, in bytes of the encoded value. */
  maxBytes?: Partial<Record<RecordKind, number>>;
  /** Where the .avsc files are; default: the package's schemas/. */
  schemaDir?: string;
  /** How long an unknown schema id is remembered as unknown before the registry is asked again. */
  unknownIdTtlMs?: number;
}

type AvroDecode = (payload: Buffer) => unknown;

export class RecordCodec {
  readonly format: RecordFormat;
  readonly registry: SchemaRegistryClient | null;
  readonly schemas: Record<RecordKind, AvscRecord>;
  private readonly topics: TopicNames;
  private readonly commandsTopic: string;
  private readonly limits: Record<RecordKind, number>;
  private readonly types = {} as Record<RecordKind, Type>;
  private readonly readers = {} as Record<RecordKind, Read>;
  /** Per kind: schema id -> decoder for records written with that schema. */
  private readonly avroReaders = {} as Record<RecordKind, Map<number, AvroDecode>>;
  private readonly writerIds = new Map<RecordKind, number>();
  private readonly writerTypes = new Map<number, Promise<Type>>();
  private readonly unknownIds = new Map<number, number>();
  private readonly unknownIdTtlMs: number;
  private initPromise: Promise<Record<RecordKind, number> | null> | null = null;

  constructor(opts: RecordCodecOptions) {
    this.format = opts.registryUrl ? 'avro' : 'json';
    this.registry = opts.registryUrl ? new SchemaRegistryClient(opts.registryUrl) : null;
    this.topics = opts.topics;
    this.commandsTopic = opts.commandsTopic ?? opts.topics.messages.replace(/chat\.messages$/, 'chat.commands');
    this.unknownIdTtlMs = opts.unknownIdTtlMs ?? 60_000;
    this.schemas = loadSchemas(opts.schemaDir);
    const limits = {} as Record<RecordKind, number>;
    const named = new Map<string, Read>();
    for (const kind of RECORD_KINDS) {
      limits[kind] = opts.maxBytes?.[kind] ?? (kind === 'ChatMessage' ? DEFAULT_MAX_CHAT_MESSAGE_BYTES : DEFAULT_MAX_RECORD_BYTES);
      this.types[kind] = Type.forSchema(this.schemas[kind] as unknown as Schema, { wrapUnions: 'auto', omitRecordMethods: true });
      this.readers[kind] = compileReader(this.schemas[kind], named, undefined);
      this.avroReaders[kind] = new Map();
    }
    this.limits = limits;
  }

  /** The topic a kind is written to. */
  topicFor(kind: RecordKind): string {
    switch (kind) {
      case 'ChatMessage': return this.topics.messages;
      case 'ConversationSealed': return this.topics.sealed;
      case 'LateMessage': return this.topics.late;
      case 'ChatCommand': return this.commandsTopic;
      case 'CommandResult': return this.topics.commandResults;
      case 'ConversationReady': return this.topics.ready;
      case 'AnalysisCompleted': return this.topics.completed;
    }
  }

  /** The registry subject of a kind (TopicNameStrategy). */
  subjectFor(kind: RecordKind): string {
    return `${this.topicFor(kind)}-value`;
  }

  /** The size limit of a kind, in bytes. */
  maxBytesFor(kind: RecordKind): number {
    return this.limits[kind];
  }

  /** The Avro schema text registered for a kind. */
  schemaText(kind: RecordKind): string {
    return JSON.stringify(this.schemas[kind]);
  }

  /**
   * With a registry: sets each subject's compatibility to BACKWARD and registers the schema,
   * returning the schema id per kind. Without one: nothing to do (null). Idempotent; encode()
   * calls it when needed.
   */
  init(): Promise<Record<RecordKind, number> | null> {
    if (this.initPromise === null) {
      this.initPromise = this.doInit();
      this.initPromise.catch(() => { this.initPromise = null; });
    }
    return this.initPromise;
  }

  private async doInit(): Promise<Record<RecordKind, number> | null> {
    const registry = this.registry;
    if (registry === null) return null;
    const ids = {} as Record<RecordKind, number>;
    await Promise.all(RECORD_KINDS.map(async (kind) => {
      const subject = this.subjectFor(kind);
      // Confluent accepts a subject's config before its first version; older Apicurio answered 404
      // (kafkajs/confluent-schema-registry#200), so then the config is set after registering.
      let configured = true;
      try {
        await registry.setCompatibility(subject, 'BACKWARD');
      } catch (e) {
        if (!(e instanceof SchemaRegistryError && e.status === 404)) throw e;
        configured = false;
      }
      const id = await registry.register(subject, this.schemaText(kind));
      if (!configured) await registry.setCompatibility(subject, 'BACKWARD');
      ids[kind] = id;
    }));
    for (const kind of RECORD_KINDS) {
      const id = ids[kind];
      this.writerIds.set(kind, id);
      // Our own schema: no fetch, no resolver.
      const type = this.types[kind];
      if (!this.writerTypes.has(id)) this.writerTypes.set(id, Promise.resolve(type));
      this.avroReaders[kind].set(id, (payload) => type.fromBuffer(payload));
    }
    return ids;
  }

  /** The schema id this codec writes a kind with (after init). */
  schemaIdFor(kind: RecordKind): number | undefined {
    return this.writerIds.get(kind);
  }

  /** Checks a value against the kind's schema and returns a clean copy (defaults filled, ISO times as ms). */
  normalize<K extends RecordKind>(kind: K, value: unknown): RecordTypes[K] {
    return this.readers[kind](value, '') as RecordTypes[K];
  }

  /** Encodes a record: Avro (registry-framed) with a registry, JSON otherwise. */
  async encode<K extends RecordKind>(kind: K, value: RecordTypes[K]): Promise<Buffer> {
    if (this.format === 'json') return this.encodeJson(kind, value);
    if (!this.writerIds.has(kind)) await this.init();
    return this.encodeAvroSync(kind, value);
  }

  /** JSON encoding, whatever the setting. Times are integer epoch milliseconds. */
  encodeJson<K extends RecordKind>(kind: K, value: RecordTypes[K]): Buffer {
    return this.jsonBytes(kind, this.normalize(kind, value));
  }

  /** A clean value's JSON, within the kind's size limit. */
  private jsonBytes(kind: RecordKind, clean: unknown): Buffer {
    const buf = Buffer.from(JSON.stringify(clean), 'utf8');
    this.checkSize(kind, buf.length);
    return buf;
  }

  /**
   * Encodes a record this process built from values that were read through this codec: fields set
   * from the schema's own types, nested ChatMessages as the codec decoded them (or as the tracker's
   * layout restores them, with the same fields in the same order). In JSON that needs no reader's
   * copy, which would validate every nested message again: the tracker's sealed conversations carry
   * all their messages, and the copy was about 30 % of what encoding one cost (bench/profile.ts).
   * Byte for byte what `encode` writes for such values (tests/unit/codec-built.test.ts). Avro goes
   * through `encode`.
   */
  encodeBuilt<K extends RecordKind>(kind: K, value: RecordTypes[K]): Promise<Buffer> {
    if (this.format !== 'json') return this.encode(kind, value);
    return Promise.resolve(this.jsonBytes(kind, value));
  }

  /** Avro encoding with this codec's schema id; init() must have completed. */
  encodeAvroSync<K extends RecordKind>(kind: K, value: RecordTypes[K]): Buffer {
    const id = this.writerIds.get(kind);
    if (id === undefined) throw new Error(`RecordCodec: no schema id for ${kind}; call init() with a registry first`);
    const body = this.types[kind].toBuffer(this.normalize(kind, value));
    const buf = Buffer.allocUnsafe(HEADER + body.length);
    buf[0] = MAGIC;
    buf.writeInt32BE(id, 1);
    body.copy(buf, HEADER);
    this.checkSize(kind, buf.length);
    return buf;
  }

  /** Synchronous encoding once init() has completed (or without a registry). */
  encodeSync<K extends RecordKind>(kind: K, value: RecordTypes[K]): Buffer {
    return this.format === 'json' ? this.encodeJson(kind, value) : this.encodeAvroSync(kind, value);
  }

  // Shorthands for the processors.
  encodeSealed(value: ConversationSealed): Promise<Buffer> { return this.encode('ConversationSealed', value); }
  encodeLate(value: LateMessage): Promise<Buffer> { return this.encode('LateMessage', value); }
  encodeCommandResult(value: CommandResult): Promise<Buffer> { return this.encode('CommandResult', value); }
  encodeReady(value: ConversationReady): Promise<Buffer> { return this.encode('ConversationReady', value); }
  encodeCompleted(value: AnalysisCompleted): Promise<Buffer> { return this.encode('AnalysisCompleted', value); }
  decodeSealed(value: Buffer | null | undefined): Promise<ConversationSealed> { return this.decode('ConversationSealed', value); }
  decodeReady(value: Buffer | null | undefined): Promise<ConversationReady> { return this.decode('ConversationReady', value); }

  /** Decodes a chat message (Avro or JSON), validated; InvalidRecordError when it is not one. */
  decodeChatMessage(value: Buffer | null | undefined): Promise<ChatMessage> {
    return this.decode('ChatMessage', value);
  }

  /**
   * Decodes a record of any kind, Avro or JSON. Rejects with InvalidRecordError when the record is
   * bad (DLQ it), and with SchemaRegistryError when the registry cannot be reached to resolve a
   * schema id it has not seen yet (transient: retry, do not DLQ).
   */
  decode<K extends RecordKind>(kind: K, value: Buffer | null | undefined): Promise<RecordTypes[K]> {
    try {
      if (value === null || value === undefined || value.length === 0) throw new InvalidRecordError('empty value');
      this.checkSize(kind, value.length);
      if (value[0] === MAGIC) {
        if (value.length < HEADER) throw new InvalidRecordError('truncated Avro record', `${value.length} bytes, the header alone is ${HEADER}`);
        const id = value.readInt32BE(1);
        const dec = this.avroReaders[kind].get(id);
        if (dec !== undefined) return Promise.resolve(this.finishAvro(kind, id, dec, value));
        return this.decodeAvroSlow(kind, id, value);
      }
      return Promise.resolve(this.decodeJson(kind, value));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** JSON decoding (synchronous), the hot path without a registry. */
  decodeJson<K extends RecordKind>(kind: K, value: Buffer): RecordTypes[K] {
    if (value.length === 0) throw new InvalidRecordError('empty value');
    let first = value[0]!;
    if (first !== BRACE) {
      // Allow leading whitespace; anything else is not a JSON object, but say what it is.
      let i = 0;
      while (i < value.length && (value[i] === 0x20 || value[i] === 0x0a || value[i] === 0x0d || value[i] === 0x09)) i++;
      first = value[i] ?? 0;
    }
    if (!isUtf8(value)) throw new InvalidRecordError('not JSON', 'invalid UTF-8');
    const text = value.toString('utf8');
    if (first !== BRACE) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new InvalidRecordError('not JSON', `first byte 0x${value[0]!.toString(16).padStart(2, '0')}; expected 0x00 (registry-framed Avro) or "{" (JSON)`);
      }
      throw new InvalidRecordError(`not a JSON object (got ${jsonTypeOf(parsed)})`);
    }
    return this.readers[kind](parseJson(text), '') as RecordTypes[K];
  }

  private checkSize(kind: RecordKind, n: number): void {
    const limit = this.limits[kind];
    if (n > limit) throw new InvalidRecordError(`oversize record: ${n} bytes > ${limit}`);
  }

  private finishAvro<K extends RecordKind>(kind: K, id: number, dec: AvroDecode, value: Buffer): RecordTypes[K] {
    let raw: unknown;
    try {
      raw = dec(value.subarray(HEADER));
    } catch (e) {
      throw new InvalidRecordError(`Avro record (schema id ${id}) cannot be decoded`, (e as Error).message);
    }
    return this.readers[kind](raw, '') as RecordTypes[K];
  }

  private async decodeAvroSlow<K extends RecordKind>(kind: K, id: number, value: Buffer): Promise<RecordTypes[K]> {
    let dec = this.avroReaders[kind].get(id);
    if (dec === undefined) {
      const writer = await this.writerType(id);
      dec = this.avroReaders[kind].get(id);
      if (dec === undefined) {
        const reader = this.types[kind];
        if (reader.equals(writer)) {
          dec = (payload) => reader.fromBuffer(payload);
        } else {
          let resolver: Resolver;
          try {
            resolver = reader.createResolver(writer);
          } catch (e) {
            throw new InvalidRecordError(`schema id ${id} cannot be read as ${kind}`, (e as Error).message);
          }
          dec = (payload) => reader.fromBuffer(payload, resolver);
        }
        this.avroReaders[kind].set(id, dec);
      }
    }
    return this.finishAvro(kind, id, dec, value);
  }

  /** The writer schema of an id, fetched once (concurrent lookups share one request). */
  private writerType(id: number): Promise<Type> {
    const registry = this.registry;
    if (registry === null) {
      return Promise.reject(new InvalidRecordError(`Avro record with schema id ${id}, but no schema registry is configured (SCHEMA_REGISTRY_URL)`));
    }
    const until = this.unknownIds.get(id);
    if (until !== undefined) {
      if (Date.now() < until) return Promise.reject(new InvalidRecordError(`unknown schema id ${id}`, `not in the schema registry ${registry}`));
      this.unknownIds.delete(id);
    }
    let p = this.writerTypes.get(id);
    if (p === undefined) {
      p = (async () => {
        const found = await registry.schemaById(id);
        if (found === null) {
          this.unknownIds.set(id, Date.now() + this.unknownIdTtlMs);
          throw new InvalidRecordError(`unknown schema id ${id}`, `not in the schema registry ${registry}`);
        }
        if (found.schemaType.toUpperCase() !== 'AVRO') throw new InvalidRecordError(`schema id ${id} is a ${found.schemaType} schema, not Avro`);
        try {
          return Type.forSchema(JSON.parse(found.schema) as Schema, { wrapUnions: 'auto', omitRecordMethods: true });
        } catch (e) {
          throw new InvalidRecordError(`schema id ${id} is not a usable Avro schema`, (e as Error).message);
        }
      })();
      this.writerTypes.set(id, p);
      // Failures are not cached here: an unknown id has its own short memory, a registry outage none.
      p.catch(() => { if (this.writerTypes.get(id) === p) this.writerTypes.delete(id); });
    }
    return p;
  }
}
