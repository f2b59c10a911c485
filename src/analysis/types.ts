// The conversation as the analyzers see it: loaded from PostgreSQL, times in epoch milliseconds,
// messages in conversation order.

export interface ConversationMessage {
  message_id: string;
  sender_id: string;
  sent_at: number;
  text: string | null;
  is_from_me: boolean;
  reply_to_message_id: string | null;
}

export interface Conversation {
  conversation_id: string;
  chat_id: string;
  chat_type: string | null;
  account_id: string | null;
  started_at: number;
  ended_at: number;
  message_count: number;
  participant_ids: string[];
  content_hash: string;
  messages: ConversationMessage[];
}

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };
