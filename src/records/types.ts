// The records of SPEC sections 3 and 4, as the code sees them after decoding. Times are epoch
// milliseconds; the wire formats (Avro timestamp-millis, JSON integer or ISO-8601) map onto them.

export interface ChatMessage {
  message_id: string;
  chat_id: string;
  sender_id: string;
  sent_at: number;
  text: string | null;
  chat_type: string | null;
  is_from_me: boolean;
  reply_to_message_id: string | null;
  account_id: string | null;
  /**
   * In a sealed conversation of a chat in thread mode (SPEC section 2a): the message this one was
   * linked to (explicitly or by the thread model), or null when it started its thread. Absent on
   * input and in gap mode.
   */
  linked_message_id?: string | null;
}

export type SealReason = 'NEXT_MESSAGE' | 'GAP_TIMEOUT' | 'FORCED' | 'MAX_SIZE';

export interface ConversationSealed {
  conversation_id: string;
  chat_id: string;
  chat_type: string | null;
  account_id: string | null;
  started_at: number;
  ended_at: number;
  message_count: number;
  participant_ids: string[];
  first_message_id: string;
  last_message_id: string;
  sealed_at: number;
  seal_reason: SealReason;
  gap_ms: number;
  continues_conversation_id: string | null;
  /** In sent_at order; ties keep arrival order. */
  messages: ChatMessage[];
}

export interface LateMessage {
  message: ChatMessage;
  /** The sealed conversation the message would have joined, where there is one. */
  would_be_conversation_id: string | null;
  chat_sealed_reach: number;
  detected_at: number;
}

export type CommandType = 'FORCE_SEAL' | 'CHECK_SEALING';

export interface ChatCommand {
  command_id: string;
  type: CommandType;
  /** FORCE_SEAL: the chat; CHECK_SEALING: null (the partition is named by the record). */
  chat_id: string | null;
  issued_at: number;
  /** Where the tracker answers, keyed by command_id. */
  reply_topic: string | null;
}

export interface CommandResult {
  command_id: string;
  type: CommandType;
  partition: number;
  sealed_conversation_ids: string[];
  completed_at: number;
}
