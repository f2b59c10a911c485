// The record kinds (SPEC section 4) and their Avro schemas, read from the package's `schemas/`
// directory: what every record is, whichever encoding carries it.
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { ChatCommand, ChatMessage, CommandResult, ConversationSealed, LateMessage } from './types';
import type { AnalysisCompleted, ConversationReady } from './downstream-types';

/** Every record kind, by its Avro record name. */
export interface RecordTypes {
  ChatMessage: ChatMessage;
  ConversationSealed: ConversationSealed;
  LateMessage: LateMessage;
  ChatCommand: ChatCommand;
  CommandResult: CommandResult;
  ConversationReady: ConversationReady;
  AnalysisCompleted: AnalysisCompleted;
}

export type RecordKind = keyof RecordTypes;

export const RECORD_KINDS: readonly RecordKind[] = [
  'ChatMessage', 'ConversationSealed', 'LateMessage', 'ChatCommand', 'CommandResult', 'ConversationReady', 'AnalysisCompleted',
];

/** The directory of the .avsc files: `schemas/` at the package root. */
export function defaultSchemaDir(): string {
  // Compiled: dist/src/records; from sources: src/records.
  for (const up of ['../../..', '../..']) {
    const dir = path.resolve(__dirname, up, 'schemas');
    if (existsSync(path.join(dir, 'ChatMessage.avsc'))) return dir;
  }
  throw new Error(`schemas/ChatMessage.avsc not found above ${__dirname}`);
}

const schemaCache = new Map<string, Record<RecordKind, AvscRecord>>();

/** The parsed .avsc schema of each kind. */
export function loadSchemas(dir: string = defaultSchemaDir()): Record<RecordKind, AvscRecord> {
  let out = schemaCache.get(dir);
  if (out === undefined) {
    const loaded: Partial<Record<RecordKind, AvscRecord>> = {};
    for (const kind of RECORD_KINDS) {
      const file = path.join(dir, `${kind}.avsc`);
      const schema = JSON.parse(readFileSync(file, 'utf8')) as AvscRecord;
      if (schema.type !== 'record' || schema.name !== kind) throw new Error(`${file}: expected record ${kind}`);
      loaded[kind] = schema;
    }
    out = loaded as Record<RecordKind, AvscRecord>;
    schemaCache.set(dir, out);
  }
  return out;
}

// The subset of Avro schema JSON used by the .avsc files (and understood by the JSON reader).
export type AvscSchema = string | AvscSchema[] | AvscRecord | AvscEnum | AvscArray | AvscPrimitive;
export interface AvscRecord { type: 'record'; name: string; namespace?: string; doc?: string; fields: AvscField[] }
export interface AvscField { name: string; type: AvscSchema; doc?: string; default?: unknown }
export interface AvscEnum { type: 'enum'; name: string; namespace?: string; symbols: string[] }
export interface AvscArray { type: 'array'; items: AvscSchema }
export interface AvscPrimitive { type: string; logicalType?: string }
