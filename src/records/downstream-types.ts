// Records of the ETL and analysis side (SPEC section 3), as the code sees them after decoding.
// Times are epoch milliseconds, like in ./types. Avro schemas: schemas/ConversationReady.avsc and
// schemas/AnalysisCompleted.avsc.

/** A sealed conversation loaded into PostgreSQL (topic conversation.ready, key conversation_id). */
export interface ConversationReady {
  conversation_id: string;
  chat_id: string;
  account_id: string | null;
  message_count: number;
  started_at: number;
  ended_at: number;
  loaded_at: number;
  /** Hash of the conversation's content; pass results are cached by (pass version, content_hash). */
  content_hash: string;
}

/** One analysis pass finished on one conversation (topic analysis.completed, key conversation_id). */
export interface AnalysisCompleted {
  conversation_id: string;
  chat_id: string;
  pass_name: string;
  pass_version: number;
  /** Outcome, e.g. `completed`, `failed`, `skipped`. */
  status: string;
  /** The pass's result as a JSON document, or null. */
  result_json: string | null;
  error: string | null;
  duration_ms: number;
  completed_at: number;
}
