// The JSON side of the codec: a reader per record kind, compiled from its Avro schema. It checks
// types, fills defaults, accepts ISO-8601 strings for timestamp-millis fields and returns fresh
// plain objects with exactly the schema's fields. Nested ChatMessages go through
// validateChatMessage, like top-level ones. Avro-decoded values go through the same reader, so
// both encodings yield the same objects.
import type { AvscArray, AvscEnum, AvscPrimitive, AvscRecord, AvscSchema } from './schemas';
import { InvalidRecordError, jsonTypeOf, parseTime, validateChatMessage } from './validate';

export type Read = (v: unknown, where: string) => unknown;

function fieldName(where: string): string {
  return where === '' ? 'value' : `field ${where}`;
}

export function compileReader(schema: AvscSchema, named: Map<string, Read>, ns: string | undefined): Read {
  if (typeof schema === 'string') {
    const prim = compilePrimitive(schema, undefined);
    if (prim !== null) return prim;
    const full = schema.includes('.') || ns === undefined ? schema : `${ns}.${schema}`;
    const r = named.get(full) ?? named.get(schema);
    if (r === undefined) throw new Error(`unknown Avro type ${schema}`);
    return (v, w) => r(v, w);
  }
  if (Array.isArray(schema)) {
    const branches = schema.filter((s) => s !== 'null');
    if (branches.length !== 1 || schema.length !== 2) throw new Error('only ["null", T] unions are supported');
    const inner = compileReader(branches[0]!, named, ns);
    return (v, w) => (v === null || v === undefined ? null : inner(v, w));
  }
  switch (schema.type) {
    case 'record': {
      const rec = schema as AvscRecord;
      const recNs = rec.namespace ?? ns;
      const full = rec.name.includes('.') || recNs === undefined ? rec.name : `${recNs}.${rec.name}`;
      if (rec.name === 'ChatMessage') {
        const r: Read = (v, w) => validateChatMessage(v, w === '' ? '' : `${w}.`);
        named.set(full, r);
        return r;
      }
      const fields: { name: string; read: Read; hasDefault: boolean; def: unknown }[] = [];
      const r: Read = (v, w) => {
        if (typeof v !== 'object' || v === null || Array.isArray(v)) {
          throw new InvalidRecordError(w === '' ? `not a JSON object (got ${jsonTypeOf(v)})` : `${fieldName(w)} must be an object`, `got ${jsonTypeOf(v)}`);
        }
        const o = v as Record<string, unknown>;
        const out: Record<string, unknown> = {};
        const prefix = w === '' ? '' : `${w}.`;
        for (const f of fields) {
          const x = o[f.name];
          if (x === undefined) {
            if (!f.hasDefault) throw new InvalidRecordError(`field ${prefix}${f.name} is missing`);
            out[f.name] = structuredClone(f.def);
          } else {
            out[f.name] = f.read(x, prefix + f.name);
          }
        }
        return out;
      };
      named.set(full, r);
      for (const f of rec.fields) {
        fields.push({ name: f.name, read: compileReader(f.type, named, recNs), hasDefault: 'default' in f, def: f.default });
      }
      return r;
    }
    case 'enum': {
      const en = schema as AvscEnum;
      const symbols = new Set(en.symbols);
      const r: Read = (v, w) => {
        if (typeof v !== 'string' || !symbols.has(v)) throw new InvalidRecordError(`${fieldName(w)} must be one of ${en.symbols.join(', ')}`, `got ${JSON.stringify(v)}`);
        return v;
      };
      const enNs = en.namespace ?? ns;
      named.set(en.name.includes('.') || enNs === undefined ? en.name : `${enNs}.${en.name}`, r);
      return r;
    }
    case 'array': {
      const items = compileReader((schema as AvscArray).items, named, ns);
      return (v, w) => {
        if (!Array.isArray(v)) throw new InvalidRecordError(`${fieldName(w)} must be an array`, `got ${jsonTypeOf(v)}`);
        const out = new Array<unknown>(v.length);
        for (let i = 0; i < v.length; i++) out[i] = items(v[i], `${w}[${i}]`);
        return out;
      };
    }
    default: {
      const prim = compilePrimitive(schema.type, (schema as AvscPrimitive).logicalType);
      if (prim === null) throw new Error(`unsupported Avro type ${JSON.stringify(schema)}`);
      return prim;
    }
  }
}

function compilePrimitive(type: string, logicalType: string | undefined): Read | null {
  switch (type) {
    case 'string':
      return (v, w) => {
        if (typeof v !== 'string') throw new InvalidRecordError(`${fieldName(w)} must be a string`, `got ${jsonTypeOf(v)}`);
        return v;
      };
    case 'boolean':
      return (v, w) => {
        if (typeof v !== 'boolean') throw new InvalidRecordError(`${fieldName(w)} must be a boolean`, `got ${jsonTypeOf(v)}`);
        return v;
      };
    case 'int':
      return (v, w) => {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
          throw new InvalidRecordError(`${fieldName(w)} must be a 32-bit integer`, `got ${JSON.stringify(v)}`);
        }
        return v;
      };
    case 'long':
      if (logicalType === 'timestamp-millis') {
        return (v, w) => {
          const t = parseTime(v);
          if (t === null) throw new InvalidRecordError(`${fieldName(w)}: not a time: ${JSON.stringify(v)?.slice(0, 64)}`);
          return t;
        };
      }
      return (v, w) => {
        if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new InvalidRecordError(`${fieldName(w)} must be an integer`, `got ${JSON.stringify(v)}`);
        return v;
      };
    case 'double':
    case 'float':
      return (v, w) => {
        if (typeof v !== 'number') throw new InvalidRecordError(`${fieldName(w)} must be a number`, `got ${jsonTypeOf(v)}`);
        return v;
      };
    case 'null':
      return (v, w) => {
        if (v !== null) throw new InvalidRecordError(`${fieldName(w)} must be null`);
        return null;
      };
    default:
      return null;
  }
}
